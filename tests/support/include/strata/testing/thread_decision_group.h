// ThreadDecisionGroup: an in-process DecisionGroup for unit tests. N threads of one process each
// hold one member; agreeMin / gatherDigests / barrier rendezvous like the MPI collectives would,
// under the same round watchdog (round_watchdog.h) as MpiDecisionGroup: a collective that waits
// past the timeout names the members that did not arrive ("member 2") and fails with kTimeout
// (the group is unusable afterwards) or warns every interval and keeps waiting.
// Ownership: members share the state (shared_ptr).
// Thread-safety: each member is used by exactly one thread; all members make the same calls.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "strata/comm/decision_group.h"
#include "strata/comm/round_watchdog.h"

namespace strata::testing {

class ThreadDecisionGroup final : public comm::DecisionGroup {
public:
    struct State;

    // Creates `size` >= 1 members; hand member i to thread i. `watchdog` applies to every
    // collective (the default: 120 s, then kTimeout).
    static std::vector<std::unique_ptr<ThreadDecisionGroup>> createGroup(
        int size, comm::RoundWatchdogOptions watchdog = {});

    int rank() const noexcept override { return rank_; }
    int size() const noexcept override;

    // Element-wise MIN over all members. Every member gets kInternal naming the lengths if they
    // passed different lengths (values untouched then).
    Status agreeMin(std::span<std::int64_t> values) override;
    // `all` gets size() entries, indexed by member rank.
    Status gatherDigests(std::uint64_t mine, std::vector<std::uint64_t>* all) override;
    Status barrier() override;

    std::uint64_t rounds() const noexcept { return rounds_; }

    ThreadDecisionGroup(std::shared_ptr<State> state, int rank) noexcept
        : state_(std::move(state)), rank_(rank) {}

private:
    std::shared_ptr<State> state_;
    int rank_;
    std::uint64_t rounds_ = 0;
};

}  // namespace strata::testing
