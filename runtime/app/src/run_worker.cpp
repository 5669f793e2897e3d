#include "run_worker.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <span>
#include <string>

#include "strata/app/kv_pattern.h"
#include "strata/app/temp_storage.h"
#include "strata/core/enum_names.h"
#include "strata/core/hash.h"
#include "strata/core/log.h"
#include "strata/runtime/cache.h"

namespace strata::app {
namespace {

using runtime::Admission;
using runtime::Cache;
using runtime::CacheOptions;
using runtime::parseStripedLoads;
using runtime::RequestId;

using Clock = std::chrono::steady_clock;

Result<CacheOptions> cacheOptionsFor(const RunConfig& cfg, const RankPlace& place,
                                     std::uint32_t first_layer, std::uint32_t stage_layers) {
    CacheOptions o;
    o.model = cfg.model;
    o.layers = stage_layers;
    o.page_size = cfg.page_size;
    o.device_tokens = cfg.device_tokens;
    o.state_slots = cfg.state_slots;
    o.host = {};
    if (cfg.host_tokens > 0) {
        o.host.tokens = cfg.host_tokens;
    } else {
        o.host.ratio = cfg.host_ratio;
    }
    STRATA_ASSIGN_OR_RETURN(o.host_layout, kernels::parseHostLayout(cfg.host_layout));
    STRATA_ASSIGN_OR_RETURN(o.controller.write_policy,
                            controller::parseWritePolicy(cfg.write_policy));
    STRATA_ASSIGN_OR_RETURN(o.controller.eviction_policy,
                            controller::parseEvictionPolicy(cfg.eviction));
    if (cfg.backend == "auto") {
        o.backend = kernels::Backend::cudaAvailable() ? kernels::BackendKind::kCuda
                                                      : kernels::BackendKind::kCpu;
    } else {
        STRATA_ASSIGN_OR_RETURN(o.backend, core::parseEnum<kernels::BackendKind>(cfg.backend));
    }
    o.backend_options.device_index = std::max(0, place.device);
    o.backend_options.jitter_us = cfg.jitter_us;
    // Per-rank seed: ranks see their copies finish at different times.
    o.backend_options.jitter_seed =
        cfg.seed * 1000003u + static_cast<std::uint64_t>(place.world_rank);
    o.controller.load_back_threshold_tokens = cfg.load_back_threshold;
    o.controller.deterministic = cfg.deterministic;
    o.controller.check_consistency =
        false;  // done by the observer, which names the ranks that differ
    o.controller.storage.tp_rank = place.tp_rank;
    o.controller.storage.tp_size = place.tp_size;
    o.controller.storage.cp_rank = place.cp_rank;
    o.controller.storage.cp_size = place.cp_size;
    o.world_rank = place.world_rank;
    o.pipeline = place.pp_size > 1;
    o.first_layer = first_layer;  // names the stage's slice in stored pages
    if (!cfg.no_storage) {
        o.storage_dir = cfg.storage_dir;
        // The job's capacity is shared by its writers (every rank writes its share of pages).
        o.storage_capacity_pages = cfg.storage_tokens / cfg.page_size /
                                   static_cast<std::uint64_t>(std::max(1, place.world_size));
        if (cfg.storage_tokens > 0 && o.storage_capacity_pages == 0) o.storage_capacity_pages = 1;
    }
    STRATA_ASSIGN_OR_RETURN(o.controller.storage.prefetch_policy,
                            controller::parsePrefetchPolicy(cfg.prefetch_policy));
    o.remote_transport = place.remote_transport;
    o.remote_group = place.remote_group;
    o.remote_timeout = std::chrono::milliseconds(cfg.remote_timeout_ms);
    STRATA_ASSIGN_OR_RETURN(o.striped_loads, parseStripedLoads(cfg.striped_loads));
    o.striped_group = place.decision_comm;
    STRATA_ASSIGN_OR_RETURN(o.host_sharing, runtime::parseHostSharing(cfg.host_sharing));
    o.host_sharing_job = place.job_comm;
    o.host_sharing_group = place.job_comm != nullptr ? place.decision_comm : nullptr;
    return o;
}

// "progress: 120/400 requests (30%), 24.1 req/s, 98.2k tokens/s, hit rate 71.3% so far, ETA 12 s,
// round 95": this rank's figures so far.
std::string progressLine(const RunReport& r, std::size_t total, std::uint64_t round,
                         double seconds) {
    const double req_per_s = seconds > 0 ? static_cast<double>(r.requests) / seconds : 0.0;
    const double tokens_per_s = seconds > 0 ? static_cast<double>(r.prompt_tokens) / seconds : 0.0;
    const double hit = r.prompt_tokens == 0 ? 0.0
                                            : 100.0 * static_cast<double>(r.hit_tokens.total()) /
                                                  static_cast<double>(r.prompt_tokens);
    const std::string eta =
        req_per_s > 0 ? fmt::format("{:.0f} s", static_cast<double>(total - r.requests) / req_per_s)
                      : std::string("unknown");
    return fmt::format(
        "progress: {}/{} requests ({:.0f}%), {:.1f} req/s, {:.1f}k tokens/s, hit rate {:.1f}% so "
        "far, ETA {}, round {}",
        r.requests, total, total == 0 ? 100.0 : 100.0 * static_cast<double>(r.requests) / total,
        req_per_s, tokens_per_s / 1e3, hit, eta, round);
}

// "progress: 1520 requests (pass 3), 24.1 req/s, 98.2k tokens/s, hit rate 71.3% so far, 62 of 600
// s, round 1095": this rank's figures so far in a --duration-s run.
std::string timedProgressLine(const RunReport& r, std::uint64_t pass, std::uint64_t round,
                              double seconds, double duration_s) {
    const double req_per_s = seconds > 0 ? static_cast<double>(r.requests) / seconds : 0.0;
    const double tokens_per_s = seconds > 0 ? static_cast<double>(r.prompt_tokens) / seconds : 0.0;
    const double hit = r.prompt_tokens == 0 ? 0.0
                                            : 100.0 * static_cast<double>(r.hit_tokens.total()) /
                                                  static_cast<double>(r.prompt_tokens);
    return fmt::format(
        "progress: {} requests (pass {}), {:.1f} req/s, {:.1f}k tokens/s, hit rate {:.1f}% so far, "
        "{:.0f} of {:.0f} s, round {}",
        r.requests, pass + 1, req_per_s, tokens_per_s / 1e3, hit, seconds, duration_s, round);
}

// What one request's verification found in each pool, per reused page.
enum class PageCheck : std::uint8_t { kUnchecked, kOk, kBad };

// Reads and writes the rows of one request on this rank, pool by pool, one (page, buffer, layer)
// run of rows at a time: in place on the CPU back end, through a staging buffer when device memory
// is not host-addressable. A row's bytes are those of kv_pattern.h for the digest of the last token
// it covers (a compressed row covers tokens_per_row tokens; a state row the whole prefix up to the
// end of its page), the model layer, the pool's index and this rank's shard.
class KvAccess {
public:
    KvAccess(Cache& cache, const RankPlace& place, std::uint32_t first_layer)
        : cache_(cache), first_layer_(first_layer), page_size_(cache.options().page_size) {
        std::size_t staging = 0;
        by_layer_.resize(cache.numLayers());
        for (std::size_t i = 0; i < cache.poolSpecs().size(); ++i) {
            const pools::PoolSpec& s = cache.poolSpecs()[i];
            const controller::SlotSpace& space = cache.spaces().at(cache.poolSpace(i));
            Pool p;
            p.index = static_cast<std::uint32_t>(i);
            p.space = cache.poolSpace(i);
            p.state = space.request_state;
            p.window = p.space != 0 && !p.state;
            p.window_pages = space.trailing_pages;
            p.rows_per_page = s.rowsPerPage(page_size_);
            p.tokens_per_row = p.state ? page_size_ : std::max<std::uint32_t>(1, s.tokens_per_row);
            p.shard = s.sharded_across_tp ? static_cast<std::uint32_t>(place.tp_rank) : 0u;
            pools_.push_back(p);
            const auto& map = cache.poolLayerMap(i);
            for (std::uint32_t j = 0; j < s.num_layers; ++j) {
                const std::uint32_t model_layer = map.empty() ? j : map.at(j);
                by_layer_.at(model_layer).push_back({p.index, j});
            }
            staging = std::max(staging, s.row_bytes * p.rows_per_page);
        }
        staging_.resize(staging);
    }

    std::size_t numPools() const noexcept { return pools_.size(); }

    // Model layer `layer` of request `id`: verifies what every pool with that layer must hold of
    // the reused prefix (marking each pool's pages in checks[pool][page]) and writes what the
    // request computes. kInternal when the admission lacks pages the request must write (a
    // controller bug: its rows cannot be written).
    Status layer(RequestId id, const Admission& a, const PrefixDigests& d, std::uint32_t layer,
                 std::vector<std::vector<PageCheck>>* checks) {
        const std::size_t P = page_size_;
        const std::size_t reused = a.reusedTokens();
        const std::size_t u = reused / P;
        const std::size_t full = a.prompt_tokens / P;
        const std::size_t pages = (a.prompt_tokens + P - 1) / P;
        for (const auto& [pool_index, pool_layer] : by_layer_.at(layer)) {
            const Pool& pool = pools_[pool_index];
            auto& check = (*checks)[pool_index];
            if (pool.state) {
                STRATA_ASSIGN_OR_RETURN(const controller::Admission::Space* space,
                                        spaceOf(id, a, pool));
                const std::uint32_t slot = space->state_page;
                if (slot == controller::kNoPage) {
                    if (u > 0) mark(id, pool, u - 1, slot, layer, false, check, "no state slot");
                    if (full > u) {
                        return STRATA_ERROR(StatusCode::kInternal,
                                            "request {}: the admission has no state slot in "
                                            "space '{}' (controller bug)",
                                            id, spaceName(pool));
                    }
                    continue;
                }
                // The working slot holds the state at the end of the reused prefix; the request
                // leaves in it the state at the end of its last full page.
                if (u > 0) {
                    STRATA_ASSIGN_OR_RETURN(bool ok, stateRow(pool, pool_layer, layer, slot,
                                                              d.at(u * P - 1), /*write=*/false));
                    mark(id, pool, u - 1, slot, layer, ok, check, "state");
                }
                if (full > u) {
                    STRATA_RETURN_IF_ERROR(
                        stateRow(pool, pool_layer, layer, slot, d.at(full * P - 1), /*write=*/true)
                            .status());
                }
                // Where the tree's match ended without a state (a branch point), the state there
                // too, into the slot the controller gave for it.
                if (space->branch_state_page != controller::kNoPage) {
                    STRATA_RETURN_IF_ERROR(stateRow(pool, pool_layer, layer,
                                                    space->branch_state_page,
                                                    d.at(space->branch_pages * P - 1),
                                                    /*write=*/true)
                                               .status());
                }
                continue;
            }
            std::span<const std::uint32_t> device_pages = a.device_pages;
            if (pool.space != 0) {
                STRATA_ASSIGN_OR_RETURN(const controller::Admission::Space* space,
                                        spaceOf(id, a, pool));
                device_pages = space->pages;
            }
            if (device_pages.size() < pages) {
                return STRATA_ERROR(StatusCode::kInternal,
                                    "request {}: {} pages of space '{}' for a prompt of {} pages "
                                    "(controller bug)",
                                    id, device_pages.size(), spaceName(pool), pages);
            }
            // The reused prefix: every page, or the trailing window of a window space.
            const std::size_t first =
                pool.window && u > pool.window_pages ? u - pool.window_pages : 0;
            for (std::size_t p = first; p < u; ++p) {
                if (device_pages[p] == controller::kNoPage) {
                    mark(id, pool, p, device_pages[p], layer, false, check,
                         "no page inside the window (controller bug)");
                    continue;
                }
                STRATA_ASSIGN_OR_RETURN(
                    bool ok, pageRows(pool, pool_layer, layer, device_pages[p], p, d, p * P,
                                      (p + 1) * P, /*write=*/false));
                mark(id, pool, p, device_pages[p], layer, ok, check, "rows");
            }
            for (std::size_t p = u; p < pages; ++p) {
                if (device_pages[p] == controller::kNoPage) {
                    return STRATA_ERROR(StatusCode::kInternal,
                                        "request {}: computed page {} has no page of space '{}' "
                                        "(controller bug)",
                                        id, p, spaceName(pool));
                }
                STRATA_RETURN_IF_ERROR(pageRows(pool, pool_layer, layer, device_pages[p], p, d,
                                                std::max(reused, p * P),
                                                std::min(a.prompt_tokens, (p + 1) * P),
                                                /*write=*/true)
                                           .status());
            }
        }
        return Status::ok();
    }

private:
    struct Pool {
        std::uint32_t index = 0;  // into the cache's pools; the pattern's pool index
        std::uint32_t space = 0;
        bool state = false;   // a request-state space: one row per layer in the working slot
        bool window = false;  // a trailing-window space: verified inside the window only
        std::uint32_t window_pages = 0;
        std::uint32_t rows_per_page = 0;
        std::uint32_t tokens_per_row = 1;
        std::uint32_t shard = 0;
    };
    struct PoolLayer {
        std::uint32_t pool = 0;
        std::uint32_t layer = 0;  // the pool's own layer index
    };

    const std::string& spaceName(const Pool& pool) const {
        return cache_.spaces().at(pool.space).name;
    }

    Result<const controller::Admission::Space*> spaceOf(RequestId id, const Admission& a,
                                                        const Pool& pool) const {
        if (pool.space >= a.spaces.size()) {
            return STRATA_ERROR(StatusCode::kInternal,
                                "request {}: the admission lists {} slot spaces, the model has "
                                "{} (controller bug)",
                                id, a.spaces.size(), cache_.spaces().size());
        }
        return &a.spaces[pool.space];
    }

    void mark(RequestId id, const Pool& pool, std::size_t page, std::uint32_t device_page,
              std::uint32_t layer, bool ok, std::vector<PageCheck>& check, const char* what) {
        PageCheck& c = check.at(page);
        if (ok) {
            if (c == PageCheck::kUnchecked) c = PageCheck::kOk;
            return;
        }
        if (c != PageCheck::kBad) {
            core::logger("runtime").error(
                "request {}: page {} of pool '{}' (space '{}', device page {}) failed "
                "verification at layer {}: {}",
                id, page, cache_.poolSpecs()[pool.index].name, spaceName(pool),
                device_page == controller::kNoPage ? std::string("none")
                                                   : std::to_string(device_page),
                first_layer_ + layer, what);
        }
        c = PageCheck::kBad;
    }

    // A device span of `count` rows from `first_row` of (buffer, pool layer), staged when the
    // device is not host-addressable (read first unless only written).
    Result<std::span<std::byte>> rows(const pools::DevicePool& dp, std::uint32_t buffer,
                                      std::uint32_t pool_layer, std::size_t first_row,
                                      std::size_t count, bool read) {
        std::byte* dev = dp.row(buffer, pool_layer, first_row);
        const std::size_t bytes = count * dp.spec().row_bytes;
        if (cache_.backend().deviceIsHostAddressable()) return std::span<std::byte>(dev, bytes);
        std::span<std::byte> staged(staging_.data(), bytes);
        if (read) {
            STRATA_RETURN_IF_ERROR(cache_.backend().copyFromDevice(staged.data(), dev, bytes));
        }
        return staged;
    }

    Status writeBack(const pools::DevicePool& dp, std::uint32_t buffer, std::uint32_t pool_layer,
                     std::size_t first_row, std::span<const std::byte> staged) {
        if (cache_.backend().deviceIsHostAddressable()) return Status::ok();
        return cache_.backend().copyToDevice(dp.row(buffer, pool_layer, first_row), staged.data(),
                                             staged.size());
    }

    // Verifies or writes the rows of prompt page `page` (device page `device_page`) whose last
    // token lies in [from, to). Returns whether every verified row matched.
    Result<bool> pageRows(const Pool& pool, std::uint32_t pool_layer, std::uint32_t layer,
                          std::uint32_t device_page, std::size_t page, const PrefixDigests& d,
                          std::size_t from, std::size_t to, bool write) {
        const pools::DevicePool& dp = cache_.devicePools()[pool.index];
        const std::size_t R = pool.rows_per_page;
        const std::size_t ratio = pool.tokens_per_row;
        const std::size_t page_first = page * page_size_;
        // Row r covers tokens [page_first + r * ratio, page_first + (r + 1) * ratio).
        std::size_t r_begin = R, r_end = 0;
        for (std::size_t r = 0; r < R; ++r) {
            const std::size_t last = page_first + (r + 1) * ratio - 1;
            if (last >= from && last < to) {
                r_begin = std::min(r_begin, r);
                r_end = r + 1;
            }
        }
        if (r_begin >= r_end) return true;
        const std::size_t row_bytes = dp.spec().row_bytes;
        const std::size_t first_row = static_cast<std::size_t>(device_page) * R + r_begin;
        bool ok = true;
        for (std::uint32_t b = 0; b < dp.spec().num_buffers; ++b) {
            STRATA_ASSIGN_OR_RETURN(std::span<std::byte> span,
                                    rows(dp, b, pool_layer, first_row, r_end - r_begin, !write));
            for (std::size_t r = r_begin; r < r_end; ++r) {
                auto row = span.subspan((r - r_begin) * row_bytes, row_bytes);
                const std::uint64_t digest = d.at(page_first + (r + 1) * ratio - 1);
                if (write) {
                    fillRow(row, digest, first_layer_ + layer, pool.index, pool.shard, b);
                } else if (!verifyRow(row, digest, first_layer_ + layer, pool.index, pool.shard,
                                      b)) {
                    ok = false;
                }
            }
            if (write) STRATA_RETURN_IF_ERROR(writeBack(dp, b, pool_layer, first_row, span));
        }
        return ok;
    }

    // Verifies or writes the state row of one layer in device slot `slot`.
    Result<bool> stateRow(const Pool& pool, std::uint32_t pool_layer, std::uint32_t layer,
                          std::uint32_t slot, std::uint64_t digest, bool write) {
        const pools::DevicePool& dp = cache_.devicePools()[pool.index];
        bool ok = true;
        for (std::uint32_t b = 0; b < dp.spec().num_buffers; ++b) {
            STRATA_ASSIGN_OR_RETURN(std::span<std::byte> row,
                                    rows(dp, b, pool_layer, slot, 1, !write));
            if (write) {
                fillRow(row, digest, first_layer_ + layer, pool.index, pool.shard, b);
                STRATA_RETURN_IF_ERROR(writeBack(dp, b, pool_layer, slot, row));
            } else if (!verifyRow(row, digest, first_layer_ + layer, pool.index, pool.shard, b)) {
                ok = false;
            }
        }
        return ok;
    }

    Cache& cache_;
    std::uint32_t first_layer_;
    std::uint32_t page_size_;
    std::vector<Pool> pools_;
    std::vector<std::vector<PoolLayer>> by_layer_;  // per model layer: the pools that have it
    std::vector<std::byte> staging_;
};

// Publishes a snapshot of the Cache to the place's registry, if it has one.
// The Cache's figures plus strata-run's own verification counts (this rank's, so far).
Status publishMetrics(const RankPlace& place, Cache& cache, const RunReport& report) {
    if (place.metrics == nullptr) return Status::ok();
    const runtime::AgreementFigures agreement =
        place.agreement ? place.agreement() : runtime::AgreementFigures{};
    auto families = runtime::cacheMetrics(cache, place.metrics_labels, agreement);
    families.push_back({"strata_run_verified_pages_total",
                        runtime::MetricType::kCounter,
                        "reused pages strata-run compared byte for byte and found exact",
                        {{place.metrics_labels, static_cast<double>(report.pages_verified), ""}}});
    families.push_back(
        {"strata_run_mismatched_pages_total",
         runtime::MetricType::kCounter,
         "reused pages strata-run found different from what was computed",
         {{place.metrics_labels, static_cast<double>(report.pages_mismatched), ""}}});
    return place.metrics->publish(std::move(families));
}

}  // namespace

Result<RunReport> runWorker(const RunConfig& cfg, const RankPlace& place,
                            const std::vector<RequestSpec>& requests, comm::DecisionGroup& group,
                            RoundObserver* observer) {
    auto& log = core::logger("runtime");
    // Pipeline stages split the model's layers evenly; each stage keeps its own slice.
    STRATA_ASSIGN_OR_RETURN(auto full_layout,
                            pools::hybridLayout(cfg.model, cfg.layers, 1, cfg.page_size));
    const std::uint32_t total_layers = full_layout.model_layers;
    if (static_cast<std::uint32_t>(place.pp_size) > total_layers) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "{} pipeline stages for {} layers",
                            place.pp_size, total_layers);
    }
    const std::uint32_t per_stage = (total_layers + place.pp_size - 1) / place.pp_size;
    const std::uint32_t first_layer = per_stage * static_cast<std::uint32_t>(place.pp_rank);
    const std::uint32_t stage_layers = std::min(per_stage, total_layers - first_layer);

    STRATA_ASSIGN_OR_RETURN(CacheOptions options,
                            cacheOptionsFor(cfg, place, first_layer, stage_layers));
    STRATA_ASSIGN_OR_RETURN(auto cache, Cache::create(options, group));
    KvAccess kv(*cache, place, first_layer);
    const std::size_t P = cfg.page_size;
    bool has_state = false;
    for (const auto& space : cache->spaces()) has_state = has_state || space.request_state;
    const std::uint32_t layers = cache->numLayers();

    RunReport report;
    report.striped.enabled = cache->stripedLoads();
    report.striped.off_reason = cache->stripedOffReason();
    if (place.world_rank == 0) {
        if (cache->stripedLoads()) {
            log.info("striped loads on: replicated pools load over NCCL across {} ranks",
                     group.size());
        } else if (!cache->stripedOffReason().empty()) {
            log.info("striped loads off: {}", cache->stripedOffReason());
        }
    }
    report.backend = std::string(kernels::backendKindName(cache->backend().kind()));
    report.model = cfg.model;
    report.workload = cfg.workload;
    for (const auto& s : cache->poolSpecs()) {
        report.pools.push_back({s.name, std::string(pools::poolKindName(s.kind)), 0, 0});
    }

    STRATA_RETURN_IF_ERROR(publishMetrics(place, *cache, report));
    auto last_metrics = Clock::now();
    runtime::KvEventPublisher* events = place.kv_events;
    if (events != nullptr) cache->controller().setEventSink(events->sink());

    std::deque<std::size_t> pending;
    for (std::size_t i = 0; i < requests.size(); ++i) pending.push_back(i);
    std::size_t prefetched = 0;  // requests [0, prefetched) have had prefetch() called
    const auto t0 = Clock::now();
    auto last_progress = t0;
    std::uint64_t round = 0;
    report.requests_planned = requests.size();
    // --duration-s: the list is served in passes; `pass_requests` is the current pass's copy
    // (fresh ids, tokens salted by pass / 2) from the second pass on.
    const bool timed = cfg.duration_s > 0;
    std::uint64_t pass = 0;
    std::vector<RequestSpec> pass_requests;
    const std::vector<RequestSpec>* current = &requests;
    // From here a terminating signal asks for a clean stop (temp_storage.h): every rank of the
    // group stops at the same round, since the flag rides in the round's agreement (Cache::step:
    // MAX over the group and down the PP chain) whether this rank got the signal or a peer did;
    // other replicas learn of it through the stop notice, each stopping at its own next round.
    armCleanStop(kCleanStopBoundSeconds);
    while (!pending.empty() || timed) {
        int stop_signal = stopSignal();
        if (place.stop_notice != nullptr) {  // other replicas: tell them, hear from them
            STRATA_RETURN_IF_ERROR(place.stop_notice->notify(stop_signal));
            STRATA_ASSIGN_OR_RETURN(const int heard, place.stop_notice->poll());
            stop_signal = std::max(stop_signal, heard);
        }
        // Agreed (MAX) in the round's own agreement: the signal in the upper bits, "this rank has
        // run for --duration-s" in bit 0 (so a signal anywhere wins, and the duration counts once
        // any rank of the group has reached it).
        const bool time_up =
            timed && std::chrono::duration<double>(Clock::now() - t0).count() >= cfg.duration_s;
        std::int64_t stop = std::int64_t{stop_signal} * 2 + (time_up ? 1 : 0);
        STRATA_RETURN_IF_ERROR(cache->step(&stop));
        if (events != nullptr) STRATA_RETURN_IF_ERROR(events->flush());
        if (observer) {
            STRATA_RETURN_IF_ERROR(observer->afterStep(round, cache->controller().stateDigest()));
        }
        ++round;
        if (stop == 1) {  // --duration-s reached; no signal: a normal end
            if (place.world_rank == 0) {
                log.info(
                    "stopping after round {}: ran for --duration-s {} s, {} requests in {} "
                    "pass(es); draining copies",
                    round, cfg.duration_s, report.requests, pass + 1);
            }
            report.requests_planned = report.requests;
            break;
        }
        stop /= 2;
        if (stop != 0) {
            report.interrupt_signal = static_cast<int>(stop);
            if (place.world_rank == 0) {
                log.warn("stopping after round {} on {}: {} of {} requests done; draining copies",
                         round, strsignal(report.interrupt_signal), report.requests,
                         requests.size());
            }
            break;
        }
        struct Live {
            const RequestSpec* spec;
            Admission admission;
            PrefixDigests digests;
        };
        if (pending.empty()) {  // --duration-s: the next pass over the list (same on every rank)
            ++pass;
            const std::uint64_t n = requests.size();
            const auto salt = static_cast<std::int32_t>(((pass / 2) * 0x9E3779B1ull) & 0x7fffffff);
            pass_requests = requests;
            for (RequestSpec& r : pass_requests) {
                r.id += pass * n;
                for (std::int32_t& t : r.tokens) t ^= salt;
            }
            current = &pass_requests;
            for (std::size_t i = 0; i < n; ++i) pending.push_back(i);
            prefetched = 0;
        }
        const std::vector<RequestSpec>& list = *current;
        // Requests about to be admitted look for their prefix in the remote and storage tiers.
        if (cache->hasStorage() || cache->hasRemote() || cache->hasNodeStores()) {
            const std::size_t horizon = std::min(
                list.size(), pending.empty() ? list.size() : pending.front() + 2 * cfg.batch);
            for (; prefetched < horizon; ++prefetched) {
                STRATA_RETURN_IF_ERROR(
                    cache->prefetch(list[prefetched].id, list[prefetched].tokens));
            }
        }
        std::vector<Live> batch;
        while (batch.size() < cfg.batch && !pending.empty()) {
            const RequestSpec& spec = list[pending.front()];
            if (!cache->prefetchSettled(spec.id)) break;  // waits for its prefetch (policy)
            auto r = cache->admit(
                spec.id, spec.tokens,
                requestPriority(firstPageDigest(spec.tokens, cfg.page_size), cfg.priority_levels));
            if (!r.isOk()) {
                if (r.status().code() != StatusCode::kResourceExhausted) return r.status();
                if (batch.empty() && cache->controller().inflightOps() == 0) {
                    return STRATA_ERROR(StatusCode::kResourceExhausted,
                                        "request {} ({} tokens) does not fit the device pool of "
                                        "{} tokens even when empty; raise --device-tokens{}",
                                        spec.id, spec.tokens.size(), cfg.device_tokens,
                                        has_state ? " or --state-slots" : "");
                }
                break;  // retried next round, once copies in flight have released their pages
            }
            if (events != nullptr) events->noteRequest(spec.id, spec.tokens);
            batch.push_back({&spec, std::move(r).value(), PrefixDigests(spec.tokens)});
            pending.pop_front();
        }
        STRATA_RETURN_IF_ERROR(cache->launchLoads());
        if (batch.empty()) {
            // Nothing fits until copies in flight release their pages: wait for the oldest.
            STRATA_RETURN_IF_ERROR(cache->controller().waitForProgress());
        }
        for (Live& live : batch) {
            const Admission& a = live.admission;
            const std::size_t reused_pages = a.reusedTokens() / P;
            std::vector<std::vector<PageCheck>> checks(
                kv.numPools(), std::vector<PageCheck>(reused_pages, PageCheck::kUnchecked));
            // Layer by layer, as a model's forward pass would: wait for layer L, read it, compute.
            for (std::uint32_t l = 0; l < layers; ++l) {
                const auto wait_start = Clock::now();
                STRATA_RETURN_IF_ERROR(cache->waitLayer(live.spec->id, l));
                report.load_wait_seconds +=
                    std::chrono::duration<double>(Clock::now() - wait_start).count();
                STRATA_RETURN_IF_ERROR(kv.layer(live.spec->id, a, live.digests, l, &checks));
            }
            // A reused page is verified when no pool failed on it (a window or state pool checks
            // only the pages its hit policy keeps); each pool counts the pages it checked.
            for (std::size_t p = 0; p < reused_pages; ++p) {
                bool ok = true;
                for (std::size_t pool = 0; pool < checks.size(); ++pool) {
                    PoolVerification& pv = report.pools[pool];
                    if (checks[pool][p] == PageCheck::kOk) ++pv.pages_verified;
                    if (checks[pool][p] == PageCheck::kBad) {
                        ++pv.pages_mismatched;
                        ok = false;
                    }
                }
                ++(ok ? report.pages_verified : report.pages_mismatched);
            }
            report.prompt_tokens += a.prompt_tokens;
            report.computed_tokens += a.computed_tokens;
            report.hit_tokens.device += a.device_hit_tokens;
            report.hit_tokens.host +=
                a.host_hit_tokens - a.storage_hit_tokens - a.remote_hit_tokens;
            report.hit_tokens.remote += a.remote_hit_tokens;
            report.hit_tokens.storage += a.storage_hit_tokens;
            STRATA_RETURN_IF_ERROR(cache->insert(live.spec->id));
            STRATA_RETURN_IF_ERROR(cache->release(live.spec->id));
            if (events != nullptr) events->forgetRequest(live.spec->id);
            ++report.requests;
        }
        if (place.metrics != nullptr && Clock::now() - last_metrics >= kMetricsSnapshotInterval) {
            last_metrics = Clock::now();
            STRATA_RETURN_IF_ERROR(publishMetrics(place, *cache, report));
        }
        if (place.world_rank == 0 && cfg.progress_s > 0 &&
            std::chrono::duration<double>(Clock::now() - last_progress).count() > cfg.progress_s) {
            last_progress = Clock::now();
            const double seconds = std::chrono::duration<double>(last_progress - t0).count();
            log.info("{}", timed ? timedProgressLine(report, pass, round, seconds, cfg.duration_s)
                                 : progressLine(report, requests.size(), round, seconds));
        }
    }
    STRATA_RETURN_IF_ERROR(cache->drain());
    if (events != nullptr) {
        STRATA_RETURN_IF_ERROR(events->flush());
        cache->controller().setEventSink({});
        const runtime::KvEventCounts& c = events->counts();
        report.kv_events = {
            true,      1,        c.batches, c.events,        c.dropped_batches, c.dropped_events,
            c.cleared, c.stored, c.removed, c.stored_events, c.removed_events};
    }
    if (observer) {
        STRATA_RETURN_IF_ERROR(observer->afterStep(round, cache->controller().stateDigest()));
    }
    STRATA_RETURN_IF_ERROR(cache->controller().checkInvariants());
    STRATA_RETURN_IF_ERROR(publishMetrics(place, *cache, report));  // the final figures

    const auto& st = cache->controller().stats();
    report.rounds = st.rounds;
    report.d2h = {st.backup_bytes, st.backup_busy_seconds, st.backup_pages, st.backup_seconds};
    report.h2d = {st.load_bytes, st.load_busy_seconds, st.load_pages, st.load_seconds};
    report.backups = st.backup_ops;
    report.loads = st.load_ops;
    report.striped.pages = st.striped_pages;
    report.striped.bytes = st.striped_bytes;
    report.evictions.device_pages = st.device_evicted_pages;
    report.evictions.host_pages = st.host_evicted_pages;
    report.write_back_pages = st.write_back_pages;
    report.dropped_pages = st.dropped_pages;
    report.rejected_admissions = st.rejected_admissions;
    report.elapsed_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    const io::StoreStats ss = cache->storageStats();
    report.storage.pages_written = ss.pages_written;
    report.storage.pages_read = ss.pages_read;
    report.storage.checksum_failures = ss.checksum_failures;
    {
        const runtime::HostFootprint& fp = cache->hostFootprint();
        report.host.sharing = fp.node_sharing ? "node" : "off";
        report.host.bytes_per_node = fp.bytes_per_node;
        report.host.bytes_per_node_unshared = fp.bytes_per_node_unshared;
        report.host.copies_per_replicated_page = fp.copies_per_replicated_page;
        if (cache->hasNodeStores()) {
            const io::NodeStoreStats ns = cache->nodeStats();
            report.host.cross_replica_hit_pages = ns.pages_served;
            report.host.cross_replica_hit_bytes = ns.bytes_served;
            report.host.cross_replica_seconds = ns.copy_seconds;
            report.host.pages_published = ns.pages_published;
            report.host.checksum_failures = ns.checksum_failures;
            report.host.retract_waits = cache->nodeIndexStats().retract_waits;
            report.host.expired_leases = cache->nodeIndexStats().expired_leases;
        }
    }
    if (cache->hasRemote()) {
        const io::RemoteStoreStats rs = cache->remoteStats();
        report.remote.enabled = true;
        report.remote.pages_pulled = rs.pages_pulled;
        report.remote.bytes = rs.bytes_pulled;
        report.remote.pages_published = rs.pages_published;
        report.remote.checksum_failures = rs.checksum_failures;
        report.remote.rejected_messages = rs.rejected_messages;
        report.remote.timeouts = rs.timeouts;
        report.remote.pull_seconds = rs.pull_seconds;
        // Peers may still be pulling from this rank's host pools: every rank of the group is done
        // with its requests before any unregisters its pools.
        STRATA_RETURN_IF_ERROR(place.remote_group->barrier());
    }
    return report;
}

}  // namespace strata::app
