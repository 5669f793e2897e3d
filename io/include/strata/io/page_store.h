// PageStore: a tier below the host pools (HDF5 files; peers' host pools) that stores whole pages of
// one pool under 128-bit storage keys, reading and writing them straight from and into host pool
// slots (no staging copy where the back end can avoid it). Every stored page carries a checksum of
// its bytes, verified on every read: a mismatch is a miss, counted and logged, never served.
// A store declares what it can do (Capabilities); what it cannot is kNotSupported.
// Ownership: borrows the host pools it is given per call (they must outlive the call).
// Thread-safety: one store object may be used by one thread at a time; several processes (ranks,
// later jobs) may use the same directory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "strata/core/page_key.h"
#include "strata/core/status.h"
#include "strata/pools/host_pool.h"

namespace strata::io {

using core::PageKey;

struct StoreStats {
    std::uint64_t pages_written = 0;      // newly stored by this object
    std::uint64_t pages_skipped = 0;      // set() of a page already present
    std::uint64_t pages_read = 0;         // served, checksum verified
    std::uint64_t checksum_failures = 0;  // read but not served
    std::uint64_t pages_evicted = 0;      // dropped to honour the capacity
    std::uint64_t write_failures = 0;     // pages not stored (full disk, I/O error): logged
    std::uint64_t bytes_written = 0, bytes_read = 0;
    double write_seconds = 0, read_seconds = 0;
};

class PageStore {
public:
    struct Capabilities {
        bool zero_copy = false;            // reads/writes go straight to host pool memory
        bool shared_across_ranks = false;  // a page set by one rank can be read by another
        bool persistent = false;           // pages survive the job (a storage tier)
        // Pages are announced with publish() when they enter the host pool and withdrawn with
        // retract() before their slots are reused; the store serves them from there (a remote
        // tier over peers' host pools). Without it, publish() and retract() are kNotSupported.
        bool publish_retract = false;
    };

    virtual ~PageStore() = default;
    virtual Capabilities capabilities() const noexcept = 0;

    // Number of leading keys present (stops at the first absent one). Never fails for absence.
    virtual Result<std::size_t> exists(std::span<const PageKey> keys) = 0;

    // Reads keys[i] into page host_pages[i] of `pool` for the leading run of keys that are present
    // and whose checksum verifies; returns that run's length. A checksum failure ends the run (the
    // page is counted, logged and treated as absent from then on). Pages after the run are
    // untouched or garbage: the caller uses only the returned count.
    virtual Result<std::size_t> get(std::span<const PageKey> keys, const pools::HostPool& pool,
                                    std::span<const std::uint32_t> host_pages) = 0;

    // Stores page host_pages[i] of `pool` under keys[i]; keys already present are skipped. Returns
    // the number of leading keys that are present when it returns (stored now or before). A page is
    // counted only once it is durable (data, checksum and index entry). A full disk or I/O error
    // stops the batch with a logged message and a short count, not an error: the cache keeps
    // serving. Errors are for broken arguments (page sizes that do not match the store).
    virtual Result<std::size_t> set(std::span<const PageKey> keys, const pools::HostPool& pool,
                                    std::span<const std::uint32_t> host_pages) = 0;

    virtual StoreStats stats() const = 0;

    // The keys this store dropped on its own to honour its capacity since the last call (each
    // once), recorded only after recordEvictions(true) (for KV events: who consumes them turns
    // it on). Thread-safe beside the storage worker's set(). Stores without a capacity: none.
    virtual void recordEvictions(bool /*on*/) {}
    virtual std::vector<PageKey> takeEvicted() { return {}; }

    // publish_retract stores only. publish(): page host_pages[i] of `pool` holds keys[i] from now
    // on (its bytes are read now, e.g. for checksums); a key published again replaces its old
    // slot. retract(): the keys' slots are about to be reused (keys not published are ignored).
    // Both may run on another thread than exists()/get() (the controller publishes from its
    // scheduler thread while its storage worker pulls).
    virtual Status publish(std::span<const PageKey> keys, const pools::HostPool& pool,
                           std::span<const std::uint32_t> host_pages);
    virtual Status retract(std::span<const PageKey> keys);
};

}  // namespace strata::io
