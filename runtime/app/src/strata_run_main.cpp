// strata-run: the main job. Runs every rank as a model worker would on a synthetic agentic workload
// (or a trace), verifies every byte it loads back, and writes a JSON report (rank 0, job totals).
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <system_error>

#include "job_report.h"
#include "replay_sweep.h"
#include "run_worker.h"
#include "strata/app/block_replay.h"
#include "strata/app/build_info.h"
#include "strata/app/report.h"
#include "strata/app/run_config.h"
#include "strata/app/temp_storage.h"
#include "strata/app/trace.h"
#include "strata/app/user_input.h"
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
#include "strata/runtime/metrics.h"
#include "strata/runtime/metrics_export.h"

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

// A failed status for rank `world_rank`'s stderr (rank 0 only unless `every_rank`): the message
// without source locations (userMessage), which the debug log keeps.
void printError(int world_rank, const Status& s) {
    core::logger("runtime").debug("error: {}", s.toString());
    if (world_rank == 0) std::fprintf(stderr, "strata-run: %s\n", userMessage(s).c_str());
}

int fail(const comm::MpiContext* ctx, const Status& s) {
    core::logger("runtime").debug("strata-run failed: {}", s.toString());
    // Whatever --log-level says, off included: a run that stops says why.
    core::logAlways("runtime", spdlog::level::err, "strata-run failed: " + userMessage(s));
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
                         userMessage(s).c_str());
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

// The first line of a run, on rank 0 as soon as the configuration is read: what runs, on what.
void logStart(const RunConfig& cfg, int world_size) {
    std::string what;
    if (cfg.workload == "synthetic") {
        what = fmt::format("{} synthetic requests", cfg.requests);
    } else if (cfg.data == "none") {
        const auto origin = cfg.origins.find("requests");
        const bool limited =
            origin != cfg.origins.end() && origin->second.source != ConfigSource::kDefault;
        what = fmt::format("{} trace {} ({} replayed without bytes)", cfg.workload, cfg.trace_path,
                           limited ? fmt::format("first {} requests", cfg.requests)
                                   : std::string("every request"));
    } else {
        what = fmt::format("{} trace {} (first {} requests)", cfg.workload, cfg.trace_path,
                           cfg.requests);
    }
    core::logger("runtime").info("{}: {} rank{} on {}, model {} ({} layers), {}, data {}{}",
                                 versionLine(), world_size, world_size == 1 ? "" : "s", hostName(),
                                 cfg.model,
                                 cfg.layers == 0 ? std::string("all") : std::to_string(cfg.layers),
                                 what, cfg.data, cfg.deterministic ? ", deterministic" : "");
}

// Live metrics of this rank: the registry the worker publishes to, and what serves it.
struct LiveMetrics {
    runtime::MetricsRegistry registry;                 // must outlive server and file
    std::unique_ptr<runtime::MetricsServer> server;    // --metrics-port
    std::unique_ptr<runtime::MetricsFileWriter> file;  // --metrics-file
};

// Starts this rank's endpoint (port metrics_port + local rank) and file writer; null when neither
// is asked for. Errors name the option: a port out of range or in use, a file that cannot be
// written, a file name without {rank} when several ranks would write it.
Result<std::unique_ptr<LiveMetrics>> startMetrics(const RunConfig& cfg, const comm::Grid& grid) {
    if (cfg.metrics_port == 0 && cfg.metrics_file.empty()) return std::unique_ptr<LiveMetrics>();
    auto live = std::make_unique<LiveMetrics>();
    if (cfg.metrics_port != 0) {
        const std::uint32_t port = cfg.metrics_port + static_cast<std::uint32_t>(grid.localRank());
        if (port > 65535) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "metrics_port {} + local rank {} is above 65535: pick a lower "
                                "--metrics-port",
                                cfg.metrics_port, grid.localRank());
        }
        STRATA_ASSIGN_OR_RETURN(live->server,
                                runtime::MetricsServer::create(live->registry, cfg.metrics_address,
                                                               static_cast<int>(port)));
        core::logger("runtime").debug("metrics endpoint on {}:{}", cfg.metrics_address, port);
    }
    if (!cfg.metrics_file.empty()) {
        std::string path = cfg.metrics_file;
        const std::size_t at = path.find("{rank}");
        if (at == std::string::npos && grid.world().size() > 1) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "metrics_file '{}' would be written by all {} ranks: put {{rank}} "
                                "in it (replaced by the world rank)",
                                cfg.metrics_file, grid.world().size());
        }
        if (at != std::string::npos) path.replace(at, 6, std::to_string(grid.world().rank()));
        const auto interval = std::chrono::milliseconds(
            static_cast<std::int64_t>(std::llround(cfg.metrics_interval_s * 1000.0)));
        STRATA_ASSIGN_OR_RETURN(live->file,
                                runtime::MetricsFileWriter::create(live->registry, path, interval));
    }
    return live;
}

int run(int argc, char** argv) {
    const auto start_time = std::chrono::system_clock::now();
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
        printError(world_rank, cfg_r.status());
        return 2;
    }
    RunConfig cfg = std::move(cfg_r).value();
    if (cfg.version) {
        if (world_rank == 0) std::printf("%s\n", versionLine().c_str());
        return 0;
    }
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
    if (world_rank == 0) logStart(cfg, ctx.worldSize());
    pageSizeForModel(&cfg);
    if (!reportWritable(cfg, world_rank)) return 2;

    // Node-local rank -> GPU: the grid binds local rank r to visible device r % count.
    const int devices = cfg.backend == "cpu" ? 0 : kernels::Backend::cudaDeviceCount();
    auto grid_r = comm::Grid::create(
        comm::MpiComm::world(),
        {static_cast<int>(cfg.tp), static_cast<int>(cfg.cp), static_cast<int>(cfg.pp)}, devices);
    if (!grid_r.isOk()) {
        printError(world_rank, grid_r.status());
        return 2;
    }
    comm::Grid& grid = *grid_r;
    // The round watchdog of every collective of the decision group (validated by loadRunConfig).
    comm::RoundWatchdogOptions watchdog;
    watchdog.timeout_s = cfg.round_timeout_s;
    watchdog.on_timeout = cfg.on_round_timeout == "warn" ? comm::RoundTimeoutAction::kWarn
                                                         : comm::RoundTimeoutAction::kAbort;
    if (cfg.round_timeout_s > 0) watchdog.warn_interval_s = std::min(5.0, cfg.round_timeout_s);
    auto watchdog_warnings = std::make_shared<std::atomic<std::uint64_t>>(0);
    watchdog.on_warning = [watchdog_warnings](const std::string&) {
        watchdog_warnings->fetch_add(1, std::memory_order_relaxed);
    };
    auto group_r = comm::MpiDecisionGroup::create(grid, watchdog);
    if (!group_r.isOk()) return fail(&ctx, group_r.status());
    comm::MpiDecisionGroup& group = *group_r;
    if (world_rank == 0) {
        // What differs from the defaults at info; every key at debug (and in the report).
        if (log.should_log(spdlog::level::debug)) {
            log.debug("effective configuration:\n{}", describe(cfg));
        } else {
            log.info("configuration (what differs from the defaults):\n{}", describe(cfg, true));
        }
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
    place.job_comm = &grid.world();

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
        report.version = std::string(versionString());
        report.git_hash = std::string(gitHash());
        report.start_time = utcTimestamp(start_time);
        report.hosts = {hostName()};
        std::printf("%s", summaryText(report).c_str());
        if (!cfg.report_path.empty()) {
            if (Status s = writeJson(report, cfg.report_path); !s.isOk()) return fail(&ctx, s);
            std::printf("report written to %s\n", cfg.report_path.c_str());
        }
        return 0;
    }

    // Live metrics, on every rank before the run; a rank that cannot start them (a port in use)
    // makes every rank exit 2.
    auto metrics = startMetrics(cfg, grid);
    std::vector<double> metrics_failed = {metrics.isOk() ? 0.0 : 1.0};
    if (!metrics.isOk()) {
        std::fprintf(stderr, "strata-run (rank %d): %s\n", world_rank,
                     metrics.status().message().c_str());
    }
    if (Status s = comm::allReduceMax(grid.world(), metrics_failed); !s.isOk()) {
        return fail(&ctx, s);
    }
    if (metrics_failed[0] != 0.0) return 2;
    if (*metrics) {
        LiveMetrics& live = **metrics;
        place.metrics = &live.registry;
        place.metrics_labels = runtime::placeLabels(
            {world_rank, grid.tpRank(), grid.cpRank(), grid.ppRank(), grid.dpRank(), hostName()});
        place.agreement = [&group, watchdog_warnings] {
            const comm::SyncStats s = group.syncStats();
            return runtime::AgreementFigures{s.rounds, s.total_us * 1e-6, s.p99_us * 1e-6,
                                             s.max_us * 1e-6, watchdog_warnings->load()};
        };
        if (world_rank == 0 && cfg.metrics_port != 0) {
            log.info(
                "metrics: http://{}:{}/metrics on each node's first rank, port + local rank "
                "on the others",
                cfg.metrics_address, cfg.metrics_port);
        }
        if (world_rank == 0 && !cfg.metrics_file.empty()) {
            log.info("metrics: written to {} every {} s", cfg.metrics_file, cfg.metrics_interval_s);
        }
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
    // With the node-wide host tier the replicas of one node serve each other through it: auto
    // leaves UCX off when every replica of this rank's shard is on its node (on every rank alike:
    // the decision is agreed by MIN over the job).
    bool dp_one_node = false;
    if (cfg.host_sharing == "node" && grid.dpSize() > 1) {
        auto dp_node = grid.dpComm().splitShared(grid.dpComm().rank());
        if (!dp_node.isOk()) return fail(&ctx, dp_node.status());
        std::vector<double> spread = {dp_node->size() == grid.dpComm().size() ? 0.0 : 1.0};
        Status agreed = comm::allReduceMax(grid.world(), spread);
        if (!agreed.isOk()) return fail(&ctx, agreed);
        dp_one_node = spread[0] == 0.0;
        if (dp_one_node && cfg.remote == "auto" && world_rank == 0) {
            log.info(
                "remote tier off: every DP replica is on one node, and the node-wide host "
                "tier (--host-sharing node) serves them");
        }
    }
    const bool remote_auto =
        cfg.remote == "auto" && comm::ucx::available() && grid.dpSize() > 1 && !dp_one_node;
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
        auto reqs =
            makeRequests(cfg, place.dp_rank, place.dp_size, remote || cfg.host_sharing == "node");
        if (!reqs.isOk()) return fail(&ctx, reqs.status());
        encoded = encodeRequests(*reqs);
    }
    if (Status s = comm::broadcastBytes(grid.replicaComm(), &encoded, 0); !s.isOk()) {
        return fail(&ctx, s);
    }
    auto requests = decodeRequests(encoded);
    if (!requests.isOk()) return fail(&ctx, requests.status());

    // KV events: rank 0 of each replica publishes (every rank of a replica holds the same pages).
    std::unique_ptr<runtime::KvEventPublisher> kv_events;
    if (!cfg.kv_events.empty() && place.replica_rank == 0) {
        runtime::KvEventOptions eo;
        auto endpoint = runtime::kvEventsEndpointFor(cfg.kv_events, place.dp_rank);
        if (!endpoint.isOk()) return fail(&ctx, endpoint.status());
        eo.endpoint = *endpoint;
        eo.topic = cfg.kv_events_topic;
        eo.data_parallel_rank = place.dp_rank;
        eo.block_size = cfg.page_size;
        eo.layout = *runtime::parseKvWireLayout(cfg.kv_events_layout);  // validated by the config
        eo.wait_subscriber = std::chrono::milliseconds(cfg.kv_events_wait_ms);
        auto publisher = runtime::KvEventPublisher::create(eo);
        if (!publisher.isOk()) return fail(&ctx, publisher.status());
        kv_events = std::move(publisher).value();
        place.kv_events = kv_events.get();
        log.info("kv events: replica {} publishes on {} ({} layout)", place.dp_rank,
                 kv_events->endpoint(), cfg.kv_events_layout);
    }

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
    if (Status s = gatherPerRank(grid, place, &report); !s.isOk()) return fail(&ctx, s);

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
    report.kv_events.enabled = !cfg.kv_events.empty();
    if (observer) {
        report.consistency.rounds_checked = observer->checker().roundsChecked();
        report.consistency.divergences = observer->checker().divergences();
    }
    report.config = configToJson(cfg);
    report.version = std::string(versionString());
    report.git_hash = std::string(gitHash());
    report.start_time = utcTimestamp(start_time);
    report.deterministic = cfg.deterministic;

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
        if (world_rank == 0) {
            core::logAlways("runtime", spdlog::level::err,
                            fmt::format("{} pages failed verification", report.pages_mismatched));
        }
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
