// Metadata-only replay of a block trace through the prefix tree, with the rules the published
// prefix-cache simulators use, so that hit rates can be checked against theirs: requests in trace
// order; a hit is the leading run of the request's blocks that are cached, counted in tokens (a
// partial last block counts its own tokens); then every block of the request is inserted or
// touched; eviction takes the least valuable leaf *block* (a block none of whose children is
// cached), never one of the current request's blocks while anything else is left, so a request
// longer than the capacity keeps its leading blocks. No bytes move.
// Thread-safety: pure function of its inputs.
#pragma once

#include <cstdint>

#include "strata/controller/prefix_tree.h"
#include "strata/core/status.h"
#include "strata/runtime/trace.h"

namespace strata::runtime {

struct BlockReplayOptions {
    std::uint64_t capacity_tokens = 0;  // one tier of capacity_tokens / block_tokens blocks
    controller::EvictionPolicy policy = controller::EvictionPolicy::kLru;
    double warmup_fraction = 0.0;  // the first fraction of requests is replayed, not measured
    // Tokens per page: 0 = one page per block. Otherwise it must divide the block size; a block is
    // then several pages, and the partial last block as many pages as its tokens need.
    std::uint32_t page_tokens = 0;
};

struct BlockReplayResult {
    std::uint64_t requests = 0, measured_requests = 0;
    std::uint64_t measured_tokens = 0, hit_tokens = 0;
    std::uint64_t block_references = 0, evicted_blocks = 0;
    std::size_t peak_nodes = 0;
    double tree_seconds = 0;  // time spent in the tree (match, insert, evict)
    double p99_request_us = 0;
    double hitRate() const noexcept {
        return measured_tokens == 0 ? 0.0 : static_cast<double>(hit_tokens) / measured_tokens;
    }
};

// kInvalidArgument when the capacity holds no page, the page size does not divide the block size,
// or the warm-up fraction is outside [0, 1).
Result<BlockReplayResult> replayBlocks(const Trace& trace, const BlockReplayOptions& options);

}  // namespace strata::runtime
