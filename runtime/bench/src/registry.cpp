#include "registry.h"

namespace strata::bench {

std::span<const BenchEntry> registeredBenches() {
    static const BenchEntry kBenches[] = {
        {"sync",
         "per-round decision agreement: MpiDecisionGroup::agreeMin vs one bare MPI_Allreduce vs "
         "one all-reduce per decision kind over TP then CP (run under mpirun)",
         &makeSyncBench},
        {"storage",
         "HDF5 tier: write/read GB/s for 64 KiB and 1 MiB pages vs plain pwrite/pread of the same "
         "bytes (posix), and 128-key existence checks vs stat() per page file",
         &makeStorageBench},
    };
    return kBenches;
}

}  // namespace strata::bench
