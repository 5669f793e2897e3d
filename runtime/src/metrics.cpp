#include "strata/runtime/metrics.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <set>

#include "strata/runtime/cache.h"
#include "strata/version.h"

namespace strata::runtime {
namespace {

bool isNameStart(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool isNameChar(char c) noexcept { return isNameStart(c) || (c >= '0' && c <= '9'); }

std::string_view typeName(MetricType type) noexcept {
    switch (type) {
        case MetricType::kCounter:
            return "counter";
        case MetricType::kGauge:
            return "gauge";
        case MetricType::kSummary:
            return "summary";
    }
    return "untyped";
}

// Label values escape backslash, double quote and newline; HELP text backslash and newline.
void appendEscaped(std::string* out, std::string_view text, bool quote) {
    for (char c : text) {
        if (c == '\\') {
            *out += "\\\\";
        } else if (c == '\n') {
            *out += "\\n";
        } else if (quote && c == '"') {
            *out += "\\\"";
        } else {
            out->push_back(c);
        }
    }
}

void appendValue(std::string* out, double v) {
    if (std::isnan(v)) {
        *out += "NaN";
    } else if (std::isinf(v)) {
        *out += v > 0 ? "+Inf" : "-Inf";
    } else if (v == std::floor(v) && std::fabs(v) <= 9007199254740992.0) {
        *out += fmt::format("{}", static_cast<std::int64_t>(v));
    } else {
        char buf[64];
        auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);  // shortest exact form
        out->append(buf, ec == std::errc() ? end : buf);
    }
}

}  // namespace

bool isValidMetricName(std::string_view name) noexcept {
    if (name.empty() || !(isNameStart(name[0]) || name[0] == ':')) return false;
    for (char c : name) {
        if (!isNameChar(c) && c != ':') return false;
    }
    return true;
}

bool isValidLabelName(std::string_view name) noexcept {
    if (name.empty() || !isNameStart(name[0]) || name.starts_with("__")) return false;
    for (char c : name) {
        if (!isNameChar(c)) return false;
    }
    return true;
}

Status checkMetricFamilies(std::span<const MetricFamily> families) {
    std::set<std::string_view> names;
    for (const MetricFamily& f : families) {
        if (!isValidMetricName(f.name)) {
            return STRATA_ERROR(StatusCode::kInvalidArgument, "metric name '{}' is not valid",
                                f.name);
        }
        if (!names.insert(f.name).second) {
            return STRATA_ERROR(StatusCode::kInvalidArgument, "metric '{}' appears twice", f.name);
        }
        if (f.type == MetricType::kCounter && !f.name.ends_with("_total")) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "counter '{}' must end in _total (Prometheus naming)", f.name);
        }
        for (const MetricSample& s : f.samples) {
            for (const auto& [label, value] : s.labels) {
                if (!isValidLabelName(label)) {
                    return STRATA_ERROR(StatusCode::kInvalidArgument,
                                        "metric '{}': label name '{}' is not valid", f.name, label);
                }
            }
            const bool summary_part = s.suffix == "_sum" || s.suffix == "_count";
            if (!s.suffix.empty() && !(f.type == MetricType::kSummary && summary_part)) {
                return STRATA_ERROR(StatusCode::kInvalidArgument,
                                    "metric '{}': sample suffix '{}' (only a summary's _sum and "
                                    "_count)",
                                    f.name, s.suffix);
            }
        }
    }
    return Status::ok();
}

std::string renderMetrics(std::span<const MetricFamily> families) {
    std::string out;
    for (const MetricFamily& f : families) {
        out += "# HELP ";
        out += f.name;
        out += ' ';
        appendEscaped(&out, f.help, /*quote=*/false);
        out += "\n# TYPE ";
        out += f.name;
        out += ' ';
        out += typeName(f.type);
        out += '\n';
        for (const MetricSample& s : f.samples) {
            out += f.name;
            out += s.suffix;
            if (!s.labels.empty()) {
                out += '{';
                for (std::size_t i = 0; i < s.labels.size(); ++i) {
                    if (i > 0) out += ',';
                    out += s.labels[i].first;
                    out += "=\"";
                    appendEscaped(&out, s.labels[i].second, /*quote=*/true);
                    out += '"';
                }
                out += '}';
            }
            out += ' ';
            appendValue(&out, s.value);
            out += '\n';
        }
    }
    return out;
}

Status MetricsRegistry::publish(std::vector<MetricFamily> families) {
    STRATA_RETURN_IF_ERROR(checkMetricFamilies(families));
    std::string text = renderMetrics(families);
    std::lock_guard<std::mutex> lock(mutex_);
    text_ = std::move(text);
    ++publications_;
    return Status::ok();
}

std::string MetricsRegistry::text() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return text_;
}

std::uint64_t MetricsRegistry::publications() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return publications_;
}

MetricLabels placeLabels(const MetricsPlace& place) {
    return {{"rank", std::to_string(place.rank)}, {"tp", std::to_string(place.tp)},
            {"cp", std::to_string(place.cp)},     {"pp", std::to_string(place.pp)},
            {"dp", std::to_string(place.dp)},     {"host", place.host}};
}

namespace {

// Builds the families of one snapshot, each sample with the place labels first.
class FamilyBuilder {
public:
    explicit FamilyBuilder(const MetricLabels& place) : place_(place) {}

    // A family with one sample per (label value, value) pair; an empty label name: one sample
    // with the place labels only.
    void add(std::string name, MetricType type, std::string help, std::string_view label,
             std::initializer_list<std::pair<std::string_view, double>> values) {
        MetricFamily f{std::move(name), type, std::move(help), {}};
        for (const auto& [label_value, value] : values) {
            MetricSample s{place_, value, {}};
            if (!label.empty()) s.labels.emplace_back(label, label_value);
            f.samples.push_back(std::move(s));
        }
        families_.push_back(std::move(f));
    }
    void counter(std::string name, std::string help, double value) {
        add(std::move(name), MetricType::kCounter, std::move(help), {}, {{{}, value}});
    }
    void gauge(std::string name, std::string help, double value) {
        add(std::move(name), MetricType::kGauge, std::move(help), {}, {{{}, value}});
    }
    void summary(std::string name, std::string help, double quantile, double value, double sum,
                 double count) {
        MetricFamily f{std::move(name), MetricType::kSummary, std::move(help), {}};
        MetricSample q{place_, value, {}};
        q.labels.emplace_back("quantile", fmt::format("{}", quantile));
        f.samples.push_back(std::move(q));
        f.samples.push_back({place_, sum, "_sum"});
        f.samples.push_back({place_, count, "_count"});
        families_.push_back(std::move(f));
    }
    std::vector<MetricFamily> take() { return std::move(families_); }

private:
    const MetricLabels& place_;
    std::vector<MetricFamily> families_;
};

double ratio(double bytes, double seconds) { return seconds > 0 ? bytes / seconds : 0.0; }

}  // namespace

std::vector<MetricFamily> cacheMetrics(Cache& cache, const MetricLabels& place,
                                       const AgreementFigures& agreement) {
    using T = MetricType;
    const TokenStats& t = cache.tokenStats();
    controller::CacheController& ctl = cache.controller();
    const controller::ControllerStats& c = ctl.stats();
    const io::StoreStats st = cache.storageStats();
    const io::RemoteStoreStats rs = cache.remoteStats();
    const auto q = ctl.queueDepths();
    const auto d = [](std::uint64_t v) { return static_cast<double>(v); };

    FamilyBuilder b(place);
    b.add("strata_build_info", T::kGauge, "always 1; the label names Strata's version", "version",
          {{STRATA_VERSION, 1.0}});
    b.counter("strata_requests_total", "requests admitted", d(t.requests));
    b.counter("strata_prompt_tokens_total", "prompt tokens of the admitted requests",
              d(t.prompt_tokens));
    b.counter("strata_computed_tokens_total", "prompt tokens not found in any tier (computed)",
              d(t.computed_tokens));
    b.add("strata_hit_tokens_total", T::kCounter,
          "prompt tokens reused, by the tier they came from (host: the host tier's own)", "tier",
          {{"device", d(t.device_hit_tokens)},
           {"host", d(t.host_hit_tokens)},
           {"storage", d(t.storage_hit_tokens)},
           {"remote", d(t.remote_hit_tokens)}});
    b.counter("strata_rounds_total", "scheduling rounds (step calls)", d(c.rounds));
    b.counter("strata_rejected_admissions_total",
              "admissions refused because the device was full even after eviction",
              d(c.rejected_admissions));

    b.counter("strata_loads_total", "host-to-device load operations", d(c.load_ops));
    b.counter("strata_load_pages_total", "pages loaded host to device", d(c.load_pages));
    b.counter("strata_load_bytes_total", "bytes loaded host to device", d(c.load_bytes));
    b.counter("strata_load_seconds_total", "issue-to-completion time of loads, summed per op",
              c.load_seconds);
    b.counter("strata_backups_total", "device-to-host backup operations", d(c.backup_ops));
    b.counter("strata_backup_pages_total", "pages backed up device to host", d(c.backup_pages));
    b.counter("strata_backup_bytes_total", "bytes backed up device to host", d(c.backup_bytes));
    b.counter("strata_backup_seconds_total", "issue-to-completion time of backups, summed per op",
              c.backup_seconds);
    b.add("strata_copy_busy_seconds_total", T::kCounter,
          "time the copy streams were busy with loads and backups (events around each batch)",
          "direction", {{"load", c.load_busy_seconds}, {"backup", c.backup_busy_seconds}});
    b.add("strata_copy_bandwidth_bytes_per_second", T::kGauge,
          "mean copy bandwidth since start: bytes over the time the copy stream was busy",
          "direction",
          {{"load", ratio(d(c.load_bytes), c.load_busy_seconds)},
           {"backup", ratio(d(c.backup_bytes), c.backup_busy_seconds)}});
    b.counter("strata_striped_load_bytes_total", "bytes of loads striped over NCCL (of load bytes)",
              d(c.striped_bytes));

    b.add("strata_evicted_pages_total", T::kCounter, "pages evicted, by tier", "tier",
          {{"device", d(c.device_evicted_pages)},
           {"host", d(c.host_evicted_pages)},
           {"storage", d(st.pages_evicted)}});
    b.counter("strata_write_back_pages_total", "pages backed up at device eviction (write_back)",
              d(c.write_back_pages));
    b.counter("strata_dropped_pages_total", "pages evicted without a host copy (host full)",
              d(c.dropped_pages));

    b.counter("strata_prefetches_total", "prefetches started (storage and remote tiers)",
              d(c.prefetches));
    b.counter("strata_prefetch_timeouts_total", "prefetches whose wait the policy's timeout ended",
              d(c.prefetch_timeouts));
    b.add("strata_prefetch_pages_total", T::kCounter,
          "pages a prefetch brought into the host tier, by the tier they came from", "tier",
          {{"storage", d(c.prefetch_pages - c.remote_prefetch_pages)},
           {"remote", d(c.remote_prefetch_pages)}});

    b.add("strata_queue_depth", T::kGauge, "operations waiting or in flight, by queue", "queue",
          {{"loads", d(q.loads)},
           {"backups", d(q.backups)},
           {"storage_backups", d(q.storage_backups)},
           {"prefetches", d(q.prefetches)}});
    b.gauge("strata_live_requests", "requests admitted and not yet released",
            d(ctl.liveRequests()));
    const auto& dev = ctl.deviceAllocator();
    const auto& host = ctl.hostAllocator();
    b.add("strata_used_pages", T::kGauge, "pages allocated in the main slot space, by tier", "tier",
          {{"device", d(dev.usedPages())}, {"host", d(host.usedPages())}});
    b.add("strata_capacity_pages", T::kGauge, "pages of the main slot space, by tier", "tier",
          {{"device", d(dev.numPages())}, {"host", d(host.numPages())}});

    b.summary("strata_agreement_seconds",
              "duration of the per-round agreement of the decision group (quantile since start)",
              0.99, agreement.p99_seconds, agreement.total_seconds, d(agreement.rounds));
    b.gauge("strata_agreement_max_seconds", "longest agreement since start", agreement.max_seconds);
    b.counter("strata_round_watchdog_warnings_total",
              "round watchdog warnings (a collective waited past round_timeout_s)",
              d(agreement.watchdog_warnings));

    b.counter("strata_storage_written_pages_total", "pages written to the storage tier",
              d(st.pages_written));
    b.counter("strata_storage_read_pages_total", "pages read from the storage tier",
              d(st.pages_read));
    b.counter("strata_storage_written_bytes_total", "bytes written to the storage tier",
              d(st.bytes_written));
    b.counter("strata_storage_read_bytes_total", "bytes read from the storage tier",
              d(st.bytes_read));
    b.counter("strata_storage_write_failures_total", "pages not stored (full disk, I/O error)",
              d(st.write_failures));
    b.counter("strata_remote_pulled_pages_total", "pages pulled from peers' host pools",
              d(rs.pages_pulled));
    b.counter("strata_remote_pulled_bytes_total", "bytes pulled from peers' host pools",
              d(rs.bytes_pulled));
    b.counter("strata_remote_published_pages_total", "pages announced to the remote tier",
              d(rs.pages_published));
    b.counter("strata_remote_timeouts_total", "remote lookups or pulls whose peer did not answer",
              d(rs.timeouts));
    b.add("strata_checksum_failures_total", T::kCounter,
          "pages read but not served because their checksum failed, by tier", "tier",
          {{"storage", d(st.checksum_failures)}, {"remote", d(rs.checksum_failures)}});
    return b.take();
}

}  // namespace strata::runtime
