#include "registry.h"

namespace strata::bench {

std::span<const BenchEntry> registeredBenches() {
    static const BenchEntry kBenches[] = {
        {"sync",
         "per-round decision agreement: MpiDecisionGroup::agreeMin vs one bare MPI_Allreduce vs "
         "one all-reduce per decision kind over TP then CP (run under mpirun)",
         &makeSyncBench},
    };
    return kBenches;
}

}  // namespace strata::bench
