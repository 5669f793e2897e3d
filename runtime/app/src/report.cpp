#include "strata/app/report.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <numeric>
#include <system_error>

namespace strata::app {
namespace {

double fraction(std::uint64_t part, std::uint64_t whole) {
    return whole == 0 ? 0.0 : static_cast<double>(part) / static_cast<double>(whole);
}

double percent(std::uint64_t part, std::uint64_t whole) { return 100.0 * fraction(part, whole); }

nlohmann::json pathJson(const TransferPath& path) {
    return {{"bytes", path.bytes},
            {"seconds", path.seconds},
            {"gb_per_s", path.gbPerSecond()},
            {"pages", path.pages},
            {"round_seconds", path.round_seconds}};
}

// "SIGTERM", "SIGINT", "SIGHUP" (the signals strata-run stops at), else "signal N".
std::string signalName(int sig) {
    switch (sig) {
        case SIGTERM:
            return "SIGTERM";
        case SIGINT:
            return "SIGINT";
        case SIGHUP:
            return "SIGHUP";
        default:
            return fmt::format("signal {}", sig);
    }
}

std::string errnoText(int error) {
    return std::error_code(error, std::generic_category()).message();
}

std::string pathLine(const char* name, const TransferPath& path, std::uint64_t operations,
                     const char* operation_name) {
    return fmt::format("{} {:.3f} GB in {:.3f} s of copy time ({:.2f} GB/s), {} pages, {} {}", name,
                       static_cast<double>(path.bytes) / 1e9, path.seconds, path.gbPerSecond(),
                       path.pages, operations, operation_name);
}

}  // namespace

double TransferPath::gbPerSecond() const noexcept {
    return seconds > 0 ? static_cast<double>(bytes) / seconds / 1e9 : 0.0;
}

SyncStats summarizeSync(std::vector<double> round_us) {
    SyncStats stats;
    if (round_us.empty()) return stats;
    stats.rounds = round_us.size();
    stats.mean_us = std::accumulate(round_us.begin(), round_us.end(), 0.0) /
                    static_cast<double>(round_us.size());
    // Nearest rank: the smallest value with at least 99% of the samples at or below it.
    const auto rank =
        static_cast<std::size_t>(std::ceil(0.99 * static_cast<double>(round_us.size())));
    const std::size_t index = std::max<std::size_t>(rank, 1) - 1;
    std::nth_element(round_us.begin(), round_us.begin() + static_cast<std::ptrdiff_t>(index),
                     round_us.end());
    stats.p99_us = round_us[index];
    return stats;
}

nlohmann::json configToJson(const RunConfig& c) {
    return {
        {"config", c.config_file},
        {"model", c.model},
        {"list_models", c.list_models},
        {"layers", c.layers},
        {"workload", c.workload},
        {"trace", c.trace_path},
        {"requests", c.requests},
        {"seed", c.seed},
        {"page_size", c.page_size},
        {"device_tokens", c.device_tokens},
        {"host_tokens", c.host_tokens},
        {"host_ratio", c.host_ratio},
        {"host_layout", c.host_layout},
        {"state_slots", c.state_slots},
        {"write_policy", c.write_policy},
        {"eviction", c.eviction},
        {"backend", c.backend},
        {"report", c.report_path},
        {"batch", c.batch},
        {"tp", c.tp},
        {"cp", c.cp},
        {"pp", c.pp},
        {"check_consistency", c.check_consistency},
        {"jitter_us", c.jitter_us},
        {"log_level", c.log_level},
        {"load_back_threshold", c.load_back_threshold},
        {"storage_dir", c.storage_dir},
        {"storage_tokens", c.storage_tokens},
        {"no_storage", c.no_storage},
        {"prefetch_policy", c.prefetch_policy},
        {"data", c.data},
        {"warmup_fraction", c.warmup_fraction},
        {"replay_rules", c.replay_rules},
        {"priority_levels", c.priority_levels},
        {"remote", c.remote},
        {"remote_timeout_ms", c.remote_timeout_ms},
        {"striped_loads", c.striped_loads},
        {"round_timeout_s", c.round_timeout_s},
        {"on_round_timeout", c.on_round_timeout},
        {"deterministic", c.deterministic},
        {"progress_s", c.progress_s},
        {"duration_s", c.duration_s},
        {"metrics_port", c.metrics_port},
        {"metrics_address", c.metrics_address},
        {"metrics_file", c.metrics_file},
        {"metrics_interval_s", c.metrics_interval_s},
        {"kv_events", c.kv_events},
        {"kv_events_layout", c.kv_events_layout},
        {"kv_events_topic", c.kv_events_topic},
        {"kv_events_wait_ms", c.kv_events_wait_ms},
    };
}

nlohmann::json toJson(const RunReport& r) {
    const std::uint64_t prompt = r.prompt_tokens;
    nlohmann::json j;
    j["version"] = r.version;
    j["git_hash"] = r.git_hash;
    j["start_time"] = r.start_time;
    j["hosts"] = r.hosts;
    j["deterministic"] = r.deterministic;
    j["per_rank"] = nlohmann::json::array();
    for (const RankFigures& f : r.per_rank) {
        j["per_rank"].push_back({{"rank", f.rank},
                                 {"host", f.host},
                                 {"requests", f.requests},
                                 {"prompt_tokens", f.prompt_tokens},
                                 {"computed_tokens", f.computed_tokens},
                                 {"hit_tokens",
                                  {{"device", f.hit_tokens.device},
                                   {"host", f.hit_tokens.host},
                                   {"remote", f.hit_tokens.remote},
                                   {"storage", f.hit_tokens.storage}}},
                                 {"pages_verified", f.pages_verified},
                                 {"pages_mismatched", f.pages_mismatched},
                                 {"loads", f.loads},
                                 {"backups", f.backups},
                                 {"h2d_bytes", f.h2d_bytes},
                                 {"d2h_bytes", f.d2h_bytes},
                                 {"load_wait_seconds", f.load_wait_seconds},
                                 {"elapsed_seconds", f.elapsed_seconds}});
    }
    j["ranks"] = r.ranks;
    j["tp"] = r.tp;
    j["cp"] = r.cp;
    j["pp"] = r.pp;
    j["dp"] = r.dp;
    j["model"] = r.model;
    j["backend"] = r.backend;
    j["workload"] = r.workload;
    j["requests"] = r.requests;
    j["requests_planned"] = r.requests_planned;
    j["interrupted"] = r.interrupt_signal != 0;
    j["interrupt_signal"] =
        r.interrupt_signal != 0 ? nlohmann::json(signalName(r.interrupt_signal)) : nlohmann::json();
    j["rounds"] = r.rounds;
    j["prompt_tokens"] = r.prompt_tokens;
    j["computed_tokens"] = r.computed_tokens;
    j["hit_tokens"] = {{"device", r.hit_tokens.device},
                       {"host", r.hit_tokens.host},
                       {"remote", r.hit_tokens.remote},
                       {"storage", r.hit_tokens.storage}};
    j["hit_rate"] = {{"device", fraction(r.hit_tokens.device, prompt)},
                     {"host", fraction(r.hit_tokens.host, prompt)},
                     {"remote", fraction(r.hit_tokens.remote, prompt)},
                     {"storage", fraction(r.hit_tokens.storage, prompt)},
                     {"total", fraction(r.hit_tokens.total(), prompt)}};
    j["pages_verified"] = r.pages_verified;
    j["pages_mismatched"] = r.pages_mismatched;
    j["pools"] = nlohmann::json::object();
    for (const PoolVerification& p : r.pools) {
        j["pools"][p.name] = {{"kind", p.kind},
                              {"pages_verified", p.pages_verified},
                              {"pages_mismatched", p.pages_mismatched}};
    }
    j["transfer"] = {{"d2h", pathJson(r.d2h)}, {"h2d", pathJson(r.h2d)}};
    j["backups"] = r.backups;
    j["loads"] = r.loads;
    j["evictions"] = {{"device_pages", r.evictions.device_pages},
                      {"host_pages", r.evictions.host_pages}};
    j["write_back_pages"] = r.write_back_pages;
    j["dropped_pages"] = r.dropped_pages;
    j["rejected_admissions"] = r.rejected_admissions;
    j["sync"] = {{"rounds", r.sync.rounds}, {"mean_us", r.sync.mean_us}, {"p99_us", r.sync.p99_us}};
    j["consistency"] = {{"rounds_checked", r.consistency.rounds_checked},
                        {"divergences", r.consistency.divergences}};
    j["storage"] = {{"pages_written", r.storage.pages_written},
                    {"pages_read", r.storage.pages_read},
                    {"checksum_failures", r.storage.checksum_failures}};
    j["host"] = {
        {"sharing", r.host.sharing},
        {"bytes_per_node", r.host.bytes_per_node},
        {"bytes_per_node_unshared", r.host.bytes_per_node_unshared},
        {"copies_per_replicated_page", r.host.copies_per_replicated_page},
        {"cross_replica_hit_pages", r.host.cross_replica_hit_pages},
        {"cross_replica_hit_bytes", r.host.cross_replica_hit_bytes},
        {"cross_replica_gb_per_s", r.host.cross_replica_seconds > 0
                                       ? static_cast<double>(r.host.cross_replica_hit_bytes) /
                                             r.host.cross_replica_seconds / 1e9
                                       : 0.0},
        {"pages_published", r.host.pages_published},
        {"checksum_failures", r.host.checksum_failures},
        {"retract_waits", r.host.retract_waits},
        {"expired_leases", r.host.expired_leases}};
    j["remote"] = {{"enabled", r.remote.enabled},
                   {"pages_pulled", r.remote.pages_pulled},
                   {"bytes", r.remote.bytes},
                   {"pages_published", r.remote.pages_published},
                   {"checksum_failures", r.remote.checksum_failures},
                   {"rejected_messages", r.remote.rejected_messages},
                   {"timeouts", r.remote.timeouts},
                   {"pull_seconds", r.remote.pull_seconds},
                   {"gb_per_s", r.remote.pull_seconds > 0 ? static_cast<double>(r.remote.bytes) /
                                                                r.remote.pull_seconds / 1e9
                                                          : 0.0}};
    j["striped"] = {{"enabled", r.striped.enabled},
                    {"off_reason", r.striped.off_reason},
                    {"pages", r.striped.pages},
                    {"bytes", r.striped.bytes}};
    j["kv_events"] = {{"enabled", r.kv_events.enabled},
                      {"publishers", r.kv_events.publishers},
                      {"batches", r.kv_events.batches},
                      {"events", r.kv_events.events},
                      {"dropped_batches", r.kv_events.dropped_batches},
                      {"dropped_events", r.kv_events.dropped_events},
                      {"cleared", r.kv_events.cleared},
                      {"stored_pages", r.kv_events.stored_pages},
                      {"removed_pages", r.kv_events.removed_pages},
                      {"stored_events", r.kv_events.stored_events},
                      {"removed_events", r.kv_events.removed_events}};
    j["load_wait_seconds"] = r.load_wait_seconds;
    j["elapsed_seconds"] = r.elapsed_seconds;
    j["config"] = r.config;
    return j;
}

Status writeJson(const RunReport& report, const std::string& path) {
    const std::string text = toJson(report).dump(2) + "\n";
    std::FILE* file = std::fopen(path.c_str(), "w");
    if (file == nullptr) {
        return STRATA_ERROR(StatusCode::kIoError, "cannot open report '{}' for writing: {}", path,
                            errnoText(errno));
    }
    const std::size_t written = std::fwrite(text.data(), 1, text.size(), file);
    const int write_errno = errno;
    // fclose flushes: a full disk may only show here.
    const bool closed = std::fclose(file) == 0;
    if (written != text.size()) {
        return STRATA_ERROR(StatusCode::kIoError, "cannot write report '{}': {}", path,
                            errnoText(write_errno));
    }
    if (!closed) {
        return STRATA_ERROR(StatusCode::kIoError, "cannot write report '{}': {}", path,
                            errnoText(errno));
    }
    return Status::ok();
}

Status checkReportWritable(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            return STRATA_ERROR(StatusCode::kIoError, "cannot write report '{}': it is a directory",
                                path);
        }
        // O_NONBLOCK: a FIFO without a reader fails instead of blocking.
        const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
            return STRATA_ERROR(StatusCode::kIoError, "cannot write report '{}': {}", path,
                                errnoText(errno));
        }
        ::close(fd);
        return Status::ok();
    }
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        return STRATA_ERROR(StatusCode::kIoError, "cannot create report '{}': {}", path,
                            errnoText(errno));
    }
    ::close(fd);
    ::unlink(path.c_str());
    return Status::ok();
}

std::string summaryText(const RunReport& r) {
    const std::uint64_t prompt = r.prompt_tokens;
    const std::uint64_t reused = r.hit_tokens.total();
    std::string out;
    out += fmt::format(
        "strata-run: {} requests in {} rounds, {:.2f} s; {} rank(s) (tp {} cp {} pp {} dp {}); "
        "model {}; backend {}\n",
        r.requests, r.rounds, r.elapsed_seconds, r.ranks, r.tp, r.cp, r.pp, r.dp, r.model,
        r.backend);
    if (r.interrupt_signal != 0) {
        out += fmt::format("  interrupted: {} after {} of {} requests (the figures cover those)\n",
                           signalName(r.interrupt_signal), r.requests, r.requests_planned);
    }
    out += fmt::format("  tokens:      {} prompt = {} reused ({:.1f}%) + {} computed ({:.1f}%)\n",
                       prompt, reused, percent(reused, prompt), r.computed_tokens,
                       percent(r.computed_tokens, prompt));
    out += fmt::format(
        "  hit rate:    device {:.1f}%, host {:.1f}%, remote {:.1f}%, storage {:.1f}%, total "
        "{:.1f}%\n",
        percent(r.hit_tokens.device, prompt), percent(r.hit_tokens.host, prompt),
        percent(r.hit_tokens.remote, prompt), percent(r.hit_tokens.storage, prompt),
        percent(reused, prompt));
    out += "  transfer:    " + pathLine("d2h", r.d2h, r.backups, "backups") + "\n";
    out += "               " + pathLine("h2d", r.h2d, r.loads, "loads") + "\n";
    if (r.striped.enabled) {
        out += fmt::format(
            "  striped:     {} pages ({:.1f} MB) of replicated pools loaded striped over NCCL; "
            "workers waited {:.3f} s for loads\n",
            r.striped.pages, static_cast<double>(r.striped.bytes) / 1e6, r.load_wait_seconds);
    } else if (r.loads > 0) {
        out += fmt::format("  striped:     off{}; workers waited {:.3f} s for loads\n",
                           r.striped.off_reason.empty() ? "" : " (" + r.striped.off_reason + ")",
                           r.load_wait_seconds);
    }
    out += fmt::format(
        "  cache:       evicted {} device / {} host pages; {} written back, {} dropped; {} "
        "admissions rejected\n",
        r.evictions.device_pages, r.evictions.host_pages, r.write_back_pages, r.dropped_pages,
        r.rejected_admissions);
    out += fmt::format("  verify:      {} pages verified, {} mismatched: {}\n", r.pages_verified,
                       r.pages_mismatched, r.pages_mismatched == 0 ? "OK" : "FAILED");
    if (r.pools.size() > 1) {
        for (const PoolVerification& p : r.pools) {
            out += fmt::format("               pool {} ({}): {} pages verified, {} mismatched\n",
                               p.name, p.kind, p.pages_verified, p.pages_mismatched);
        }
    }
    out += fmt::format("  sync:        {} rounds, mean {:.1f} us, p99 {:.1f} us\n", r.sync.rounds,
                       r.sync.mean_us, r.sync.p99_us);
    if (r.consistency.rounds_checked > 0) {
        out += fmt::format("  consistency: {} rounds checked, {} divergences: {}\n",
                           r.consistency.rounds_checked, r.consistency.divergences,
                           r.consistency.divergences == 0 ? "OK" : "FAILED");
    }
    if (r.storage.pages_written + r.storage.pages_read + r.storage.checksum_failures > 0) {
        out +=
            fmt::format("  storage:     {} pages written, {} read, {} checksum failures\n",
                        r.storage.pages_written, r.storage.pages_read, r.storage.checksum_failures);
    }
    out += fmt::format(
        "  host tier:   sharing {}, {:.1f} MB per node ({:.1f} MB with per-rank pools), {:g} "
        "copies per replicated page\n",
        r.host.sharing, static_cast<double>(r.host.bytes_per_node) / 1e6,
        static_cast<double>(r.host.bytes_per_node_unshared) / 1e6,
        r.host.copies_per_replicated_page);
    if (r.host.sharing == "node") {
        out += fmt::format(
            "  node tier:   {} cross-replica host hit pages ({:.1f} MB, {:.2f} GB/s), {} "
            "published, {} checksum failures, {} evictions waited for a pin, {} expired "
            "leases\n",
            r.host.cross_replica_hit_pages,
            static_cast<double>(r.host.cross_replica_hit_bytes) / 1e6,
            r.host.cross_replica_seconds > 0 ? static_cast<double>(r.host.cross_replica_hit_bytes) /
                                                   r.host.cross_replica_seconds / 1e9
                                             : 0.0,
            r.host.pages_published, r.host.checksum_failures, r.host.retract_waits,
            r.host.expired_leases);
    }
    if (r.remote.enabled) {
        out += fmt::format(
            "  remote:      {} pages pulled ({:.1f} MB), {} published, {} checksum failures, {} "
            "timeouts, {} rejected messages\n",
            r.remote.pages_pulled, static_cast<double>(r.remote.bytes) / 1e6,
            r.remote.pages_published, r.remote.checksum_failures, r.remote.timeouts,
            r.remote.rejected_messages);
    }
    if (r.kv_events.enabled) {
        auto count = [](const std::map<std::string, std::uint64_t>& m, const char* medium) {
            auto it = m.find(medium);
            return it == m.end() ? std::uint64_t{0} : it->second;
        };
        const auto& k = r.kv_events;
        out += fmt::format(
            "  kv events:   {} batches, {} events from {} publishers; pages stored GPU {} CPU {} "
            "DISK {}, removed GPU {} CPU {}; {} batches dropped\n",
            k.batches, k.events, k.publishers, count(k.stored_pages, "GPU"),
            count(k.stored_pages, "CPU"), count(k.stored_pages, "DISK"),
            count(k.removed_pages, "GPU"), count(k.removed_pages, "CPU"), k.dropped_batches);
    }
    return out;
}

}  // namespace strata::app
