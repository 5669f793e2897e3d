// strata-run: the main job. Runs every rank as a model worker would on a synthetic agentic workload
// (or a trace), verifies every byte it loads back, and writes a JSON report (rank 0, job totals).
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <optional>
#include <string>
#include <system_error>

#include "replay_sweep.h"
#include "run_worker.h"
#include "strata/app/block_replay.h"
#include "strata/app/report.h"
#include "strata/app/run_config.h"
#include "strata/app/temp_storage.h"
#include "strata/app/trace.h"
#include "strata/app/workload.h"
#include "strata/comm/consistency.h"
#include "strata/comm/grid.h"
#include "strata/comm/job_collectives.h"
#include "strata/comm/mpi_context.h"
#include "strata/comm/mpi_decision_group.h"
#include "strata/comm/stop_notice.h"
#include "strata/comm/ucx/transport.h"
#include "strata/controller/cache_controller.h"
#include "strata/core/check.h"
#include "strata/core/crash_handler.h"
#include "strata/core/log.h"
#include "strata/kernels/backend.h"
#include "strata/pools/hybrid_layout.h"
#include "strata/pools/pool_spec.h"

namespace strata::app {
namespace {

// Request list <-> bytes, so that rank 0 of a replica can send it to the others.
std::vector<std::byte> encodeRequests(const std::vector<RequestSpec>& requests) {
    std::vector<std::byte> out;
    auto put = [&](const void* p, std::size_t n) {
        const auto* b = static_cast<const std::byte*>(p);
        out.insert(out.end(), b, b + n);
    };
    std::uint64_t count = requests.size();
    put(&count, sizeof count);
    for (const auto& r : requests) {
        std::uint64_t n = r.tokens.size();
        put(&r.id, sizeof r.id);
        put(&r.session, sizeof r.session);
        put(&r.turn, sizeof r.turn);
        put(&n, sizeof n);
        put(r.tokens.data(), n * sizeof(std::int32_t));
    }
    return out;
}

Result<std::vector<RequestSpec>> decodeRequests(const std::vector<std::byte>& in) {
    std::size_t off = 0;
    auto get = [&](void* p, std::size_t n) {
        if (off + n > in.size()) return false;
        std::memcpy(p, in.data() + off, n);
        off += n;
        return true;
    };
    std::uint64_t count = 0;
    if (!get(&count, sizeof count)) {
        return STRATA_ERROR(StatusCode::kDataLoss, "request list truncated");
    }
    std::vector<RequestSpec> out(count);
    for (auto& r : out) {
        std::uint64_t n = 0;
        if (!get(&r.id, sizeof r.id) || !get(&r.session, sizeof r.session) ||
            !get(&r.turn, sizeof r.turn) || !get(&n, sizeof n)) {
            return STRATA_ERROR(StatusCode::kDataLoss, "request list truncated");
        }
        r.tokens.resize(n);
        if (!get(r.tokens.data(), n * sizeof(std::int32_t))) {
            return STRATA_ERROR(StatusCode::kDataLoss, "request list truncated");
        }
    }
    return out;
}

Result<std::vector<RequestSpec>> makeRequests(const RunConfig& cfg, int dp_rank, int dp_size,
                                              bool route_sessions) {
    if (cfg.workload != "synthetic") {
        // A trace: its first --requests requests, in trace order (DP replicas replay the same
        // trace; spreading it over replicas is a scheduler's job, not done here).
        Result<Trace> trace = cfg.workload == "mooncake" ? loadMooncakeTrace(cfg.trace_path)
                                                         : loadKvTesterTrace(cfg.trace_path);
        if (!trace.isOk()) return trace.status();
        STRATA_RETURN_IF_ERROR(validatePageSize(*trace, cfg.page_size));
        return toRequestSpecs(*trace, cfg.requests);
    }
    SyntheticWorkload w;
    w.requests = cfg.requests;
    // Contexts up to 8K tokens keep the default run under a minute on two cores while still
    // overflowing the default device pool several times over.
    w.max_context_tokens = 8192;
    if (!route_sessions || dp_size == 1) {
        // DP replicas serve different requests.
        w.seed = cfg.seed + 0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(dp_rank);
        return generateSynthetic(w);
    }
    // With the remote tier: one workload for the job, whose turns a router spreads over the
    // replicas, turn t of session s to replica (s + t) % dp. The next turn of a session goes to
    // another replica, which finds the earlier turns' pages in the previous one's host pool.
    w.requests = cfg.requests * static_cast<std::uint32_t>(dp_size);
    STRATA_ASSIGN_OR_RETURN(auto all, generateSynthetic(w));
    std::vector<RequestSpec> mine;
    for (RequestSpec& r : all) {
        if ((r.session + r.turn) % static_cast<std::uint32_t>(dp_size) ==
            static_cast<std::uint32_t>(dp_rank)) {
            mine.push_back(std::move(r));
        }
    }
    return mine;
}

class ConsistencyObserver final : public RoundObserver {
public:
    explicit ConsistencyObserver(comm::DecisionGroup& group) : checker_(group) {}
    Status afterStep(std::uint64_t round, std::uint64_t digest) override {
        return checker_.check(digest, fmt::format("after step of round {}", round));
    }
    const comm::ConsistencyChecker& checker() const { return checker_; }

private:
    comm::ConsistencyChecker checker_;
};

// Sums the ranks' reports into job totals on every rank. Request-level figures are counted once
// per replica (its rank 0 reports them), page and byte figures on every rank.
Status aggregate(const comm::Grid& grid, const RankPlace& place, RunReport* r) {
    const bool leader = place.replica_rank == 0;
    std::vector<std::uint64_t> u = {
        leader ? r->requests : 0,
        leader ? r->prompt_tokens : 0,
        leader ? r->computed_tokens : 0,
        leader ? r->hit_tokens.device : 0,
        leader ? r->hit_tokens.host : 0,
        leader ? r->hit_tokens.storage : 0,
        leader ? r->hit_tokens.remote : 0,
        r->remote.pages_pulled,
        r->remote.bytes,
        r->remote.pages_published,
        r->remote.checksum_failures,
        r->remote.rejected_messages,
        r->remote.timeouts,
        r->storage.pages_written,
        r->storage.pages_read,
        r->storage.checksum_failures,
        r->pages_verified,
        r->pages_mismatched,
        r->d2h.bytes,
        r->d2h.pages,
        r->h2d.bytes,
        r->h2d.pages,
        r->backups,
        r->loads,
        r->evictions.device_pages,
        r->evictions.host_pages,
        r->write_back_pages,
        r->dropped_pages,
        r->rejected_admissions,
        r->striped.pages,
        r->striped.bytes,
        leader ? r->requests_planned : 0,
    };
    for (const PoolVerification& p : r->pools) {
        u.push_back(p.pages_verified);
        u.push_back(p.pages_mismatched);
    }
    STRATA_RETURN_IF_ERROR(comm::allReduceSum(grid.world(), u));
    std::vector<double> sums = {r->d2h.seconds, r->h2d.seconds, r->remote.pull_seconds,
                                r->load_wait_seconds};
    STRATA_RETURN_IF_ERROR(comm::allReduceSum(grid.world(), sums));
    std::vector<double> maxes = {r->elapsed_seconds,
                                 static_cast<double>(r->rounds),
                                 r->sync.mean_us,
                                 r->sync.p99_us,
                                 static_cast<double>(r->sync.rounds),
                                 static_cast<double>(r->interrupt_signal)};
    STRATA_RETURN_IF_ERROR(comm::allReduceMax(grid.world(), maxes));
    std::size_t i = 0;
    r->requests = u[i++];
    r->prompt_tokens = u[i++];
    r->computed_tokens = u[i++];
    r->hit_tokens.device = u[i++];
    r->hit_tokens.host = u[i++];
    r->hit_tokens.storage = u[i++];
    r->hit_tokens.remote = u[i++];
    r->remote.pages_pulled = u[i++];
    r->remote.bytes = u[i++];
    r->remote.pages_published = u[i++];
    r->remote.checksum_failures = u[i++];
    r->remote.rejected_messages = u[i++];
    r->remote.timeouts = u[i++];
    r->storage.pages_written = u[i++];
    r->storage.pages_read = u[i++];
    r->storage.checksum_failures = u[i++];
    r->pages_verified = u[i++];
    r->pages_mismatched = u[i++];
    r->d2h.bytes = u[i++];
    r->d2h.pages = u[i++];
    r->h2d.bytes = u[i++];
    r->h2d.pages = u[i++];
    r->backups = u[i++];
    r->loads = u[i++];
    r->evictions.device_pages = u[i++];
    r->evictions.host_pages = u[i++];
    r->write_back_pages = u[i++];
    r->dropped_pages = u[i++];
    r->rejected_admissions = u[i++];
    r->striped.pages = u[i++];
    r->striped.bytes = u[i++];
    r->requests_planned = u[i++];
    for (PoolVerification& p : r->pools) {
        p.pages_verified = u[i++];
        p.pages_mismatched = u[i++];
    }
    r->d2h.seconds = sums[0];
    r->h2d.seconds = sums[1];
    r->remote.pull_seconds = sums[2];
    r->load_wait_seconds = sums[3];
    r->elapsed_seconds = maxes[0];
    r->rounds = static_cast<std::uint64_t>(maxes[1]);
    r->sync.mean_us = maxes[2];
    r->sync.p99_us = maxes[3];
    r->sync.rounds = static_cast<std::uint64_t>(maxes[4]);
    r->interrupt_signal = static_cast<int>(maxes[5]);
    return Status::ok();
}

// --data none: the trace's blocks through the prefix tree and the tier logic, no bytes (capacities
// of tens of millions of tokens on one machine), with the published simulators' rules
// (block_replay.h).
Result<RunReport> replayMetadata(const RunConfig& cfg, int world_size) {
    if (world_size != 1) {
        return STRATA_ERROR(StatusCode::kNotSupported,
                            "--data none replays on one rank: run a single process");
    }
    STRATA_ASSIGN_OR_RETURN(Trace trace, loadTrace(cfg));
    STRATA_ASSIGN_OR_RETURN(BlockReplayOptions o, replayOptions(cfg));
    STRATA_ASSIGN_OR_RETURN(BlockReplayResult r, replayBlocks(trace, o));
    RunReport report = replayReport(cfg, r);
    core::logger("runtime").info(
        "replay: {} requests ({} measured), {} page references, {:.3f} s in the tree, p99 {:.1f} "
        "us per request, peak {} nodes",
        r.requests, r.measured_requests, r.block_references, r.tree_seconds, r.p99_request_us,
        r.peak_nodes);
    return report;
}

// A page size that every pool would accept whatever its compression ratio (powers of two).
constexpr std::uint32_t kProbePageSize = 1u << 16;

// What the model's page size must be a multiple of: the least common multiple of its compression
// ratios (1 when it has none).
std::uint32_t pageSizeMultiple(const pools::HybridLayout& layout) {
    std::uint32_t page = 1;
    for (const pools::HybridPool& p : layout.pools) {
        page = std::lcm(page, std::max<std::uint32_t>(1, p.spec.tokens_per_row));
    }
    return page;
}

// A page size left at its default that the model's compression ratios do not divide becomes the
// smallest multiple of it that they do (DeepSeek-V4: 128), so that every preset runs with the
// defaults. A page size that was set is left as it is (the layout then names the problem).
void pageSizeForModel(RunConfig* cfg) {
    auto origin = cfg->origins.find("page_size");
    if (origin != cfg->origins.end() && origin->second.source != ConfigSource::kDefault) return;
    auto layout = pools::hybridLayout(cfg->model, cfg->layers, 1, kProbePageSize);
    if (!layout.isOk()) return;  // the run reports the problem
    const std::uint32_t multiple = pageSizeMultiple(*layout);
    if (cfg->page_size % multiple == 0) return;
    cfg->page_size = std::lcm(cfg->page_size, multiple);
    cfg->origins["page_size"] = ValueOrigin{
        ConfigSource::kDefault,
        fmt::format("default for model {}: a multiple of its compression ratios", cfg->model)};
}

// --list-models: every preset with its pools (one rank of TP 1, all layers).
std::string modelListText() {
    std::string out;
    for (const pools::ModelPreset& m : pools::modelPresets()) {
        out += fmt::format("{:<16} {}\n", m.name, m.description);
        auto probe = pools::hybridLayout(m.name, 0, 1, kProbePageSize);
        if (!probe.isOk()) {
            out += fmt::format("{:<16}   (pools unavailable: {})\n", "", probe.status().message());
            continue;
        }
        const std::uint32_t page = pageSizeMultiple(*probe);
        for (const pools::HybridPool& p : probe->pools) {
            const pools::PoolSpec& s = p.spec;
            std::string role(pools::poolRoleName(p.role));
            if (p.role == pools::PoolRole::kSidecar) {
                role += fmt::format(" of {}", p.indices_from);
                if (p.ratio > 1) role += fmt::format(", a row per {} tokens", p.ratio);
            }
            std::string keeps = "every page";
            if (s.kind == pools::PoolKind::kMamba) {
                keeps = "the state at the end of the prefix (one slot per request)";
            } else if (p.hit_policy == pools::HitPolicy::kTrailingPages) {
                keeps = p.window_tokens > 0
                            ? fmt::format("the trailing {}-token window", p.window_tokens)
                            : std::string("the trailing window of its source");
            }
            const std::string shape =
                s.kind == pools::PoolKind::kLogical
                    ? std::string("no bytes")
                    : fmt::format("{} x {} B rows{}", s.num_buffers, s.row_bytes,
                                  s.sharded_across_tp ? ", split across TP" : "");
            out +=
                fmt::format("{:<16}   {:<17} {:<16} {:>2} layers, {}; {}; keeps {}\n", "", s.name,
                            pools::poolKindName(s.kind), s.num_layers, shape, role, keeps);
        }
        if (page > 1) {
            out += fmt::format("{:<16}   page size: a multiple of {}\n", "", page);
        }
    }
    return out;
}

int fail(const comm::MpiContext* ctx, const Status& s) {
    core::logger("runtime").error("strata-run failed: {}", s.toString());
    if (ctx != nullptr && ctx->worldSize() > 1) {
        // fatal() aborts the job and returns to nothing that would remove the directory.
        releaseTempStorageDir();
        core::fatal("strata-run failed; stopping the job");
    }
    return 1;
}

// Installs the crash handler over the ones MPI and UCX installed (UCX's can hang the process:
// core/crash_handler.h).
void installCrashHandler(int world_rank) {
    const std::string tag = fmt::format("strata-run r{}", world_rank);
    if (Status s = core::installCrashHandler(tag.c_str()); !s.isOk()) {
        core::logger("runtime").warn("crash handler not installed: {}", s.message());
    }
}

// Whether rank 0 can write the report, agreed by every rank (rc 2 on all when it cannot), so that
// an unwritable path fails before the run, not after it.
bool reportWritable(const RunConfig& cfg, int world_rank) {
    if (cfg.sweep || cfg.report_path.empty()) return true;
    std::vector<double> bad = {0.0};
    if (world_rank == 0) {
        if (Status s = checkReportWritable(cfg.report_path); !s.isOk()) {
            const auto origin = cfg.origins.find("report");
            std::fprintf(stderr, "strata-run: report (from %s): %s\n",
                         origin != cfg.origins.end() ? origin->second.where.c_str() : "default",
                         s.message().c_str());
            bad[0] = 1.0;
        }
    }
    if (!comm::allReduceMax(comm::MpiComm::world(), bad).isOk()) return false;
    return bad[0] == 0.0;
}

// Removes the process's temporary storage directory on every return from run() (fail() and the
// termination watcher cover the other ways out).
struct TempStorageRelease {
    TempStorageRelease() = default;
    TempStorageRelease(const TempStorageRelease&) = delete;
    TempStorageRelease& operator=(const TempStorageRelease&) = delete;
    ~TempStorageRelease() { releaseTempStorageDir(); }
};

int run(int argc, char** argv) {
    // Before MPI starts threads, so that every thread inherits the blocked termination signals.
    startTerminationWatcher();
    auto ctx_r = comm::MpiContext::create(&argc, &argv);
    if (!ctx_r.isOk()) {
        std::fprintf(stderr, "strata-run: %s\n", ctx_r.status().toString().c_str());
        return 1;
    }
    comm::MpiContext& ctx = *ctx_r;
    const int world_rank = ctx.worldRank();
    core::setLogRank(world_rank);
    auto& log = core::logger("runtime");
    installCrashHandler(world_rank);
    const TempStorageRelease release_temp_storage;  // destroyed before ctx finalises MPI

    // Every rank parses the same arguments, so every rank takes the same branch here.
    auto cfg_r = loadRunConfig(argc, argv);
    if (!cfg_r.isOk()) {
        if (world_rank == 0)
            std::fprintf(stderr, "strata-run: %s\n", cfg_r.status().message().c_str());
        return 2;
    }
    RunConfig cfg = std::move(cfg_r).value();
    if (cfg.help) {
        if (world_rank == 0) std::printf("%s", runConfigHelp().c_str());
        return 0;
    }
    if (cfg.list_models) {
        if (world_rank == 0) std::printf("%s", modelListText().c_str());
        return 0;
    }
    spdlog::level::level_enum level;
    if (core::parseLogLevel(cfg.log_level, &level)) core::setLogLevel(level);
    pageSizeForModel(&cfg);
    if (!reportWritable(cfg, world_rank)) return 2;

    // Node-local rank -> GPU: the grid binds local rank r to visible device r % count.
    const int devices = cfg.backend == "cpu" ? 0 : kernels::Backend::cudaDeviceCount();
    auto grid_r = comm::Grid::create(
        comm::MpiComm::world(),
        {static_cast<int>(cfg.tp), static_cast<int>(cfg.cp), static_cast<int>(cfg.pp)}, devices);
    if (!grid_r.isOk()) {
        if (world_rank == 0)
            std::fprintf(stderr, "strata-run: %s\n", grid_r.status().message().c_str());
        return 2;
    }
    comm::Grid& grid = *grid_r;
    // The round watchdog of every collective of the decision group (validated by loadRunConfig).
    comm::RoundWatchdogOptions watchdog;
    watchdog.timeout_s = cfg.round_timeout_s;
    watchdog.on_timeout = cfg.on_round_timeout == "warn" ? comm::RoundTimeoutAction::kWarn
                                                         : comm::RoundTimeoutAction::kAbort;
    if (cfg.round_timeout_s > 0) watchdog.warn_interval_s = std::min(5.0, cfg.round_timeout_s);
    auto group_r = comm::MpiDecisionGroup::create(grid, watchdog);
    if (!group_r.isOk()) return fail(&ctx, group_r.status());
    comm::MpiDecisionGroup& group = *group_r;
    if (world_rank == 0) {
        log.info("effective configuration:\n{}", describe(cfg));
        log.info("grid: {}", grid.describe());
    }

    RankPlace place;
    place.world_rank = world_rank;
    place.world_size = ctx.worldSize();
    place.tp_rank = grid.tpRank();
    place.tp_size = grid.tpSize();
    place.cp_rank = grid.cpRank();
    place.cp_size = grid.cpSize();
    place.pp_rank = grid.ppRank();
    place.pp_size = grid.ppSize();
    place.dp_rank = grid.dpRank();
    place.dp_size = grid.dpSize();
    place.replica_rank = grid.replicaRank();
    place.device = grid.device();
    place.decision_comm = &grid.decisionComm();

    if (cfg.sweep) {
        if (ctx.worldSize() != 1) {
            return fail(&ctx, STRATA_ERROR(StatusCode::kNotSupported,
                                           "strata-run sweep runs on one rank: run a single "
                                           "process"));
        }
        auto rows = runSweep(cfg);
        if (!rows.isOk()) return fail(&ctx, rows.status());
        std::printf("%14s %8s %8s %8s %8s%s\n", "capacity", "device", "host", "storage", "total",
                    cfg.sweep_with_opt ? "      opt" : "");
        for (const SweepRow& r : *rows) {
            std::printf("%14llu %8.4f %8.4f %8.4f %8.4f",
                        static_cast<unsigned long long>(r.capacity_tokens), r.device, r.host,
                        r.storage, r.total);
            if (r.opt >= 0) std::printf(" %8.4f", r.opt);
            std::printf("\n");
        }
        return 0;
    }
    if (cfg.data == "none") {
        auto replay = replayMetadata(cfg, ctx.worldSize());
        if (!replay.isOk()) return fail(&ctx, replay.status());
        RunReport report = std::move(replay).value();
        std::printf("%s", summaryText(report).c_str());
        if (!cfg.report_path.empty()) {
            if (Status s = writeJson(report, cfg.report_path); !s.isOk()) return fail(&ctx, s);
            std::printf("report written to %s\n", cfg.report_path.c_str());
        }
        return 0;
    }

    // The storage tier lives in --storage-dir, or in a fresh temporary directory that rank 0 makes
    // (every rank of the job uses the same path). Every rank removes its node's copy when it ends,
    // whichever way (temp_storage.h); each node's first rank first removes those that runs on
    // this host killed with SIGKILL left behind.
    if (!cfg.no_storage && cfg.storage_dir.empty()) {
        std::error_code ec;
        const std::string parent = std::filesystem::temp_directory_path(ec).string();
        if (ec) {
            return fail(&ctx, STRATA_ERROR(StatusCode::kIoError,
                                           "no temporary directory for the storage tier: {}",
                                           ec.message()));
        }
        if (grid.localRank() == 0) {
            if (const std::size_t n = removeStaleTempStorageDirs(parent); n > 0) {
                log.info("removed {} temporary storage directories of ended runs from {}", n,
                         parent);
            }
        }
        std::vector<std::byte> path;
        if (world_rank == 0) {
            auto dir = makeTempStorageDir(parent);
            if (!dir.isOk()) return fail(&ctx, dir.status());
            ownTempStorageDir(*dir);
            const auto* b = reinterpret_cast<const std::byte*>(dir->data());
            path.assign(b, b + dir->size());
        }
        if (Status s = comm::broadcastBytes(grid.world(), &path, 0); !s.isOk())
            return fail(&ctx, s);
        cfg.storage_dir.assign(reinterpret_cast<const char*>(path.data()), path.size());
        // Every rank owns the path: whichever rank of a node fails or is signalled first removes
        // the node's copy (the others on that node are about to be ended by the launcher).
        ownTempStorageDir(cfg.storage_dir);
        if (world_rank == 0) {
            log.info("storage tier in temporary directory {} (removed at exit)", cfg.storage_dir);
        }
    }

    // The remote tier: on, off, or (auto) on when there are several replicas and UCX is built.
    // A model the remote tier does not serve (controller::remoteTierServes): auto leaves it off
    // (on is refused by the Cache, naming the reason).
    const auto preset = pools::findModelPreset(cfg.model);
    const Status served =
        controller::remoteTierServes(cfg.model, preset.isOk() && (*preset)->isHybrid());
    const bool remote_auto = cfg.remote == "auto" && comm::ucx::available() && grid.dpSize() > 1;
    if (remote_auto && !served.isOk() && world_rank == 0) {
        log.info("remote tier off: {}", served.message());
    }
    const bool remote = cfg.remote == "on" || (remote_auto && served.isOk());
    if (remote && !comm::ucx::available()) {  // the same on every rank: all exit alike
        if (world_rank == 0) {
            std::fprintf(stderr,
                         "strata-run: --remote on needs UCX, and this build has none (configure "
                         "with STRATA_ENABLE_UCX=ON and libucx-dev)\n");
        }
        return 2;
    }
    if (remote) {
        auto transport = comm::ucx::UcxTransport::create(grid.world());
        if (!transport.isOk()) return fail(&ctx, transport.status());
        installCrashHandler(world_rank);  // again, in case UCX's initialisation reinstalled its own
        place.remote_transport = std::move(transport).value();
        place.remote_group = &grid.dpComm();
    }

    // Rank 0 of each replica makes the request list; the replica's ranks get the same one.
    std::vector<std::byte> encoded;
    if (place.replica_rank == 0) {
        auto reqs = makeRequests(cfg, place.dp_rank, place.dp_size, remote);
        if (!reqs.isOk()) return fail(&ctx, reqs.status());
        encoded = encodeRequests(*reqs);
    }
    if (Status s = comm::broadcastBytes(grid.replicaComm(), &encoded, 0); !s.isOk()) {
        return fail(&ctx, s);
    }
    auto requests = decodeRequests(encoded);
    if (!requests.isOk()) return fail(&ctx, requests.status());

    std::unique_ptr<ConsistencyObserver> observer;
    if (cfg.check_consistency) observer = std::make_unique<ConsistencyObserver>(group);
    std::optional<comm::StopNotice> stop_notice;
    if (grid.dpSize() > 1) {
        auto notice = comm::StopNotice::create(grid.world());
        if (!notice.isOk()) return fail(&ctx, notice.status());
        stop_notice.emplace(std::move(notice).value());
        place.stop_notice = &*stop_notice;
    }
    auto report_r = runWorker(cfg, place, *requests, group, observer.get());
    if (!report_r.isOk()) return fail(&ctx, report_r.status());
    if (stop_notice) {
        if (Status s = stop_notice->finish(); !s.isOk()) return fail(&ctx, s);
    }
    RunReport report = std::move(report_r).value();

    comm::SyncStats sync = comm::summarizeSamples(group.syncSamplesUs());
    report.sync.rounds = sync.rounds;
    report.sync.mean_us = sync.mean_us;
    report.sync.p99_us = sync.p99_us;
    if (Status s = aggregate(grid, place, &report); !s.isOk()) return fail(&ctx, s);
    report.ranks = static_cast<std::uint32_t>(ctx.worldSize());
    report.tp = cfg.tp;
    report.cp = cfg.cp;
    report.pp = cfg.pp;
    report.dp = static_cast<std::uint32_t>(grid.dpSize());
    report.remote.enabled = remote;
    if (observer) {
        report.consistency.rounds_checked = observer->checker().roundsChecked();
        report.consistency.divergences = observer->checker().divergences();
    }
    report.config = configToJson(cfg);

    STRATA_CHECK(report.prompt_tokens == report.computed_tokens + report.hit_tokens.total(),
                 "token accounting: {} prompt != {} computed + {} hit", report.prompt_tokens,
                 report.computed_tokens, report.hit_tokens.total());
    if (world_rank == 0) {
        std::printf("%s", summaryText(report).c_str());
        if (!cfg.report_path.empty()) {
            if (Status s = writeJson(report, cfg.report_path); !s.isOk()) return fail(&ctx, s);
            std::printf("report written to %s\n", cfg.report_path.c_str());
        }
    }
    // aggregate() above was a collective over the whole world, after every rank's Cache (and its
    // files) had closed: the temporary storage directory may go now.
    releaseTempStorageDir();
    // A launcher ends the whole job once one rank exits non-zero (mpirun: SIGTERM, then SIGKILL a
    // second later): no rank exits before rank 0 has written the report and every node's first
    // rank has removed its temporary directory.
    const bool failing = report.pages_mismatched > 0 || report.interrupt_signal != 0;
    if (failing && ctx.worldSize() > 1) {
        if (Status s = grid.world().barrier(); !s.isOk()) return fail(&ctx, s);
    }
    if (report.pages_mismatched > 0) {
        if (world_rank == 0) log.error("{} pages failed verification", report.pages_mismatched);
        return 3;
    }
    // Stopped by a signal (every rank agreed on the largest one any replica stopped at): the
    // shell's code for that signal, after a written report.
    if (report.interrupt_signal != 0) return 128 + report.interrupt_signal;
    return 0;
}

}  // namespace
}  // namespace strata::app

int main(int argc, char** argv) { return strata::app::run(argc, argv); }
