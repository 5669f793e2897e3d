// DecisionGroup: the ranks of one model replica that must take identical cache decisions (the
// TP x CP grid, with PP stages chained). The controller agrees on everything that completes
// asynchronously through one agree() per round. Implementations: LocalDecisionGroup (one rank, no
// MPI, here), an MPI one (mpi_decision_group.h), one over an engine's all-reduce callback
// (callback_decision_group.h) and an in-process one for tests (tests/support).
// Every collective may fail with kTimeout (the round watchdog, round_watchdog.h, in abort mode):
// the group is then unusable and the caller must end the job.
// Thread-safety: one thread (the scheduler loop) calls it; every rank must make the same calls in
// the same order.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "strata/core/status.h"

namespace strata::comm {

class DecisionGroup {
public:
    virtual ~DecisionGroup() = default;

    virtual int rank() const noexcept = 0;  // rank inside the group
    virtual int size() const noexcept = 0;

    // Element-wise MIN of `values` over every rank of the group (and down the PP chain), in place.
    // One collective. Every rank must call it with the same length. Flags that need MAX are encoded
    // by the caller as negated values (see DecisionVector).
    virtual Status agreeMin(std::span<std::int64_t> values) = 0;

    // All-gathers one 64-bit digest per rank (consistency checking); `all` gets size() entries.
    virtual Status gatherDigests(std::uint64_t mine, std::vector<std::uint64_t>* all) = 0;

    // Waits until every rank of the group has arrived (e.g. before freeing host memory a peer may
    // still be filling).
    virtual Status barrier() = 0;
};

// A group of one rank: agreeMin and barrier are no-ops.
class LocalDecisionGroup final : public DecisionGroup {
public:
    int rank() const noexcept override { return 0; }
    int size() const noexcept override { return 1; }
    Status agreeMin(std::span<std::int64_t>) override { return Status::ok(); }
    Status gatherDigests(std::uint64_t mine, std::vector<std::uint64_t>* all) override {
        all->assign(1, mine);
        return Status::ok();
    }
    Status barrier() override { return Status::ok(); }
};

// Packs counts (agreed by MIN) and flags (agreed by MAX, encoded as -x) into one vector so that a
// single agreeMin() serves both. Usage: i = v.addMin(n); j = v.addMax(flag); v.agree(g); v.get(i).
class DecisionVector {
public:
    std::size_t addMin(std::int64_t value) {
        values_.push_back(value);
        negated_.push_back(false);
        return values_.size() - 1;
    }
    std::size_t addMax(std::int64_t value) {
        values_.push_back(-value);
        negated_.push_back(true);
        return values_.size() - 1;
    }
    Status agree(DecisionGroup& group) { return group.agreeMin(values_); }
    std::int64_t get(std::size_t slot) const {
        return negated_[slot] ? -values_[slot] : values_[slot];
    }
    std::size_t size() const noexcept { return values_.size(); }
    void clear() {
        values_.clear();
        negated_.clear();
    }

private:
    std::vector<std::int64_t> values_;
    std::vector<bool> negated_;
};

}  // namespace strata::comm
