#include "strata/io/node_page_store.h"

#include <chrono>
#include <cstring>

#include "strata/core/hash.h"
#include "strata/core/log.h"

namespace strata::io {

void NodeStoreStats::add(const NodeStoreStats& o) noexcept {
    pages_published += o.pages_published;
    publish_skipped += o.publish_skipped;
    pages_retracted += o.pages_retracted;
    lookups += o.lookups;
    lookup_hits += o.lookup_hits;
    pages_served += o.pages_served;
    bytes_served += o.bytes_served;
    checksum_failures += o.checksum_failures;
    copy_seconds += o.copy_seconds;
}

Result<std::unique_ptr<NodePageStore>> NodePageStore::create(
    std::shared_ptr<comm::NodePageIndex> index, std::uint32_t pool_index,
    const pools::HostPool& pool, std::vector<const std::byte*> peer_pools, PageStore* fallback) {
    if (!index) return STRATA_ERROR(StatusCode::kInvalidArgument, "node store: no node index");
    if (pool.layout() == kernels::HostLayout::kLayerFirst) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "node store of pool '{}': the node-wide host tier needs the "
                            "page_first or page_first_direct host layout (pages as one blob)",
                            pool.spec().name);
    }
    if (index->rank() >= peer_pools.size()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "node store of pool '{}': rank {} outside {} peer pools",
                            pool.spec().name, index->rank(), peer_pools.size());
    }
    std::unique_ptr<NodePageStore> s(new NodePageStore());
    s->index_ = std::move(index);
    s->pool_index_ = pool_index;
    s->pool_ = &pool;
    s->peer_pools_ = std::move(peer_pools);
    s->fallback_ = fallback;
    return s;
}

std::uint64_t NodePageStore::copyWithChecksum(const kernels::PoolGeometry& g, std::byte* dst,
                                              const std::byte* src) noexcept {
    const std::size_t block = std::size_t{g.page_size} * g.row_bytes;
    const std::size_t blocks = std::size_t{g.num_buffers} * g.num_layers;
    std::uint64_t digest = 0;
    for (std::size_t k = 0; k < blocks; ++k) {
        std::memcpy(dst + k * block, src + k * block, block);
        digest = core::foldDigest(digest, core::checksum64(dst + k * block, block));
    }
    return digest;
}

Result<std::size_t> NodePageStore::exists(std::span<const PageKey> keys) {
    std::size_t run = 0;
    while (run < keys.size() && index_->contains(keys[run])) ++run;
    c_->lookups.fetch_add(keys.size(), std::memory_order_relaxed);
    c_->lookup_hits.fetch_add(run, std::memory_order_relaxed);
    if (run < keys.size() && fallback_ != nullptr) {
        auto more = fallback_->exists(keys.subspan(run));
        if (more.isOk()) run += *more;
    }
    return run;
}

Result<std::size_t> NodePageStore::get(std::span<const PageKey> keys, const pools::HostPool& pool,
                                       std::span<const std::uint32_t> host_pages) {
    if (&pool != pool_ || keys.size() != host_pages.size()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "node store of pool '{}': get() with another pool or {} keys for {} "
                            "pages",
                            pool_->spec().name, keys.size(), host_pages.size());
    }
    const kernels::PoolGeometry g = pool.geometry();
    const std::size_t page_bytes = g.bytesPerPage();
    const auto started = std::chrono::steady_clock::now();
    std::size_t run = 0;
    for (; run < keys.size(); ++run) {
        auto pin = index_->pin(keys[run]);
        if (!pin) break;
        if (pin->ref.owner == index_->rank()) {  // this rank's own entry: not a peer's page
            index_->unpin(*pin);
            break;
        }
        const std::byte* base =
            pin->ref.owner < peer_pools_.size() ? peer_pools_[pin->ref.owner] : nullptr;
        std::span<std::byte> dst = pool.pageBlob(host_pages[run]);
        if (base == nullptr || pin->ref.pool != pool_index_ || dst.empty() ||
            pin->ref.slot >= pool.numPages()) {
            index_->unpin(*pin);
            core::logger("io").warn(
                "node store of pool '{}': entry of rank {} names pool {} slot "
                "{}, which this rank cannot read",
                pool.spec().name, pin->ref.owner, pin->ref.pool, pin->ref.slot);
            break;
        }
        const std::uint64_t sum =
            copyWithChecksum(g, dst.data(), base + std::size_t{pin->ref.slot} * page_bytes);
        const bool held = index_->stillPinned(*pin);
        index_->unpin(*pin);
        if (!held || sum != pin->ref.checksum) {
            c_->checksum_failures.fetch_add(1, std::memory_order_relaxed);
            core::logger("io").warn(
                "node store of pool '{}': page {} from rank {} slot {} not served ({}): a miss",
                pool.spec().name, keys[run].hex(), pin->ref.owner, pin->ref.slot,
                held ? "checksum mismatch" : "its pin's lease lapsed during the copy");
            break;
        }
        c_->served.fetch_add(1, std::memory_order_relaxed);
        c_->bytes.fetch_add(page_bytes, std::memory_order_relaxed);
    }
    c_->copy_ns.fetch_add(
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                       std::chrono::steady_clock::now() - started)
                                       .count()),
        std::memory_order_relaxed);
    if (run < keys.size() && fallback_ != nullptr) {
        auto more = fallback_->get(keys.subspan(run), pool, host_pages.subspan(run));
        if (more.isOk()) run += *more;
    }
    return run;
}

Result<std::size_t> NodePageStore::set(std::span<const PageKey> keys, const pools::HostPool& pool,
                                       std::span<const std::uint32_t> host_pages) {
    STRATA_RETURN_IF_ERROR(publish(keys, pool, host_pages));
    return keys.size();
}

Status NodePageStore::publish(std::span<const PageKey> keys, const pools::HostPool& pool,
                              std::span<const std::uint32_t> host_pages) {
    if (&pool != pool_ || keys.size() != host_pages.size()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "node store of pool '{}': publish() with another pool or {} keys "
                            "for {} pages",
                            pool_->spec().name, keys.size(), host_pages.size());
    }
    for (std::size_t i = 0; i < keys.size(); ++i) {
        comm::NodePageRef ref;
        ref.owner = index_->rank();
        ref.pool = pool_index_;
        ref.slot = host_pages[i];
        ref.checksum = pools::pageChecksum(pool, host_pages[i]);
        if (index_->publish(keys[i], ref)) {
            c_->published.fetch_add(1, std::memory_order_relaxed);
        } else {
            c_->skipped.fetch_add(1, std::memory_order_relaxed);
        }
    }
    if (fallback_ != nullptr) return fallback_->publish(keys, pool, host_pages);
    return Status::ok();
}

Status NodePageStore::retract(std::span<const PageKey> keys) {
    for (const PageKey& k : keys) {
        if (index_->retract(k)) c_->retracted.fetch_add(1, std::memory_order_relaxed);
    }
    if (fallback_ != nullptr) return fallback_->retract(keys);
    return Status::ok();
}

StoreStats NodePageStore::stats() const {
    StoreStats s;
    s.pages_written = c_->published.load();
    s.pages_skipped = c_->skipped.load();
    s.pages_read = c_->served.load();
    s.checksum_failures = c_->checksum_failures.load();
    s.bytes_read = c_->bytes.load();
    s.read_seconds = static_cast<double>(c_->copy_ns.load()) * 1e-9;
    return s;
}

NodeStoreStats NodePageStore::nodeStats() const {
    NodeStoreStats s;
    s.pages_published = c_->published.load();
    s.publish_skipped = c_->skipped.load();
    s.pages_retracted = c_->retracted.load();
    s.lookups = c_->lookups.load();
    s.lookup_hits = c_->lookup_hits.load();
    s.pages_served = c_->served.load();
    s.bytes_served = c_->bytes.load();
    s.checksum_failures = c_->checksum_failures.load();
    s.copy_seconds = static_cast<double>(c_->copy_ns.load()) * 1e-9;
    return s;
}

}  // namespace strata::io
