#include "strata/app/report.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

namespace strata::app {
namespace {

RunReport sampleReport() {
    RunReport r;
    r.ranks = 4;
    r.tp = 2;
    r.cp = 2;
    r.model = "llama3-8b";
    r.backend = "cpu";
    r.workload = "synthetic";
    r.requests = 400;
    r.rounds = 50;
    r.prompt_tokens = 1000;
    r.computed_tokens = 300;
    r.hit_tokens.device = 500;
    r.hit_tokens.host = 200;
    r.pages_verified = 77;
    r.d2h = {2'000'000'000, 1.0, 1000};
    r.h2d = {500'000'000, 0.25, 200};
    r.backups = 10;
    r.loads = 4;
    r.sync = {50, 12.5, 40.0};
    r.consistency = {50, 0};
    r.elapsed_seconds = 3.5;
    r.config = configToJson(RunConfig{});
    return r;
}

TEST(Report, JsonHasEveryKey) {
    const nlohmann::json j = toJson(sampleReport());
    for (const char* key : {"ranks",
                            "requests",
                            "rounds",
                            "prompt_tokens",
                            "computed_tokens",
                            "pages_verified",
                            "pages_mismatched",
                            "tp",
                            "cp",
                            "pp",
                            "dp",
                            "model",
                            "backend",
                            "elapsed_seconds",
                            "backups",
                            "loads",
                            "write_back_pages",
                            "dropped_pages",
                            "rejected_admissions",
                            "config"}) {
        EXPECT_TRUE(j.contains(key)) << key;
    }
    for (const char* key : {"device", "host", "remote", "storage"}) {
        EXPECT_TRUE(j.at("hit_tokens").contains(key)) << key;
    }
    for (const char* key : {"device", "host", "total"}) {
        EXPECT_TRUE(j.at("hit_rate").contains(key)) << key;
    }
    for (const char* key : {"rounds_checked", "divergences"}) {
        EXPECT_TRUE(j.at("consistency").contains(key)) << key;
    }
    for (const char* key : {"rounds", "mean_us", "p99_us"}) {
        EXPECT_TRUE(j.at("sync").contains(key)) << key;
    }
    for (const char* path : {"d2h", "h2d"}) {
        for (const char* key : {"bytes", "seconds", "gb_per_s", "pages", "round_seconds"}) {
            EXPECT_TRUE(j.at("transfer").at(path).contains(key)) << path << "." << key;
        }
    }
    for (const char* key : {"pages_written", "pages_read", "checksum_failures"}) {
        EXPECT_EQ(j.at("storage").at(key), 0) << key;
    }
    EXPECT_EQ(j.at("hit_tokens").at("device"), 500);
    EXPECT_EQ(j.at("ranks"), 4);
    EXPECT_DOUBLE_EQ(j.at("hit_rate").at("device").get<double>(), 0.5);
    EXPECT_DOUBLE_EQ(j.at("hit_rate").at("total").get<double>(), 0.7);
    EXPECT_DOUBLE_EQ(j.at("transfer").at("d2h").at("gb_per_s").get<double>(), 2.0);
    EXPECT_EQ(j.at("config").at("device_tokens"), 32768);
    EXPECT_EQ(j.at("config").at("write_policy"), "write_through");
}

TEST(Report, JsonSaysWhatRanWhereAndWhenWithPerRankFigures) {
    RunReport r = sampleReport();
    r.version = "0.1.0";
    r.git_hash = "0123456789ab";
    r.start_time = "2026-12-03T15:25:38Z";
    r.hosts = {"node1", "node2"};
    r.deterministic = true;
    RankFigures f;
    f.rank = 1;
    f.host = "node2";
    f.requests = 200;
    f.hit_tokens.host = 64;
    f.pages_verified = 9;
    f.elapsed_seconds = 1.5;
    r.per_rank = {RankFigures{}, f};
    const nlohmann::json j = toJson(r);
    EXPECT_EQ(j.at("version"), "0.1.0");
    EXPECT_EQ(j.at("git_hash"), "0123456789ab");
    EXPECT_EQ(j.at("start_time"), "2026-12-03T15:25:38Z");
    EXPECT_EQ(j.at("hosts"), nlohmann::json::array({"node1", "node2"}));
    EXPECT_EQ(j.at("deterministic"), true);
    ASSERT_EQ(j.at("per_rank").size(), 2u);
    const nlohmann::json& one = j.at("per_rank").at(1);
    EXPECT_EQ(one.at("rank"), 1);
    EXPECT_EQ(one.at("host"), "node2");
    EXPECT_EQ(one.at("requests"), 200);
    EXPECT_EQ(one.at("hit_tokens").at("host"), 64);
    EXPECT_EQ(one.at("pages_verified"), 9);
    EXPECT_DOUBLE_EQ(one.at("elapsed_seconds").get<double>(), 1.5);
    for (const char* key : {"prompt_tokens", "computed_tokens", "pages_mismatched", "loads",
                            "backups", "h2d_bytes", "d2h_bytes", "load_wait_seconds"}) {
        EXPECT_TRUE(one.contains(key)) << key;
    }
    EXPECT_EQ(j.at("config").at("deterministic"), false);
}

TEST(Report, NoPromptTokensGivesZeroRates) {
    RunReport r;
    const nlohmann::json j = toJson(r);
    EXPECT_EQ(j.at("hit_rate").at("total").get<double>(), 0.0);
    EXPECT_EQ(j.at("transfer").at("h2d").at("gb_per_s").get<double>(), 0.0);
    EXPECT_FALSE(summaryText(r).empty());
}

TEST(Report, PromptTokensAreNotCheckedByTheReport) {
    RunReport r = sampleReport();
    r.computed_tokens = 1;  // inconsistent on purpose: the caller owns this invariant
    EXPECT_EQ(toJson(r).at("computed_tokens"), 1);
}

TEST(Report, WriteJsonRoundTripsAndFailsClearly) {
    const auto path = std::filesystem::temp_directory_path() /
                      ("strata-report-test-" + std::to_string(::getpid()) + ".json");
    ASSERT_TRUE(writeJson(sampleReport(), path.string()).isOk());
    std::ifstream in(path);
    const nlohmann::json back = nlohmann::json::parse(in);
    EXPECT_EQ(back, toJson(sampleReport()));
    std::filesystem::remove(path);

    const Status bad = writeJson(sampleReport(), "/nonexistent-dir/report.json");
    ASSERT_FALSE(bad.isOk());
    EXPECT_EQ(bad.code(), StatusCode::kIoError);
    EXPECT_NE(bad.message().find("/nonexistent-dir/report.json"), std::string::npos);
    EXPECT_NE(bad.message().find("No such file or directory"), std::string::npos) << bad.message();
}

// Issue 15: an unwritable --report failed only after the whole run. The check before the run names
// the path and the cause, and leaves no file behind either way.
TEST(Report, ReportWritabilityIsCheckedWithoutLeavingAFile) {
    const auto dir = std::filesystem::temp_directory_path() /
                     ("strata_report_writable_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const std::string fresh = (dir / "fresh.json").string();
    EXPECT_TRUE(checkReportWritable(fresh).isOk());
    EXPECT_FALSE(std::filesystem::exists(fresh)) << "the check left " << fresh;

    const std::string existing = (dir / "existing.json").string();
    std::ofstream(existing) << "keep me";
    EXPECT_TRUE(checkReportWritable(existing).isOk());
    std::ifstream in(existing);
    std::string kept((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(kept, "keep me");

    const Status missing_dir = checkReportWritable("/nonexistent-dir/report.json");
    ASSERT_FALSE(missing_dir.isOk());
    EXPECT_EQ(missing_dir.code(), StatusCode::kIoError);
    EXPECT_NE(missing_dir.message().find("cannot create report '/nonexistent-dir/report.json': No "
                                         "such file or directory"),
              std::string::npos)
        << missing_dir.message();
    const Status is_dir = checkReportWritable(dir.string());
    ASSERT_FALSE(is_dir.isOk());
    EXPECT_NE(is_dir.message().find("it is a directory"), std::string::npos) << is_dir.message();
    const Status not_dir = checkReportWritable(existing + "/report.json");
    ASSERT_FALSE(not_dir.isOk());
    EXPECT_NE(not_dir.message().find("Not a directory"), std::string::npos) << not_dir.message();
    EXPECT_FALSE(std::filesystem::exists(existing + "/report.json"));
    std::filesystem::remove_all(dir);
}

TEST(Report, SummaryMentionsRatesBandwidthVerificationAndSync) {
    const std::string text = summaryText(sampleReport());
    for (const char* part :
         {"device 50.0%", "host 20.0%", "total 70.0%", "700 reused (70.0%)", "300 computed (30.0%)",
          "2.00 GB/s", "77 pages verified", "0 mismatched: OK", "mean 12.5 us", "p99 40.0 us",
          "0 divergences: OK"}) {
        EXPECT_NE(text.find(part), std::string::npos) << part << "\n" << text;
    }
}

TEST(Report, InterruptedRunSaysSoInJsonAndSummary) {
    RunReport r = sampleReport();
    r.requests_planned = 30;
    nlohmann::json j = toJson(r);
    EXPECT_EQ(j.at("interrupted"), false);
    EXPECT_TRUE(j.at("interrupt_signal").is_null());
    EXPECT_EQ(j.at("requests_planned"), 30u);
    EXPECT_EQ(summaryText(r).find("interrupted"), std::string::npos);

    r.interrupt_signal = SIGTERM;
    j = toJson(r);
    EXPECT_EQ(j.at("interrupted"), true);
    EXPECT_EQ(j.at("interrupt_signal"), "SIGTERM");
    EXPECT_NE(summaryText(r).find(
                  fmt::format("interrupted: SIGTERM after {} of 30 requests", r.requests)),
              std::string::npos)
        << summaryText(r);
    r.interrupt_signal = SIGINT;
    EXPECT_EQ(toJson(r).at("interrupt_signal"), "SIGINT");
}

TEST(Report, SummarizeSync) {
    std::vector<double> samples;
    for (int i = 1; i <= 100; ++i) samples.push_back(i);
    const SyncStats s = summarizeSync(samples);
    EXPECT_EQ(s.rounds, 100u);
    EXPECT_DOUBLE_EQ(s.mean_us, 50.5);
    EXPECT_DOUBLE_EQ(s.p99_us, 99.0);
    EXPECT_EQ(summarizeSync({}).rounds, 0u);
    EXPECT_DOUBLE_EQ(summarizeSync({7.0}).p99_us, 7.0);
}

}  // namespace
}  // namespace strata::app
