// RemotePageStore: the remote tier. Pages that sit in the host pools of other ranks (other nodes
// included) are found through a page directory sharded by key over the ranks of one group (the
// ranks of the same TP, CP and PP coordinates in the DP replicas: the same shard of every pool,
// whose storage keys carry the TP or CP rank when it is sharded across TP or CP) and pulled
// into this rank's host pool slots: the holder's UCX worker sends them
// from its pool in answer to an authenticated read request (no peer can write into a pool).
// A rank publish()es pages when they enter its host pool and retract()s them when they leave; a
// page is served only when the checksum its holder published matches the pulled bytes, so a slot
// overwritten between lookup and pull is a counted miss, never wrong data. A slow or stopped peer
// costs one bounded timeout per call and a back-off, never a hang. Always built; without UCX no
// transport can be created (kNotSupported), so no store either. UCX appears in no public header.
// Ownership: shares the transport; borrows the host pool, which must outlive the store.
// Thread-safety: one thread at a time in exists()/get(); publish()/retract() may run on another
// thread meanwhile (the controller publishes from its scheduler thread while its storage worker
// pulls); the transport's progress thread serves peers.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>

#include "strata/io/page_store.h"

namespace strata::comm {
class MpiComm;
}
namespace strata::comm::ucx {
class UcxTransport;
}

namespace strata::io {

struct RemoteStoreOptions {
    std::uint16_t channel = 1;               // control channel: one per pool, equal on all ranks
    std::chrono::milliseconds timeout{500};  // per call, for directory lookups and pulls
};

struct RemoteStoreStats {
    std::uint64_t pages_published = 0, pages_retracted = 0;
    std::uint64_t lookups = 0;       // keys asked of the directory
    std::uint64_t lookup_hits = 0;   // keys the directory knew a holder for
    std::uint64_t pages_pulled = 0;  // served: pulled and checksum-verified
    std::uint64_t bytes_pulled = 0;
    std::uint64_t checksum_failures = 0;  // pulled but not served (overwritten, torn)
    std::uint64_t timeouts = 0;           // lookups or pulls whose peer did not answer in time
    std::uint64_t unavailable = 0;        // keys skipped because their peer was backing off
    std::uint64_t bad_messages = 0;       // authentic but malformed directory messages
    std::uint64_t rejected_messages = 0;  // the transport's count (forged, replayed, malformed)
    double pull_seconds = 0;

    // Adds another pool's figures (the runtime sums its pools' stores). rejected_messages is the
    // transport's, which every store of a rank shares: taken once, not summed.
    void add(const RemoteStoreStats& o) noexcept {
        pages_published += o.pages_published;
        pages_retracted += o.pages_retracted;
        lookups += o.lookups;
        lookup_hits += o.lookup_hits;
        pages_pulled += o.pages_pulled;
        bytes_pulled += o.bytes_pulled;
        checksum_failures += o.checksum_failures;
        timeouts += o.timeouts;
        unavailable += o.unavailable;
        bad_messages += o.bad_messages;
        rejected_messages = o.rejected_messages;
        pull_seconds += o.pull_seconds;
    }
};

class RemotePageStore final : public PageStore {
public:
    // Collective over `group` (a communicator whose members are ranks of the transport's job):
    // exposes `pool` to the group for reading and checks that every member's pool has the same
    // geometry and layout (kInvalidArgument on every rank otherwise). `group` is used only during
    // create.
    static Result<std::unique_ptr<RemotePageStore>> create(
        std::shared_ptr<comm::ucx::UcxTransport> transport, const comm::MpiComm& group,
        const pools::HostPool& pool, const RemoteStoreOptions& options = {});
    ~RemotePageStore() override;

    Capabilities capabilities() const noexcept override { return {true, true, false, true}; }

    // Directory lookup of the leading run of keys held by another rank of the group.
    Result<std::size_t> exists(std::span<const PageKey> keys) override;
    // Looks the keys up and pulls the leading run into host_pages of `pool` (which must be the
    // pool the store was created with). A page whose checksum fails ends the run (counted).
    Result<std::size_t> get(std::span<const PageKey> keys, const pools::HostPool& pool,
                            std::span<const std::uint32_t> host_pages) override;
    // publish(): the pages are in this rank's host pool now. Returns keys.size().
    Result<std::size_t> set(std::span<const PageKey> keys, const pools::HostPool& pool,
                            std::span<const std::uint32_t> host_pages) override;
    StoreStats stats() const override;

    // Announces that host page host_pages[i] of the store's pool holds keys[i] (checksummed now).
    // A key published again replaces its old slot. Directory updates are asynchronous.
    Status publish(std::span<const PageKey> keys, std::span<const std::uint32_t> host_pages);
    // The same through PageStore (`pool` must be the store's pool: kInvalidArgument otherwise).
    Status publish(std::span<const PageKey> keys, const pools::HostPool& pool,
                   std::span<const std::uint32_t> host_pages) override;
    // Withdraws keys (those not published are ignored). Call before reusing their slots.
    Status retract(std::span<const PageKey> keys) override;

    RemoteStoreStats remoteStats() const;
    // Transport rank of the directory shard that owns `key` (for tests and diagnostics).
    int directoryOwner(const PageKey& key) const noexcept;

    struct Impl;

private:
    explicit RemotePageStore(std::unique_ptr<Impl> impl) noexcept;
    std::unique_ptr<Impl> impl_;
};

}  // namespace strata::io
