#include "replay_sweep.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "strata/app/user_input.h"
#include "strata/controller/cache_controller.h"
#include "strata/core/log.h"

extern char** environ;

namespace strata::app {
namespace {

namespace fs = std::filesystem;

// The first executable `name` on PATH, or "" when there is none.
std::string findOnPath(const std::string& name) {
    const char* path = std::getenv("PATH");
    std::stringstream dirs(path == nullptr ? "" : path);
    std::string dir;
    while (std::getline(dirs, dir, ':')) {
        if (dir.empty()) continue;
        const std::string candidate = (fs::path(dir) / name).string();
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    return {};
}

Status writeText(const fs::path& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) {
        return STRATA_ERROR(StatusCode::kIoError, "cannot write {}: {}", path.string(),
                            std::strerror(errno));
    }
    out << text;
    out.close();
    if (!out) {
        return STRATA_ERROR(StatusCode::kIoError, "cannot write {}: {}", path.string(),
                            std::strerror(errno));
    }
    return Status::ok();
}

// Runs `gnuplot script` and waits for it; kIoError with its exit status when it fails.
Status runGnuplot(const std::string& gnuplot, const fs::path& script) {
    const std::string script_path = script.string();
    char* argv[] = {const_cast<char*>(gnuplot.c_str()), const_cast<char*>(script_path.c_str()),
                    nullptr};
    // strata-run blocks the termination signals in its threads (temp_storage.h); gnuplot starts
    // with none blocked, so that it stays stoppable.
    posix_spawnattr_t attr;
    ::posix_spawnattr_init(&attr);
    sigset_t none;
    sigemptyset(&none);
    ::posix_spawnattr_setsigmask(&attr, &none);
    ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    pid_t pid = 0;
    const int e = ::posix_spawn(&pid, gnuplot.c_str(), nullptr, &attr, argv, environ);
    ::posix_spawnattr_destroy(&attr);
    if (e != 0) {
        return STRATA_ERROR(StatusCode::kIoError, "cannot start {}: {}", gnuplot, std::strerror(e));
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            return STRATA_ERROR(StatusCode::kIoError, "waiting for gnuplot: {}",
                                std::strerror(errno));
        }
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        return STRATA_ERROR(StatusCode::kIoError, "gnuplot {} failed (status {})", script_path,
                            status);
    }
    return Status::ok();
}

// The gnuplot script; `dir` is absolute and free of single quotes.
std::string plotScript(const RunConfig& cfg, const std::string& dir, bool tiers, bool opt) {
    std::string s;
    s += "set terminal pngcairo size 900,560 noenhanced\n";
    s += fmt::format("set output '{}/sweep.png'\n", dir);
    s += "set datafile separator ','\n";
    s += "set logscale x\n";
    s += "set format x '%.0e'\n";
    s += "set xlabel 'device capacity (tokens)'\n";
    s += "set ylabel 'hit rate (fraction of prompt tokens)'\n";
    s += "set yrange [0:*]\n";
    s += "set grid\n";
    s += "set key left top\n";
    s += fmt::format("set title '{} - page {} tokens, eviction {}'\n",
                     fs::path(cfg.trace_path).filename().string(), cfg.page_size, cfg.eviction);
    std::string plot =
        fmt::format("plot '{}/sweep.csv' using 1:5 with linespoints lw 2 title '{}{}'", dir,
                    cfg.eviction, tiers ? ", all tiers" : "");
    if (tiers) {
        plot += ", '' using 1:2 with linespoints title 'device'";
        plot += ", '' using 1:3 with linespoints title 'host'";
        plot += ", '' using 1:4 with linespoints title 'storage'";
    }
    if (opt) plot += ", '' using 1:6 with linespoints dt 2 lw 2 title 'optimal (Belady)'";
    s += plot + "\n";
    return s;
}

}  // namespace

Result<Trace> loadTrace(const RunConfig& cfg) {
    if (cfg.workload == "synthetic") {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "--data none replays a trace: give --workload mooncake:PATH or "
                            "kvtester:PATH");
    }
    STRATA_ASSIGN_OR_RETURN(Trace trace, cfg.workload == "mooncake"
                                             ? loadMooncakeTrace(cfg.trace_path)
                                             : loadKvTesterTrace(cfg.trace_path));
    // The whole trace unless --requests was given (its default, 400, is the data path's).
    const auto origin = cfg.origins.find("requests");
    if (origin != cfg.origins.end() && origin->second.source != ConfigSource::kDefault &&
        cfg.requests < trace.requests.size()) {
        trace.requests.resize(cfg.requests);
    }
    return trace;
}

Result<BlockReplayOptions> replayOptions(const RunConfig& cfg) {
    BlockReplayOptions o;
    o.capacity_tokens = cfg.device_tokens;
    o.page_tokens = cfg.page_size;
    o.warmup_fraction = cfg.warmup_fraction;
    o.engine_rules = cfg.replay_rules == "engine";
    o.priority_levels = cfg.priority_levels;
    o.host_tokens = cfg.host_tokens;
    if (o.host_tokens == 0 && cfg.host_ratio > 0) {
        o.host_tokens = static_cast<std::uint64_t>(cfg.host_ratio * cfg.device_tokens);
    }
    if (cfg.no_storage) {
        o.storage_tokens = 0;
    } else {
        o.storage_tokens = cfg.storage_tokens == 0 ? kUnlimitedTokens : cfg.storage_tokens;
    }
    STRATA_ASSIGN_OR_RETURN(o.policy, controller::parseEvictionPolicy(cfg.eviction));
    return o;
}

RunReport replayReport(const RunConfig& cfg, const BlockReplayResult& r) {
    RunReport report;
    report.model = cfg.model;
    report.backend = "none";
    report.workload = cfg.workload;
    report.requests = r.measured_requests;
    report.rounds = r.requests;
    report.prompt_tokens = r.measured_tokens;
    report.hit_tokens.device = r.tier_hits.device;
    report.hit_tokens.host = r.tier_hits.host;
    report.hit_tokens.storage = r.tier_hits.storage;
    report.computed_tokens = r.measured_tokens - r.hit_tokens;
    report.evictions.device_pages = r.evicted_blocks;
    report.evictions.host_pages = r.host_evicted_pages;
    report.dropped_pages = r.dropped_pages;
    report.storage.pages_written = r.storage_put_pages;
    report.storage.pages_read = r.storage_hit_pages;
    report.elapsed_seconds = r.tree_seconds;
    report.config = configToJson(cfg);
    return report;
}

constexpr std::uint64_t kMaxCapacityTokens = 1'000'000'000'000'000'000ull;  // 1e18

Result<std::vector<std::uint64_t>> parseCapacities(const std::string& text) {
    std::vector<std::uint64_t> out;
    std::stringstream items(text);
    std::string item;
    while (std::getline(items, item, ',')) {
        // The one number parser of every option (user_input.h): 1e6, 3000000, 32k, 16Gi.
        std::uint64_t v = 0;
        const std::string problem = parseWholeNumber(item, kMaxCapacityTokens, &v);
        if (!problem.empty() || v < 1) {
            return Status(StatusCode::kInvalidArgument,
                          fmt::format("capacity '{}' in --capacities '{}' {} (a positive whole "
                                      "number of tokens: 1e6, 3000000, 32k, 16Gi)",
                                      item, text, problem.empty() ? "is zero" : problem));
        }
        out.push_back(v);
    }
    if (out.empty()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "--capacities is empty: give a list such as 1e5,1e6,3e6,1e7");
    }
    return out;
}

Result<std::vector<SweepRow>> runSweep(const RunConfig& cfg) {
    auto& log = core::logger("runtime");
    STRATA_ASSIGN_OR_RETURN(std::vector<std::uint64_t> capacities,
                            parseCapacities(cfg.sweep_capacities));
    // The plot is optional: without gnuplot the sweep writes its table and says so.
    const std::string gnuplot = findOnPath("gnuplot");
    STRATA_ASSIGN_OR_RETURN(BlockReplayOptions base, replayOptions(cfg));
    const bool tiers = base.host_tokens > 0 || base.storage_tokens > 0;
    if (cfg.sweep_with_opt && tiers) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "--with-opt compares one tier with Belady's optimum: use "
                            "--host-tokens 0 --no-storage");
    }
    STRATA_ASSIGN_OR_RETURN(Trace trace, loadTrace(cfg));
    std::vector<SweepRow> rows;
    for (std::uint64_t capacity : capacities) {
        BlockReplayOptions o = base;
        o.capacity_tokens = capacity;
        STRATA_ASSIGN_OR_RETURN(BlockReplayResult r, replayBlocks(trace, o));
        SweepRow row;
        row.capacity_tokens = capacity;
        row.device = r.rate(r.tier_hits.device);
        row.host = r.rate(r.tier_hits.host);
        row.storage = r.rate(r.tier_hits.storage);
        row.total = r.hitRate();
        if (cfg.sweep_with_opt) {
            o.policy = controller::EvictionPolicy::kOptimal;
            STRATA_ASSIGN_OR_RETURN(BlockReplayResult opt, replayBlocks(trace, o));
            row.opt = opt.hitRate();
        }
        log.info("sweep: capacity {} tokens: hit rate {:.4f}{}", capacity, row.total,
                 row.opt >= 0 ? fmt::format(" (optimal {:.4f})", row.opt) : std::string());
        rows.push_back(row);
    }

    std::error_code ec;
    fs::path dir = cfg.sweep_out_dir.empty() ? fs::path(".") : fs::path(cfg.sweep_out_dir);
    fs::create_directories(dir, ec);
    if (!ec) dir = fs::absolute(dir, ec).lexically_normal();
    if (ec) {
        return STRATA_ERROR(StatusCode::kIoError, "cannot create the sweep directory {}: {}",
                            cfg.sweep_out_dir, ec.message());
    }
    std::string csv =
        "capacity_tokens,hit_rate_device,hit_rate_host,hit_rate_storage,hit_rate_total";
    if (cfg.sweep_with_opt) csv += ",hit_rate_opt";
    csv += "\n";
    nlohmann::ordered_json json_rows = nlohmann::ordered_json::array();
    for (const SweepRow& r : rows) {
        csv += fmt::format("{},{:.6f},{:.6f},{:.6f},{:.6f}", r.capacity_tokens, r.device, r.host,
                           r.storage, r.total);
        if (cfg.sweep_with_opt) csv += fmt::format(",{:.6f}", r.opt);
        csv += "\n";
        nlohmann::ordered_json j = {
            {"capacity_tokens", r.capacity_tokens},
            {"hit_rate",
             {{"device", r.device}, {"host", r.host}, {"storage", r.storage}, {"total", r.total}}}};
        if (cfg.sweep_with_opt) j["hit_rate_opt"] = r.opt;
        json_rows.push_back(std::move(j));
    }
    nlohmann::ordered_json json = {
        {"trace", cfg.trace_path},
        {"workload", cfg.workload},
        {"page_size", cfg.page_size},
        {"eviction", cfg.eviction},
        {"host_tokens", base.host_tokens},
        {"storage_tokens", base.storage_tokens == kUnlimitedTokens
                               ? nlohmann::ordered_json("unlimited")
                               : nlohmann::ordered_json(base.storage_tokens)},
        {"warmup_fraction", cfg.warmup_fraction},
        {"rows", std::move(json_rows)}};
    STRATA_RETURN_IF_ERROR(writeText(dir / "sweep.csv", csv));
    STRATA_RETURN_IF_ERROR(writeText(dir / "sweep.json", json.dump(2) + "\n"));
    if (gnuplot.empty()) {
        log.warn(
            "sweep: wrote {} and {}; no plot: gnuplot is not on PATH (install Debian's "
            "gnuplot-nox, as launch/setup.sh does, for sweep.png)",
            (dir / "sweep.csv").string(), (dir / "sweep.json").string());
        return rows;
    }
    if (dir.string().find('\'') != std::string::npos) {
        log.warn(
            "sweep: wrote {} and {}; no plot: the directory has a single quote, which "
            "gnuplot cannot take",
            (dir / "sweep.csv").string(), (dir / "sweep.json").string());
        return rows;
    }
    const fs::path script = dir / "sweep.gp";
    STRATA_RETURN_IF_ERROR(
        writeText(script, plotScript(cfg, dir.string(), tiers, cfg.sweep_with_opt)));
    STRATA_RETURN_IF_ERROR(runGnuplot(gnuplot, script));
    if (!fs::is_regular_file(dir / "sweep.png", ec)) {
        return STRATA_ERROR(StatusCode::kIoError, "gnuplot wrote no {}",
                            (dir / "sweep.png").string());
    }
    log.info("sweep: wrote {}, {} and {}", (dir / "sweep.csv").string(),
             (dir / "sweep.json").string(), (dir / "sweep.png").string());
    return rows;
}

}  // namespace strata::app
