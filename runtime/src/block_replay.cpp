#include "strata/runtime/block_replay.h"

#include <algorithm>
#include <chrono>

#include "strata/core/check.h"
#include "strata/pools/slot_allocator.h"

namespace strata::runtime {
namespace {

using controller::Node;
using controller::PrefixTree;
using Clock = std::chrono::steady_clock;

// Block ids are prefix-unique (equal id at position i means equal first i+1 blocks), so an id (with
// the page's place inside its block) is a valid chain key on its own.
core::PageKey pageKey(std::uint64_t block_id, std::uint64_t page_in_block) {
    return core::PageKey{block_id, 0xB10C5EED00000000ull | page_in_block};
}

// Evicts up to `pages` pages from the least valuable leaf node, deepest first, and returns how
// many. The pages of one node share one access time, and each is more recent than the pages below
// it, so taking several from the tail of one leaf is what page-by-page leaf eviction would do.
std::size_t evictPages(PrefixTree& tree, pools::SlotAllocator& slots, std::size_t pages) {
    Node* v = tree.nextDeviceVictim();
    if (v == nullptr) return 0;
    const std::size_t take = std::min(pages, v->numPages());
    if (take < v->numPages()) tree.split(v, v->numPages() - take);  // v keeps its last `take`
    Status s = slots.free(v->device_pages);
    STRATA_CHECK(s.isOk(), "replay slot accounting: {}", s.toString());
    v->device_pages.clear();
    tree.removeLeaf(v);
    return take;
}

}  // namespace

Result<BlockReplayResult> replayBlocks(const Trace& trace, const BlockReplayOptions& options) {
    const std::uint64_t B = trace.block_tokens;
    const std::uint64_t P = options.page_tokens == 0 ? B : options.page_tokens;
    if (P == 0 || B % P != 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "page size {} does not divide the {}-token blocks of the trace", P, B);
    }
    const std::uint64_t capacity = options.capacity_tokens / P;
    if (capacity == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "capacity of {} tokens holds no {}-token page", options.capacity_tokens,
                            P);
    }
    if (!(options.warmup_fraction >= 0.0 && options.warmup_fraction < 1.0)) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "warm-up fraction {} is outside [0, 1)",
                            options.warmup_fraction);
    }
    STRATA_ASSIGN_OR_RETURN(auto slots, pools::SlotAllocator::create(capacity, 1));
    PrefixTree tree(options.policy);
    BlockReplayResult result;
    const auto warmup = static_cast<std::uint64_t>(options.warmup_fraction *
                                                   static_cast<double>(trace.requests.size()));
    std::vector<double> request_us;
    request_us.reserve(trace.requests.size());
    std::vector<core::PageKey> keys;
    for (const TraceRequest& r : trace.requests) {
        keys.clear();
        for (std::size_t b = 0; b < r.block_ids.size(); ++b) {
            const bool last = b + 1 == r.block_ids.size();
            const std::uint64_t tokens = last ? r.input_tokens - B * b : B;
            const std::uint64_t pages = (tokens + P - 1) / P;
            for (std::uint64_t j = 0; j < pages; ++j) keys.push_back(pageKey(r.block_ids[b], j));
        }
        const auto t0 = Clock::now();
        controller::MatchResult m = tree.match(keys);
        const std::size_t hit = m.device_pages;
        // The request's own blocks stay while anything else can go: lock the matched path, and
        // insert only as many new blocks as fit.
        tree.lockDevice(m.device_last, +1);
        std::size_t want = keys.size() - hit;
        while (slots.freePages() < want) {
            const std::size_t n = evictPages(tree, slots, want - slots.freePages());
            if (n == 0) break;
            result.evicted_blocks += n;
        }
        const std::size_t fit = std::min<std::size_t>(want, slots.freePages());
        if (fit > 0) {
            auto pages = slots.allocate(fit);
            STRATA_CHECK(pages.isOk(), "replay allocation: {}", pages.status().toString());
            std::vector<core::PageKey> tail(keys.begin() + static_cast<long>(hit),
                                            keys.begin() + static_cast<long>(hit + fit));
            tree.addChild(m.device_last, std::move(tail), std::move(pages).value());
        }
        tree.lockDevice(m.device_last, -1);
        const auto t1 = Clock::now();
        const double us = std::chrono::duration<double, std::micro>(t1 - t0).count();
        result.tree_seconds += us * 1e-6;
        request_us.push_back(us);
        result.peak_nodes = std::max(result.peak_nodes, tree.nodeCount());
        result.block_references += keys.size();
        ++result.requests;
        if (result.requests <= warmup) continue;
        ++result.measured_requests;
        result.measured_tokens += r.input_tokens;
        // Hit tokens: whole pages, except a hit on the last (possibly partial) page.
        std::uint64_t hit_tokens = hit * P;
        if (hit == keys.size() && hit > 0) hit_tokens = r.input_tokens;
        result.hit_tokens += std::min<std::uint64_t>(hit_tokens, r.input_tokens);
    }
    if (!request_us.empty()) {
        std::sort(request_us.begin(), request_us.end());
        result.p99_request_us = request_us[(request_us.size() * 99) / 100 == request_us.size()
                                               ? request_us.size() - 1
                                               : (request_us.size() * 99) / 100];
    }
    return result;
}

}  // namespace strata::runtime
