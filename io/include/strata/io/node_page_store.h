// NodePageStore: the node-wide host tier's view of one pool for the controller, in the place of
// the remote tier (a publish_retract store). Pages this rank's host pool holds are published in
// the node index (comm::NodePageIndex, in the node's shared window); a page another rank of the
// node published (another DP replica) is pinned, copied out of that rank's host pool, which every
// rank maps through the shared window, into this rank's host slot with its checksum computed on
// the way, and served only when the checksum matches what its owner published and the pin held:
// a host hit with no network transfer. Pages the node does not hold go to the fallback store
// (the UCX remote tier between nodes; none on one node).
// Ownership: shares the index; borrows the pool, the peers' pool memory (the window) and the
// fallback, which must outlive the store. Thread-safety: exists()/get() on one thread at a time;
// publish()/retract() may run on another thread meanwhile.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "strata/comm/node_page_index.h"
#include "strata/io/page_store.h"

namespace strata::io {

struct NodeStoreStats {
    std::uint64_t pages_published = 0;  // entered the node index from this rank
    std::uint64_t publish_skipped = 0;  // already published by another rank, or index full
    std::uint64_t pages_retracted = 0;
    std::uint64_t lookups = 0, lookup_hits = 0;  // keys asked of the node index; found
    std::uint64_t pages_served = 0;              // cross-replica host hits: copied and verified
    std::uint64_t bytes_served = 0;
    std::uint64_t checksum_failures = 0;  // copied but not served (torn: the pin's lease lapsed)
    double copy_seconds = 0;
    void add(const NodeStoreStats& o) noexcept;
};

class NodePageStore final : public PageStore {
public:
    // `pool_index`: the pool's index on every rank of the node (the same model on all).
    // `peer_pools[r]`: the first byte of this pool's host memory on node rank r, seen in this
    // process (null where rank r has none). `pool` must be page_first or page_first_direct (pages
    // are copied as one blob) and is the one the controller passes to every call.
    // kInvalidArgument for a layer_first pool or a rank outside peer_pools.
    static Result<std::unique_ptr<NodePageStore>> create(std::shared_ptr<comm::NodePageIndex> index,
                                                         std::uint32_t pool_index,
                                                         const pools::HostPool& pool,
                                                         std::vector<const std::byte*> peer_pools,
                                                         PageStore* fallback = nullptr);

    Capabilities capabilities() const noexcept override { return {true, true, false, true}; }
    // Leading run of keys the node holds, then (with a fallback) the run the fallback holds.
    Result<std::size_t> exists(std::span<const PageKey> keys) override;
    Result<std::size_t> get(std::span<const PageKey> keys, const pools::HostPool& pool,
                            std::span<const std::uint32_t> host_pages) override;
    // The same as publish().
    Result<std::size_t> set(std::span<const PageKey> keys, const pools::HostPool& pool,
                            std::span<const std::uint32_t> host_pages) override;
    StoreStats stats() const override;
    Status publish(std::span<const PageKey> keys, const pools::HostPool& pool,
                   std::span<const std::uint32_t> host_pages) override;
    Status retract(std::span<const PageKey> keys) override;

    NodeStoreStats nodeStats() const;
    const comm::NodePageIndex& index() const noexcept { return *index_; }

    // Copies one contiguous page of `geometry` from src to dst and returns pageBytesChecksum of
    // the bytes written (computed per block while it is in cache).
    static std::uint64_t copyWithChecksum(const kernels::PoolGeometry& geometry, std::byte* dst,
                                          const std::byte* src) noexcept;

private:
    NodePageStore() = default;
    std::shared_ptr<comm::NodePageIndex> index_;
    std::uint32_t pool_index_ = 0;
    const pools::HostPool* pool_ = nullptr;  // must outlive the store
    std::vector<const std::byte*> peer_pools_;
    PageStore* fallback_ = nullptr;  // may be null; must outlive the store
    struct Counters {
        std::atomic<std::uint64_t> published{0}, skipped{0}, retracted{0}, lookups{0},
            lookup_hits{0}, served{0}, bytes{0}, checksum_failures{0}, copy_ns{0};
    };
    std::unique_ptr<Counters> c_ = std::make_unique<Counters>();
};

}  // namespace strata::io
