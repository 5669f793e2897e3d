// Private: the MPI side of the round watchdog (round_watchdog.h). RankWatch waits for a
// nonblocking MPI operation under the deadline and, when it passes, names the ranks that did not
// arrive. The fast path is one test of the operation (then yields, then short sleeps, so that
// ranks oversubscribing a few cores stay fast). Arrival is learnt from notices: a rank whose wait
// has lasted roundNoticeAfterSeconds() sends every other member a 16-byte notice {op sequence
// number, round} on its own duplicate of the members' communicator, and drains the notices it got
// while it waits. At the deadline, the awaited members that have not reported waiting in this
// operation (or a later one) are the missing ones: a stopped rank never sends a notice.
// Every member makes the same operations in the same order (the group's contract), so sequence
// numbers match across ranks. Thread-safety: one thread (the group's).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "strata/comm/grid.h"
#include "strata/comm/mpi_comm.h"
#include "strata/comm/round_watchdog.h"
#include "strata/core/status.h"

namespace strata::comm::detail {

class RankWatch {
public:
    // Collective over `members`: duplicates it and all-gathers every member's world rank and host
    // name (for the messages). `shape` and `world_size` give the grid coordinates of a world rank.
    static Result<RankWatch> create(const MpiComm& members, GridShape shape, int world_size,
                                    RoundWatchdogOptions options);

    RankWatch(RankWatch&&) noexcept;
    RankWatch& operator=(RankWatch&&) noexcept;
    // Frees the notice sends that completed; a send still pending (to a stopped peer) is freed
    // and its 16-byte buffer deliberately leaked, since MPI may still read it.
    ~RankWatch();

    struct Op {
        // The caller's count of its collectives (the same on every member for the same one).
        std::uint64_t seq = 0;
        std::string_view kind;         // "agreement", "digest gather", "barrier", "pp forward"
        std::uint64_t round = 0;       // agreements before this operation (+1 for an agreement)
        std::span<const int> awaited;  // member ranks whose arrival completes the operation
    };

    // Polls `test` (sets *done, or returns an MPI error) until done. On the timeout: kWarn logs
    // (logger "comm") and keeps waiting; kAbort logs and returns kTimeout naming the missing
    // ranks, and every later wait() fails the same way (the operation is left pending).
    Status wait(const Op& op, const std::function<Status(bool*)>& test);

    // "world rank 2 (tp 0, cp 1, pp 0, dp 0) on host h" of a member.
    std::string describeMember(int member) const;
    int rank() const noexcept;
    const RoundWatchdogOptions& options() const noexcept;

private:
    struct Impl;
    explicit RankWatch(std::unique_ptr<Impl> impl) noexcept;
    std::unique_ptr<Impl> impl_;
};

}  // namespace strata::comm::detail
