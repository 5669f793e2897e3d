#include "strata/runtime/cache.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

#include <cstdlib>

#include "node_host_tier.h"
#include "strata/comm/grid.h"
#include "strata/comm/job_collectives.h"
#include "strata/comm/mpi_comm.h"
#include "strata/comm/nccl/striped_loader.h"
#include "strata/comm/ucx/transport.h"
#include "strata/core/hash.h"
#include "strata/core/log.h"
#include "strata/io/hdf5_page_store.h"
#include "strata/io/remote_page_store.h"

namespace strata::runtime {

std::size_t defaultStateSlots(std::size_t device_tokens, std::uint32_t page_size) noexcept {
    const std::size_t pages = page_size == 0 ? 0 : device_tokens / page_size;
    return std::max<std::size_t>(16, pages / 16);
}

namespace {

// Why striped loads cannot run, agreed over the group (the largest code any rank found), so that
// every rank takes the same branch. 0: they can.
enum StripedObstacle : std::uint64_t { kNone = 0, kSharedGpu = 1, kCpuBackend = 2, kNoNccl = 3 };

std::string_view obstacleText(std::uint64_t code) {
    switch (code) {
        case kSharedGpu:
            return "two ranks of the decision group share a GPU (NCCL needs one GPU per rank: run "
                   "at most as many ranks per node as GPUs)";
        case kCpuBackend:
            return "the back end is cpu (striped loads need --backend cuda)";
        case kNoNccl:
            return "this build has no NCCL (configure with STRATA_ENABLE_NCCL=ON where nccl.h and "
                   "libnccl are installed)";
        default:
            return "";
    }
}

// Creates the striped loader of the decision group, or none (off, or auto and impossible, with
// the reason in *off_reason). Collective over options.striped_group when it has two or more ranks.
Result<std::unique_ptr<comm::nccl::StripedLoader>> makeStripedLoader(const CacheOptions& options,
                                                                     kernels::Backend& backend,
                                                                     std::string* off_reason) {
    off_reason->clear();
    if (options.striped_loads == StripedLoads::kOff)
        return std::unique_ptr<comm::nccl::StripedLoader>();
    const bool on = options.striped_loads == StripedLoads::kOn;
    const comm::MpiComm* g = options.striped_group;
    if (g == nullptr || !g->valid() || g->size() < 2) {
        *off_reason = "the decision group (tp x cp) has one rank: nothing to stripe";
        if (on) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "--striped-loads on: {} (run with --tp or --cp of 2 or more)",
                                *off_reason);
        }
        return std::unique_ptr<comm::nccl::StripedLoader>();
    }
    // The back end the user chose is named before what the build lacks, so that the reason does
    // not depend on how Strata was configured.
    std::uint64_t obstacle = kNone;
    if (backend.kind() != kernels::BackendKind::kCuda) {
        obstacle = kCpuBackend;
    } else if (!comm::nccl::available()) {
        obstacle = kNoNccl;
    }
    // One GPU per rank: no two ranks of the group on one node bind the same physical device.
    STRATA_ASSIGN_OR_RETURN(comm::MpiComm node, g->splitShared(g->rank()));
    const std::string device = comm::physicalDeviceId(options.backend_options.device_index,
                                                      std::getenv("CUDA_VISIBLE_DEVICES"));
    // 52 bits of the id's hash: exact in a double.
    const double mine = static_cast<double>(core::checksum64(device.data(), device.size()) &
                                            ((std::uint64_t{1} << 52) - 1));
    std::vector<double> devices;
    STRATA_RETURN_IF_ERROR(comm::allGather(node, mine, &devices));
    std::sort(devices.begin(), devices.end());
    if (obstacle == kNone && std::adjacent_find(devices.begin(), devices.end()) != devices.end()) {
        obstacle = kSharedGpu;
    }
    std::vector<double> agreed = {static_cast<double>(obstacle)};
    STRATA_RETURN_IF_ERROR(comm::allReduceMax(*g, agreed));
    obstacle = static_cast<std::uint64_t>(agreed[0]);
    if (obstacle != kNone) {
        *off_reason = std::string(obstacleText(obstacle));
        if (on) {
            return STRATA_ERROR(StatusCode::kInvalidArgument, "--striped-loads on: {}",
                                *off_reason);
        }
        return std::unique_ptr<comm::nccl::StripedLoader>();
    }
    return comm::nccl::StripedLoader::create(backend, *g, options.striped_staging_bytes);
}

// The slot spaces of a layout and the space of each of its pools: the anchor's space first, one
// per independent pool, sidecars in the space of the pool they take their indices from.
Result<std::vector<controller::SlotSpace>> spacesOf(const pools::HybridLayout& layout,
                                                    std::vector<std::uint32_t>* pool_space) {
    std::vector<controller::SlotSpace> spaces;
    pool_space->clear();
    for (const pools::HybridPool& p : layout.pools) {
        if (p.role == pools::PoolRole::kSidecar) {
            std::size_t from = 0;
            while (from < pool_space->size() && layout.pools[from].spec.name != p.indices_from) {
                ++from;
            }
            if (from == pool_space->size()) {
                return STRATA_ERROR(StatusCode::kInvalidArgument,
                                    "model '{}': pool '{}' takes its indices from '{}', which "
                                    "does not come before it",
                                    layout.model, p.spec.name, p.indices_from);
            }
            pool_space->push_back((*pool_space)[from]);
            continue;
        }
        controller::SlotSpace space;
        space.name = p.spec.name;
        space.hit_policy = p.hit_policy;
        space.trailing_pages = p.trailing_pages;
        space.request_state = p.spec.kind == pools::PoolKind::kMamba;
        pool_space->push_back(static_cast<std::uint32_t>(spaces.size()));
        spaces.push_back(std::move(space));
    }
    if (spaces.empty() || spaces.front().hit_policy != pools::HitPolicy::kAllPages) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "model '{}': the first pool must be an anchor holding every page",
                            layout.model);
    }
    return spaces;
}

// The pools of the options: the engine's declarations, or the preset's.
Result<pools::HybridLayout> layoutOf(const CacheOptions& options) {
    const auto tp = static_cast<std::uint32_t>(options.controller.storage.tp_size);
    if (options.pools.empty()) {
        return pools::hybridLayout(options.model, options.layers, tp, options.page_size);
    }
    std::uint32_t layers = options.layers;
    if (layers == 0) {
        for (const PoolDecl& d : options.pools) {
            if (!d.layers.empty()) layers = std::max(layers, d.layers.back() + 1);
        }
    }
    return pools::declaredLayout(options.model, options.pools, layers, tp, options.page_size);
}

// Checks that no two rows of (buffer, layer, slot) of an engine's memory overlap: the axes, taken
// from the smallest stride up, each step at least over everything the smaller ones span (a
// layer's rows, rows * slot_stride, are one such span; K and V interleaved per token, a buffer
// stride of row_bytes inside a slot stride of 2 * row_bytes, another). kInvalidArgument names
// the axis whose stride is too small.
Status checkDisjointRows(const pools::PoolSpec& spec, std::size_t rows, std::size_t slot_stride,
                         std::size_t layer_stride, std::size_t buffer_stride) {
    struct Axis {
        const char* name;
        std::size_t count;
        std::size_t stride;
    };
    std::array<Axis, 3> axes{{{"slot", rows, slot_stride},
                              {"layer", spec.num_layers, layer_stride},
                              {"buffer", spec.num_buffers, buffer_stride}}};
    std::stable_sort(axes.begin(), axes.end(),
                     [](const Axis& a, const Axis& b) { return a.stride < b.stride; });
    std::size_t span = spec.row_bytes;  // bytes spanned by the smaller axes
    for (const Axis& a : axes) {
        if (a.count <= 1) continue;
        if (a.stride < span) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "pool '{}' (engine memory): {} stride {} is below the {} bytes "
                                "its smaller axes span (rows would overlap)",
                                spec.name, a.name, a.stride, span);
        }
        span += a.stride * (a.count - 1);
    }
    return Status::ok();
}

// The device pool of spec over the memory its declaration gives (the engine's), or allocated
// when it gives none. `capacity`: index units the pool's slot space needs (token slots, request
// slots for a state pool); the engine's memory must hold at least that.
Result<pools::DevicePool> devicePoolOf(const CacheOptions& options, kernels::Backend& backend,
                                       const pools::PoolSpec& spec, std::size_t capacity) {
    const std::uint32_t P = options.page_size;
    const PoolDecl* decl = nullptr;
    for (const PoolDecl& d : options.pools) {
        if (d.name == spec.name) decl = &d;
    }
    if (decl == nullptr || (decl->memory.base == nullptr && decl->memory.layer_ptrs.empty())) {
        return pools::DevicePool::create(backend, spec, capacity, P);
    }
    const DeviceMemory& m = decl->memory;
    auto bad = [&](std::string what) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "pool '{}' (engine memory): {}",
                            spec.name, what);
    };
    const std::size_t slot_stride = m.slot_stride == 0 ? spec.row_bytes : m.slot_stride;
    if (slot_stride < spec.row_bytes) {
        return bad(fmt::format("slot stride {} is below the row's {} bytes (rows would overlap)",
                               slot_stride, spec.row_bytes));
    }
    const std::size_t rows_needed = (capacity + spec.tokens_per_row - 1) / spec.tokens_per_row;
    if (m.rows < rows_needed) {
        return bad(
            fmt::format("its memory holds {} rows; the cache needs {} (device tokens or "
                        "state slots divided by tokens per row)",
                        m.rows, rows_needed));
    }
    const std::size_t count = std::size_t{spec.num_buffers} * spec.num_layers;
    std::vector<std::byte*> ptrs;
    if (!m.layer_ptrs.empty()) {
        if (m.base != nullptr) return bad("give base or layer_ptrs, not both");
        if (m.layer_ptrs.size() != count) {
            return bad(fmt::format("{} layer pointers for {} buffers x {} layers",
                                   m.layer_ptrs.size(), spec.num_buffers, spec.num_layers));
        }
        for (void* p : m.layer_ptrs) {
            if (p == nullptr) return bad("a layer pointer is null");
            ptrs.push_back(static_cast<std::byte*>(p));
        }
    } else {
        const std::size_t layer_stride =
            m.layer_stride == 0 ? m.rows * slot_stride : m.layer_stride;
        const std::size_t buffer_stride =
            m.buffer_stride == 0 ? spec.num_layers * layer_stride : m.buffer_stride;
        STRATA_RETURN_IF_ERROR(
            checkDisjointRows(spec, m.rows, slot_stride, layer_stride, buffer_stride));
        auto* base = static_cast<std::byte*>(m.base);
        for (std::uint32_t b = 0; b < spec.num_buffers; ++b) {
            for (std::uint32_t l = 0; l < spec.num_layers; ++l) {
                ptrs.push_back(base + b * buffer_stride + l * layer_stride);
            }
        }
    }
    return pools::DevicePool::adopt(backend.kind(), spec, ptrs, capacity, P, slot_stride);
}

}  // namespace

Result<std::unique_ptr<Cache>> Cache::create(const CacheOptions& options,
                                             comm::DecisionGroup& group) {
    std::unique_ptr<Cache> cache(new Cache());
    cache->options_ = options;
    if (options.controller.storage.tp_size < 1 || options.controller.storage.tp_rank < 0 ||
        options.controller.storage.tp_rank >= options.controller.storage.tp_size) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "tp rank {} is outside a TP group of {}",
                            options.controller.storage.tp_rank, options.controller.storage.tp_size);
    }
    if (options.controller.storage.cp_size < 1 || options.controller.storage.cp_rank < 0 ||
        options.controller.storage.cp_rank >= options.controller.storage.cp_size) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "cp rank {} is outside a CP group of {}",
                            options.controller.storage.cp_rank, options.controller.storage.cp_size);
    }
    if (options.page_size == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "page size is 0");
    }
    STRATA_ASSIGN_OR_RETURN(cache->layout_, layoutOf(options));
    const pools::HybridLayout& layout = cache->layout_;
    std::vector<std::uint32_t> layout_space;  // per layout pool, logical anchor included
    STRATA_ASSIGN_OR_RETURN(cache->spaces_, spacesOf(layout, &layout_space));
    const bool hybrid =
        cache->spaces_.size() > 1 || layout.pools.front().spec.kind == pools::PoolKind::kLogical;
    if (hybrid && options.pipeline) {
        // A stage's layout would start at its first layer, in the middle of the layer pattern.
        return STRATA_ERROR(StatusCode::kNotSupported,
                            "model '{}' is a hybrid model: pipeline stages (pp > 1) are not "
                            "supported for it; run it with pp 1",
                            options.model);
    }
    if (options.remote_transport) {
        STRATA_RETURN_IF_ERROR(
            controller::remoteTierServes(options.model, cache->spaces_.size() > 1));
    }
    for (std::size_t i = 0; i < layout.pools.size(); ++i) {
        const pools::HybridPool& p = layout.pools[i];
        if (p.spec.kind == pools::PoolKind::kLogical) continue;  // no bytes: its space only
        cache->specs_.push_back(p.spec);
        cache->pool_space_.push_back(layout_space[i]);
        cache->layer_maps_.push_back(p.layer_map);
    }
    if (cache->specs_.empty()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "model '{}' has no pool with bytes",
                            options.model);
    }
    STRATA_ASSIGN_OR_RETURN(cache->backend_,
                            kernels::Backend::create(options.backend, options.backend_options));

    // The namespace is the same on every rank of a replica: it names the model and the shape of
    // every pool's rows, not the layer slice of a pipeline stage (tree keys must match across
    // stages; stored pages add the stage's layers to their keys). A non-hybrid model's signature
    // is what it was before hybrid layouts (stored pages of earlier jobs keep their keys).
    const std::uint32_t P = options.page_size;
    const std::size_t device_pages = options.device_tokens / P;
    const std::size_t state_slots = options.state_slots != 0
                                        ? options.state_slots
                                        : defaultStateSlots(options.device_tokens, P);
    const std::string signature = pools::layoutSignature(
        layout, static_cast<std::uint32_t>(options.controller.storage.cp_size));
    // Host bytes per token for sizing by bytes: every per-token pool's page, plus the state
    // pools' slots in their ratio to the device KV pages.
    std::size_t bytes_per_page = 0;
    double state_bytes_per_page = 0;
    for (const pools::HybridPool& p : layout.pools) {
        const pools::PoolSpec& s = p.spec;
        if (s.kind == pools::PoolKind::kLogical) continue;
        const std::size_t page_bytes = s.geometry(P).bytesPerPage();
        if (s.kind == pools::PoolKind::kMamba) {
            state_bytes_per_page += static_cast<double>(page_bytes) *
                                    static_cast<double>(state_slots) /
                                    static_cast<double>(std::max<std::size_t>(device_pages, 1));
        } else {
            bytes_per_page += page_bytes;
        }
    }
    const std::size_t bytes_per_token = static_cast<std::size_t>(std::ceil(
        (static_cast<double>(bytes_per_page) + state_bytes_per_page) / static_cast<double>(P)));
    STRATA_ASSIGN_OR_RETURN(
        std::size_t host_tokens,
        pools::hostCapacityTokens(options.host, options.device_tokens, bytes_per_token, P));
    // A request-state space's host slots keep the host/device page ratio of the main KV.
    const std::size_t host_state_slots = std::max<std::size_t>(
        1, static_cast<std::size_t>(static_cast<double>(state_slots) *
                                    static_cast<double>(host_tokens / P) /
                                    static_cast<double>(std::max<std::size_t>(device_pages, 1))));
    {
        // Zeroing pools of many GiB takes seconds: say what is coming before it starts.
        std::size_t device_bytes = 0, host_bytes = 0;
        for (std::size_t i = 0; i < cache->specs_.size(); ++i) {
            const std::size_t page_bytes = cache->specs_[i].geometry(P).bytesPerPage();
            const bool state = cache->spaces_[cache->pool_space_[i]].request_state;
            device_bytes += (state ? state_slots : device_pages) * page_bytes;
            host_bytes += (state ? host_state_slots : host_tokens / P) * page_bytes;
        }
        if (options.world_rank == 0) {
            core::logger("runtime").info(
                "allocating {:.2f} GiB of device pools ({}), {:.2f} GiB of host pools on each "
                "rank ({} device tokens, {} host tokens, {} pools)",
                static_cast<double>(device_bytes) / static_cast<double>(1ull << 30),
                kernels::backendKindName(cache->backend_->kind()),
                static_cast<double>(host_bytes) / static_cast<double>(1ull << 30),
                options.device_tokens, host_tokens, cache->specs_.size());
        }
    }
    const bool share = options.host_sharing == HostSharing::kNode;
    if (share && (options.host_sharing_job == nullptr || options.host_sharing_group == nullptr)) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "host sharing node needs the job's and the decision group's "
                            "communicators (CacheOptions::host_sharing_job, host_sharing_group)");
    }
    if (share && options.host_layout == kernels::HostLayout::kLayerFirst) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "host sharing node needs the page_first or page_first_direct host "
                            "layout (DP replicas copy each other's pages as one blob), not "
                            "layer_first");
    }
    if (options.host_sharing_job != nullptr && options.host_sharing_group != nullptr) {
        std::vector<NodeHostTier::PoolNeed> needs;
        for (std::size_t i = 0; i < cache->specs_.size(); ++i) {
            const bool state = cache->spaces_[cache->pool_space_[i]].request_state;
            needs.push_back({cache->specs_[i], state ? host_state_slots : host_tokens});
        }
        const auto& st = options.controller.storage;
        STRATA_ASSIGN_OR_RETURN(
            cache->node_tier_,
            NodeHostTier::create(share, *options.host_sharing_job, *options.host_sharing_group,
                                 *cache->backend_, needs, P, options.host_layout, st.tp_rank,
                                 st.cp_rank, st.cp_size, options.host_sharing_lease));
        cache->footprint_ = cache->node_tier_->footprint();
        if (share) cache->host_pools_ = cache->node_tier_->takePools();
    }
    for (std::size_t i = 0; i < cache->specs_.size(); ++i) {
        const pools::PoolSpec& s = cache->specs_[i];
        const bool state = cache->spaces_[cache->pool_space_[i]].request_state;
        const std::size_t capacity = state ? state_slots : options.device_tokens;
        STRATA_ASSIGN_OR_RETURN(auto dev, devicePoolOf(options, *cache->backend_, s, capacity));
        cache->device_pools_.push_back(std::move(dev));
        if (share) continue;  // adopted from the node's window above
        STRATA_ASSIGN_OR_RETURN(
            auto host,
            pools::HostPool::create(*cache->backend_, s, state ? host_state_slots : host_tokens, P,
                                    options.host_layout));
        cache->host_pools_.push_back(std::move(host));
    }
    if (!cache->node_tier_) {
        for (const pools::HostPool& h : cache->host_pools_) {
            cache->footprint_.bytes_this_rank += h.sizeBytes();
        }
    }
    const std::string stage_suffix =
        options.pipeline ? fmt::format("@L{}+{}", options.first_layer, layout.model_layers)
                         : std::string();
    if (!options.storage_dir.empty()) {
        for (std::size_t i = 0; i < cache->specs_.size(); ++i) {
            const auto& spec = cache->specs_[i];
            io::Hdf5StoreOptions so;
            so.directory = options.storage_dir;
            so.page_bytes = spec.geometry(P).bytesPerPage();
            so.pool_signature =
                fmt::format("{}-{}{}-{}B", options.model, spec.name, stage_suffix, so.page_bytes);
            so.capacity_pages = options.storage_capacity_pages;
            so.writer_id = options.world_rank;
            STRATA_ASSIGN_OR_RETURN(auto store, io::Hdf5PageStore::create(so));
            cache->stores_.push_back(std::move(store));
        }
    }
    if (options.remote_transport) {
        if (options.remote_group == nullptr) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "the remote tier needs its group (the ranks of the same shard)");
        }
        for (std::size_t i = 0; i < cache->specs_.size(); ++i) {
            io::RemoteStoreOptions ro;
            ro.channel = static_cast<std::uint16_t>(options.remote_channel_base + i);
            ro.timeout = options.remote_timeout;
            STRATA_ASSIGN_OR_RETURN(auto store, io::RemotePageStore::create(
                                                    options.remote_transport, *options.remote_group,
                                                    cache->host_pools_[i], ro));
            cache->remotes_.push_back(std::move(store));
        }
        // Every member's handlers are installed before any member publishes or looks up (a
        // message to a rank without its handler yet would be dropped and cost a timeout).
        STRATA_RETURN_IF_ERROR(options.remote_group->barrier());
    }
    if (share && !hybrid && cache->node_tier_->crossReplica()) {
        // The node's DP replicas first; the remote tier (other nodes) for what the node lacks.
        for (std::size_t i = 0; i < cache->specs_.size(); ++i) {
            STRATA_ASSIGN_OR_RETURN(
                auto store, cache->node_tier_->makeStore(
                                i, cache->host_pools_[i],
                                cache->remotes_.empty() ? nullptr : cache->remotes_[i].get()));
            cache->node_stores_.push_back(std::move(store));
        }
    } else if (share && options.world_rank == 0) {
        core::logger("runtime").info(
            "host sharing node: model '{}' is hybrid, so DP replicas do not serve each other's "
            "pages (the remote tier's rule); replicated pools are still stored once per node",
            options.model);
    }
    std::vector<controller::PoolPair> pairs;
    for (std::size_t i = 0; i < cache->specs_.size(); ++i) {
        controller::PoolPair pair;
        pair.device = &cache->device_pools_[i];
        pair.host = &cache->host_pools_[i];
        pair.store = cache->stores_.empty() ? nullptr : cache->stores_[i].get();
        pair.remote = !cache->node_stores_.empty()
                          ? static_cast<io::PageStore*>(cache->node_stores_[i].get())
                      : cache->remotes_.empty() ? nullptr
                                                : cache->remotes_[i].get();
        pair.host_writer = !cache->node_tier_ || cache->node_tier_->writer(i);
        pair.space = cache->pool_space_[i];
        pair.layer_map = cache->layer_maps_[i];
        pairs.push_back(std::move(pair));
    }
    STRATA_ASSIGN_OR_RETURN(
        cache->striped_, makeStripedLoader(options, *cache->backend_, &cache->striped_off_reason_));
    // The controller's policies and this rank's place come whole from the options; the Cache adds
    // what it built: the slot spaces, the striped loader and the stage's key suffix.
    controller::ControllerConfig cc = options.controller;
    cc.striped_loader = cache->striped_.get();
    cc.page_size = options.page_size;
    cc.spaces = cache->spaces_;
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

io::RemoteStoreStats Cache::remoteStats() const {
    io::RemoteStoreStats total;
    for (const auto& r : remotes_) {
        total.add(r->remoteStats());
    }
    return total;
}

io::NodeStoreStats Cache::nodeStats() const {
    io::NodeStoreStats total;
    for (const auto& n : node_stores_) total.add(n->nodeStats());
    return total;
}

comm::NodeIndexStats Cache::nodeIndexStats() const {
    return node_stores_.empty() ? comm::NodeIndexStats{} : node_stores_.front()->index().stats();
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
    auto admitted = controller_->admit(id, keys, tokens.size(), priority);
    if (admitted.isOk()) {
        const Admission& a = *admitted;
        ++token_stats_.requests;
        token_stats_.prompt_tokens += a.prompt_tokens;
        token_stats_.computed_tokens += a.computed_tokens;
        token_stats_.device_hit_tokens += a.device_hit_tokens;
        token_stats_.host_hit_tokens +=
            a.host_hit_tokens - a.storage_hit_tokens - a.remote_hit_tokens;
        token_stats_.storage_hit_tokens += a.storage_hit_tokens;
        token_stats_.remote_hit_tokens += a.remote_hit_tokens;
    }
    return admitted;
}

Status Cache::prefetch(RequestId id, std::span<const std::int32_t> tokens) {
    auto keys = keysFor(tokens);
    return controller_->prefetch(id, keys, tokens.size());
}

std::size_t Cache::hostCapacityTokens() const noexcept {
    return host_pools_.empty() ? 0 : host_pools_.front().capacityTokens();
}

}  // namespace strata::runtime
