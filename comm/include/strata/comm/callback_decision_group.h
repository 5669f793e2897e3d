// CallbackDecisionGroup: a DecisionGroup over an all-reduce the engine provides, for engines whose
// workers are not an MPI job (torch.distributed processes): agreeMin is one call of the engine's
// element-wise MIN over the replica's TP x CP ranks. gatherDigests and barrier are built from it
// (each rank fills its own slot of a vector, the others INT64_MAX). The vector's length rides in a
// [n, -n] header, as in MpiDecisionGroup: ranks that passed different lengths all get kInternal.
// No watchdog: the engine's collective has its own timeout. Ownership: owns the callback.
// Thread-safety: one thread (the scheduler loop) calls it.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "strata/comm/decision_group.h"
#include "strata/core/status.h"

namespace strata::comm {

class CallbackDecisionGroup final : public DecisionGroup {
public:
    // In place element-wise MIN over every rank of the group; every rank calls it with the same
    // length. A failure fails the round (the status is returned with context).
    using AgreeMinFn = std::function<Status(std::span<std::int64_t>)>;

    // rank: this rank's place in the group (cp_rank * tp + tp_rank), 0 <= rank < size.
    CallbackDecisionGroup(AgreeMinFn agree_min, int rank, int size);

    int rank() const noexcept override { return rank_; }
    int size() const noexcept override { return size_; }
    Status agreeMin(std::span<std::int64_t> values) override;
    // `all` gets size() entries, indexed by group rank.
    Status gatherDigests(std::uint64_t mine, std::vector<std::uint64_t>* all) override;
    Status barrier() override;

private:
    AgreeMinFn agree_min_;
    int rank_;
    int size_;
    std::vector<std::int64_t> buffer_;
};

}  // namespace strata::comm
