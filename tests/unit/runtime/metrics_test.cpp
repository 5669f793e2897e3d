// Live metrics: the text exposition format (HELP/TYPE lines, label escaping, values), the checks
// on families, the registry, the atomic file writer, the HTTP endpoint, and a snapshot of a real
// one-rank Cache.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <thread>

#include "strata/comm/decision_group.h"
#include "strata/runtime/cache.h"
#include "strata/runtime/metrics.h"
#include "strata/runtime/metrics_export.h"

namespace strata::runtime {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
namespace fs = std::filesystem;

std::string readFile(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// A fresh directory under the test's temporary directory, removed at the end.
struct TempDir {
    fs::path path;
    TempDir() {
        std::string t = (fs::temp_directory_path() / "strata-metrics-test-XXXXXX").string();
        EXPECT_NE(::mkdtemp(t.data()), nullptr);
        path = t;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

// Polls `done` every 10 ms for up to 60 s (a loaded machine); true once it held.
template <typename F>
bool eventually(F done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
        if (done()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return done();
}

std::vector<MetricFamily> oneGauge(double value) {
    return {{"strata_test_value", MetricType::kGauge, "a value", {{{{"rank", "0"}}, value, {}}}}};
}

TEST(MetricsText, HelpAndTypeLinesThenSamples) {
    std::vector<MetricFamily> f = {
        {"strata_hits_total",
         MetricType::kCounter,
         "hits per tier",
         {{{{"rank", "3"}, {"tier", "device"}}, 42, {}},
          {{{"rank", "3"}, {"tier", "host"}}, 7, {}}}},
        {"strata_depth", MetricType::kGauge, "queue depth", {{{}, 2.5, {}}}},
    };
    EXPECT_EQ(renderMetrics(f),
              "# HELP strata_hits_total hits per tier\n"
              "# TYPE strata_hits_total counter\n"
              "strata_hits_total{rank=\"3\",tier=\"device\"} 42\n"
              "strata_hits_total{rank=\"3\",tier=\"host\"} 7\n"
              "# HELP strata_depth queue depth\n"
              "# TYPE strata_depth gauge\n"
              "strata_depth 2.5\n");
}

TEST(MetricsText, EscapesLabelValuesAndHelp) {
    std::vector<MetricFamily> f = {{"strata_x",
                                    MetricType::kGauge,
                                    "a \\ backslash\nand a newline, \"quotes\" kept",
                                    {{{{"host", "a\"b\\c\nd"}}, 1, {}}}}};
    const std::string text = renderMetrics(f);
    EXPECT_THAT(text, HasSubstr("# HELP strata_x a \\\\ backslash\\nand a newline, \"quotes\" "
                                "kept\n"));
    EXPECT_THAT(text, HasSubstr("strata_x{host=\"a\\\"b\\\\c\\nd\"} 1\n"));
    // Exactly the three lines: no raw newline escaped into the output.
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3);
}

TEST(MetricsText, SummaryAndSpecialValues) {
    std::vector<MetricFamily> f = {
        {"strata_lat_seconds",
         MetricType::kSummary,
         "latency",
         {{{{"quantile", "0.99"}}, 0.125, {}}, {{}, 3.5, "_sum"}, {{}, 12, "_count"}}},
        {"strata_v",
         MetricType::kGauge,
         "special",
         {{{{"k", "nan"}}, std::numeric_limits<double>::quiet_NaN(), {}},
          {{{"k", "inf"}}, std::numeric_limits<double>::infinity(), {}},
          {{{"k", "-inf"}}, -std::numeric_limits<double>::infinity(), {}},
          {{{"k", "big"}}, 9007199254740992.0, {}},
          {{{"k", "neg"}}, -3, {}},
          {{{"k", "tiny"}}, 1e-9, {}}}},
    };
    ASSERT_TRUE(checkMetricFamilies(f).isOk());
    const std::string text = renderMetrics(f);
    EXPECT_THAT(text, HasSubstr("# TYPE strata_lat_seconds summary\n"
                                "strata_lat_seconds{quantile=\"0.99\"} 0.125\n"
                                "strata_lat_seconds_sum 3.5\n"
                                "strata_lat_seconds_count 12\n"));
    EXPECT_THAT(text, HasSubstr("strata_v{k=\"nan\"} NaN\n"));
    EXPECT_THAT(text, HasSubstr("strata_v{k=\"inf\"} +Inf\n"));
    EXPECT_THAT(text, HasSubstr("strata_v{k=\"-inf\"} -Inf\n"));
    EXPECT_THAT(text, HasSubstr("strata_v{k=\"big\"} 9007199254740992\n"));
    EXPECT_THAT(text, HasSubstr("strata_v{k=\"neg\"} -3\n"));
    EXPECT_THAT(text, HasSubstr("strata_v{k=\"tiny\"} 1e-09\n"));
}

TEST(MetricsText, NamesAreChecked) {
    EXPECT_TRUE(isValidMetricName("strata_a:b_1"));
    EXPECT_FALSE(isValidMetricName("1abc"));
    EXPECT_FALSE(isValidMetricName("a-b"));
    EXPECT_FALSE(isValidMetricName(""));
    EXPECT_TRUE(isValidLabelName("tier"));
    EXPECT_FALSE(isValidLabelName("__name"));
    EXPECT_FALSE(isValidLabelName("a:b"));

    auto problem = [](std::vector<MetricFamily> f) {
        Status s = checkMetricFamilies(f);
        EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
        return s.message();
    };
    EXPECT_THAT(problem({{"strata_hits", MetricType::kCounter, "h", {}}}),
                HasSubstr("counter 'strata_hits' must end in _total"));
    EXPECT_THAT(problem({{"strata-x", MetricType::kGauge, "h", {}}}),
                HasSubstr("metric name 'strata-x' is not valid"));
    EXPECT_THAT(problem({{"strata_x", MetricType::kGauge, "h", {{{{"bad-label", "v"}}, 1, {}}}}}),
                HasSubstr("label name 'bad-label'"));
    EXPECT_THAT(problem({{"strata_x", MetricType::kGauge, "h", {}},
                         {"strata_x", MetricType::kGauge, "h", {}}}),
                HasSubstr("'strata_x' appears twice"));
    EXPECT_THAT(problem({{"strata_x", MetricType::kGauge, "h", {{{}, 1, "_sum"}}}}),
                HasSubstr("sample suffix '_sum'"));
}

TEST(MetricsRegistry, KeepsTheLastValidSnapshot) {
    MetricsRegistry r;
    EXPECT_EQ(r.text(), "");
    ASSERT_TRUE(r.publish(oneGauge(1)).isOk());
    EXPECT_THAT(r.text(), HasSubstr("strata_test_value{rank=\"0\"} 1\n"));
    EXPECT_FALSE(r.publish({{"bad", MetricType::kCounter, "h", {}}}).isOk());
    EXPECT_THAT(r.text(), HasSubstr("strata_test_value{rank=\"0\"} 1\n"));
    EXPECT_EQ(r.publications(), 1u);
}

TEST(MetricsFile, WritesAtomicallyAndLeavesNoTemporaryFile) {
    TempDir dir;
    const fs::path path = dir.path / "strata.prom";
    ASSERT_TRUE(writeMetricsFile(path.string(), "first\n").isOk());
    EXPECT_EQ(readFile(path), "first\n");
    const auto mode = fs::status(path).permissions();
    ASSERT_TRUE(writeMetricsFile(path.string(), "second\n").isOk());
    EXPECT_EQ(readFile(path), "second\n");
    EXPECT_EQ(fs::status(path).permissions(), mode);
    std::size_t entries = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path)) ++entries;
    EXPECT_EQ(entries, 1u);  // no PATH.tmp.* left behind

    Status bad = writeMetricsFile((dir.path / "missing" / "x.prom").string(), "x");
    EXPECT_EQ(bad.code(), StatusCode::kIoError);
    EXPECT_THAT(bad.message(), HasSubstr("missing/x.prom.tmp."));
}

TEST(MetricsFile, WriterRefreshesAndWritesTheFinalSnapshot) {
    TempDir dir;
    const fs::path path = dir.path / "rank0.prom";
    MetricsRegistry r;
    ASSERT_TRUE(r.publish(oneGauge(1)).isOk());
    {
        auto w = MetricsFileWriter::create(r, path.string(), std::chrono::milliseconds(20));
        ASSERT_TRUE(w.isOk()) << w.status().toString();
        // The first write happens in create().
        EXPECT_THAT(readFile(path), HasSubstr("strata_test_value{rank=\"0\"} 1\n"));
        ASSERT_TRUE(r.publish(oneGauge(2)).isOk());
        EXPECT_TRUE(eventually([&] {
            return readFile(path).find("strata_test_value{rank=\"0\"} 2\n") != std::string::npos;
        }));
        // Counted once the rename is done, which may be just after the reader saw the file.
        EXPECT_TRUE(eventually([&] { return (*w)->writes() >= 2u; }));
        // Published just before the writer goes: the destructor writes it.
        ASSERT_TRUE(r.publish(oneGauge(3)).isOk());
    }
    EXPECT_THAT(readFile(path), HasSubstr("strata_test_value{rank=\"0\"} 3\n"));

    auto unwritable = MetricsFileWriter::create(r, (dir.path / "no" / "such.prom").string(),
                                                std::chrono::milliseconds(20));
    EXPECT_EQ(unwritable.status().code(), StatusCode::kIoError);
    auto zero = MetricsFileWriter::create(r, path.string(), std::chrono::milliseconds(0));
    EXPECT_EQ(zero.status().code(), StatusCode::kInvalidArgument);
}

TEST(MetricsServer, ServesTheSnapshotAndRefusesABusyPort) {
    MetricsRegistry r;
    ASSERT_TRUE(r.publish(oneGauge(5)).isOk());
    auto server = MetricsServer::create(r, "127.0.0.1", 0);
    ASSERT_TRUE(server.isOk()) << server.status().toString();
    const int port = (*server)->port();
    ASSERT_GT(port, 0);

    httplib::Client client("127.0.0.1", port);
    client.set_read_timeout(std::chrono::seconds(30));
    auto res = client.Get("/metrics");
    ASSERT_TRUE(res) << httplib::to_string(res.error());
    EXPECT_EQ(res->status, 200);
    EXPECT_EQ(res->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
    EXPECT_EQ(res->body, r.text());
    ASSERT_TRUE(r.publish(oneGauge(6)).isOk());
    res = client.Get("/metrics");
    ASSERT_TRUE(res);
    EXPECT_THAT(res->body, HasSubstr("strata_test_value{rank=\"0\"} 6\n"));
    EXPECT_EQ((*server)->requestsServed(), 2u);
    res = client.Get("/nothing");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 404);

    auto busy = MetricsServer::create(r, "127.0.0.1", port);
    EXPECT_EQ(busy.status().code(), StatusCode::kUnavailable);
    EXPECT_THAT(busy.status().message(), HasSubstr(fmt::format("127.0.0.1:{}", port)));
    EXPECT_EQ(MetricsServer::create(r, "127.0.0.1", 70000).status().code(),
              StatusCode::kInvalidArgument);
}

// A sample's value by family name and one label, or NaN.
double sampleValue(const std::vector<MetricFamily>& families, const std::string& name,
                   const std::string& label, const std::string& value) {
    for (const MetricFamily& f : families) {
        if (f.name != name) continue;
        for (const MetricSample& s : f.samples) {
            for (const auto& [k, v] : s.labels) {
                if (label.empty() || (k == label && v == value)) return s.value;
            }
        }
    }
    return std::nan("");
}

TEST(CacheMetrics, SnapshotOfARealCacheCountsHitsPerTier) {
    CacheOptions o;
    o.model = "llama3-8b";
    o.layers = 2;
    o.page_size = 16;
    o.device_tokens = 16 * 40;
    o.host = {.tokens = 16 * 64};
    o.backend = kernels::BackendKind::kCpu;
    comm::LocalDecisionGroup group;
    auto cache_r = Cache::create(o, group);
    ASSERT_TRUE(cache_r.isOk()) << cache_r.status().toString();
    Cache& cache = **cache_r;

    std::vector<std::int32_t> tokens(16 * 5 + 3);
    for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<std::int32_t>(i * 7);
    std::size_t device_hits = 0;
    for (RequestId id = 1; id <= 2; ++id) {
        ASSERT_TRUE(cache.step().isOk());
        auto a = cache.admit(id, tokens);
        ASSERT_TRUE(a.isOk()) << a.status().toString();
        device_hits += a->device_hit_tokens;
        ASSERT_TRUE(cache.launchLoads().isOk());
        ASSERT_TRUE(cache.controller().waitAllLayers(id).isOk());
        ASSERT_TRUE(cache.insert(id).isOk());
        ASSERT_TRUE(cache.release(id).isOk());
    }
    ASSERT_EQ(device_hits, 16u * 5);  // the second request reuses the first one's full pages

    const MetricLabels place = placeLabels({3, 1, 0, 0, 2, "node-a"});
    AgreementFigures agreement;
    agreement.rounds = 4;
    agreement.total_seconds = 0.5;
    agreement.p99_seconds = 0.25;
    const auto families = cacheMetrics(cache, place, agreement);
    ASSERT_TRUE(checkMetricFamilies(families).isOk());
    EXPECT_EQ(sampleValue(families, "strata_hit_tokens_total", "tier", "device"), 80.0);
    EXPECT_EQ(sampleValue(families, "strata_hit_tokens_total", "tier", "host"), 0.0);
    EXPECT_EQ(sampleValue(families, "strata_requests_total", "", ""), 2.0);
    EXPECT_EQ(sampleValue(families, "strata_prompt_tokens_total", "", ""), 2.0 * tokens.size());
    EXPECT_EQ(sampleValue(families, "strata_computed_tokens_total", "", ""),
              2.0 * tokens.size() - 80.0);
    EXPECT_EQ(sampleValue(families, "strata_capacity_pages", "tier", "device"), 40.0);
    EXPECT_EQ(sampleValue(families, "strata_live_requests", "", ""), 0.0);
    const std::string text = renderMetrics(families);
    EXPECT_THAT(text, HasSubstr("strata_hit_tokens_total{rank=\"3\",tp=\"1\",cp=\"0\",pp=\"0\","
                                "dp=\"2\",host=\"node-a\",tier=\"device\"} 80\n"));
    EXPECT_THAT(text, HasSubstr("strata_agreement_seconds_count{rank=\"3\",tp=\"1\",cp=\"0\","
                                "pp=\"0\",dp=\"2\",host=\"node-a\"} 4\n"));
    EXPECT_THAT(text, Not(HasSubstr("nan")));
    ASSERT_TRUE(cache.drain().isOk());
}

}  // namespace
}  // namespace strata::runtime
