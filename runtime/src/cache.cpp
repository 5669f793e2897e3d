#include "strata/runtime/cache.h"

#include <fmt/format.h>

namespace strata::runtime {

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
    std::vector<controller::PoolPair> pairs;
    for (std::size_t i = 0; i < cache->specs_.size(); ++i) {
        pairs.push_back({&cache->device_pools_[i], &cache->host_pools_[i]});
    }
    controller::ControllerConfig cc;
    cc.page_size = options.page_size;
    cc.write_policy = options.write_policy;
    cc.eviction_policy = options.eviction;
    cc.load_back_threshold_tokens = options.load_back_threshold_tokens;
    cc.check_consistency = options.check_consistency;
    cc.fail_host_allocation = options.fail_host_allocation;
    STRATA_ASSIGN_OR_RETURN(cache->controller_, controller::CacheController::create(
                                                    cc, *cache->backend_, std::move(pairs), group));
    cache->seed_ = core::namespaceSeed({options.model, signature, options.tenant_salt});
    return cache;
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

Result<Admission> Cache::admit(RequestId id, std::span<const std::int32_t> tokens) {
    auto keys = keysFor(tokens);
    return controller_->admit(id, keys, tokens.size());
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
