#include "strata/runtime/cache.h"

#include <fmt/format.h>

#include "strata/config.h"
#include "strata/io/hdf5_page_store.h"
#if STRATA_HAVE_UCX
#include "strata/comm/mpi_comm.h"
#include "strata/comm/ucx/transport.h"
#include "strata/io/remote_page_store.h"
#endif

namespace strata::runtime {

#if STRATA_HAVE_UCX
// The remote tier of one pool as the controller sees it.
struct Cache::RemotePool final : controller::RemoteTier {
    std::unique_ptr<io::RemotePageStore> store;
    const pools::HostPool* pool = nullptr;
    Result<std::size_t> exists(std::span<const core::PageKey> keys) override {
        return store->exists(keys);
    }
    Result<std::size_t> get(std::span<const core::PageKey> keys,
                            std::span<const std::uint32_t> host_pages) override {
        return store->get(keys, *pool, host_pages);
    }
    Status publish(std::span<const core::PageKey> keys,
                   std::span<const std::uint32_t> host_pages) override {
        return store->publish(keys, host_pages);
    }
    Status retract(std::span<const core::PageKey> keys) override { return store->retract(keys); }
};
#else
struct Cache::RemotePool final : controller::RemoteTier {
    Result<std::size_t> exists(std::span<const core::PageKey>) override { return std::size_t{0}; }
    Result<std::size_t> get(std::span<const core::PageKey>,
                            std::span<const std::uint32_t>) override {
        return std::size_t{0};
    }
    Status publish(std::span<const core::PageKey>, std::span<const std::uint32_t>) override {
        return Status::ok();
    }
    Status retract(std::span<const core::PageKey>) override { return Status::ok(); }
};
#endif

Result<std::unique_ptr<Cache>> Cache::create(const CacheOptions& options,
                                             comm::DecisionGroup& group) {
    std::unique_ptr<Cache> cache(new Cache());
    cache->options_ = options;
    if (options.tp_size < 1 || options.tp_rank < 0 || options.tp_rank >= options.tp_size) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "tp rank {} is outside a TP group of {}",
                            options.tp_rank, options.tp_size);
    }
    STRATA_ASSIGN_OR_RETURN(cache->specs_,
                            pools::poolsForModel(options.model, options.layers,
                                                 static_cast<std::uint32_t>(options.tp_size)));
    STRATA_ASSIGN_OR_RETURN(cache->backend_,
                            kernels::Backend::create(options.backend, options.backend_options));

    // The namespace is the same on every rank of a replica: it names the model and the shape of
    // a token's rows, not the layer slice of a pipeline stage (tree keys must match across stages;
    // stored pages add the stage's layers to their keys).
    std::size_t bytes_per_token = 0;
    std::string signature = fmt::format("page={};tp={}", options.page_size, options.tp_size);
    for (const auto& s : cache->specs_) {
        bytes_per_token += s.bytesPerToken();
        signature += fmt::format(";{}:{}:{}x{}", s.name, pools::poolKindName(s.kind), s.num_buffers,
                                 s.row_bytes);
    }
    STRATA_ASSIGN_OR_RETURN(std::size_t host_tokens,
                            pools::hostCapacityTokens(options.host, options.device_tokens,
                                                      bytes_per_token, options.page_size));
    for (const auto& s : cache->specs_) {
        STRATA_ASSIGN_OR_RETURN(
            auto dev, pools::DevicePool::create(*cache->backend_, s, options.device_tokens,
                                                options.page_size));
        STRATA_ASSIGN_OR_RETURN(
            auto host, pools::HostPool::create(*cache->backend_, s, host_tokens, options.page_size,
                                               options.host_layout));
        cache->device_pools_.push_back(std::move(dev));
        cache->host_pools_.push_back(std::move(host));
    }
    const std::string stage_suffix =
        options.pipeline
            ? fmt::format("@L{}+{}", options.first_layer, cache->specs_.front().num_layers)
            : std::string();
    if (!options.storage_dir.empty()) {
        for (std::size_t i = 0; i < cache->specs_.size(); ++i) {
            const auto& spec = cache->specs_[i];
            io::Hdf5StoreOptions so;
            so.directory = options.storage_dir;
            so.page_bytes = spec.bytesPerToken() * options.page_size;
            so.pool_signature =
                fmt::format("{}-{}{}-{}B", options.model, spec.name, stage_suffix, so.page_bytes);
            so.capacity_pages = options.storage_capacity_pages;
            so.writer_id = options.world_rank;
            STRATA_ASSIGN_OR_RETURN(auto store, io::Hdf5PageStore::create(so));
            cache->stores_.push_back(std::move(store));
        }
    }
    if (options.remote_transport) {
#if STRATA_HAVE_UCX
        if (options.remote_group == nullptr) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "the remote tier needs its group (the ranks of the same shard)");
        }
        for (std::size_t i = 0; i < cache->specs_.size(); ++i) {
            io::RemoteStoreOptions ro;
            ro.channel = static_cast<std::uint16_t>(options.remote_channel_base + i);
            ro.timeout = options.remote_timeout;
            auto rp = std::make_unique<RemotePool>();
            rp->pool = &cache->host_pools_[i];
            STRATA_ASSIGN_OR_RETURN(
                rp->store, io::RemotePageStore::create(options.remote_transport,
                                                       *options.remote_group, *rp->pool, ro));
            cache->remotes_.push_back(std::move(rp));
        }
        // Every member's handlers are installed before any member publishes or looks up (a
        // message to a rank without its handler yet would be dropped and cost a timeout).
        STRATA_RETURN_IF_ERROR(options.remote_group->barrier());
#else
        return STRATA_ERROR(StatusCode::kNotSupported,
                            "the remote tier needs UCX: this build has none (STRATA_ENABLE_UCX)");
#endif
    }
    std::vector<controller::PoolPair> pairs;
    for (std::size_t i = 0; i < cache->specs_.size(); ++i) {
        pairs.push_back({&cache->device_pools_[i], &cache->host_pools_[i],
                         cache->stores_.empty() ? nullptr : cache->stores_[i].get(),
                         cache->remotes_.empty() ? nullptr : cache->remotes_[i].get()});
    }
    controller::ControllerConfig cc;
    cc.page_size = options.page_size;
    cc.write_policy = options.write_policy;
    cc.eviction_policy = options.eviction;
    cc.load_back_threshold_tokens = options.load_back_threshold_tokens;
    cc.check_consistency = options.check_consistency;
    cc.fail_host_allocation = options.fail_host_allocation;
    cc.storage.prefetch_policy = options.prefetch_policy;
    cc.storage.prefetch_threshold_tokens = options.prefetch_threshold_tokens;
    cc.storage.tp_rank = options.tp_rank;
    cc.storage.tp_size = options.tp_size;
    cc.storage.cp_rank = options.cp_rank;
    cc.storage.cp_size = options.cp_size;
    cc.storage.stage_suffix = stage_suffix;
    STRATA_ASSIGN_OR_RETURN(cache->controller_, controller::CacheController::create(
                                                    cc, *cache->backend_, std::move(pairs), group));
    cache->seed_ = core::namespaceSeed({options.model, signature, options.tenant_salt});
    return cache;
}

io::StoreStats Cache::storageStats() const {
    io::StoreStats total;
    for (const auto& s : stores_) {
        io::StoreStats st = s->stats();
        total.pages_written += st.pages_written;
        total.pages_skipped += st.pages_skipped;
        total.pages_read += st.pages_read;
        total.checksum_failures += st.checksum_failures;
        total.pages_evicted += st.pages_evicted;
        total.write_failures += st.write_failures;
        total.bytes_written += st.bytes_written;
        total.bytes_read += st.bytes_read;
        total.write_seconds += st.write_seconds;
        total.read_seconds += st.read_seconds;
    }
    return total;
}

RemoteTierStats Cache::remoteStats() const {
    RemoteTierStats total;
#if STRATA_HAVE_UCX
    for (const auto& r : remotes_) {
        const io::RemoteStoreStats st = r->store->remoteStats();
        total.pages_published += st.pages_published;
        total.pages_retracted += st.pages_retracted;
        total.pages_pulled += st.pages_pulled;
        total.bytes_pulled += st.bytes_pulled;
        total.checksum_failures += st.checksum_failures;
        total.timeouts += st.timeouts;
        total.unavailable += st.unavailable;
        // The transport's count: one transport serves every pool, so it is taken once, not summed.
        total.rejected_messages = st.rejected_messages;
        total.pull_seconds += st.pull_seconds;
    }
#endif
    return total;
}

Cache::~Cache() {
    // The controller's streams must drain before the pools they copy into are freed.
    controller_.reset();
}

std::vector<core::PageKey> Cache::keysFor(std::span<const std::int32_t> tokens) const {
    return core::pageKeys(seed_, tokens, options_.page_size);
}

std::size_t Cache::matchTokens(std::span<const std::int32_t> tokens) {
    auto keys = keysFor(tokens);
    auto m = controller_->match(keys);
    return (m.device_pages + m.host_pages) * options_.page_size;
}

Result<Admission> Cache::admit(RequestId id, std::span<const std::int32_t> tokens,
                               std::uint32_t priority) {
    auto keys = keysFor(tokens);
    return controller_->admit(id, keys, tokens.size(), priority);
}

Status Cache::prefetch(RequestId id, std::span<const std::int32_t> tokens) {
    auto keys = keysFor(tokens);
    return controller_->prefetch(id, keys, tokens.size());
}

std::uint32_t Cache::numLayers() const noexcept {
    std::uint32_t l = 0;
    for (const auto& s : specs_) l = std::max(l, s.num_layers);
    return l;
}

std::size_t Cache::hostCapacityTokens() const noexcept {
    return host_pools_.empty() ? 0 : host_pools_.front().capacityTokens();
}

}  // namespace strata::runtime
