// Private to controller/: the operation records shared by cache_controller.cpp (requests, rounds)
// and cache_eviction.cpp (allocation, eviction, write-back).
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include "strata/controller/cache_controller.h"

namespace strata::controller {

using Clock = std::chrono::steady_clock;

// The slot allocator of the controller's pools: per space, the first pool is the anchor (space 0)
// or an independent entry, the others its sidecars; a space 0 whose first pool has compressed rows
// gets a logical anchor. Space s has device_pages[s] and host_pages[s] slots (the counts the
// group agreed on). kInvalidArgument from HostPoolGroup::create.
Result<pools::HostPoolGroup> slotGroupOf(const std::vector<SlotSpace>& spaces,
                                         const std::vector<PoolPair>& pools,
                                         const std::vector<std::size_t>& device_pages,
                                         const std::vector<std::size_t>& host_pages,
                                         std::uint32_t page_size);

// What admit() decides before allocating: the usable match and the device pages of each space.
struct CacheController::AdmitPlan {
    MatchResult match;            // re-matched at the usable length (hybrid models)
    std::size_t host_pages = 0;   // loaded back (0 when below the load-back threshold)
    std::size_t total_pages = 0;  // pages of the prompt (the last may be partial)
    std::size_t reused_pages = 0;
    std::size_t branch_pages = 0;     // the match ends there without a state (0: no branch)
    std::vector<std::size_t> counts;  // device pages to allocate per space
};

// Pages of an admission loaded from the host, and how many of them came from each lower tier.
struct CacheController::HitPages {
    std::size_t loaded = 0, storage = 0, remote = 0;
};

// Loads admitted in one round, launched together layer by layer.
struct CacheController::LoadBatch {
    std::uint64_t id = 0;
    SpaceCopies pages;  // per slot space
    // Per slot space: copies of shared device pages into a request's own (Mamba checkpoints into
    // working slots), run after each layer's loads.
    std::vector<std::vector<kernels::DevicePageMove>> moves;
    std::vector<Node*> nodes;        // carry load_op == id (and their split fragments)
    std::vector<Node*> host_locked;  // each holds one host path lock taken for this batch
    bool launched = false;
    std::vector<kernels::EventPtr> layer_events;  // one per layer once launched
    kernels::EventPtr started;  // timed, before the first copy (the last layer's event is timed)
    Clock::time_point launched_at;
    std::optional<Clock::time_point> seen_done_at;  // first step() that saw the copy finished
};

// Backups queued in one round, launched together as one all-layer copy per pool.
struct CacheController::BackupBatch {
    std::uint64_t id = 0;
    SpaceCopies pages;          // per slot space
    std::vector<Node*> nodes;   // each holds one device path lock and backup_op == id
    kernels::EventPtr done;     // timed
    kernels::EventPtr started;  // timed, before the copies
    Clock::time_point launched_at;
    std::optional<Clock::time_point> seen_done_at;
};

struct CacheController::Request {
    RequestId id = 0;
    std::size_t prompt_tokens = 0;
    std::vector<PageKey> keys;
    Node* locked = nullptr;                   // holds one device path lock for the request
    std::vector<std::uint32_t> device_pages;  // every page of the prompt
    std::vector<std::uint32_t> owned;         // pages of device_pages the tree does not hold
    // Extra slot spaces ([s - 1]): the request's device page of each prompt page (kNoPage where
    // none), the pages it owns (not yet the tree's), and its working slot (request_state spaces).
    std::vector<std::vector<std::uint32_t>> ext_pages, ext_owned;
    std::vector<std::uint32_t> state_page;
    std::size_t reused_pages = 0;
    std::size_t branch_pages = 0;             // the tree's match ended there, without a state
    std::vector<std::uint32_t> branch_state;  // request_state spaces: the slot for that state
    std::vector<std::shared_ptr<LoadBatch>> waits;
    bool inserted = false;
    std::uint32_t priority = 0;  // raised along its path at insert (kPriority eviction)
};

// A prefetch from the remote and storage tiers: queried, then fetched, then grafted (each step
// agreed).
struct CacheController::PrefetchOp {
    enum class State : std::uint8_t { kQuerying, kFetching, kDone };
    RequestId id = 0;
    std::vector<PageKey> keys;  // tree keys of the pages after the anchor
    Node* anchor = nullptr;     // holds one host path lock while the op is not done
    State state = State::kQuerying;
    Clock::time_point started;
    std::chrono::milliseconds timeout{0};
    bool timed_out = false;                 // agreed: some rank saw the timeout pass
    std::vector<std::uint32_t> host_pages;  // allocated at the agreed point, for the fetch
    // Written by the storage worker, read by step(): -1 until the worker is done.
    std::shared_ptr<std::atomic<std::int64_t>> query_pages =
        std::make_shared<std::atomic<std::int64_t>>(-1);
    std::shared_ptr<std::atomic<std::int64_t>> fetched_pages =
        std::make_shared<std::atomic<std::int64_t>>(-1);
    // The leading part of query_pages / fetched_pages found in / pulled from the remote tier
    // (written before them; meaningful once they are >= 0).
    std::shared_ptr<std::atomic<std::int64_t>> remote_query =
        std::make_shared<std::atomic<std::int64_t>>(0);
    std::shared_ptr<std::atomic<std::int64_t>> remote_fetched =
        std::make_shared<std::atomic<std::int64_t>>(0);
    std::size_t remote_pages = 0;  // agreed: the leading pages to pull from the remote tier
    // Hybrid models, per extra space [e][page of keys]: which pages the storage tier holds
    // (query) and delivered (fetch), 1 or 0, written by the worker before query_pages /
    // fetched_pages; and the host pages of each space allocated at the agreed point (kNoPage
    // where the page is not fetched).
    std::shared_ptr<std::vector<std::vector<std::int64_t>>> ext_query =
        std::make_shared<std::vector<std::vector<std::int64_t>>>();
    std::shared_ptr<std::vector<std::vector<std::int64_t>>> ext_fetched =
        std::make_shared<std::vector<std::vector<std::int64_t>>>();
    std::vector<std::vector<std::uint32_t>> ext_host_pages;
};

// Pages of host nodes being written to the storage tier; each node holds one host path lock.
struct CacheController::StorageBackup {
    std::vector<Node*> nodes;
    // With an event sink: the pages of each node as they were when the write was queued (a later
    // split may cut a node), with the key of the page before them, told once the write is agreed.
    std::vector<std::pair<std::optional<PageKey>, std::vector<PageKey>>> stored;
    std::shared_ptr<std::atomic<bool>> done = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace strata::controller
