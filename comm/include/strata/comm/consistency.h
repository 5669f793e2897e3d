// ConsistencyChecker: the rank-consensus check. Every round each rank folds its tree and allocator
// state into a 64-bit digest; check() all-gathers the digests and fails on the first difference,
// naming which ranks hold which digest. Ownership: borrows the DecisionGroup (must outlive it).
// Thread-safety: one thread (the scheduler loop), same call sequence on every rank.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "strata/comm/decision_group.h"
#include "strata/core/status.h"

namespace strata::comm {

// Pure: groups ranks by digest, majority first: "0x00..2a on ranks [0, 2, 3]; 0x00..07 on rank
// [1]".
std::string describeDigests(std::span<const std::uint64_t> digests);

class ConsistencyChecker {
public:
    explicit ConsistencyChecker(DecisionGroup& group) noexcept : group_(&group) {}

    // Collective: gathers one digest per rank (all entries gatherDigests returns) and compares.
    // OK when all are equal. kInternal on a difference, with `where`, the round and
    // describeDigests() in the message (identical on every rank; logged by group rank 0).
    // A gather failure is returned as is.
    Status check(std::uint64_t digest, std::string_view where);

    std::uint64_t roundsChecked() const noexcept { return rounds_checked_; }
    std::uint64_t divergences() const noexcept { return divergences_; }

private:
    DecisionGroup* group_;  // must outlive this checker
    std::uint64_t rounds_checked_ = 0;
    std::uint64_t divergences_ = 0;
};

}  // namespace strata::comm
