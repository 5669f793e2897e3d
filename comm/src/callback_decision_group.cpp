#include "strata/comm/callback_decision_group.h"

#include <algorithm>
#include <bit>
#include <cstddef>
#include <limits>
#include <utility>

namespace strata::comm {

CallbackDecisionGroup::CallbackDecisionGroup(AgreeMinFn agree_min, int rank, int size)
    : agree_min_(std::move(agree_min)), rank_(rank), size_(size) {}

Status CallbackDecisionGroup::agreeMin(std::span<std::int64_t> values) {
    const auto n = static_cast<std::int64_t>(values.size());
    buffer_.assign({n, -n});
    buffer_.insert(buffer_.end(), values.begin(), values.end());
    Status s = agree_min_(buffer_);
    if (!s.isOk()) return s.withContext("decision group: the engine's agree_min failed");
    if (buffer_[0] != n || -buffer_[1] != n) {
        // MIN of the lengths and MIN of their negations: different unless every rank passed n.
        return STRATA_ERROR(StatusCode::kInternal,
                            "decision group: ranks passed different lengths to agreeMin (this "
                            "rank {}, shortest {}, longest {})",
                            n, buffer_[0], -buffer_[1]);
    }
    std::copy(buffer_.begin() + 2, buffer_.end(), values.begin());
    return Status::ok();
}

Status CallbackDecisionGroup::gatherDigests(std::uint64_t mine, std::vector<std::uint64_t>* all) {
    std::vector<std::int64_t> slots(static_cast<std::size_t>(size_),
                                    std::numeric_limits<std::int64_t>::max());
    // MIN of one rank's value and INT64_MAX is that value, whatever its bits.
    slots[static_cast<std::size_t>(rank_)] = std::bit_cast<std::int64_t>(mine);
    STRATA_RETURN_IF_ERROR(agreeMin(slots));
    all->resize(slots.size());
    for (std::size_t i = 0; i < slots.size(); ++i)
        (*all)[i] = std::bit_cast<std::uint64_t>(slots[i]);
    return Status::ok();
}

Status CallbackDecisionGroup::barrier() {
    // A round every rank must enter before any leaves it.
    std::int64_t token = 0;
    return agreeMin(std::span<std::int64_t>(&token, 1));
}

}  // namespace strata::comm
