#include "strata/app/block_replay.h"

#include <algorithm>
#include <chrono>
#include <list>
#include <unordered_map>

#include "strata/core/check.h"
#include "strata/core/hash.h"
#include "strata/pools/slot_allocator.h"

namespace strata::app {
namespace {

using controller::EvictionPolicy;
using controller::Node;
using controller::PrefixTree;
using core::PageKey;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kNever = std::numeric_limits<std::uint64_t>::max();

PageKey pageKey(std::uint64_t block_id, std::uint64_t page_in_block) {
    return PageKey{block_id, 0xB10C5EED00000000ull | page_in_block};
}

// The storage tier as the data path sees it: a key-indexed store, queried for a leading run and
// never mirrored in the tree, with least-recently-written eviction. A run of pages goes in deepest
// first, so that a parent outlives its children.
class StorageLru {
public:
    explicit StorageLru(std::uint64_t capacity_pages) : capacity_(capacity_pages) {}

    std::size_t size() const noexcept { return index_.size(); }
    bool enabled() const noexcept { return capacity_ > 0; }

    std::size_t leadingRun(const std::vector<PageKey>& keys, std::size_t from) const {
        std::size_t n = 0;
        while (from + n < keys.size() && index_.contains(keys[from + n])) ++n;
        return n;
    }
    // Removes a page; returns whether it was there.
    bool erase(const PageKey& key) {
        auto it = index_.find(key);
        if (it == index_.end()) return false;
        order_.erase(it->second);
        index_.erase(it);
        return true;
    }
    // Stores keys[first, last) deepest first; returns how many older pages fell out.
    std::uint64_t putRun(const PageKey* first, const PageKey* last) {
        std::uint64_t dropped = 0;
        for (const PageKey* k = last; k != first;) {
            --k;
            STRATA_CHECK(!index_.contains(*k), "replay storage: a page is stored twice");
            if (index_.size() >= capacity_) {
                index_.erase(order_.front());
                order_.pop_front();
                ++dropped;
            }
            order_.push_back(*k);
            index_.emplace(*k, std::prev(order_.end()));
        }
        return dropped;
    }

private:
    std::uint64_t capacity_;
    std::list<PageKey> order_;  // front: least recently written
    std::unordered_map<PageKey, std::list<PageKey>::iterator> index_;
};

void freeSlots(pools::SlotAllocator& slots, std::vector<std::uint32_t>& pages) {
    Status s = slots.free(pages);
    STRATA_CHECK(s.isOk(), "replay slot accounting: {}", s.toString());
    pages.clear();
}

std::vector<std::uint32_t> allocateSlots(pools::SlotAllocator& slots, std::size_t n) {
    auto pages = slots.allocate(n);
    STRATA_CHECK(pages.isOk(), "replay allocation: {}", pages.status().toString());
    return std::move(pages).value();
}

}  // namespace

std::uint64_t firstPageDigest(const TraceRequest& r) {
    return r.block_ids.empty() ? 0 : core::foldDigest(0x9E3779B97F4A7C15ull, r.block_ids[0]);
}

void requestPageKeys(const TraceRequest& r, std::uint32_t page_tokens, std::vector<PageKey>* keys) {
    const std::uint64_t B = r.block_tokens;
    const std::uint64_t P = page_tokens == 0 ? B : page_tokens;
    keys->clear();
    for (std::size_t b = 0; b < r.block_ids.size(); ++b) {
        const bool last = b + 1 == r.block_ids.size();
        const std::uint64_t tokens = last ? r.input_tokens - B * b : B;
        const std::uint64_t pages = (tokens + P - 1) / P;
        for (std::uint64_t j = 0; j < pages; ++j) keys->push_back(pageKey(r.block_ids[b], j));
    }
}

std::uint64_t hitTokens(const TraceRequest& r, std::size_t pages_hit, std::size_t pages,
                        std::uint32_t page_tokens) {
    if (pages_hit > 0 && pages_hit == pages) return r.input_tokens;
    return std::min<std::uint64_t>(pages_hit * std::uint64_t{page_tokens}, r.input_tokens);
}

struct BlockReplayer::State {
    const Trace* trace = nullptr;
    BlockReplayOptions o;
    std::uint32_t P = 0;
    PrefixTree tree;
    pools::SlotAllocator device;
    pools::SlotAllocator host;
    StorageLru storage;
    std::size_t next = 0;  // next request to replay
    std::vector<PageKey> keys;
    BlockReplayResult counters;
    // kOptimal: for page j of request i, next_use[offset[i] + j] is the index of the next request
    // that references it (kNever if none); key_next holds that value for the cached pages.
    std::vector<std::size_t> offset;
    std::vector<std::uint64_t> next_use;
    std::unordered_map<PageKey, std::uint64_t> key_next;

    State(const Trace& t, const BlockReplayOptions& opt, std::uint32_t page_tokens,
          pools::SlotAllocator dev, pools::SlotAllocator hst, std::uint64_t storage_pages)
        : trace(&t),
          o(opt),
          P(page_tokens),
          tree(opt.policy),
          device(std::move(dev)),
          host(std::move(hst)),
          storage(storage_pages) {}

    bool optimal() const noexcept { return o.policy == EvictionPolicy::kOptimal; }
    bool hasHost() const noexcept { return host.numPages() > 0; }

    void precomputeNextUse() {
        offset.assign(trace->requests.size() + 1, 0);
        std::vector<PageKey> all;
        for (std::size_t i = 0; i < trace->requests.size(); ++i) {
            requestPageKeys(trace->requests[i], P, &keys);
            all.insert(all.end(), keys.begin(), keys.end());
            offset[i + 1] = all.size();
        }
        next_use.assign(all.size(), kNever);
        std::unordered_map<PageKey, std::uint64_t> seen;
        seen.reserve(all.size() / 2);
        for (std::size_t i = trace->requests.size(); i-- > 0;) {
            for (std::size_t p = offset[i]; p < offset[i + 1]; ++p) {
                auto [it, fresh] = seen.try_emplace(all[p], i);
                if (!fresh) {
                    next_use[p] = it->second;
                    it->second = i;
                }
            }
        }
    }

    // The next use of a cached page (kOptimal).
    std::uint64_t nextUseOf(const PageKey& k) const {
        auto it = key_next.find(k);
        return it == key_next.end() ? kNever : it->second;
    }
    void setNextUse(Node* n) { tree.setNextUse(n, nextUseOf(n->keys.back())); }

    // Splits v so that it keeps its last `take` pages and returns v.
    Node* keepTail(Node* v, std::size_t take) {
        if (take < v->numPages()) {
            Node* upper = tree.split(v, v->numPages() - take);
            if (optimal()) setNextUse(upper);
        }
        return v;
    }

    // Sends a whole leaf node's keys down to storage (or drops them) and removes it.
    void dropLeaf(Node* v) {
        if (storage.enabled()) {
            counters.storage_put_pages += v->numPages();
            counters.dropped_pages +=
                storage.putRun(v->keys.data(), v->keys.data() + v->keys.size());
        } else {
            counters.dropped_pages += v->numPages();
        }
        if (optimal()) {
            for (const PageKey& k : v->keys) key_next.erase(k);
        }
        tree.removeLeaf(v);
    }

    // Frees host pages, least valuable host-only leaf first, until `pages` are free or nothing is
    // left to take. Returns the free host pages.
    std::size_t makeHostRoom(std::size_t pages) {
        while (host.freePages() < pages) {
            Node* h = tree.nextHostVictim();
            if (h == nullptr) break;
            const std::size_t take = std::min(pages - host.freePages(), h->numPages());
            keepTail(h, take);
            counters.host_evicted_pages += take;
            freeSlots(host, h->host_pages);
            dropLeaf(h);
        }
        return host.freePages();
    }

    // Moves the last `take` pages of device victim v down one tier.
    void demote(Node* v, std::size_t take) {
        keepTail(v, take);
        counters.evicted_blocks += take;
        if (hasHost() && makeHostRoom(take) >= take) {
            v->host_pages = allocateSlots(host, take);
            freeSlots(device, v->device_pages);
            tree.refresh(v);
            tree.refresh(v->parent);
            return;
        }
        // No host room: every host-only leaf is the current request's, so v (not on its path) has
        // no host-only descendants, and no children at all.
        STRATA_CHECK(v->children.empty(), "replay: device victim {} with children and no host room",
                     v->id);
        freeSlots(device, v->device_pages);
        dropLeaf(v);
    }

    // Frees device pages, least valuable device leaf first, until `pages` are free or every device
    // page is locked. Returns the free device pages.
    std::size_t makeDeviceRoom(std::size_t pages) {
        while (device.freePages() < pages) {
            Node* v = tree.nextDeviceVictim();
            if (v == nullptr) break;
            demote(v, std::min(pages - device.freePages(), v->numPages()));
        }
        return device.freePages();
    }

    // kOptimal: how many of the `want` new pages from keys[from] to insert, evicting cached pages
    // used later than each page they make room for (bypass: a page used later than every cached
    // page is not inserted, nor are the pages below it, which are used no sooner).
    std::size_t makeOptimalRoom(std::size_t from, std::size_t want) {
        const std::uint64_t* cand = next_use.data() + offset[next] + from;
        std::size_t k = std::min(want, device.freePages());
        while (k < want) {
            Node* v = tree.nextDeviceVictim();
            if (v == nullptr || v->next_use <= cand[k]) break;
            // Pages of v from the deepest up are used no later than the ones below them; take
            // them while each is used later than the page it makes room for and no earlier than
            // the next victim's farthest page.
            Node* second = tree.nextDeviceVictim({v->id});
            const std::uint64_t bound = second == nullptr ? 0 : second->next_use;
            std::size_t t = 1;
            while (t < v->numPages() && k + t < want) {
                const std::uint64_t u = nextUseOf(v->keys[v->numPages() - 1 - t]);
                if (u <= cand[k + t] || u < bound) break;
                ++t;
            }
            keepTail(v, t);
            counters.evicted_blocks += t;
            freeSlots(device, v->device_pages);
            dropLeaf(v);
            k = std::min(want, device.freePages());
        }
        return k;
    }

    Outcome replay(const TraceRequest& r) {
        requestPageKeys(r, P, &keys);
        Outcome out;
        out.pages = keys.size();
        // Engine rules: the pages a hit may cover (those before the last token) and the pages
        // kept (the full ones); otherwise every page, both ways.
        const std::size_t matchable = o.engine_rules ? (r.input_tokens - 1) / P : keys.size();
        const std::size_t kept = o.engine_rules ? r.input_tokens / P : keys.size();
        const auto t0 = Clock::now();
        controller::MatchResult m =
            tree.match(std::span<const PageKey>(keys).first(std::min(kept, keys.size())));
        Node* root = tree.root();
        out.device = std::min(m.device_pages, matchable);
        out.host = std::min(m.device_pages + m.host_pages, matchable) - out.device;
        std::size_t pos = m.device_pages + m.host_pages;
        const std::size_t stored = storage.leadingRun(keys, pos);
        out.storage = pos >= matchable ? 0 : std::min(stored, matchable - pos);
        counters.storage_hit_pages += out.storage;
        // Engine rules: a partial last page is computed and not kept; it takes a device page
        // while the request runs (room is made for it below), then that page is free again.
        const std::size_t transient = keys.size() - kept;
        keys.resize(kept);
        if (storage.enabled()) {
            // The hits come up; pages further down that storage still holds (their parent fell
            // out) are placed again with the rest of the request.
            for (std::size_t j = pos; j < keys.size(); ++j) storage.erase(keys[j]);
        }
        if (optimal()) {
            const std::uint64_t* nu = next_use.data() + offset[next];
            for (std::size_t j = 0; j < m.device_pages; ++j) key_next[keys[j]] = nu[j];
            for (Node* n = m.device_last; !n->isRoot(); n = n->parent) setNextUse(n);
        }
        // The request's own pages stay while anything else can go: lock its path on both tiers.
        Node* device_locked = m.device_last;
        Node* host_locked = hasHost() ? m.host_last : root;
        tree.lockDevice(device_locked, +1);
        tree.lockHost(host_locked, +1);
        auto moveDeviceLock = [&](Node* n) {
            tree.lockDevice(n, +1);
            tree.lockDevice(device_locked, -1);
            device_locked = n;
        };
        // Host hits come up to the device, parent first, as far as the device holds them. The
        // pages swap places with the device's victims: a node's host slots are freed before room
        // is made on the device (the node holds no pages for that moment; it is locked and on the
        // request's path, so nothing looks at it), so victims can move into them.
        Node* parent = m.device_last;
        bool on_device = true;
        for (Node* c : m.host_chain) {
            const std::size_t n = c->numPages();
            freeSlots(host, c->host_pages);
            tree.refresh(c);
            const std::size_t room = makeDeviceRoom(n);
            if (room < n) {
                // The device is full of this request's pages. Victims took at most `room` of the
                // n freed host slots, so the rest of c fits back on the host.
                on_device = false;
                if (room == 0) {
                    c->host_pages = allocateSlots(host, n);
                    tree.refresh(c);
                    break;
                }
                Node* upper = tree.split(c, room);
                c->host_pages = allocateSlots(host, n - room);
                tree.refresh(c);
                c = upper;
            }
            c->device_pages = allocateSlots(device, c->numPages());
            tree.refresh(c);
            tree.refresh(c->parent);
            moveDeviceLock(c);
            parent = c;
            if (!on_device) break;
        }
        if (!on_device) parent = m.host_last;
        // Storage hits and new pages: onto the device as far as it holds them, the rest below
        // them on the host, then in storage.
        const std::size_t want = keys.size() - pos;
        if (on_device && want + transient > 0) {
            const std::size_t fit = optimal() ? makeOptimalRoom(pos, want)
                                              : std::min(want, makeDeviceRoom(want + transient));
            if (fit > 0) {
                std::vector<PageKey> run(keys.begin() + static_cast<long>(pos),
                                         keys.begin() + static_cast<long>(pos + fit));
                Node* n = tree.addChild(parent, std::move(run), allocateSlots(device, fit));
                if (optimal()) {
                    const std::uint64_t* nu = next_use.data() + offset[next];
                    for (std::size_t j = pos; j < pos + fit; ++j) key_next[keys[j]] = nu[j];
                    setNextUse(n);
                }
                moveDeviceLock(n);
                parent = n;
                pos += fit;
            }
        }
        if (pos < keys.size() && hasHost()) {
            const std::size_t fit = std::min(keys.size() - pos, makeHostRoom(keys.size() - pos));
            if (fit > 0) {
                std::vector<PageKey> run(keys.begin() + static_cast<long>(pos),
                                         keys.begin() + static_cast<long>(pos + fit));
                Node* n = tree.addHostChild(parent, std::move(run), allocateSlots(host, fit));
                tree.lockHost(n, +1);
                tree.lockHost(host_locked, -1);
                host_locked = n;
                parent = n;
                pos += fit;
            }
        }
        if (pos < keys.size()) {
            if (storage.enabled()) {
                counters.storage_put_pages += keys.size() - pos;
                counters.dropped_pages +=
                    storage.putRun(keys.data() + pos, keys.data() + keys.size());
            } else {
                counters.dropped_pages += keys.size() - pos;
            }
        }
        if (o.policy == EvictionPolicy::kPriority) {
            tree.raisePriority(parent, requestPriority(firstPageDigest(r), o.priority_levels));
        }
        tree.lockDevice(device_locked, -1);
        tree.lockHost(host_locked, -1);
        out.tree_us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
        counters.peak_nodes = std::max(counters.peak_nodes, tree.nodeCount());
        counters.block_references += keys.size();
        ++next;
        return out;
    }
};

BlockReplayer::BlockReplayer(std::unique_ptr<State> state) : s_(std::move(state)) {}
BlockReplayer::BlockReplayer(BlockReplayer&&) noexcept = default;
BlockReplayer& BlockReplayer::operator=(BlockReplayer&&) noexcept = default;
BlockReplayer::~BlockReplayer() = default;

Result<BlockReplayer> BlockReplayer::create(const Trace& trace, const BlockReplayOptions& options) {
    const std::uint64_t B = trace.block_tokens;
    const std::uint64_t P = options.page_tokens == 0 ? B : options.page_tokens;
    if (P == 0 || B % P != 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "page size {} does not divide the {}-token blocks of the trace", P, B);
    }
    const std::uint64_t device_pages = options.capacity_tokens / P;
    if (device_pages == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "device capacity of {} tokens holds no {}-token page",
                            options.capacity_tokens, P);
    }
    const std::uint64_t host_pages = options.host_tokens / P;
    if (options.host_tokens > 0 && host_pages == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "host capacity of {} tokens holds no {}-token page (0 = no host tier)",
                            options.host_tokens, P);
    }
    const std::uint64_t storage_pages =
        options.storage_tokens == kUnlimitedTokens ? kUnlimitedTokens : options.storage_tokens / P;
    if (options.storage_tokens > 0 && storage_pages == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "storage capacity of {} tokens holds no {}-token page (0 = no storage "
                            "tier)",
                            options.storage_tokens, P);
    }
    if (options.priority_levels == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "priority levels must be at least 1");
    }
    if (options.policy == EvictionPolicy::kOptimal &&
        (options.host_tokens > 0 || options.storage_tokens > 0)) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "eviction opt (Belady) replays the device tier alone: set no host and "
                            "no storage tier");
    }
    STRATA_ASSIGN_OR_RETURN(auto device, pools::SlotAllocator::create(device_pages, 1));
    STRATA_ASSIGN_OR_RETURN(auto host, pools::SlotAllocator::create(host_pages, 1));
    auto state = std::make_unique<State>(trace, options, static_cast<std::uint32_t>(P),
                                         std::move(device), std::move(host), storage_pages);
    if (state->optimal()) state->precomputeNextUse();
    return BlockReplayer(std::move(state));
}

bool BlockReplayer::done() const noexcept { return s_->next >= s_->trace->requests.size(); }

BlockReplayer::Outcome BlockReplayer::replayNext() {
    STRATA_CHECK(!done(), "replayNext past the end of the trace");
    return s_->replay(s_->trace->requests[s_->next]);
}

BlockReplayResult BlockReplayer::counters() const { return s_->counters; }
std::size_t BlockReplayer::devicePages() const noexcept { return s_->device.usedPages(); }
std::size_t BlockReplayer::hostPages() const noexcept { return s_->host.usedPages(); }
std::size_t BlockReplayer::storagePages() const noexcept { return s_->storage.size(); }
const controller::PrefixTree& BlockReplayer::tree() const noexcept { return s_->tree; }

Result<BlockReplayResult> replayBlocks(const Trace& trace, const BlockReplayOptions& options) {
    if (!(options.warmup_fraction >= 0.0 && options.warmup_fraction < 1.0)) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "warm-up fraction {} is outside [0, 1)",
                            options.warmup_fraction);
    }
    STRATA_ASSIGN_OR_RETURN(BlockReplayer replayer, BlockReplayer::create(trace, options));
    const std::uint32_t P = options.page_tokens == 0 ? trace.block_tokens : options.page_tokens;
    const auto warmup = static_cast<std::uint64_t>(options.warmup_fraction *
                                                   static_cast<double>(trace.requests.size()));
    std::vector<double> request_us;
    request_us.reserve(trace.requests.size());
    BlockReplayResult result;
    for (const TraceRequest& r : trace.requests) {
        const BlockReplayer::Outcome out = replayer.replayNext();
        result.tree_seconds += out.tree_us * 1e-6;
        request_us.push_back(out.tree_us);
        ++result.requests;
        if (result.requests <= warmup) continue;
        ++result.measured_requests;
        result.measured_tokens += r.input_tokens;
        const std::uint64_t d = hitTokens(r, out.device, out.pages, P);
        const std::uint64_t dh = hitTokens(r, out.device + out.host, out.pages, P);
        const std::uint64_t all = hitTokens(r, out.device + out.host + out.storage, out.pages, P);
        result.tier_hits.device += d;
        result.tier_hits.host += dh - d;
        result.tier_hits.storage += all - dh;
    }
    const BlockReplayResult c = replayer.counters();
    result.hit_tokens = result.tier_hits.total();
    result.block_references = c.block_references;
    result.evicted_blocks = c.evicted_blocks;
    result.host_evicted_pages = c.host_evicted_pages;
    result.storage_put_pages = c.storage_put_pages;
    result.storage_hit_pages = c.storage_hit_pages;
    result.dropped_pages = c.dropped_pages;
    result.peak_nodes = c.peak_nodes;
    if (!request_us.empty()) {
        std::sort(request_us.begin(), request_us.end());
        result.p99_request_us =
            request_us[std::min(request_us.size() - 1, (request_us.size() * 99) / 100)];
    }
    return result;
}

}  // namespace strata::app
