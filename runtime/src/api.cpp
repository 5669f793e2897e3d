// The public API (strata/strata.hpp) over the internals: a Job holds MPI, the grid, the decision
// group and the remote transport; a public Cache holds a runtime::Cache made from its config.
#include <algorithm>
#include <optional>

#include "strata/config.h"

#include "strata/comm/callback_decision_group.h"
#include "strata/comm/grid.h"
#include "strata/comm/mpi_comm.h"
#include "strata/comm/mpi_context.h"
#include "strata/comm/mpi_decision_group.h"
#include "strata/comm/ucx/transport.h"
#include "strata/controller/cache_controller.h"
#include "strata/core/enum_names.h"
#include "strata/core/log.h"
#include "strata/kernels/backend.h"
#include "strata/runtime/cache.h"
#include "strata/strata.hpp"

namespace strata {

struct Job::Impl {
    comm::MpiComm world;
    std::unique_ptr<comm::Grid> grid;
    std::unique_ptr<comm::DecisionGroup> group;  // over MPI, or the engine's agree_min
    std::shared_ptr<comm::ucx::UcxTransport> transport;
    RankPlace place;

    ~Impl() {
        // Everything that uses MPI goes before MPI is finalised.
        transport.reset();
        group.reset();
        grid.reset();
        world.reset();
    }
};

namespace {

// MPI as a Job initialised it: kept until the process exits (this static's destruction finalises
// it), since MPI cannot be initialised twice in a process and the engine may make a later Job.
std::optional<comm::MpiContext>& processMpi() {
    static std::optional<comm::MpiContext> mpi;
    return mpi;
}

Status checkJobOptions(const JobOptions& o) {
    if (o.tp < 1 || o.cp < 1 || o.pp < 1) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "job: tp {}, cp {} and pp {} must each be at least 1", o.tp, o.cp,
                            o.pp);
    }
    if (o.gpus < 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "job: gpus {} is negative", o.gpus);
    }
    if (o.remote != "off" && o.remote != "on" && o.remote != "auto") {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "job: remote '{}' is not one of off, on, auto", o.remote);
    }
    if (!(o.round_timeout_s >= 0)) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "job: round_timeout_s {} must be 0 (none) or positive",
                            o.round_timeout_s);
    }
    spdlog::level::level_enum level;
    if (!core::parseLogLevel(o.log_level, &level)) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "job: log level '{}' is not one of trace, debug, info, warn, error, "
                            "off",
                            o.log_level);
    }
    STRATA_RETURN_IF_ERROR(comm::parseRoundTimeoutAction(o.on_round_timeout).status());
    if (o.agree_min) {
        if (o.pp != 1) {
            return STRATA_ERROR(StatusCode::kNotSupported,
                                "job: pp {} with agree_min (not an MPI job): pipeline stages "
                                "need MPI; use pp 1",
                                o.pp);
        }
        if (o.remote != "off") {
            return STRATA_ERROR(StatusCode::kNotSupported,
                                "job: remote '{}' with agree_min (not an MPI job): the remote "
                                "tier needs MPI; use remote 'off'",
                                o.remote);
        }
        if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "job: rank {} is outside a world of {} ranks (agree_min)", o.rank,
                                o.world_size);
        }
        if (o.local_rank < 0) {
            return STRATA_ERROR(StatusCode::kInvalidArgument, "job: local_rank {} is negative",
                                o.local_rank);
        }
    }
    return Status::ok();
}

// Not an MPI job: the place from rank, world_size, tp and cp, the group over agree_min.
Result<std::unique_ptr<Job::Impl>> callbackJob(const JobOptions& o) {
    STRATA_ASSIGN_OR_RETURN(comm::GridCoords c,
                            comm::gridCoords(o.rank, o.world_size, {o.tp, o.cp, 1}));
    auto impl = std::make_unique<Job::Impl>();
    impl->group =
        std::make_unique<comm::CallbackDecisionGroup>(o.agree_min, c.decision_rank, o.tp * o.cp);
    impl->place = {.world_rank = o.rank,
                   .world_size = o.world_size,
                   .tp_rank = c.tp_rank,
                   .tp_size = o.tp,
                   .cp_rank = c.cp_rank,
                   .cp_size = o.cp,
                   .pp_rank = 0,
                   .pp_size = 1,
                   .dp_rank = c.dp_rank,
                   .dp_size = c.dp_size,
                   .local_rank = o.local_rank,
                   .device = o.gpus > 0 ? o.local_rank % o.gpus : -1};
    return impl;
}

}  // namespace

Job::Job(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Job::~Job() = default;

const RankPlace& Job::place() const noexcept { return impl_->place; }
bool Job::remote() const noexcept { return impl_->transport != nullptr; }

Result<std::unique_ptr<Job>> Job::create(const JobOptions& options) {
    STRATA_RETURN_IF_ERROR(checkJobOptions(options));
    spdlog::level::level_enum level;
    if (core::parseLogLevel(options.log_level, &level)) core::setLogLevel(level);
    if (options.agree_min) {
        STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Impl> impl, callbackJob(options));
        core::setLogRank(options.rank);
        return std::unique_ptr<Job>(new Job(std::move(impl)));
    }
    auto impl = std::make_unique<Impl>();
    if (!comm::MpiContext::isActive()) {
        STRATA_ASSIGN_OR_RETURN(comm::MpiContext ctx, comm::MpiContext::create());
        processMpi().emplace(std::move(ctx));
    }
    if (options.mpi_comm < 0) {
        impl->world = comm::MpiComm::world();
    } else {
        STRATA_ASSIGN_OR_RETURN(impl->world, comm::MpiComm::fromFortran(options.mpi_comm));
    }
    core::setLogRank(impl->world.rank());
    STRATA_ASSIGN_OR_RETURN(
        comm::Grid grid,
        comm::Grid::create(impl->world, {options.tp, options.cp, options.pp}, options.gpus));
    impl->grid = std::make_unique<comm::Grid>(std::move(grid));
    comm::RoundWatchdogOptions watchdog;
    watchdog.timeout_s = options.round_timeout_s;
    STRATA_ASSIGN_OR_RETURN(watchdog.on_timeout,
                            comm::parseRoundTimeoutAction(options.on_round_timeout));
    if (options.round_timeout_s > 0) {
        watchdog.warn_interval_s = std::min(5.0, options.round_timeout_s);
    }
    STRATA_ASSIGN_OR_RETURN(comm::MpiDecisionGroup group,
                            comm::MpiDecisionGroup::create(*impl->grid, watchdog));
    impl->group = std::make_unique<comm::MpiDecisionGroup>(std::move(group));
    const comm::Grid& g = *impl->grid;
    impl->place = {.world_rank = g.worldRank(),
                   .world_size = g.worldSize(),
                   .tp_rank = g.tpRank(),
                   .tp_size = g.tpSize(),
                   .cp_rank = g.cpRank(),
                   .cp_size = g.cpSize(),
                   .pp_rank = g.ppRank(),
                   .pp_size = g.ppSize(),
                   .dp_rank = g.dpRank(),
                   .dp_size = g.dpSize(),
                   .local_rank = g.localRank(),
                   .device = g.device()};
    const bool remote = options.remote == "on" ||
                        (options.remote == "auto" && comm::ucx::available() && g.dpSize() > 1);
    if (remote) {
        // Without UCX in the build: kNotSupported, naming why.
        STRATA_ASSIGN_OR_RETURN(impl->transport, comm::ucx::UcxTransport::create(g.world()));
    }
    return std::unique_ptr<Job>(new Job(std::move(impl)));
}

struct Cache::Impl {
    Job& job;
    CacheConfig config;
    std::unique_ptr<runtime::Cache> cache;
    std::vector<PoolInfo> pools;
    std::uint64_t prompt_tokens = 0, cached_tokens = 0;
};

namespace {

Result<runtime::CacheOptions> optionsFor(const CacheConfig& c, const Job::Impl& job) {
    const RankPlace& place = job.place;
    runtime::CacheOptions o;
    o.model = c.model;
    o.pools = c.pools;
    o.layers = c.layers;
    o.page_size = c.page_size;
    o.device_tokens = c.device_tokens;
    o.state_slots = c.state_slots;
    o.host = {};
    if (c.host_ratio != 0) {
        o.host.ratio = c.host_ratio;
    } else {
        o.host.tokens = c.host_tokens;
    }
    STRATA_ASSIGN_OR_RETURN(o.backend, core::parseEnum<kernels::BackendKind>(c.backend));
    o.backend_options.device_index = std::max(0, place.device);
    STRATA_ASSIGN_OR_RETURN(o.controller.write_policy,
                            controller::parseWritePolicy(c.write_policy));
    STRATA_ASSIGN_OR_RETURN(o.controller.eviction_policy,
                            controller::parseEvictionPolicy(c.eviction));
    o.controller.check_consistency = c.check_consistency;
    STRATA_ASSIGN_OR_RETURN(o.controller.storage.prefetch_policy,
                            controller::parsePrefetchPolicy(c.prefetch_policy));
    o.controller.storage.prefetch_threshold_tokens = c.prefetch_threshold_tokens;
    o.controller.storage.timeout_base_ms = c.prefetch_timeout_ms;
    STRATA_ASSIGN_OR_RETURN(o.backend_options.tuning.path,
                            core::parseEnum<kernels::CopyPath>(c.copy_path));
    STRATA_ASSIGN_OR_RETURN(o.host_layout, core::parseEnum<kernels::HostLayout>(c.host_layout));
    o.controller.storage.tp_rank = place.tp_rank;
    o.controller.storage.tp_size = place.tp_size;
    o.controller.storage.cp_rank = place.cp_rank;
    o.controller.storage.cp_size = place.cp_size;
    o.world_rank = place.world_rank;
    o.tenant_salt = c.tenant_salt;
    o.storage_dir = c.storage_dir;
    o.storage_capacity_pages = c.storage_capacity_pages;
    if (place.pp_size > 1) {
        if (!c.pools.empty()) {
            return STRATA_ERROR(StatusCode::kNotSupported,
                                "cache: declared pools with pipeline stages (pp {}): declare "
                                "them on a job of pp 1",
                                place.pp_size);
        }
        // A preset's layers split over the stages as strata-run does; stored pages name the slice.
        STRATA_ASSIGN_OR_RETURN(const pools::ModelPreset* preset, pools::findModelPreset(c.model));
        const std::uint32_t total = c.layers != 0 ? c.layers : preset->num_layers;
        const auto pp = static_cast<std::uint32_t>(place.pp_size);
        const std::uint32_t per_stage = (total + pp - 1) / pp;
        o.first_layer = std::min(total, per_stage * static_cast<std::uint32_t>(place.pp_rank));
        o.layers = std::min(per_stage, total - o.first_layer);
        o.pipeline = true;
        if (o.layers == 0) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "cache: model '{}' has {} layers, too few for {} stages", c.model,
                                total, pp);
        }
    }
    o.remote_transport = job.transport;
    o.remote_group = job.transport ? &job.grid->dpComm() : nullptr;
    STRATA_ASSIGN_OR_RETURN(o.host_sharing, runtime::parseHostSharing(c.host_sharing));
    if (o.host_sharing == runtime::HostSharing::kNode) {
        if (!job.grid) {
            return STRATA_ERROR(StatusCode::kNotSupported,
                                "cache: host_sharing 'node' needs an MPI job (the node's ranks "
                                "share an MPI window); this job reduces over agree_min");
        }
        o.host_sharing_job = &job.grid->world();
        o.host_sharing_group = &job.grid->decisionComm();
    }
    return o;
}

}  // namespace

Cache::Cache(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Cache::~Cache() = default;

Result<std::unique_ptr<Cache>> Cache::create(Job& job, const CacheConfig& config) {
    STRATA_ASSIGN_OR_RETURN(runtime::CacheOptions options, optionsFor(config, job.impl()));
    STRATA_ASSIGN_OR_RETURN(std::unique_ptr<runtime::Cache> cache,
                            runtime::Cache::create(options, *job.impl().group));
    auto impl = std::unique_ptr<Impl>(new Impl{job, config, std::move(cache), {}});
    for (const pools::DevicePool& d : impl->cache->devicePools()) {
        const pools::PoolSpec& s = d.spec();
        PoolInfo info{s.name, s.num_layers, s.num_buffers, s.row_bytes, d.capacityRows(), {}};
        for (std::uint32_t b = 0; b < s.num_buffers; ++b) {
            for (std::uint32_t l = 0; l < s.num_layers; ++l) {
                info.layer_ptrs.push_back(d.row(b, l, 0));
            }
        }
        impl->pools.push_back(std::move(info));
    }
    return std::unique_ptr<Cache>(new Cache(std::move(impl)));
}

std::size_t Cache::matchTokens(std::span<const std::int32_t> tokens) {
    return impl_->cache->matchTokens(tokens);
}

Result<Admission> Cache::admit(RequestId id, std::span<const std::int32_t> tokens,
                               std::uint32_t priority) {
    STRATA_ASSIGN_OR_RETURN(controller::Admission a, impl_->cache->admit(id, tokens, priority));
    Admission out;
    out.prompt_tokens = a.prompt_tokens;
    out.cached_tokens = a.reusedTokens();
    out.device_hit_tokens = a.device_hit_tokens;
    out.host_hit_tokens = a.host_hit_tokens;
    out.storage_hit_tokens = a.storage_hit_tokens;
    out.remote_hit_tokens = a.remote_hit_tokens;
    out.pages = std::move(a.device_pages);
    runtime::Cache& c = *impl_->cache;
    for (std::size_t i = 0; i < c.devicePools().size(); ++i) {
        const controller::Admission::Space& s = a.spaces.at(c.poolSpace(i));
        out.pools.push_back({s.pages, s.state_page, s.branch_state_page, s.branch_pages});
    }
    impl_->prompt_tokens += out.prompt_tokens;
    impl_->cached_tokens += out.cached_tokens;
    return out;
}

Status Cache::prefetch(RequestId id, std::span<const std::int32_t> tokens) {
    return impl_->cache->prefetch(id, tokens);
}
bool Cache::prefetchSettled(RequestId id) const { return impl_->cache->prefetchSettled(id); }
Status Cache::launchLoads() { return impl_->cache->launchLoads(); }
Status Cache::waitLayer(RequestId id, std::uint32_t layer, void* cuda_stream) {
    return impl_->cache->waitLayer(id, layer, cuda_stream);
}
Status Cache::insert(RequestId id) { return impl_->cache->insert(id); }
Status Cache::insertAfter(RequestId id, void* cuda_stream) {
    return impl_->cache->insertAfter(id, cuda_stream);
}
Status Cache::release(RequestId id) { return impl_->cache->release(id); }
Status Cache::abort(RequestId id) { return impl_->cache->abort(id); }
Status Cache::step() { return impl_->cache->step(); }
Status Cache::drain() { return impl_->cache->drain(); }

const std::vector<PoolInfo>& Cache::pools() const noexcept { return impl_->pools; }
std::uint32_t Cache::pageSize() const noexcept { return impl_->config.page_size; }

CacheStats Cache::stats() const {
    const controller::ControllerStats& s = impl_->cache->controller().stats();
    CacheStats out;
    out.rounds = s.rounds;
    out.prompt_tokens = impl_->prompt_tokens;
    out.cached_tokens = impl_->cached_tokens;
    out.backup_pages = s.backup_pages;
    out.load_pages = s.load_pages;
    out.device_evicted_pages = s.device_evicted_pages;
    out.host_evicted_pages = s.host_evicted_pages;
    out.remote_pages_pulled = impl_->cache->remoteStats().pages_pulled;
    return out;
}

const char* version() noexcept { return STRATA_VERSION; }

}  // namespace strata
