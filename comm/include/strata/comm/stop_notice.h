// StopNotice: tells every rank of a communicator, without a collective, that one of them was asked
// to stop (strata-run: a terminating signal), for ranks that run different numbers of rounds and
// so share no per-round collective (DP replicas). A rank with a reason posts it once to every other
// rank (notify); every rank polls between its own rounds; finish(), a collective of the whole
// communicator once no rank notifies or polls any more, receives what is still in flight and
// completes the sends, so that no message is left at MPI_Finalize.
// Thread-safety: one thread per rank.
#pragma once

#include <memory>

#include "strata/comm/mpi_comm.h"
#include "strata/core/status.h"

namespace strata::comm {

class StopNotice {
public:
    // Over a duplicate of `comm` (its messages never meet the caller's).
    static Result<StopNotice> create(const MpiComm& comm);
    StopNotice(StopNotice&&) noexcept;
    StopNotice& operator=(StopNotice&&) noexcept;
    ~StopNotice();

    // Posts `reason` (> 0) to every other rank; later calls do nothing (the first reason stays).
    Status notify(int reason);
    // The largest reason received from another rank so far (0: none); never blocks.
    Result<int> poll();
    // Collective: receives the notices still on their way to this rank and completes this rank's
    // sends. Call once, after the last notify() and poll() of every rank.
    Status finish();

private:
    struct Impl;
    explicit StopNotice(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace strata::comm
