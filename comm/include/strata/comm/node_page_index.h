// NodePageIndex: the node-wide page index of the node-wide host tier, laid out in a region of a
// NodeWindow (or any memory every user maps): key -> {owner rank, pool, slot, checksum}, and the
// pins (leases) of pages being read. Ranks that are not in lock-step (DP replicas) use it at
// once: entries and leases are 64-bit lock-free atomics on the shared memory (no lock is held
// across calls, so a rank that dies never blocks the others for good).
//
// Memory model: the window is in MPI's unified model (NodeWindow checks), so the region is one
// copy of memory mapped by every rank, and lock-free std::atomic operations are address-free
// (they work across processes mapping the same bytes). Entries are seqlock-like: an entry's word
// {state, owner, generation} is written with release after its fields, read with acquire before
// and re-read after them. A pin is a Dekker handshake in seq_cst: the reader stores its lease
// and then re-reads the entry; retract() marks the entry retracting and then scans the leases; so
// either the reader sees the retraction (no pin) or retract() sees the lease (it waits). A lease
// expires lease_ms after it was taken: retract() waits for a live lease, never for an expired one
// (its reader died or stalled), and such a reader's copy may be torn, which the page checksum
// then catches: a page is never served wrong.
// Thread-safety: every call may run on any thread of any rank at once; one Pin is used by one
// thread. Ownership: borrows the region, which must outlive the index.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include "strata/core/page_key.h"
#include "strata/core/status.h"

namespace strata::comm {

struct NodePageRef {
    std::uint32_t owner = 0;  // node rank that holds the page in its host pool
    std::uint32_t pool = 0;   // pool index (same on every rank of the node)
    std::uint32_t slot = 0;   // host page of that pool
    std::uint64_t checksum = 0;
};

struct NodeIndexStats {
    std::uint64_t published = 0, publish_duplicates = 0, publish_full = 0;
    std::uint64_t retracted = 0;
    std::uint64_t retract_waits = 0;         // retracts that found a live pin and waited for it
    std::uint64_t expired_leases = 0;        // pins retract() skipped because their lease expired
    std::uint64_t pins = 0, pin_misses = 0;  // pins taken; lookups that found nothing to pin
    std::uint64_t no_free_lease = 0;         // lookups that found the rank's lease table full
};

class NodePageIndex {
public:
    NodePageIndex(NodePageIndex&&) noexcept;
    NodePageIndex& operator=(NodePageIndex&&) noexcept;
    ~NodePageIndex();

    struct Geometry {
        std::uint32_t entries = 0;          // hash table size (a power of two)
        std::uint32_t ranks = 0;            // node ranks that take pins
        std::uint32_t leases_per_rank = 0;  // pins one rank may hold at once
    };
    // Bytes of the region for `g`.
    static std::size_t bytesFor(const Geometry& g) noexcept;
    // A geometry for `pages` host pages on the node (entries: the power of two >= 2 * pages).
    static Geometry geometryFor(std::size_t pages, std::uint32_t ranks) noexcept;

    // initialise(): writes an empty index into `region` (one rank, before any attach()).
    static Status initialise(std::byte* region, std::size_t bytes, const Geometry& g);
    // attach(): the index in `region` for node rank `rank`; kInvalidArgument when the region
    // holds no index or `rank` is outside it. lease: how long a pin protects a page.
    static Result<NodePageIndex> attach(std::byte* region, std::size_t bytes, std::uint32_t rank,
                                        std::chrono::milliseconds lease);

    // Adds key -> ref (ref.owner must be this rank). Returns false (and adds nothing) when the
    // key is already there (another rank publishing the same page) or its probe window is full.
    bool publish(const core::PageKey& key, const NodePageRef& ref);
    // Removes this rank's entries for key, waiting until no live pin holds them (a pin whose
    // lease expired is not waited for). Afterwards the slot may be overwritten. Returns whether
    // an entry was removed.
    bool retract(const core::PageKey& key);
    // Removes every entry of `owner` (survivors reclaiming a dead rank's pages), waiting for pins
    // as retract() does. Returns the entries removed.
    std::size_t reclaimOwner(std::uint32_t owner);
    // Whether some rank publishes key (a snapshot).
    bool contains(const core::PageKey& key) const;

    struct Pin {
        NodePageRef ref;
        std::uint32_t lease = 0;  // this rank's lease slot
        std::uint32_t entry = 0;
        std::uint32_t generation = 0;
    };
    // Pins key's page: until unpin() (or the lease's expiry) its owner does not retract it.
    std::optional<Pin> pin(const core::PageKey& key);
    // True while the pinned entry is still the one pinned (checked after a copy: false means the
    // lease expired and the owner may have reused the slot, so the copy is not to be trusted).
    bool stillPinned(const Pin& pin) const;
    void unpin(const Pin& pin);

    NodeIndexStats stats() const noexcept;
    std::uint32_t rank() const noexcept { return rank_; }
    const Geometry& geometry() const noexcept { return g_; }

private:
    NodePageIndex();
    struct Entry;
    struct Lease;
    Entry* entry(std::uint32_t i) const noexcept;
    Lease* lease(std::uint32_t rank, std::uint32_t i) const noexcept;
    // Waits until no live lease pins (entry, generation).
    void waitForPins(std::uint32_t e, std::uint32_t generation);
    // Marks entry e (state valid, owned by `owner`) retracting, waits for its pins, frees it.
    bool removeEntry(std::uint32_t e, std::uint32_t owner);

    std::byte* region_ = nullptr;
    Geometry g_;
    std::uint32_t rank_ = 0;
    std::int64_t lease_ns_ = 0;
    struct Counters;
    std::unique_ptr<Counters> counters_;  // this object's figures (atomics: any thread)
};

}  // namespace strata::comm
