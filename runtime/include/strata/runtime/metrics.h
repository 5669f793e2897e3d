// Live metrics of a rank in the Prometheus text exposition format (version 0.0.4): metric families
// of counters, gauges and summaries with labels, their rendering, a registry that holds the last
// snapshot, and the snapshot of a Cache's figures. The HTTP endpoint and the file writer that serve
// a registry are in metrics_export.h.
// Thread-safety: MetricsRegistry is safe from any thread (publish on the worker thread, render on
// the HTTP or file thread); cacheMetrics reads the Cache and must run on the Cache's own thread.
#pragma once

#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "strata/core/status.h"

namespace strata::runtime {

class Cache;

enum class MetricType : std::uint8_t { kCounter, kGauge, kSummary };

// Label name/value pairs, in the order they are rendered.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

struct MetricSample {
    MetricLabels labels;
    double value = 0.0;
    // Appended to the family name: "" for counters and gauges; for a summary "" (a quantile
    // sample, with a "quantile" label), "_sum" or "_count".
    std::string suffix;
};

struct MetricFamily {
    std::string name;  // [a-zA-Z_:][a-zA-Z0-9_:]*; a counter's ends in "_total"
    MetricType type = MetricType::kGauge;
    std::string help;  // one line; '\' and newlines are escaped when rendered
    std::vector<MetricSample> samples;
};

// True for a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) or label name ([a-zA-Z_][a-zA-Z0-9_]*,
// not starting with "__").
bool isValidMetricName(std::string_view name) noexcept;
bool isValidLabelName(std::string_view name) noexcept;

// Checks what renderMetrics() relies on: valid, distinct family names, a counter's name ending in
// "_total", valid label names, a suffix only on summaries ("", "_sum", "_count"). kInvalidArgument
// naming the family and the problem.
Status checkMetricFamilies(std::span<const MetricFamily> families);

// The text exposition format: per family "# HELP name help" and "# TYPE name counter|gauge|summary"
// lines, then one "name{label="value",...} value" line per sample. Label values escape '\', '"'
// and newline; HELP text escapes '\' and newline. Values: integers without an exponent up to
// 2^53, other numbers in the shortest form that reads back exactly, NaN, +Inf and -Inf as
// Prometheus spells them. The families must pass checkMetricFamilies (not checked here).
std::string renderMetrics(std::span<const MetricFamily> families);

// Holds the last published snapshot, rendered once at publication, for readers on other threads.
class MetricsRegistry {
public:
    // Replaces the snapshot. kInvalidArgument (checkMetricFamilies) leaves the previous one.
    Status publish(std::vector<MetricFamily> families);
    // The last snapshot as text ("" before the first publication).
    std::string text() const;
    // Number of snapshots published so far.
    std::uint64_t publications() const;

private:
    mutable std::mutex mutex_;
    std::string text_;
    std::uint64_t publications_ = 0;
};

// Where a rank sits in the job: the labels on every sample (rank, tp, cp, pp, dp, host).
struct MetricsPlace {
    int rank = 0;
    int tp = 0, cp = 0, pp = 0, dp = 0;  // this rank's coordinates in the grid
    std::string host;
};
MetricLabels placeLabels(const MetricsPlace& place);

// Figures that live outside the Cache: the decision group's agreement timing and the round
// watchdog's warnings (strata-run fills them from MpiDecisionGroup::syncStats()).
struct AgreementFigures {
    std::uint64_t rounds = 0;  // timed agreements (agreeMin calls)
    double total_seconds = 0, p99_seconds = 0, max_seconds = 0;
    std::uint64_t watchdog_warnings = 0;
};

// One snapshot of a rank's Cache and agreement figures: hits per tier, requests, loads, backups,
// bytes and copy bandwidth, evictions, prefetch outcomes, queue depths and pool occupancy,
// agreement rounds and latency, storage and remote-tier figures (checksum failures, timeouts).
// Every sample carries `place` (placeLabels) first. The metric names are listed in
// runtime/README.md and the top README's "Metrics" section. On the Cache's thread only.
std::vector<MetricFamily> cacheMetrics(Cache& cache, const MetricLabels& place,
                                       const AgreementFigures& agreement);

}  // namespace strata::runtime
