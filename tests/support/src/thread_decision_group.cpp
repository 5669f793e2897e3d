#include "strata/testing/thread_decision_group.h"

#include <fmt/format.h>

#include <algorithm>
#include <barrier>
#include <limits>

namespace strata::testing {

// Each collective is two phases on one std::barrier: every member publishes its input in its own
// slot, waits, reads all slots, waits again (so no slot is overwritten before everyone read it).
struct ThreadDecisionGroup::State {
    explicit State(int n)
        : size(n),
          sync(n),
          vectors(static_cast<std::size_t>(n)),
          digests(static_cast<std::size_t>(n)) {}
    int size;
    std::barrier<> sync;
    std::vector<std::vector<std::int64_t>> vectors;
    std::vector<std::uint64_t> digests;
};

std::vector<std::unique_ptr<ThreadDecisionGroup>> ThreadDecisionGroup::createGroup(int size) {
    auto state = std::make_shared<State>(std::max(size, 1));
    std::vector<std::unique_ptr<ThreadDecisionGroup>> members;
    for (int r = 0; r < state->size; ++r) {
        members.push_back(std::make_unique<ThreadDecisionGroup>(state, r));
    }
    return members;
}

int ThreadDecisionGroup::size() const noexcept { return state_->size; }

Status ThreadDecisionGroup::agreeMin(std::span<std::int64_t> values) {
    State& s = *state_;
    s.vectors[static_cast<std::size_t>(rank_)].assign(values.begin(), values.end());
    s.sync.arrive_and_wait();
    std::size_t min_len = std::numeric_limits<std::size_t>::max();
    std::size_t max_len = 0;
    for (const auto& v : s.vectors) {
        min_len = std::min(min_len, v.size());
        max_len = std::max(max_len, v.size());
    }
    Status status;
    if (min_len != values.size() || max_len != values.size()) {
        status = Status(StatusCode::kInternal,
                        fmt::format("agreeMin length mismatch: member {} passed {} values, the "
                                    "group passed between {} and {}",
                                    rank_, values.size(), min_len, max_len));
    } else {
        for (std::size_t i = 0; i < values.size(); ++i) {
            std::int64_t m = std::numeric_limits<std::int64_t>::max();
            for (const auto& v : s.vectors) m = std::min(m, v[i]);
            values[i] = m;
        }
    }
    s.sync.arrive_and_wait();
    ++rounds_;
    return status;
}

Status ThreadDecisionGroup::gatherDigests(std::uint64_t mine, std::vector<std::uint64_t>* all) {
    State& s = *state_;
    s.digests[static_cast<std::size_t>(rank_)] = mine;
    s.sync.arrive_and_wait();
    *all = s.digests;
    s.sync.arrive_and_wait();
    return Status::ok();
}

Status ThreadDecisionGroup::barrier() {
    state_->sync.arrive_and_wait();
    return Status::ok();
}

}  // namespace strata::testing
