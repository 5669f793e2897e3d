// Fault-injection program for the round-watchdog tests (issue 15 item 3): 4 ranks as TP2 x CP2 run
// agreeMin rounds (checking every result); at round 20, world rank 2 stops itself with SIGSTOP.
//   abort: round timeout 2 s. The other ranks must name world rank 2 and fail with kTimeout;
//          the program then ends the job through core::fatal (MPI_Abort).
//   warn:  round timeout 1 s, a warning every 0.5 s. World rank 0 resumes rank 2 (SIGCONT) from
//          its second warning naming it; every rank must then finish all rounds, a digest gather
//          and a barrier, and exit 0.
// Before stopping, rank 2 prints its pid so that the test script can clean up after a failure.
// Usage: round_watchdog_prog abort|warn
#include <signal.h>
#include <unistd.h>

#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "strata/comm/grid.h"
#include "strata/comm/mpi_context.h"
#include "strata/comm/mpi_decision_group.h"
#include "strata/core/check.h"

namespace {

constexpr int kStoppedRank = 2;
constexpr long kStopAtRound = 20;
constexpr long kRounds = 60;

std::int64_t value(int rank, long round, std::size_t i) {
    return static_cast<std::int64_t>((rank * 7919 + round * 104729 + static_cast<long>(i) * 31) %
                                     1000);
}

}  // namespace

int main(int argc, char** argv) {
    using namespace strata;
    const std::string_view mode = argc > 1 ? argv[1] : "";
    if (mode != "abort" && mode != "warn") {
        std::fprintf(stderr, "usage: round_watchdog_prog abort|warn\n");
        return 2;
    }
    auto ctx = comm::MpiContext::create(&argc, &argv);
    if (!ctx.isOk()) return 3;
    const int rank = ctx->worldRank();
    STRATA_CHECK(ctx->worldSize() == 4, "run with 4 ranks (TP2 x CP2), got {}", ctx->worldSize());
    auto grid = comm::Grid::create(comm::MpiComm::world(), {2, 2, 1});
    STRATA_CHECK(grid.isOk(), "{}", grid.status().toString());

    // Every rank's pid, so that rank 0 can resume rank 2 (the test runs on one host).
    const int mine = static_cast<int>(::getpid());
    std::vector<int> pids(4);
    STRATA_CHECK(
        MPI_Allgather(&mine, 1, MPI_INT, pids.data(), 1, MPI_INT, MPI_COMM_WORLD) == MPI_SUCCESS,
        "pid all-gather");

    comm::RoundWatchdogOptions watchdog;
    if (mode == "abort") {
        watchdog.timeout_s = 2.0;
        watchdog.on_timeout = comm::RoundTimeoutAction::kAbort;
    } else {
        watchdog.timeout_s = 1.0;
        watchdog.on_timeout = comm::RoundTimeoutAction::kWarn;
        watchdog.warn_interval_s = 0.5;
        if (rank == 0) {
            watchdog.on_warning = [pid = pids[kStoppedRank],
                                   n = 0](const std::string& text) mutable {
                if (text.find("world rank 2 ") == std::string::npos) return;
                if (++n == 2) {
                    std::printf("rank 0: resuming world rank 2 (pid %d)\n", pid);
                    std::fflush(stdout);
                    ::kill(pid, SIGCONT);
                }
            };
        }
    }
    auto group = comm::MpiDecisionGroup::create(*grid, watchdog);
    STRATA_CHECK(group.isOk(), "{}", group.status().toString());

    std::vector<std::int64_t> v(8);
    for (long round = 1; round <= kRounds; ++round) {
        if (rank == kStoppedRank && round == kStopAtRound) {
            std::printf("world rank 2 (pid %d) stops itself before round %ld\n", mine, round);
            std::fflush(stdout);
            ::raise(SIGSTOP);
        }
        for (std::size_t i = 0; i < v.size(); ++i) v[i] = value(rank, round, i);
        Status s = group->agreeMin(v);
        if (!s.isOk()) core::fatal("agreeMin failed: " + s.toString());
        for (std::size_t i = 0; i < v.size(); ++i) {
            std::int64_t expect = value(0, round, i);
            for (int r = 1; r < 4; ++r) expect = std::min(expect, value(r, round, i));
            STRATA_CHECK(v[i] == expect, "round {} entry {}: {} != {}", round, i, v[i], expect);
        }
    }
    std::vector<std::uint64_t> digests;
    Status s = group->gatherDigests(static_cast<std::uint64_t>(rank), &digests);
    STRATA_CHECK(s.isOk(), "{}", s.toString());
    STRATA_CHECK(digests == (std::vector<std::uint64_t>{0, 1, 2, 3}), "digests");
    s = group->barrier();
    STRATA_CHECK(s.isOk(), "{}", s.toString());
    std::printf("rank %d: all %ld rounds agreed\n", rank, kRounds);
    return 0;
}
