// CacheController: one rank's cache hierarchy (device pools <-> host pools) driven by the prefix
// tree: admission (match, device allocation with eviction, host->device load back), insertion with
// the write policy (device->host backups), release, and one agreed step() per scheduling round.
// Copies run asynchronously on two streams (one per direction); loads run layer by layer and
// publish a ready event per layer. Everything that completes asynchronously is reaped only at
// step(), in counts agreed by the decision group, so allocators and trees stay identical across
// ranks. Ownership: borrows the backend, pools and decision group (they must outlive the
// controller); owns the tree, allocators and streams. Thread-safety: one thread (the scheduler
// loop) calls it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "strata/comm/consistency.h"
#include "strata/comm/decision_group.h"
#include "strata/comm/nccl/striped_loader.h"
#include "strata/controller/kv_events.h"
#include "strata/controller/prefix_tree.h"
#include "strata/core/enum_names.h"
#include "strata/core/status.h"
#include "strata/io/page_store.h"
#include "strata/kernels/backend.h"
#include "strata/pools/device_pool.h"
#include "strata/pools/host_pool.h"
#include "strata/pools/host_pool_group.h"
#include "strata/pools/pool_spec.h"
#include "strata/pools/slot_allocator.h"

namespace strata::controller {

// A slot space: the pools whose pages share indices. Space 0 is the anchor's (the main KV, or a
// logical anchor's compressed sidecars) and holds every page of a cached prefix; every other space
// is an independent entry of the model's HostPoolGroup (a sliding window, a Mamba state) with the
// sidecars that derive their indices from it, and holds only what its hit policy needs.
struct SlotSpace {
    std::string name;                                           // "kv", "swa", "mamba"
    pools::HitPolicy hit_policy = pools::HitPolicy::kAllPages;  // space 0: kAllPages
    std::uint32_t trailing_pages = 0;  // kTrailingPages: pages a usable prefix's end must hold
    // A per-request state (Mamba): the request gets one working slot of this space (its
    // Admission's state_page). A hit copies the checkpoint at the end of the prefix into it;
    // insert() keeps it as the checkpoint at the end of the request's last full page. Without it,
    // the request gets a page of this space for each page it computes, and insert() keeps those
    // inside the trailing window of its last full page.
    bool request_state = false;
};

enum class WritePolicy : std::uint8_t { kWriteThrough, kWriteThroughSelective, kWriteBack };
inline constexpr core::EnumNames<WritePolicy, 3> kWritePolicyNames{
    "write policy",
    {{{WritePolicy::kWriteThrough, "write_through"},
      {WritePolicy::kWriteThroughSelective, "write_through_selective"},
      {WritePolicy::kWriteBack, "write_back"}}}};
constexpr const auto& enumNames(WritePolicy) noexcept { return kWritePolicyNames; }
constexpr std::string_view writePolicyName(WritePolicy p) noexcept { return core::enumName(p); }
// Parses "write_through" | "write_through_selective" | "write_back".
inline Result<WritePolicy> parseWritePolicy(std::string_view name) {
    return core::parseEnum<WritePolicy>(name);
}
// Parses "lru" | "lfu" | "priority" | "opt" (opt: offline analysis only; create() refuses it).
inline Result<EvictionPolicy> parseEvictionPolicy(std::string_view name) {
    return core::parseEnum<EvictionPolicy>(name);
}

// When a request waiting for a prefetch from storage may be admitted.
enum class PrefetchPolicy : std::uint8_t {
    kBestEffort,    // at once, with whatever has arrived
    kWaitComplete,  // only once the prefetch has finished
    kTimeout,       // once finished, or once the timeout has passed on any rank of the group
};
inline constexpr core::EnumNames<PrefetchPolicy, 3> kPrefetchPolicyNames{
    "prefetch policy",
    {{{PrefetchPolicy::kBestEffort, "best_effort"},
      {PrefetchPolicy::kWaitComplete, "wait_complete"},
      {PrefetchPolicy::kTimeout, "timeout"}}}};
constexpr const auto& enumNames(PrefetchPolicy) noexcept { return kPrefetchPolicyNames; }
constexpr std::string_view prefetchPolicyName(PrefetchPolicy p) noexcept {
    return core::enumName(p);
}
inline Result<PrefetchPolicy> parsePrefetchPolicy(std::string_view name) {
    return core::parseEnum<PrefetchPolicy>(name);
}

// The storage tier below the host pools (the page stores are given per pool in PoolPair).
struct StorageConfig {
    PrefetchPolicy prefetch_policy = PrefetchPolicy::kTimeout;
    std::size_t prefetch_threshold_tokens = 256;  // shorter prefetches are not started
    std::uint32_t timeout_base_ms = 2000;         // timeout = base + per_1k * tokens / 1000, capped
    std::uint32_t timeout_per_1k_tokens_ms = 100;
    std::uint32_t timeout_max_ms = 30000;
    std::size_t batch_pages = 128;  // pages per store call
    // Where this rank sits in the decision group: decides which rank writes each page (exactly one
    // per page and pool among the ranks holding the same bytes) and the per-TP-rank and
    // per-CP-rank key suffixes of sharded pools.
    int tp_rank = 0, tp_size = 1, cp_rank = 0, cp_size = 1;
    std::string stage_suffix;  // distinguishes the layer slices of pipeline stages ("" for pp 1)
};

// The key under which this rank stores (and looks up, in the storage and remote tiers) page `key`
// of a pool: core::storageKey over the pool's name and the stage suffix, with the TP rank when the
// pool is sharded across TP and the CP rank when it is sharded across CP.
PageKey storageKeyOf(const PageKey& key, const pools::PoolSpec& spec, const StorageConfig& s);

// Whether this rank writes page `key` of a pool to the storage tier. The ranks of the decision
// group that hold the same bytes of a page (all TP x CP ranks for a replicated pool, the CP ranks
// of one TP rank for a TP-sharded one, the TP ranks of one CP rank for a CP-sharded one, this rank
// alone for a pool sharded on both axes) pick exactly one writer among them by the key.
bool writesStoragePage(const PageKey& key, const pools::PoolSpec& spec,
                       const StorageConfig& s) noexcept;

struct ControllerConfig {
    std::uint32_t page_size = 64;
    WritePolicy write_policy = WritePolicy::kWriteThrough;
    EvictionPolicy eviction_policy = EvictionPolicy::kLru;
    // Host hits shorter than this many tokens are recomputed instead of loaded.
    std::size_t load_back_threshold_tokens = 0;
    // Fold the tree and allocator digests every step and check them across the group.
    bool check_consistency = false;
    // Completions at agreed points: step() first waits for every copy in flight and the storage
    // worker's queue (so that it reaps all of them), and prefetches wait to complete instead of
    // timing out. What counts as a hit then depends on the call sequence alone, not on timing:
    // the same requests give the same figures in every run (the remote tier aside: peers publish
    // on their own schedule). Costs the overlap of copies with the next round.
    bool deterministic = false;
    // Fault injection (tests): the Nth host allocation on this rank fails (0: never).
    std::uint64_t fail_host_allocation = 0;
    StorageConfig storage;
    // The slot spaces of a hybrid model (pools refer to them by index); empty: one space "kv"
    // holding every page (every non-hybrid model). Space 0 must hold every page (kAllPages).
    std::vector<SlotSpace> spaces;
    // Striped loads (borrowed; must outlive the controller; null: none). Its group is the decision
    // group (same rank and size, checked by create()). When the group has two or more ranks, the
    // loads of every pool replicated across it (sharded across neither TP nor CP: MLA, indexer,
    // compressed, replicated window rows) go through StripedLoader::load, one collective call per
    // pool and model layer, in pool order; other pools keep the controller's own load stream. The
    // calls are collective, so every rank of the group must call launchLoads() (and waitLayer() and
    // abort(), which may launch) at the same points of its call sequence, as it already must for
    // every decision call.
    comm::nccl::StripedLoader* striped_loader = nullptr;
};

// The rule "the remote tier does not serve hybrid models" (models with slot spaces beyond the
// anchor's: a window, a state), decided here only: OK when it serves `model`, otherwise
// kNotSupported naming the model and the way out (--remote off). CacheController::create(),
// runtime::Cache and strata-run's --remote auto all ask it.
Status remoteTierServes(std::string_view model, bool hybrid);

// One pool of the rank: its device and host tiers share the page indices of its slot space.
struct PoolPair {
    pools::DevicePool* device = nullptr;
    pools::HostPool* host = nullptr;
    // The lower tiers of this pool, each null for none (all pools or none): the storage tier, and
    // the remote tier (host pools of the ranks holding the same shard in other DP replicas), a
    // store with the publish_retract capability (runtime/ gives an io::RemotePageStore; tests an
    // in-process fake). Keys are storage keys (storageKeyOf: pool, stage, TP and CP suffixes).
    // exists() and get() run on the storage worker; publish() and retract() on the scheduler
    // thread, possibly meanwhile. publish() comes when pages enter the host pool, retract()
    // before their slots are reused.
    io::PageStore* store = nullptr;
    io::PageStore* remote = nullptr;
    std::uint32_t space = 0;  // index into ControllerConfig::spaces
    // Model layer of each pool layer (ascending); empty: pool layer l is model layer l. Loads run
    // per model layer, so a layer's readiness covers every pool that has it.
    std::vector<std::uint32_t> layer_map;
    // Whether this rank writes the host pool's bytes. False only with the node-wide host tier,
    // where the ranks of a replica on one node that hold the same bytes of a pool (replicated
    // across TP or CP) share one host pool in the node's window and exactly one of them writes
    // it: the others skip its device->host backups, its fetches from the store and remote tiers
    // (they count them as done: the group's agreed MIN over the writer's count decides) and its
    // publish/retract, and load it from the shared memory like their own. Slots, trees and
    // agreed counts stay identical across the group either way.
    bool host_writer = true;
};

using RequestId = std::uint64_t;
class StorageWorker;
class Mover;

// What admit() decided for a request.
struct Admission {
    std::size_t prompt_tokens = 0;
    std::size_t device_hit_tokens = 0;   // reused from device
    std::size_t host_hit_tokens = 0;     // loaded back from host (remote and storage hits included)
    std::size_t remote_hit_tokens = 0;   // of those, pulled from peers' host pools by a prefetch
    std::size_t storage_hit_tokens = 0;  // of those, fetched from the storage tier by a prefetch
    std::size_t computed_tokens = 0;     // the worker computes tokens [reused, prompt)
    std::size_t reusedTokens() const noexcept { return device_hit_tokens + host_hit_tokens; }
    // Device page of every page of the prompt (the last one may be partial), in order.
    std::vector<std::uint32_t> device_pages;
    // One per slot space (spaces[0].pages == device_pages). pages: the device page of this space
    // of each prompt page, kNoPage where the request has none (a trailing-window space has the
    // window before the reused prefix's end, loaded or shared, and every page it computes).
    // state_page (request_state spaces): the request's working slot; it holds the state at the
    // end of the reused prefix (page reusedTokens() / page_size - 1) once the loads have arrived,
    // and the worker leaves in it the state at the end of the prompt's last full page.
    // branch_state_page (request_state spaces, kNoPage when none): the tree holds the prompt's
    // first branch_pages pages but no state at their end (another prompt branched off there); the
    // worker leaves in this slot the state at the end of page branch_pages - 1, and insert()
    // keeps it there, so that later prompts sharing that prefix hit it.
    struct Space {
        std::vector<std::uint32_t> pages;
        std::uint32_t state_page = kNoPage;
        std::uint32_t branch_state_page = kNoPage;
        std::size_t branch_pages = 0;
    };
    std::vector<Space> spaces;
};

struct ControllerStats {
    std::uint64_t rounds = 0;
    std::uint64_t backup_ops = 0, backup_pages = 0;
    std::uint64_t load_ops = 0, load_pages = 0;
    std::uint64_t device_evicted_pages = 0, host_evicted_pages = 0;
    std::uint64_t write_back_pages = 0;       // backed up at device eviction (write_back)
    std::uint64_t dropped_pages = 0;          // evicted without a host copy (host full)
    std::uint64_t backup_alloc_failures = 0;  // host full at write-through time
    std::uint64_t rejected_admissions = 0;    // device full even after eviction
    std::uint64_t consistency_checks = 0;
    std::uint64_t storage_backup_pages = 0;  // pages handed to the store (this rank writes them)
    std::uint64_t prefetches = 0, prefetch_pages = 0, prefetch_timeouts = 0;
    std::uint64_t remote_prefetch_pages = 0;  // of prefetch_pages, pulled from the remote tier
    std::uint64_t remote_published_pages = 0, remote_retracted_pages = 0;
    double backup_seconds = 0, load_seconds = 0;  // issue-to-reap time, summed per op
    // Time the backup (device->host) and load (host->device) copy streams were busy with those
    // ops: from a timed event before each batch's copies to one after them, summed. Bytes over
    // these are the paths' bandwidths.
    double backup_busy_seconds = 0, load_busy_seconds = 0;
    std::uint64_t backup_bytes = 0, load_bytes = 0;
    // Loads of replicated pools that went through the striped loader: pages (summed over those
    // pools) and their bytes on this GPU (each rank moved about 1/size of them over its own link).
    // Part of load_bytes.
    std::uint64_t striped_pages = 0, striped_bytes = 0;
};

class CacheController {
public:
    // Validates that every pool pair has equal page size, matching specs and page counts across
    // pools (kInvalidArgument naming the pool otherwise), then creates the streams. Collective over
    // the group: the ranks of the replica agree on the smallest device and host page counts among
    // them, and every rank uses those (a rank with more memory leaves the excess unused).
    static Result<std::unique_ptr<CacheController>> create(const ControllerConfig& config,
                                                           kernels::Backend& backend,
                                                           std::vector<PoolPair> pools,
                                                           comm::DecisionGroup& group);
    ~CacheController();
    CacheController(const CacheController&) = delete;
    CacheController& operator=(const CacheController&) = delete;

    // Longest cached prefix for the full-page keys of a prompt (no locks taken). Splits nodes.
    MatchResult match(std::span<const PageKey> keys);

    // Admits request `id` with `prompt_tokens` tokens whose full pages have `keys`: locks the
    // device-resident prefix, allocates device pages for the rest (evicting), and queues a load of
    // the host-resident part (unless shorter than the threshold). All or nothing:
    // kResourceExhausted when the device cannot hold the request now (nothing held; retry later),
    // kInvalidArgument when id is already admitted or keys do not match prompt_tokens.
    // `priority` (higher = kept longer under the priority eviction policy) is raised along the
    // request's path in the tree when it is inserted; it must be the same on every rank.
    Result<Admission> admit(RequestId id, std::span<const PageKey> keys, std::size_t prompt_tokens,
                            std::uint32_t priority = 0);

    // Starts fetching, from the remote tier (peers' host pools) and then the storage tier, the
    // pages of a prompt beyond what the device and host hold (when at least the threshold):
    // existence query (remote first, storage for the rest), then (at an agreed step: the MIN of the
    // group's hit lengths, remote and in all) host pages and the pulls/reads, then (at a later
    // agreed step) the pages join the tree as host-only nodes, the leading remote part counted as
    // remote hits. Collective in the sense of every decision call: every rank makes it for the same
    // request at the same point. No-op without a remote or storage tier, or when id already has a
    // prefetch.
    Status prefetch(RequestId id, std::span<const PageKey> keys, std::size_t prompt_tokens);

    // True once request id may be admitted under the prefetch policy (always true without a
    // prefetch). Identical on every rank: it changes only in step().
    bool prefetchSettled(RequestId id) const;

    // Launches the loads queued by admit() in this round as one merged, layer-by-layer operation.
    // Idempotent within a round; waitLayer() calls it when needed.
    Status launchLoads();

    // Blocks until layer `layer` of every load request `id` depends on has arrived on the device
    // (its own load and any in-flight load into pages it reuses). With native_stream (CUDA), makes
    // that stream wait instead of blocking the host.
    Status waitLayer(RequestId id, std::uint32_t layer, void* native_stream = nullptr);
    Status waitAllLayers(RequestId id);

    // The worker has written the KV of every computed token: inserts the request's full pages into
    // the tree (duplicates of pages another request inserted first are freed at release) and
    // applies the write policy (queues backups, launched at the next step).
    Status insert(RequestId id);
    // As insert, for an engine whose writes are still queued on its own stream (cudaStream_t;
    // nullptr: the legacy default stream): every backup launched from now on waits for the work
    // queued on that stream so far, so no host synchronisation is needed first.
    Status insertAfter(RequestId id, void* native_stream);

    // Ends the request: drops its locks and frees its pages that the tree does not hold.
    Status release(RequestId id);

    // Aborts an admitted request whose pages may still be being filled: waits until this rank's
    // copies into them have finished, then meets every rank of the replica at a barrier (so no rank
    // frees and reuses pages a peer may still be filling), then releases it. Collective: every rank
    // aborts the same request at the same point of its call sequence. kNotFound if not admitted.
    Status abort(RequestId id);

    // One scheduling round: agrees with the group on how many backups and loads have completed,
    // reaps exactly those (unlock, publish), launches queued backups, and (if configured) checks
    // the group's digests. Every rank must call it every round. With config.deterministic it first
    // waits for every copy and storage operation in flight (settle()). With `flag`, the caller's
    // own value rides in the same agreement (no extra collective): on return it holds the largest
    // value any rank of the group passed (e.g. "a rank was asked to stop"). Every rank passes one
    // or none.
    Status step(std::int64_t* flag = nullptr);

    // Waits until every launched copy has finished and the storage worker is idle (not reaped:
    // step() reaps them). Local, not collective.
    Status settle();

    // Waits for every in-flight operation and reaps it (end of run). Collective like step().
    Status drain();

    // Blocks until the oldest launched operation has finished copying (not reaped: that happens
    // at the next step()). For a scheduler that cannot admit anything until copies release pages.
    // Local, not collective. OK at once when nothing is in flight.
    Status waitForProgress();

    // Tells `sink` (empty: nobody) every page this rank's tiers store and remove from now on
    // (kv_events.h), the storage tier's own evictions (to honour its capacity) included, once
    // agreed rounds see them. The sink observes only; decisions are the same with or without one.
    void setEventSink(KvEventSink sink);

    const PrefixTree& tree() const noexcept { return tree_; }
    const pools::SlotAllocator& deviceAllocator() const noexcept { return deviceAlloc(0); }
    const pools::SlotAllocator& hostAllocator() const noexcept { return hostAlloc(0); }
    const ControllerStats& stats() const noexcept { return stats_; }
    std::size_t inflightOps() const noexcept;
    // The parts of inflightOps(), by queue (live metrics).
    struct QueueDepths {
        std::size_t loads = 0;            // load batches open or in flight
        std::size_t backups = 0;          // device-to-host backup batches open or in flight
        std::size_t storage_backups = 0;  // host pages handed to the storage tier, not yet written
        std::size_t prefetches = 0;       // prefetches not yet settled
    };
    QueueDepths queueDepths() const noexcept;
    std::size_t liveRequests() const noexcept { return requests_.size(); }
    // Digest of tree + allocators + queues (what check_consistency compares).
    std::uint64_t stateDigest() const;
    // Running digest of every decision this rank took (what step() compares every round).
    std::uint64_t decisionDigest() const noexcept { return decision_digest_; }
    // Tree invariants plus slot conservation: every allocated device page is held by the tree or a
    // live request, every allocated host page by the tree; kInternal names the first violation.
    Status checkInvariants() const;

private:
    struct LoadBatch;
    struct BackupBatch;
    struct Request;
    struct AdmitPlan;
    struct HitPages;

    CacheController(const ControllerConfig& config, kernels::Backend& backend,
                    std::vector<PoolPair> pools, comm::DecisionGroup& group,
                    pools::HostPoolGroup slots);

    // Pages of every slot space: [0] the anchor's, [s] extra space s (dense lists).
    using SpacePages = std::vector<std::vector<std::uint32_t>>;
    // Page copies of every slot space, in the same indexing.
    using SpaceCopies = std::vector<std::vector<kernels::PageCopy>>;
    std::size_t numSpaces() const noexcept { return slots_.numSpaces(); }
    bool hybrid() const noexcept { return numSpaces() > 1; }
    const pools::SlotAllocator& deviceAlloc(std::size_t s) const noexcept {
        return *slots_.allocator(pools::SlotTier::kDevice, s);
    }
    const pools::SlotAllocator& hostAlloc(std::size_t s) const noexcept {
        return *slots_.allocator(pools::SlotTier::kHost, s);
    }
    // Frees pages of space s (a failure is broken accounting: a bug, the rank stops).
    void freeSlots(pools::SlotTier tier, std::size_t s, std::span<const std::uint32_t> pages);
    // All or nothing across spaces, evicting as needed: counts[s] pages of space s.
    Result<SpacePages> allocateDeviceSpaces(const std::vector<std::size_t>& counts);
    Result<SpacePages> allocateHostSpaces(const std::vector<std::size_t>& counts);
    void noteAllocation(std::uint64_t what, const std::vector<std::size_t>& counts,
                        const Result<SpacePages>& r);
    // admit() in steps: the usable match and what to allocate; the in-flight loads the request
    // must wait for; this round's load batch (opened on first use, the request waits for it);
    // the host part's load; the extra spaces' pages of the request; the answer.
    AdmitPlan planAdmission(std::span<const PageKey> keys, std::size_t prompt_tokens);
    void addLoadDependencies(Request& req, const Node* device_last);
    LoadBatch& openLoadBatch(Request& req);
    HitPages queueHostLoad(const AdmitPlan& plan, const SpacePages& got,
                           std::vector<std::size_t>& ext_cursor, Request& req);
    void assignExtraSpaces(const AdmitPlan& plan, const SpacePages& got,
                           std::vector<std::size_t>& ext_cursor, Request& req);
    Admission admissionOf(const Request& req, const AdmitPlan& plan, const HitPages& hits) const;
    // insert() in steps: the walk down the tree (a new leaf with the rest, host-only nodes
    // adopting the request's pages), and the write policy. takeOwned: the request's pages
    // [from, to) now belong to the tree; keepsExt / takeExt: whether the tree keeps the request's
    // page of extra space e at prompt page i, and taking it (kNoPage when the request has none).
    Node* insertPath(Request& req);
    Node* addRequestLeaf(Node* parent, Request& req, std::size_t pos);
    void adoptRequestPages(Node* child, Request& req, std::size_t pos);
    void applyWritePolicy(Node* node);
    void takeOwned(Request& req, std::size_t from, std::size_t to);
    bool keepsExt(const Request& req, std::size_t e, std::size_t i) const;
    std::uint32_t takeExt(Request& req, std::size_t e, std::size_t i);
    // Pages of each space the node's pattern holds ([0]: every page).
    std::vector<std::size_t> patternCounts(const Node* node) const;
    // Gives the node host pages for its whole pattern; false (nothing allocated) when full.
    bool allocateNodeHost(Node* node);
    // Appends the node's device<->host page pairs of every space to `copies`.
    void nodeCopies(const Node* node, SpaceCopies* copies) const;
    // After insert's walk: gives the path's nodes the pages of extra spaces the request computed
    // and they lack (the window before a node boundary, the state at one), in every tier.
    void fillPatternHoles(Node* last, Request& req);
    void freeNodeDevice(Node* node);
    void freeNodeHost(Node* node);
    // The longest prefix, at most `limit` pages along the path of `last` (root first), that
    // every extra space can serve under its hit policy.
    std::size_t usablePages(const std::vector<const Node*>& path, std::size_t limit) const;
    // Presence of each extra space's pages along a path, for [0, limit) ([s-1][page]).
    std::vector<std::vector<bool>> pathPattern(const std::vector<const Node*>& path,
                                               std::size_t limit) const;
    std::size_t usableFromPattern(const std::vector<std::vector<bool>>& pattern,
                                  std::size_t limit) const;
    static std::vector<const Node*> pathTo(const Node* last);
    std::size_t evictDevice(const std::vector<std::size_t>& targets);
    std::size_t demote(Node* node);  // frees a backed-up node's device pages; returns how many
    std::size_t evictHost(std::size_t pages, const std::set<std::uint64_t>& protect);
    void backupChain(Node* node);
    // Copies the victims to the host (dropping those without host room) and frees their device
    // pages; a victim that can be neither copied nor dropped goes into *stuck. Clears victims.
    std::size_t writeBackSync(std::vector<Node*>& victims, std::set<std::uint64_t>* stuck);
    bool dropSubtree(Node* node);
    void clearOpFlags(Node* node, std::uint64_t Node::*field, std::uint64_t op_id);
    Status launchBackups();
    // The copies' part of the round's decision vector: how many launched backups and loads have
    // finished (FIFO prefixes, MIN over the group); applying it reaps exactly those.
    struct CopySlots {
        std::size_t backups = 0, loads = 0;
    };
    void addCopyDecisions(comm::DecisionVector& v, CopySlots* slots);
    Status applyCopyDecisions(const comm::DecisionVector& v, const CopySlots& slots);
    // Seconds between two timed events of a copy stream (0, logged, when the back end fails).
    static double busySeconds(const kernels::EventPtr& started, const kernels::EventPtr& done);
    void reapBackup(BackupBatch& batch);
    void reapLoad(LoadBatch& batch);
    void freeDevicePages(std::span<const std::uint32_t> pages);
    void freeHostPages(std::span<const std::uint32_t> pages);

    ControllerConfig config_;
    kernels::Backend& backend_;     // must outlive the controller
    std::vector<PoolPair> pools_;   // pools must outlive the controller
    comm::DecisionGroup& group_;    // must outlive the controller
    std::uint32_t num_layers_ = 0;  // max over pools
    // The slots of every space in both tiers: one entry per pool, the first pool of a space its
    // anchor or independent entry (a logical anchor when it has compressed rows), the others its
    // sidecars; space s of the group is spaces_[s].
    pools::HostPoolGroup slots_;
    std::vector<SlotSpace> spaces_;  // at least one
    PrefixTree tree_;
    // The copies: pools' copy jobs, the backup and load streams, striped loads (mover.h).
    std::unique_ptr<Mover> mover_;

    std::uint64_t next_op_id_ = 1;
    std::unique_ptr<BackupBatch> open_backup_;  // backups queued this round
    std::shared_ptr<LoadBatch> open_load_;      // loads admitted this round, not launched
    std::vector<std::shared_ptr<LoadBatch>> inflight_loads_;      // FIFO
    std::vector<std::unique_ptr<BackupBatch>> inflight_backups_;  // FIFO
    std::map<RequestId, std::unique_ptr<Request>> requests_;
    ControllerStats stats_;
    std::optional<comm::ConsistencyChecker> checker_;  // when config_.check_consistency
    struct PrefetchOp;
    struct StorageBackup;
    std::unique_ptr<StorageWorker> worker_;  // when the pools have stores
    std::deque<std::unique_ptr<PrefetchOp>> prefetches_;
    std::map<RequestId, PrefetchOp*> prefetch_by_id_;
    std::deque<std::unique_ptr<StorageBackup>> storage_backups_;
    // A remote or storage tier below the host pools (the worker runs their calls).
    bool hasStorage() const noexcept { return worker_ != nullptr; }
    bool hasStore() const noexcept { return pools_.front().store != nullptr; }
    bool hasRemote() const noexcept { return pools_.front().remote != nullptr; }
    void publishRemote(const std::vector<Node*>& nodes);
    void retractRemote(const Node* node);
    bool writesPage(const PageKey& key, const pools::PoolSpec& spec) const noexcept {
        return writesStoragePage(key, spec, config_.storage);
    }
    PageKey storageKeyOf(const PageKey& key, const pools::PoolSpec& spec) const {
        return controller::storageKeyOf(key, spec, config_.storage);
    }
    struct PoolBatch;  // pages of one pool for one store call
    std::vector<PoolBatch> writeBatches(const std::vector<Node*>& nodes);
    void queueStorageBackup(std::vector<Node*> nodes);
    void storeSync(Node* node);
    struct TierSlots {
        std::size_t backups = 0;
        std::vector<std::pair<PrefetchOp*, std::size_t>> progress, timeouts;
        std::vector<std::size_t> remote;  // one per progress entry: its remote part
        // One per progress entry (hybrid models): [e][page] the slot of each page's presence.
        std::vector<std::vector<std::vector<std::size_t>>> ext;
    };
    // Hybrid: the agreed presence of the extra spaces' pages of a prefetch (from `slots`), and
    // the usable pages of op's keys given the path above it and that presence.
    std::vector<std::vector<bool>> agreedExt(const comm::DecisionVector& v,
                                             const std::vector<std::vector<std::size_t>>& slots,
                                             std::size_t pages) const;
    std::size_t usableBelow(const PrefetchOp& op, const std::vector<std::vector<bool>>& ext,
                            std::size_t pages) const;
    void addTierDecisions(comm::DecisionVector& v, TierSlots* slots);
    Status applyTierDecisions(const comm::DecisionVector& v, const TierSlots& slots);
    void graft(PrefetchOp& op, std::size_t usable_pages, std::size_t remote_pages);
    std::uint64_t decision_digest_ = 0;
    KvEventSink sink_;
    // With a sink and a storage tier: the page key of each storage key of the first pool whose
    // storing the sink was told (to name the store's evictions in its events).
    std::unordered_map<PageKey, PageKey> disk_names_;
    void emitStorageEvictions();
    // Tells the sink (when set) that `node`'s pages entered or left `tier`; `req` and `pos`: the
    // request whose pages from prompt page pos the node took.
    void emit(KvEventKind kind, KvTier tier, const Node* node, const Request* req = nullptr,
              std::size_t pos = 0) const;
    std::uint64_t host_allocations_ = 0;  // for fail_host_allocation
    void note(std::uint64_t a, std::uint64_t b = 0);
};

}  // namespace strata::controller
