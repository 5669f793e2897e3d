#include "run_worker.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <span>

#include "strata/core/hash.h"
#include "strata/core/log.h"
#include "strata/runtime/cache.h"
#include "strata/runtime/kv_pattern.h"

namespace strata::runtime {
namespace {

// A request's priority under --eviction priority: a hash of its first page of tokens modulo
// --priority-levels, so requests that share a system prompt (or a trace's first block) share a
// priority, as the requests of one tenant would. The same on every rank.
std::uint32_t requestPriority(std::span<const std::int32_t> tokens, std::uint32_t page_size,
                              std::uint32_t levels) {
    if (levels <= 1 || tokens.empty()) return 0;
    const std::size_t n = std::min<std::size_t>(page_size, tokens.size());
    return static_cast<std::uint32_t>(core::checksum64(tokens.data(), n * sizeof(std::int32_t)) %
                                      levels);
}

using Clock = std::chrono::steady_clock;

Result<CacheOptions> cacheOptionsFor(const RunConfig& cfg, const RankPlace& place,
                                     std::uint32_t stage_layers) {
    CacheOptions o;
    o.model = cfg.model;
    o.layers = stage_layers;
    o.page_size = cfg.page_size;
    o.device_tokens = cfg.device_tokens;
    o.host = {};
    if (cfg.host_tokens > 0) {
        o.host.tokens = cfg.host_tokens;
    } else {
        o.host.ratio = cfg.host_ratio;
    }
    STRATA_ASSIGN_OR_RETURN(o.host_layout, kernels::parseHostLayout(cfg.host_layout));
    STRATA_ASSIGN_OR_RETURN(o.write_policy, controller::parseWritePolicy(cfg.write_policy));
    STRATA_ASSIGN_OR_RETURN(o.eviction, controller::parseEvictionPolicy(cfg.eviction));
    if (cfg.backend == "cpu") {
        o.backend = kernels::BackendKind::kCpu;
    } else if (cfg.backend == "cuda") {
        o.backend = kernels::BackendKind::kCuda;
    } else if (cfg.backend == "auto") {
        o.backend = kernels::Backend::cudaAvailable() ? kernels::BackendKind::kCuda
                                                      : kernels::BackendKind::kCpu;
    } else {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "backend '{}' is not one of auto, cpu, cuda", cfg.backend);
    }
    o.backend_options.device_index = std::max(0, place.device);
    o.backend_options.jitter_us = cfg.jitter_us;
    // Per-rank seed: ranks see their copies finish at different times.
    o.backend_options.jitter_seed =
        cfg.seed * 1000003u + static_cast<std::uint64_t>(place.world_rank);
    o.load_back_threshold_tokens = cfg.load_back_threshold;
    o.check_consistency = false;  // done by the observer, which names the ranks that differ
    o.tp_rank = place.tp_rank;
    o.tp_size = place.tp_size;
    o.cp_rank = place.cp_rank;
    o.cp_size = place.cp_size;
    o.world_rank = place.world_rank;
    o.pipeline = place.pp_size > 1;
    if (!cfg.no_storage) {
        o.storage_dir = cfg.storage_dir;
        // The job's capacity is shared by its writers (every rank writes its share of pages).
        o.storage_capacity_pages = cfg.storage_tokens / cfg.page_size /
                                   static_cast<std::uint64_t>(std::max(1, place.world_size));
        if (cfg.storage_tokens > 0 && o.storage_capacity_pages == 0) o.storage_capacity_pages = 1;
    }
    STRATA_ASSIGN_OR_RETURN(o.prefetch_policy,
                            controller::parsePrefetchPolicy(cfg.prefetch_policy));
    o.remote_transport = place.remote_transport;
    o.remote_group = place.remote_group;
    o.remote_timeout = std::chrono::milliseconds(cfg.remote_timeout_ms);
    return o;
}

// Reads or writes the KV rows of one request on this rank, one (page, buffer, layer) chunk at a
// time: in place on the CPU back end, through a staging buffer when device memory is not
// host-addressable.
class KvAccess {
public:
    KvAccess(Cache& cache, const RankPlace& place, std::uint32_t first_layer)
        : cache_(cache), first_layer_(first_layer) {
        for (const auto& s : cache.poolSpecs()) {
            shards_.push_back(s.sharded_across_tp ? static_cast<std::uint32_t>(place.tp_rank) : 0u);
        }
        std::size_t max_row = 0;
        for (const auto& s : cache.poolSpecs()) max_row = std::max(max_row, s.row_bytes);
        staging_.resize(max_row * cache.options().page_size);
    }

    // Fills tokens [from, to) of layer `layer` with the pattern.
    Status fill(const Admission& a, const PrefixDigests& d, std::uint32_t layer, std::size_t from,
                std::size_t to) {
        return forChunks(
            a, layer, from, to,
            [&](std::span<std::byte> rows, std::size_t first_token, std::size_t count,
                std::uint32_t pool, std::uint32_t buf, std::size_t row_bytes) {
                for (std::size_t i = 0; i < count; ++i) {
                    fillRow(rows.subspan(i * row_bytes, row_bytes), d.at(first_token + i),
                            first_layer_ + layer, pool, shards_[pool], buf);
                }
                return true;
            },
            /*write=*/true);
    }

    // Verifies tokens [from, to) of layer `layer`; marks bad pages of each pool in `page_ok`
    // ([pool][page]).
    Status verify(const Admission& a, const PrefixDigests& d, std::uint32_t layer, std::size_t from,
                  std::size_t to, std::vector<std::vector<bool>>* page_ok) {
        const std::size_t P = cache_.options().page_size;
        return forChunks(
            a, layer, from, to,
            [&](std::span<std::byte> rows, std::size_t first_token, std::size_t count,
                std::uint32_t pool, std::uint32_t buf, std::size_t row_bytes) {
                for (std::size_t i = 0; i < count; ++i) {
                    if (!verifyRow(rows.subspan(i * row_bytes, row_bytes), d.at(first_token + i),
                                   first_layer_ + layer, pool, shards_[pool], buf)) {
                        (*page_ok)[pool][(first_token + i) / P] = false;
                    }
                }
                return true;
            },
            /*write=*/false);
    }

private:
    template <typename Fn>
    Status forChunks(const Admission& a, std::uint32_t layer, std::size_t from, std::size_t to,
                     Fn&& fn, bool write) {
        const std::size_t P = cache_.options().page_size;
        kernels::Backend& backend = cache_.backend();
        const bool direct = backend.deviceIsHostAddressable();
        const auto& pools = cache_.devicePools();
        for (std::size_t t = from; t < to;) {
            std::size_t page_index = t / P;
            std::size_t in_page = t % P;
            std::size_t count = std::min(P - in_page, to - t);
            std::size_t slot = static_cast<std::size_t>(a.device_pages[page_index]) * P + in_page;
            for (std::uint32_t pool = 0; pool < pools.size(); ++pool) {
                const auto& dp = pools[pool];
                if (layer >= dp.spec().num_layers) continue;
                const std::size_t row_bytes = dp.spec().row_bytes;
                for (std::uint32_t b = 0; b < dp.spec().num_buffers; ++b) {
                    std::byte* dev = dp.row(b, layer, slot);
                    std::span<std::byte> rows(direct ? dev : staging_.data(), count * row_bytes);
                    if (!direct && !write) {
                        STRATA_RETURN_IF_ERROR(
                            backend.copyFromDevice(rows.data(), dev, rows.size()));
                    }
                    fn(rows, t, count, pool, b, row_bytes);
                    if (!direct && write) {
                        STRATA_RETURN_IF_ERROR(backend.copyToDevice(dev, rows.data(), rows.size()));
                    }
                }
            }
            t += count;
        }
        return Status::ok();
    }

    Cache& cache_;
    std::uint32_t first_layer_;
    std::vector<std::uint32_t> shards_;
    std::vector<std::byte> staging_;
};

}  // namespace

Result<RunReport> runWorker(const RunConfig& cfg, const RankPlace& place,
                            const std::vector<RequestSpec>& requests, comm::DecisionGroup& group,
                            RoundObserver* observer) {
    auto& log = core::logger("runtime");
    // Pipeline stages split the model's layers evenly; each stage keeps its own slice.
    STRATA_ASSIGN_OR_RETURN(auto full_specs, pools::poolsForModel(cfg.model, cfg.layers, 1));
    const std::uint32_t total_layers = full_specs.front().num_layers;
    if (static_cast<std::uint32_t>(place.pp_size) > total_layers) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "{} pipeline stages for {} layers",
                            place.pp_size, total_layers);
    }
    const std::uint32_t per_stage = (total_layers + place.pp_size - 1) / place.pp_size;
    const std::uint32_t first_layer = per_stage * static_cast<std::uint32_t>(place.pp_rank);
    const std::uint32_t stage_layers = std::min(per_stage, total_layers - first_layer);

    STRATA_ASSIGN_OR_RETURN(CacheOptions options, cacheOptionsFor(cfg, place, stage_layers));
    STRATA_ASSIGN_OR_RETURN(auto cache, Cache::create(options, group));
    KvAccess kv(*cache, place, first_layer);
    const std::size_t P = cfg.page_size;
    const std::uint32_t layers = cache->numLayers();

    RunReport report;
    report.backend = std::string(kernels::backendKindName(cache->backend().kind()));
    report.model = cfg.model;
    report.workload = cfg.workload;
    for (const auto& s : cache->poolSpecs()) {
        report.pools.push_back({s.name, std::string(pools::poolKindName(s.kind)), 0, 0});
    }

    std::deque<std::size_t> pending;
    for (std::size_t i = 0; i < requests.size(); ++i) pending.push_back(i);
    std::size_t prefetched = 0;  // requests [0, prefetched) have had prefetch() called
    const auto t0 = Clock::now();
    auto last_progress = t0;
    std::uint64_t round = 0;
    std::size_t done = 0;
    while (!pending.empty()) {
        STRATA_RETURN_IF_ERROR(cache->step());
        if (observer) {
            STRATA_RETURN_IF_ERROR(observer->afterStep(round, cache->controller().stateDigest()));
        }
        ++round;
        struct Live {
            const RequestSpec* spec;
            Admission admission;
            PrefixDigests digests;
        };
        // Requests about to be admitted look for their prefix in the remote and storage tiers.
        if (cache->hasStorage() || cache->hasRemote()) {
            const std::size_t horizon =
                std::min(requests.size(),
                         pending.empty() ? requests.size() : pending.front() + 2 * cfg.batch);
            for (; prefetched < horizon; ++prefetched) {
                STRATA_RETURN_IF_ERROR(
                    cache->prefetch(requests[prefetched].id, requests[prefetched].tokens));
            }
        }
        std::vector<Live> batch;
        while (batch.size() < cfg.batch && !pending.empty()) {
            const RequestSpec& spec = requests[pending.front()];
            if (!cache->prefetchSettled(spec.id)) break;  // waits for its prefetch (policy)
            auto r = cache->admit(spec.id, spec.tokens,
                                  requestPriority(spec.tokens, cfg.page_size, cfg.priority_levels));
            if (!r.isOk()) {
                if (r.status().code() != StatusCode::kResourceExhausted) return r.status();
                if (batch.empty() && cache->controller().inflightOps() == 0) {
                    return STRATA_ERROR(StatusCode::kResourceExhausted,
                                        "request {} ({} tokens) does not fit the device pool of "
                                        "{} tokens even when empty; raise --device-tokens",
                                        spec.id, spec.tokens.size(), cfg.device_tokens);
                }
                break;  // retried next round, once copies in flight have released their pages
            }
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
            const std::size_t reused = a.reusedTokens();
            std::vector<std::vector<bool>> page_ok(report.pools.size(),
                                                   std::vector<bool>(reused / P, true));
            // Layer by layer, as a model's forward pass would: wait for layer L, read it, compute.
            for (std::uint32_t l = 0; l < layers; ++l) {
                STRATA_RETURN_IF_ERROR(cache->waitLayer(live.spec->id, l));
                STRATA_RETURN_IF_ERROR(kv.verify(a, live.digests, l, 0, reused, &page_ok));
                STRATA_RETURN_IF_ERROR(kv.fill(a, live.digests, l, reused, a.prompt_tokens));
            }
            for (std::size_t p = 0; p < reused / P; ++p) {
                bool ok = true;
                for (std::size_t pool = 0; pool < page_ok.size(); ++pool) {
                    PoolVerification& pv = report.pools[pool];
                    if (page_ok[pool][p]) {
                        ++pv.pages_verified;
                        continue;
                    }
                    ok = false;
                    ++pv.pages_mismatched;
                    log.error(
                        "request {}: page {} (device page {}) of pool '{}' failed "
                        "verification",
                        live.spec->id, p, a.device_pages[p], pv.name);
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
            ++report.requests;
            ++done;
        }
        if (place.world_rank == 0 && Clock::now() - last_progress > std::chrono::seconds(5)) {
            last_progress = Clock::now();
            log.info("progress: {}/{} requests, round {}", done, requests.size(), round);
        }
    }
    STRATA_RETURN_IF_ERROR(cache->drain());
    if (observer) {
        STRATA_RETURN_IF_ERROR(observer->afterStep(round, cache->controller().stateDigest()));
    }
    STRATA_RETURN_IF_ERROR(cache->controller().checkInvariants());

    const auto& st = cache->controller().stats();
    report.rounds = st.rounds;
    report.d2h = {st.backup_bytes, st.backup_seconds, st.backup_pages};
    report.h2d = {st.load_bytes, st.load_seconds, st.load_pages};
    report.backups = st.backup_ops;
    report.loads = st.load_ops;
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
    if (cache->hasRemote()) {
        const RemoteTierStats rs = cache->remoteStats();
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

}  // namespace strata::runtime
