#include "strata/comm/node_page_index.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <thread>

#include <time.h>

namespace strata::comm {

namespace {

constexpr std::uint64_t kMagic = 0x53545241544e4931ull;  // "STRATNI1"
constexpr std::uint32_t kProbe = 128;                    // probe window of a key

enum State : std::uint64_t { kEmpty = 0, kBusy = 1, kValid = 2, kRetracting = 3, kTombstone = 4 };

// An entry's word: state (bits 0-2), owner (bits 8-31), generation (bits 32-63).
constexpr std::uint64_t word(std::uint64_t state, std::uint32_t owner, std::uint32_t gen) {
    return state | (std::uint64_t{owner} << 8) | (std::uint64_t{gen} << 32);
}
constexpr std::uint64_t stateOf(std::uint64_t w) { return w & 7; }
constexpr std::uint32_t ownerOf(std::uint64_t w) {
    return static_cast<std::uint32_t>((w >> 8) & 0xffffff);
}
constexpr std::uint32_t genOf(std::uint64_t w) { return static_cast<std::uint32_t>(w >> 32); }
constexpr std::uint64_t leaseTag(std::uint32_t e, std::uint32_t gen) {
    return (std::uint64_t{e} + 1) << 32 | gen;
}

using Ref = std::atomic_ref<std::uint64_t>;
static_assert(Ref::is_always_lock_free, "the node index needs lock-free 64-bit atomics");

std::int64_t nowNs() noexcept {
    // CLOCK_MONOTONIC is one clock for every process of a host: leases compare across ranks.
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

struct Header {
    std::uint64_t magic;
    std::uint64_t entries;
    std::uint64_t ranks;
    std::uint64_t leases_per_rank;
    std::uint64_t pad[4];
};
static_assert(sizeof(Header) == 64);

}  // namespace

struct NodePageIndex::Entry {
    std::uint64_t word;
    std::uint64_t key_lo, key_hi;
    std::uint64_t pool_slot;  // pool << 32 | slot
    std::uint64_t checksum;
    std::uint64_t pad[3];
};

struct NodePageIndex::Lease {
    std::uint64_t tag;  // leaseTag(entry, generation); 0: free
    std::uint64_t expires_ns;
};

struct NodePageIndex::Counters {
    std::atomic<std::uint64_t> published{0}, publish_duplicates{0}, publish_full{0}, retracted{0},
        retract_waits{0}, expired_leases{0}, pins{0}, pin_misses{0}, no_free_lease{0};
    std::atomic<std::uint32_t> next_lease{0};
};

NodePageIndex::NodePageIndex() : counters_(std::make_unique<Counters>()) {}
NodePageIndex::NodePageIndex(NodePageIndex&&) noexcept = default;
NodePageIndex& NodePageIndex::operator=(NodePageIndex&&) noexcept = default;
NodePageIndex::~NodePageIndex() = default;

std::size_t NodePageIndex::bytesFor(const Geometry& g) noexcept {
    static_assert(sizeof(Entry) == 64, "an entry is one cache line");
    return sizeof(Header) + std::size_t{g.entries} * sizeof(Entry) +
           std::size_t{g.ranks} * g.leases_per_rank * sizeof(Lease);
}

NodePageIndex::Geometry NodePageIndex::geometryFor(std::size_t pages,
                                                   std::uint32_t ranks) noexcept {
    Geometry g;
    g.entries = static_cast<std::uint32_t>(
        std::bit_ceil(std::max<std::size_t>(2 * pages, std::size_t{kProbe})));
    g.ranks = ranks;
    g.leases_per_rank = 64;
    return g;
}

Status NodePageIndex::initialise(std::byte* region, std::size_t bytes, const Geometry& g) {
    if (g.entries == 0 || !std::has_single_bit(g.entries) || g.ranks == 0 ||
        g.leases_per_rank == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "node index: bad geometry ({} entries, {} ranks, {} leases per rank)",
                            g.entries, g.ranks, g.leases_per_rank);
    }
    if (bytes < bytesFor(g)) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "node index: region of {} bytes, {} needed", bytes, bytesFor(g));
    }
    std::memset(region, 0, bytesFor(g));
    auto* h = reinterpret_cast<Header*>(region);
    h->entries = g.entries;
    h->ranks = g.ranks;
    h->leases_per_rank = g.leases_per_rank;
    Ref(h->magic).store(kMagic, std::memory_order_release);
    return Status::ok();
}

Result<NodePageIndex> NodePageIndex::attach(std::byte* region, std::size_t bytes,
                                            std::uint32_t rank, std::chrono::milliseconds lease) {
    if (region == nullptr || bytes < sizeof(Header)) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "node index: no region");
    }
    auto* h = reinterpret_cast<Header*>(region);
    if (Ref(h->magic).load(std::memory_order_acquire) != kMagic) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "node index: the region holds no index (not initialised)");
    }
    NodePageIndex idx;
    idx.g_.entries = static_cast<std::uint32_t>(h->entries);
    idx.g_.ranks = static_cast<std::uint32_t>(h->ranks);
    idx.g_.leases_per_rank = static_cast<std::uint32_t>(h->leases_per_rank);
    if (bytes < bytesFor(idx.g_) || rank >= idx.g_.ranks || lease.count() <= 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "node index: rank {} of {}, region {} of {} bytes, lease {} ms", rank,
                            idx.g_.ranks, bytes, bytesFor(idx.g_), lease.count());
    }
    idx.region_ = region;
    idx.rank_ = rank;
    idx.lease_ns_ = static_cast<std::int64_t>(lease.count()) * 1000000;
    return idx;
}

NodePageIndex::Entry* NodePageIndex::entry(std::uint32_t i) const noexcept {
    return reinterpret_cast<Entry*>(region_ + sizeof(Header)) + i;
}

NodePageIndex::Lease* NodePageIndex::lease(std::uint32_t rank, std::uint32_t i) const noexcept {
    auto* leases = reinterpret_cast<Lease*>(region_ + sizeof(Header) +
                                            std::size_t{g_.entries} * sizeof(Entry));
    return leases + std::size_t{rank} * g_.leases_per_rank + i;
}

namespace {

// Reads an entry's key under its word: true (and *w the word) when the entry was `state` with
// `key` and unchanged while its key was read.
template <class E>
bool entryHolds(E* e, const core::PageKey& key, std::uint64_t state, std::uint64_t* w) {
    const std::uint64_t before = Ref(e->word).load(std::memory_order_acquire);
    if (stateOf(before) != state) return false;
    const std::uint64_t lo = Ref(e->key_lo).load(std::memory_order_relaxed);
    const std::uint64_t hi = Ref(e->key_hi).load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (Ref(e->word).load(std::memory_order_relaxed) != before) return false;
    *w = before;
    return lo == key.lo && hi == key.hi;
}

}  // namespace

bool NodePageIndex::publish(const core::PageKey& key, const NodePageRef& ref) {
    const std::uint32_t mask = g_.entries - 1;
    const std::uint32_t h = static_cast<std::uint32_t>(key.lo ^ (key.hi >> 17)) & mask;
    const std::uint32_t window = std::min(kProbe, g_.entries);
    for (std::uint32_t k = 0; k < window; ++k) {
        std::uint64_t w = 0;
        Entry* e = entry((h + k) & mask);
        if (entryHolds(e, key, kValid, &w)) {
            counters_->publish_duplicates.fetch_add(1, std::memory_order_relaxed);
            return false;
        }
        if (stateOf(Ref(e->word).load(std::memory_order_acquire)) == kEmpty) break;
    }
    for (std::uint32_t k = 0; k < window; ++k) {
        Entry* e = entry((h + k) & mask);
        std::uint64_t w = Ref(e->word).load(std::memory_order_acquire);
        if (stateOf(w) != kEmpty && stateOf(w) != kTombstone) continue;
        const std::uint64_t busy = word(kBusy, rank_, genOf(w));
        if (!Ref(e->word).compare_exchange_strong(w, busy, std::memory_order_acq_rel)) continue;
        Ref(e->key_lo).store(key.lo, std::memory_order_relaxed);
        Ref(e->key_hi).store(key.hi, std::memory_order_relaxed);
        Ref(e->pool_slot)
            .store(std::uint64_t{ref.pool} << 32 | ref.slot, std::memory_order_relaxed);
        Ref(e->checksum).store(ref.checksum, std::memory_order_relaxed);
        Ref(e->word).store(word(kValid, rank_, genOf(w) + 1), std::memory_order_release);
        counters_->published.fetch_add(1, std::memory_order_relaxed);
        return true;
    }
    counters_->publish_full.fetch_add(1, std::memory_order_relaxed);
    return false;
}

void NodePageIndex::waitForPins(std::uint32_t e, std::uint32_t generation) {
    const std::uint64_t tag = leaseTag(e, generation);
    bool waited = false;
    for (;;) {
        bool live = false;
        std::uint64_t expired = 0;
        const std::int64_t now = nowNs();
        for (std::uint32_t r = 0; r < g_.ranks && !live; ++r) {
            for (std::uint32_t i = 0; i < g_.leases_per_rank; ++i) {
                Lease* l = lease(r, i);
                if (Ref(l->tag).load(std::memory_order_seq_cst) != tag) continue;
                const auto expires =
                    static_cast<std::int64_t>(Ref(l->expires_ns).load(std::memory_order_relaxed));
                if (expires > now) {
                    live = true;
                    break;
                }
                ++expired;
            }
        }
        if (!live) {
            counters_->expired_leases.fetch_add(expired, std::memory_order_relaxed);
            return;
        }
        if (!waited) counters_->retract_waits.fetch_add(1, std::memory_order_relaxed);
        waited = true;
        // A live pin covers one page copy (milliseconds): yield to its reader and look again.
        std::this_thread::yield();
    }
}

bool NodePageIndex::removeEntry(std::uint32_t i, std::uint32_t owner) {
    Entry* e = entry(i);
    std::uint64_t w = Ref(e->word).load(std::memory_order_acquire);
    if (stateOf(w) != kValid || ownerOf(w) != owner) return false;
    // seq_cst: the retraction is ordered before the scan of the leases (the Dekker handshake
    // with pin(), which stores its lease before re-reading the word).
    if (!Ref(e->word).compare_exchange_strong(w, word(kRetracting, owner, genOf(w)),
                                              std::memory_order_seq_cst)) {
        return false;
    }
    waitForPins(i, genOf(w));
    Ref(e->word).store(word(kTombstone, 0, genOf(w)), std::memory_order_seq_cst);
    counters_->retracted.fetch_add(1, std::memory_order_relaxed);
    return true;
}

bool NodePageIndex::retract(const core::PageKey& key) {
    const std::uint32_t mask = g_.entries - 1;
    const std::uint32_t h = static_cast<std::uint32_t>(key.lo ^ (key.hi >> 17)) & mask;
    const std::uint32_t window = std::min(kProbe, g_.entries);
    bool removed = false;
    for (std::uint32_t k = 0; k < window; ++k) {
        const std::uint32_t i = (h + k) & mask;
        std::uint64_t w = 0;
        if (entryHolds(entry(i), key, kValid, &w) && ownerOf(w) == rank_) {
            removed = removeEntry(i, rank_) || removed;
        }
        if (stateOf(Ref(entry(i)->word).load(std::memory_order_acquire)) == kEmpty) break;
    }
    return removed;
}

std::size_t NodePageIndex::reclaimOwner(std::uint32_t owner) {
    std::size_t removed = 0;
    for (std::uint32_t i = 0; i < g_.entries; ++i) {
        Entry* e = entry(i);
        std::uint64_t w = Ref(e->word).load(std::memory_order_acquire);
        if (ownerOf(w) != owner) continue;
        if (stateOf(w) == kValid) {
            removed += removeEntry(i, owner) ? 1 : 0;
        } else if (stateOf(w) == kBusy || stateOf(w) == kRetracting) {
            // Left half-way by the dead rank: nobody pins a busy entry; a retracting one may
            // still be pinned by a survivor.
            if (stateOf(w) == kRetracting) waitForPins(i, genOf(w));
            if (Ref(e->word).compare_exchange_strong(w, word(kTombstone, 0, genOf(w)),
                                                     std::memory_order_seq_cst)) {
                ++removed;
            }
        }
    }
    if (owner < g_.ranks) {
        for (std::uint32_t j = 0; j < g_.leases_per_rank; ++j) {
            Ref(lease(owner, j)->tag).store(0, std::memory_order_release);
        }
    }
    return removed;
}

bool NodePageIndex::contains(const core::PageKey& key) const {
    const std::uint32_t mask = g_.entries - 1;
    const std::uint32_t h = static_cast<std::uint32_t>(key.lo ^ (key.hi >> 17)) & mask;
    const std::uint32_t window = std::min(kProbe, g_.entries);
    for (std::uint32_t k = 0; k < window; ++k) {
        std::uint64_t w = 0;
        Entry* e = entry((h + k) & mask);
        if (entryHolds(e, key, kValid, &w)) return true;
        if (stateOf(Ref(e->word).load(std::memory_order_acquire)) == kEmpty) break;
    }
    return false;
}

std::optional<NodePageIndex::Pin> NodePageIndex::pin(const core::PageKey& key) {
    const std::uint32_t mask = g_.entries - 1;
    const std::uint32_t h = static_cast<std::uint32_t>(key.lo ^ (key.hi >> 17)) & mask;
    const std::uint32_t window = std::min(kProbe, g_.entries);
    for (std::uint32_t k = 0; k < window; ++k) {
        const std::uint32_t i = (h + k) & mask;
        Entry* e = entry(i);
        std::uint64_t w = 0;
        if (!entryHolds(e, key, kValid, &w)) {
            if (stateOf(Ref(e->word).load(std::memory_order_acquire)) == kEmpty) break;
            continue;
        }
        // A free lease slot of this rank (its own slots only: no other rank writes them).
        std::uint32_t slot = g_.leases_per_rank;
        const std::uint32_t start = counters_->next_lease.fetch_add(1, std::memory_order_relaxed);
        for (std::uint32_t j = 0; j < g_.leases_per_rank; ++j) {
            const std::uint32_t c = (start + j) % g_.leases_per_rank;
            std::uint64_t free_tag = 0;
            if (Ref(lease(rank_, c)->tag).load(std::memory_order_acquire) != 0) continue;
            Ref(lease(rank_, c)->expires_ns)
                .store(static_cast<std::uint64_t>(nowNs() + lease_ns_), std::memory_order_relaxed);
            if (Ref(lease(rank_, c)->tag)
                    .compare_exchange_strong(free_tag, leaseTag(i, genOf(w)),
                                             std::memory_order_seq_cst)) {
                slot = c;
                break;
            }
        }
        if (slot == g_.leases_per_rank) {
            counters_->no_free_lease.fetch_add(1, std::memory_order_relaxed);
            return std::nullopt;
        }
        // The handshake's second half: the entry still valid after the lease is visible means
        // the owner's retract() will see the lease.
        if (Ref(e->word).load(std::memory_order_seq_cst) != w) {
            Ref(lease(rank_, slot)->tag).store(0, std::memory_order_release);
            continue;
        }
        Pin p;
        const std::uint64_t ps = Ref(e->pool_slot).load(std::memory_order_relaxed);
        p.ref.owner = ownerOf(w);
        p.ref.pool = static_cast<std::uint32_t>(ps >> 32);
        p.ref.slot = static_cast<std::uint32_t>(ps);
        p.ref.checksum = Ref(e->checksum).load(std::memory_order_relaxed);
        p.lease = slot;
        p.entry = i;
        p.generation = genOf(w);
        counters_->pins.fetch_add(1, std::memory_order_relaxed);
        return p;
    }
    counters_->pin_misses.fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
}

bool NodePageIndex::stillPinned(const Pin& p) const {
    // Loads of the copied bytes are ordered before these checks.
    std::atomic_thread_fence(std::memory_order_acquire);
    const std::uint64_t w = Ref(entry(p.entry)->word).load(std::memory_order_seq_cst);
    if (stateOf(w) != kValid && stateOf(w) != kRetracting) return false;
    if (genOf(w) != p.generation) return false;
    const auto expires = static_cast<std::int64_t>(
        Ref(lease(rank_, p.lease)->expires_ns).load(std::memory_order_relaxed));
    return nowNs() < expires;
}

void NodePageIndex::unpin(const Pin& p) {
    Ref(lease(rank_, p.lease)->tag).store(0, std::memory_order_release);
}

NodeIndexStats NodePageIndex::stats() const noexcept {
    NodeIndexStats s;
    const Counters& c = *counters_;
    s.published = c.published.load();
    s.publish_duplicates = c.publish_duplicates.load();
    s.publish_full = c.publish_full.load();
    s.retracted = c.retracted.load();
    s.retract_waits = c.retract_waits.load();
    s.expired_leases = c.expired_leases.load();
    s.pins = c.pins.load();
    s.pin_misses = c.pin_misses.load();
    s.no_free_lease = c.no_free_lease.load();
    return s;
}

}  // namespace strata::comm
