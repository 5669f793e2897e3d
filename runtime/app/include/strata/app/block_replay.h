// Metadata-only replay of a block trace through the prefix tree and the tier logic, with the rules
// the published prefix-cache simulators use, so that hit rates can be checked against theirs:
// requests in trace order; a hit is the leading run of the request's pages that are cached, counted
// in tokens (a partial last page counts its own tokens); then every page of the request is inserted
// or touched; eviction takes the least valuable leaf *page* (one none of whose children is cached),
// never one of the current request's pages while anything else is left, so a request longer than
// the capacity keeps its leading pages. No bytes move. With BlockReplayOptions::engine_rules the
// replay counts as the data path does instead (see there).
// Tiers are exclusive, as with write_back: a page lives in one tier. A page evicted from the device
// goes down to the host tier (if there is one), a page evicted from the host goes to the storage
// tier (if there is one), and a page evicted from storage is gone. A hit is counted in the tier
// that served the page, and a hit from a lower tier brings the page back up to the device.
// Thread-safety: a BlockReplayer is used by one thread; replayBlocks is a function of its inputs.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "strata/app/trace.h"
#include "strata/controller/prefix_tree.h"
#include "strata/core/status.h"

namespace strata::app {

// A tier that never evicts (storage_tokens).
inline constexpr std::uint64_t kUnlimitedTokens = std::numeric_limits<std::uint64_t>::max();

struct BlockReplayOptions {
    std::uint64_t capacity_tokens = 0;  // the device tier: capacity_tokens / page tokens pages
    // kLru, kLfu, kPriority (lowest request priority first, see requestPriority) or kOptimal
    // (Belady: the page used again farthest in the future goes first, and a new page that is used
    // later than every cached one is not inserted; device tier only).
    controller::EvictionPolicy policy = controller::EvictionPolicy::kLru;
    double warmup_fraction = 0.0;  // the first fraction of requests is replayed, not measured
    // Tokens per page: 0 = one page per block. Otherwise it must divide the block size; a block is
    // then several pages, and the partial last block as many pages as its tokens need.
    std::uint32_t page_tokens = 0;
    std::uint64_t host_tokens = 0;      // host tier capacity; 0 = no host tier
    std::uint64_t storage_tokens = 0;   // storage tier capacity; 0 = none; kUnlimitedTokens
    std::uint32_t priority_levels = 1;  // kPriority: priorities 0 .. levels-1 (requestPriority)
    // The data path's rules (controller::CacheController, strata-run --data verify) instead of the
    // simulators': the last token of a prompt is always computed (its logits are needed), so a
    // hit covers at most the (input - 1) / page full pages before it and never the whole prompt;
    // only full pages are cached: a partial last page takes a device page while the request runs
    // (room is made for it) and is not kept. strata-run --replay-rules engine.
    bool engine_rules = false;
};

// Hit tokens split by the tier that served them.
struct TierTokens {
    std::uint64_t device = 0, host = 0, storage = 0;
    std::uint64_t total() const noexcept { return device + host + storage; }
};

struct BlockReplayResult {
    std::uint64_t requests = 0, measured_requests = 0;
    std::uint64_t measured_tokens = 0, hit_tokens = 0;  // hit_tokens == tier_hits.total()
    TierTokens tier_hits;
    std::uint64_t block_references = 0;    // page references (one per page of every request)
    std::uint64_t evicted_blocks = 0;      // pages that left the device tier
    std::uint64_t host_evicted_pages = 0;  // pages that left the host tier
    std::uint64_t storage_put_pages = 0;   // pages written down to the storage tier
    std::uint64_t storage_hit_pages = 0;   // pages served by the storage tier
    std::uint64_t dropped_pages = 0;       // pages that left the last tier
    std::size_t peak_nodes = 0;
    double tree_seconds = 0;  // time spent in the tree and tier logic (match, insert, evict)
    double p99_request_us = 0;
    double hitRate() const noexcept { return rate(hit_tokens); }
    double rate(std::uint64_t tokens) const noexcept {
        return measured_tokens == 0 ? 0.0 : static_cast<double>(tokens) / measured_tokens;
    }
};

// The first-page digest of a trace request (for requestPriority, workload.h): a hash of its first
// block id (0 without blocks). Requests that share their first block share a priority.
std::uint64_t firstPageDigest(const TraceRequest& r);

// The page keys of r: ceil(tokens / page_tokens) per block (the last block partial). Block ids are
// prefix-unique, so (block id, page in block) is a valid chain key on its own.
void requestPageKeys(const TraceRequest& r, std::uint32_t page_tokens,
                     std::vector<core::PageKey>* keys);

// Tokens of the first `pages_hit` of r's `pages` pages: whole pages, except that the last page
// counts what is left of the input.
std::uint64_t hitTokens(const TraceRequest& r, std::size_t pages_hit, std::size_t pages,
                        std::uint32_t page_tokens);

// Replays a trace one request at a time (the trace must outlive it). For benchmarks that measure
// the state it holds; replayBlocks runs it over a whole trace.
class BlockReplayer {
public:
    struct Outcome {
        std::size_t pages = 0;    // pages of the request
        std::size_t device = 0;   // leading pages found on the device
        std::size_t host = 0;     // following pages found on the host
        std::size_t storage = 0;  // following pages found in storage
        double tree_us = 0;       // time in the tree and tier logic (keys are built before)
    };

    // kInvalidArgument when the device capacity holds no page, the page size does not divide the
    // block size, priority_levels is 0, or kOptimal is asked with a host or storage tier.
    static Result<BlockReplayer> create(const Trace& trace, const BlockReplayOptions& options);
    BlockReplayer(BlockReplayer&&) noexcept;
    BlockReplayer& operator=(BlockReplayer&&) noexcept;
    ~BlockReplayer();

    bool done() const noexcept;
    // Replays the next request of the trace. Must not be called when done().
    Outcome replayNext();
    // Counters of what moved so far (hit and request fields are left at 0).
    BlockReplayResult counters() const;
    // Pages cached per tier now.
    std::size_t devicePages() const noexcept;
    std::size_t hostPages() const noexcept;
    std::size_t storagePages() const noexcept;
    const controller::PrefixTree& tree() const noexcept;

private:
    struct State;
    explicit BlockReplayer(std::unique_ptr<State> state);
    std::unique_ptr<State> s_;
};

// Replays the whole trace. Errors as BlockReplayer::create, and kInvalidArgument when the warm-up
// fraction is outside [0, 1).
Result<BlockReplayResult> replayBlocks(const Trace& trace, const BlockReplayOptions& options);

}  // namespace strata::app
