// Fault-injection program for the job-down tests: every rank loops in agreeMin; after 50 rounds
// rank 1 either calls core::fatal (which must MPI_Abort the job) or kills itself with SIGKILL.
// The peers stay blocked in the next agreeMin, so the job ends only if MPI brings it down.
// Usage: job_down_prog fatal|sigkill
#include <csignal>
#include <cstdio>
#include <string_view>
#include <vector>

#include "strata/comm/grid.h"
#include "strata/comm/mpi_context.h"
#include "strata/comm/mpi_decision_group.h"
#include "strata/core/check.h"

int main(int argc, char** argv) {
    using namespace strata;
    const std::string_view mode = argc > 1 ? argv[1] : "";
    if (mode != "fatal" && mode != "sigkill") {
        std::fprintf(stderr, "usage: job_down_prog fatal|sigkill\n");
        return 2;
    }
    auto ctx = comm::MpiContext::create(&argc, &argv);
    if (!ctx.isOk()) return 3;
    auto grid = comm::Grid::create(comm::MpiComm::world(), {ctx->worldSize(), 1, 1});
    STRATA_CHECK(grid.isOk(), "{}", grid.status().toString());
    auto group = comm::MpiDecisionGroup::create(*grid);
    STRATA_CHECK(group.isOk(), "{}", group.status().toString());
    std::vector<std::int64_t> v(16, ctx->worldRank());
    for (long round = 0; round < 1000000000L; ++round) {
        if (ctx->worldRank() == 1 && round == 50) {
            if (mode == "fatal") core::fatal("injected fatal error (job-down test)");
            std::raise(SIGKILL);
        }
        Status s = group->agreeMin(v);
        STRATA_CHECK(s.isOk(), "{}", s.toString());
    }
    return 0;  // unreachable in a correct run: peers never finish the loop alone
}
