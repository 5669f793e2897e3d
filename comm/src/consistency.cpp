#include "strata/comm/consistency.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <vector>

#include "strata/core/log.h"

namespace strata::comm {

std::string describeDigests(std::span<const std::uint64_t> digests) {
    std::map<std::uint64_t, std::vector<int>> ranks_by_digest;
    for (std::size_t i = 0; i < digests.size(); ++i) {
        ranks_by_digest[digests[i]].push_back(static_cast<int>(i));
    }
    std::vector<std::pair<std::uint64_t, std::vector<int>>> groups(ranks_by_digest.begin(),
                                                                   ranks_by_digest.end());
    // Majority first, then by first rank, so the odd ones out come last.
    std::stable_sort(groups.begin(), groups.end(), [](const auto& a, const auto& b) {
        if (a.second.size() != b.second.size()) return a.second.size() > b.second.size();
        return a.second.front() < b.second.front();
    });
    std::string out;
    for (const auto& [digest, ranks] : groups) {
        if (!out.empty()) out += "; ";
        out += fmt::format("{:#018x} on rank{} [{}]", digest, ranks.size() == 1 ? "" : "s",
                           fmt::join(ranks, ", "));
    }
    return out;
}

Status ConsistencyChecker::check(std::uint64_t digest, std::string_view where) {
    std::vector<std::uint64_t> all;
    STRATA_RETURN_IF_ERROR(group_->gatherDigests(digest, &all));
    const std::uint64_t round = rounds_checked_++;
    if (std::adjacent_find(all.begin(), all.end(), std::not_equal_to<>()) == all.end()) {
        return Status::ok();
    }
    ++divergences_;
    Status s =
        STRATA_ERROR(StatusCode::kInternal, "rank-consensus check failed at {} (round {}): {}",
                     where, round, describeDigests(all));
    if (group_->rank() == 0) core::logger("comm").error("{}", s.message());
    return s;
}

}  // namespace strata::comm
