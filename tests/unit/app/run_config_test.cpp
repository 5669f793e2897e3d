#include "strata/app/run_config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

namespace strata::app {
namespace {

const char* const kKeys[] = {
    "CONFIG",
    "HOST_SHARING",
    "MODEL",
    "LIST_MODELS",
    "LAYERS",
    "WORKLOAD",
    "TRACE",
    "REQUESTS",
    "SEED",
    "PAGE_SIZE",
    "DEVICE_TOKENS",
    "HOST_TOKENS",
    "HOST_RATIO",
    "HOST_LAYOUT",
    "WRITE_POLICY",
    "EVICTION",
    "BACKEND",
    "REPORT",
    "BATCH",
    "TP",
    "CP",
    "PP",
    "CHECK_CONSISTENCY",
    "JITTER_US",
    "LOG_LEVEL",
    "LOAD_BACK_THRESHOLD",
    "STORAGE_DIR",
    "NO_STORAGE",
    "PREFETCH_POLICY",
    "STRIPED_LOADS",
    "ROUND_TIMEOUT_S",
    "ON_ROUND_TIMEOUT",
    "DETERMINISTIC",
    "PROGRESS_S",
    "WARMUP_FRACTION",
    "REMOTE",
    "METRICS_PORT",
    "METRICS_ADDRESS",
    "METRICS_FILE",
    "METRICS_INTERVAL_S",
    "KV_EVENTS",
    "KV_EVENTS_LAYOUT",
    "KV_EVENTS_TOPIC",
    "KV_EVENTS_WAIT_MS",
};

class RunConfigTest : public ::testing::Test {
protected:
    void SetUp() override {
        clearEnv();
        dir_ = std::filesystem::temp_directory_path() /
               ("strata-run-config-test-" + std::to_string(::getpid()));
        std::filesystem::create_directories(dir_);
    }
    void TearDown() override {
        clearEnv();
        std::filesystem::remove_all(dir_);
    }
    static void clearEnv() {
        for (const char* key : kKeys) ::unsetenv((std::string("STRATA_") + key).c_str());
    }

    std::string writeToml(const std::string& name, const std::string& text) {
        auto path = dir_ / name;
        std::ofstream(path) << text;
        return path.string();
    }

    static Result<RunConfig> load(std::initializer_list<std::string> args) {
        std::vector<std::string> storage{"strata-run"};
        storage.insert(storage.end(), args.begin(), args.end());
        std::vector<const char*> argv;
        for (const auto& s : storage) argv.push_back(s.c_str());
        return loadRunConfig(static_cast<int>(argv.size()), argv.data());
    }

    static void expectError(const Result<RunConfig>& r, std::initializer_list<std::string> parts) {
        ASSERT_FALSE(r.isOk()) << "expected an error containing " << *parts.begin();
        EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().toString();
        for (const auto& part : parts) {
            EXPECT_NE(r.status().message().find(part), std::string::npos)
                << "'" << part << "' missing from: " << r.status().message();
        }
    }

    std::filesystem::path dir_;
};

TEST_F(RunConfigTest, Defaults) {
    auto r = load({});
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    const RunConfig& c = *r;
    EXPECT_EQ(c.model, "llama3-8b");
    EXPECT_EQ(c.layers, 4u);
    EXPECT_EQ(c.workload, "synthetic");
    EXPECT_EQ(c.requests, 400u);
    EXPECT_EQ(c.seed, 1u);
    EXPECT_EQ(c.page_size, 64u);
    EXPECT_EQ(c.device_tokens, 32768u);
    EXPECT_EQ(c.host_tokens, 131072u);
    EXPECT_EQ(c.host_ratio, 0.0);
    EXPECT_EQ(c.host_layout, "page_first");
    EXPECT_EQ(c.write_policy, "write_through");
    EXPECT_EQ(c.eviction, "lru");
    EXPECT_EQ(c.backend, "auto");
    EXPECT_EQ(c.report_path, "strata-report.json");
    EXPECT_EQ(c.batch, 8u);
    EXPECT_EQ(c.tp, 1u);
    EXPECT_EQ(c.cp, 1u);
    EXPECT_EQ(c.pp, 1u);
    EXPECT_FALSE(c.check_consistency);
    EXPECT_FALSE(c.list_models);
    EXPECT_FALSE(c.help);
    EXPECT_EQ(c.jitter_us, 0u);
    EXPECT_EQ(c.log_level, "info");
    EXPECT_EQ(c.load_back_threshold, 0u);
    EXPECT_EQ(c.origins.at("device_tokens").source, ConfigSource::kDefault);
}

TEST_F(RunConfigTest, PrecedenceDefaultsTomlEnvCli) {
    const std::string toml = writeToml("a.toml",
                                       "device_tokens = 65536\n"
                                       "write_policy = \"write_back\"\n"
                                       "page_size = 32\n"
                                       "check_consistency = true\n"
                                       "host_ratio = 2.5\n"
                                       "[run]\n"
                                       "seed = 9\n"
                                       "tp = 2\n");
    auto file_only = load({"--config", toml});
    ASSERT_TRUE(file_only.isOk()) << file_only.status().toString();
    EXPECT_EQ(file_only->device_tokens, 65536u);
    EXPECT_EQ(file_only->write_policy, "write_back");
    EXPECT_EQ(file_only->page_size, 32u);
    EXPECT_EQ(file_only->seed, 9u);
    EXPECT_EQ(file_only->tp, 2u);
    EXPECT_TRUE(file_only->check_consistency);
    // host_ratio from the file replaces the default host_tokens.
    EXPECT_EQ(file_only->host_ratio, 2.5);
    EXPECT_EQ(file_only->host_tokens, 0u);
    EXPECT_EQ(file_only->origins.at("device_tokens").source, ConfigSource::kFile);
    EXPECT_EQ(file_only->requests, 400u);  // untouched key keeps its default

    ::setenv("STRATA_DEVICE_TOKENS", "131072", 1);
    ::setenv("STRATA_WRITE_POLICY", "write_through_selective", 1);
    ::setenv("STRATA_CHECK_CONSISTENCY", "false", 1);
    auto with_env = load({"--config", toml});
    ASSERT_TRUE(with_env.isOk()) << with_env.status().toString();
    EXPECT_EQ(with_env->device_tokens, 131072u);
    EXPECT_EQ(with_env->write_policy, "write_through_selective");
    EXPECT_FALSE(with_env->check_consistency);
    EXPECT_EQ(with_env->page_size, 32u);  // still from the file
    EXPECT_EQ(with_env->origins.at("device_tokens").where, "STRATA_DEVICE_TOKENS");

    auto with_cli = load({"--config", toml, "--device-tokens", "4096", "--write-policy=write_back",
                          "--check-consistency", "--host-tokens", "8192"});
    ASSERT_TRUE(with_cli.isOk()) << with_cli.status().toString();
    EXPECT_EQ(with_cli->device_tokens, 4096u);
    EXPECT_EQ(with_cli->write_policy, "write_back");
    EXPECT_TRUE(with_cli->check_consistency);
    // host_tokens on the command line outranks host_ratio from the file.
    EXPECT_EQ(with_cli->host_tokens, 8192u);
    EXPECT_EQ(with_cli->host_ratio, 0.0);
    EXPECT_EQ(with_cli->origins.at("device_tokens").source, ConfigSource::kCommandLine);

    const std::string text = describe(*with_cli);
    EXPECT_NE(text.find("device_tokens"), std::string::npos);
    EXPECT_NE(text.find("4096  (--device-tokens)"), std::string::npos) << text;
    EXPECT_NE(text.find("(" + toml + ")"), std::string::npos) << text;
}

TEST_F(RunConfigTest, ConfigFileFromEnvironment) {
    const std::string toml = writeToml("b.toml", "requests = 12\n");
    ::setenv("STRATA_CONFIG", toml.c_str(), 1);
    auto r = load({});
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    EXPECT_EQ(r->requests, 12u);
    EXPECT_EQ(r->config_file, toml);
}

TEST_F(RunConfigTest, AllCliOptionsParse) {
    auto r = load({"--model",
                   "deepseek-v3",
                   "--list-models",
                   "--layers",
                   "0",
                   "--workload",
                   "mooncake",
                   "--trace",
                   "t.jsonl",
                   "--requests",
                   "10",
                   "--seed",
                   "77",
                   "--page-size",
                   "16",
                   "--device-tokens",
                   "1024",
                   "--host-tokens",
                   "0",
                   "--host-ratio",
                   "4",
                   "--host-layout",
                   "layer_first",
                   "--eviction",
                   "lfu",
                   "--backend",
                   "cpu",
                   "--report",
                   "out.json",
                   "--batch",
                   "3",
                   "--tp",
                   "2",
                   "--cp",
                   "2",
                   "--pp",
                   "2",
                   "--jitter-us",
                   "200",
                   "--log-level",
                   "debug",
                   "--load-back-threshold",
                   "256"});
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    EXPECT_EQ(r->model, "deepseek-v3");
    EXPECT_TRUE(r->list_models);
    EXPECT_EQ(r->layers, 0u);
    EXPECT_EQ(r->workload, "mooncake");
    EXPECT_EQ(r->trace_path, "t.jsonl");
    EXPECT_EQ(r->requests, 10u);
    EXPECT_EQ(r->seed, 77u);
    EXPECT_EQ(r->page_size, 16u);
    EXPECT_EQ(r->device_tokens, 1024u);
    EXPECT_EQ(r->host_tokens, 0u);
    EXPECT_EQ(r->host_ratio, 4.0);
    EXPECT_EQ(r->host_layout, "layer_first");
    EXPECT_EQ(r->eviction, "lfu");
    EXPECT_EQ(r->backend, "cpu");
    EXPECT_EQ(r->report_path, "out.json");
    EXPECT_EQ(r->batch, 3u);
    EXPECT_EQ(r->tp, 2u);
    EXPECT_EQ(r->cp, 2u);
    EXPECT_EQ(r->pp, 2u);
    EXPECT_EQ(r->jitter_us, 200u);
    EXPECT_EQ(r->log_level, "debug");
    EXPECT_EQ(r->load_back_threshold, 256u);
}

TEST_F(RunConfigTest, HelpIsReportedNotAnError) {
    ::setenv("STRATA_DEVICE_TOKENS", "abc", 1);  // not read: --help stops before the environment
    auto r = load({"--help"});
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    EXPECT_TRUE(r->help);
    const std::string help = runConfigHelp();
    for (const char* option : {"--device-tokens",
                               "--host-tokens",
                               "--write-policy",
                               "--backend",
                               "--report",
                               "--config",
                               "--model",
                               "--list-models",
                               "--layers",
                               "--workload",
                               "--requests",
                               "--seed",
                               "--page-size",
                               "--tp",
                               "--cp",
                               "--pp",
                               "--check-consistency",
                               "--jitter-us",
                               "--batch",
                               "--host-layout",
                               "--eviction",
                               "--log-level",
                               "--load-back-threshold",
                               "--trace",
                               "STRATA_DEVICE_TOKENS"}) {
        EXPECT_NE(help.find(option), std::string::npos) << option;
    }
}

// KV events: off by default; set from TOML, STRATA_* and the command line like every option; the
// layout is checked and a metadata-only replay (no tiers) refuses them.
TEST_F(RunConfigTest, KvEventsOptions) {
    auto d = load({});
    ASSERT_TRUE(d.isOk()) << d.status().toString();
    EXPECT_EQ(d->kv_events, "");
    EXPECT_EQ(d->kv_events_layout, "map");
    EXPECT_EQ(d->kv_events_wait_ms, 0u);
    const std::string toml =
        writeToml("kv.toml", "kv_events = \"tcp://*:5557\"\nkv_events_topic = \"t\"\n");
    ::setenv("STRATA_KV_EVENTS_LAYOUT", "array", 1);
    auto r = load({"--config", toml, "--kv-events-wait-ms", "1500"});
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    EXPECT_EQ(r->kv_events, "tcp://*:5557");
    EXPECT_EQ(r->kv_events_topic, "t");
    EXPECT_EQ(r->kv_events_layout, "array");
    EXPECT_EQ(r->kv_events_wait_ms, 1500u);
    EXPECT_EQ(r->origins.at("kv_events_layout").source, ConfigSource::kEnvironment);
    ::setenv("STRATA_KV_EVENTS_LAYOUT", "json", 1);
    expectError(load({}), {"kv_events_layout 'json'", "STRATA_KV_EVENTS_LAYOUT", "map, array"});
    ::unsetenv("STRATA_KV_EVENTS_LAYOUT");
    expectError(load({"--kv-events", "tcp://*:5557", "--data", "none", "--workload", "mooncake",
                      "--trace", "t.jsonl"}),
                {"kv_events (--kv-events) needs --data verify"});
}

TEST_F(RunConfigTest, MalformedEnvironmentValuesNameTheVariable) {
    ::setenv("STRATA_DEVICE_TOKENS", "abc", 1);
    expectError(load({}), {"STRATA_DEVICE_TOKENS='abc' is not a number"});
    ::setenv("STRATA_DEVICE_TOKENS", "-5", 1);
    expectError(load({}), {"STRATA_DEVICE_TOKENS", "non-negative"});
    ::unsetenv("STRATA_DEVICE_TOKENS");
    ::setenv("STRATA_TP", "99999999999", 1);
    expectError(load({}), {"STRATA_TP", "out of range"});
    ::unsetenv("STRATA_TP");
    ::setenv("STRATA_CHECK_CONSISTENCY", "maybe", 1);
    expectError(load({}), {"STRATA_CHECK_CONSISTENCY='maybe'", "boolean"});
    ::unsetenv("STRATA_CHECK_CONSISTENCY");
    ::setenv("STRATA_HOST_RATIO", "x2", 1);
    expectError(load({}), {"STRATA_HOST_RATIO='x2'", "not a number"});
    ::unsetenv("STRATA_HOST_RATIO");
    ::setenv("STRATA_WRITE_POLICY", "sometimes", 1);
    expectError(load({}), {"write_policy 'sometimes'", "STRATA_WRITE_POLICY", "write_back"});
}

TEST_F(RunConfigTest, MalformedCommandLineValuesNameTheOption) {
    expectError(load({"--device-tokens", "12abc"}),
                {"command line", "--device-tokens='12abc' is not a number", "32k"});
    expectError(load({"--page-size", "0"}), {"page_size must be at least 1", "--page-size"});
    expectError(load({"--backend", "tpu"}), {"backend 'tpu'", "--backend", "auto, cpu, cuda"});
    expectError(load({"--devce-tokens", "5"}),
                {"command line", "did you mean '--device-tokens' for '--devce-tokens'?"});
    expectError(load({"--page-size=64", "--write-polcy", "write_back"}),
                {"did you mean '--write-policy' for '--write-polcy'?"});
    expectError(load({"swep", "--capacities", "1e6"}), {"did you mean 'sweep' for 'swep'?"});
    // Nothing close: no suggestion.
    auto far = load({"--zzzzzzzz"});
    ASSERT_FALSE(far.isOk());
    EXPECT_EQ(far.status().message().find("did you mean"), std::string::npos)
        << far.status().message();
    expectError(load({"--log-level", "loud"}), {"log_level 'loud'", "--log-level"});
}

TEST_F(RunConfigTest, MalformedTomlValuesNameKeyAndFile) {
    const std::string bad_type = writeToml("config.toml", "page_size = \"big\"\n");
    expectError(load({"--config", bad_type}), {bad_type, "key 'page_size'", "is not a number"});
    const std::string fraction = writeToml("fraction.toml", "requests = 1.5\n");
    expectError(load({"--config", fraction}), {"key 'requests'", "must be a whole number"});
    const std::string array = writeToml("array.toml", "requests = [1]\n");
    expectError(load({"--config", array}), {"key 'requests' must be a number"});
    const std::string negative = writeToml("neg.toml", "[run]\ndevice_tokens = -1\n");
    expectError(load({"--config", negative}), {negative, "key 'device_tokens'", "non-negative"});
    const std::string unknown = writeToml("unknown.toml", "devce_tokens = 5\n");
    expectError(load({"--config", unknown}),
                {"unknown key 'devce_tokens' in " + unknown, "(did you mean 'device_tokens'?)"});
    const std::string wrong_bool = writeToml("bool.toml", "check_consistency = 1\n");
    expectError(load({"--config", wrong_bool}), {"key 'check_consistency' must be a boolean"});
    const std::string wrong_string = writeToml("str.toml", "write_policy = 3\n");
    expectError(load({"--config", wrong_string}), {"key 'write_policy' must be a string"});
    const std::string syntax = writeToml("syntax.toml", "page_size = = 3\n");
    expectError(load({"--config", syntax}), {syntax + ":1:"});
    const std::string twice = writeToml("twice.toml", "seed = 1\n[run]\nseed = 2\n");
    expectError(load({"--config", twice}), {"'seed' is set twice"});
    const std::string bad_choice = writeToml("choice.toml", "host_layout = \"diagonal\"\n");
    expectError(load({"--config", bad_choice}), {"host_layout 'diagonal'", bad_choice});
}

TEST_F(RunConfigTest, MissingConfigFileIsNotFound) {
    auto r = load({"--config", (dir_ / "absent.toml").string()});
    ASSERT_FALSE(r.isOk());
    EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
    EXPECT_NE(r.status().message().find("absent.toml"), std::string::npos);
}

TEST_F(RunConfigTest, RangeChecks) {
    expectError(load({"--page-size", "128", "--device-tokens", "64"}),
                {"device_tokens (64 from --device-tokens) must be at least page_size (128)"});
    expectError(load({"--host-tokens", "0"}), {"host_tokens and host_ratio are both 0"});
    expectError(load({"--host-tokens", "100", "--host-ratio", "2"}), {"both set"});
    expectError(load({"--tp", "0"}), {"tp must be at least 1"});
    expectError(load({"--batch", "0"}), {"batch must be at least 1"});
    expectError(load({"--requests", "0"}), {"requests must be at least 1"});
    expectError(load({"--workload", "mooncake"}), {"needs a trace file"});
    expectError(load({"--trace", "x.jsonl"}), {"workload is 'synthetic'"});
    expectError(load({"--workload", "bogus"}), {"workload 'bogus'"});
}

TEST_F(RunConfigTest, ReplayEvictionAndSweepOptions) {
    expectError(load({"--eviction", "opt"}), {"eviction opt", "--data none"});
    expectError(load({"--eviction", "random"}), {"eviction", "random", "lru, lfu, priority, opt"});
    expectError(load({"--priority-levels", "0"}), {"priority_levels", "at least 1"});
    auto opt = load({"--workload", "mooncake:t.jsonl", "--data", "none", "--eviction", "opt"});
    ASSERT_TRUE(opt.isOk()) << opt.status().toString();
    EXPECT_FALSE(opt->sweep);
    // The sweep subcommand takes its own options; strata-run's options apply before and after it.
    auto sweep = load({"--workload", "mooncake:t.jsonl", "sweep", "--capacities", "1e5,1e6",
                       "--out-dir", "d", "--with-opt", "--page-size", "512"});
    ASSERT_TRUE(sweep.isOk()) << sweep.status().toString();
    EXPECT_TRUE(sweep->sweep);
    EXPECT_EQ(sweep->sweep_capacities, "1e5,1e6");
    EXPECT_EQ(sweep->sweep_out_dir, "d");
    EXPECT_TRUE(sweep->sweep_with_opt);
    EXPECT_EQ(sweep->page_size, 512u);
    EXPECT_FALSE(load({"sweep"}).isOk());  // --capacities is required
}

// Issue 15: these failed after start-up with rc 1 (or were accepted silently); each is now a parse
// error (strata-run: rc 2) that names the key and where its value came from.
TEST_F(RunConfigTest, UnknownModelIsAParseError) {
    expectError(load({"--model", "llama9"}),
                {"model (from --model)", "unknown model preset 'llama9'", "llama3-8b"});
    ::setenv("STRATA_MODEL", "gpt-5", 1);
    expectError(load({}), {"model (from STRATA_MODEL)", "'gpt-5'"});
    ::unsetenv("STRATA_MODEL");
    auto ok = load({"--model", "deepseek-v3"});
    EXPECT_TRUE(ok.isOk()) << ok.status().toString();
}

TEST_F(RunConfigTest, UnknownPrefetchPolicyIsAParseError) {
    expectError(load({"--prefetch-policy", "eager"}),
                {"prefetch_policy 'eager' (from --prefetch-policy)",
                 "best_effort, wait_complete, timeout"});
    for (const char* p : {"best_effort", "wait_complete", "timeout"}) {
        auto ok = load({"--prefetch-policy", p});
        EXPECT_TRUE(ok.isOk()) << p << ": " << ok.status().toString();
    }
}

TEST_F(RunConfigTest, StripedLoadsOnWithOneRankPerDecisionGroupIsAParseError) {
    expectError(load({"--striped-loads", "on"}), {"striped_loads on (from --striped-loads)",
                                                  "the decision group (tp x cp) has one "
                                                  "rank: nothing to stripe"});
    expectError(load({"--striped-loads", "on", "--tp", "2", "--backend", "cpu"}),
                {"striped_loads on (from --striped-loads): the back end is cpu (from --backend"});
    auto tp2 = load({"--striped-loads", "on", "--tp", "2"});
    EXPECT_TRUE(tp2.isOk()) << tp2.status().toString();
    auto cp2 = load({"--striped-loads", "on", "--cp", "2", "--backend", "cuda"});
    EXPECT_TRUE(cp2.isOk()) << cp2.status().toString();
    auto off = load({"--striped-loads", "off", "--backend", "cpu"});
    EXPECT_TRUE(off.isOk()) << off.status().toString();
}

TEST_F(RunConfigTest, HostSharingFromEveryLayerAndItsErrors) {
    auto defaults = load({});
    ASSERT_TRUE(defaults.isOk()) << defaults.status().toString();
    EXPECT_EQ(defaults->host_sharing, "off");
    auto cli = load({"--host-sharing", "node"});
    ASSERT_TRUE(cli.isOk()) << cli.status().toString();
    EXPECT_EQ(cli->host_sharing, "node");
    const std::string toml = writeToml("sharing.toml", "host_sharing = \"node\"\n");
    auto from_toml = load({"--config", toml});
    ASSERT_TRUE(from_toml.isOk()) << from_toml.status().toString();
    EXPECT_EQ(from_toml->host_sharing, "node");
    ::setenv("STRATA_HOST_SHARING", "off", 1);  // the environment beats the file
    auto from_env = load({"--config", toml});
    ASSERT_TRUE(from_env.isOk()) << from_env.status().toString();
    EXPECT_EQ(from_env->host_sharing, "off");
    ::unsetenv("STRATA_HOST_SHARING");
    expectError(load({"--host-sharing", "rack"}), {"host_sharing", "rack", "node", "off"});
    expectError(load({"--host-sharing", "node", "--host-layout", "layer_first"}),
                {"host_sharing node (from --host-sharing) needs host_layout page_first or "
                 "page_first_direct, not layer_first (from --host-layout)"});
    auto direct = load({"--host-sharing", "node", "--host-layout", "page_first_direct"});
    EXPECT_TRUE(direct.isOk()) << direct.status().toString();
}

TEST_F(RunConfigTest, StorageDirWithNoStorageIsAParseError) {
    expectError(load({"--no-storage", "--storage-dir", "/tmp/d"}),
                {"storage_dir '/tmp/d' (from --storage-dir)", "no_storage (from --no-storage)"});
    ::setenv("STRATA_STORAGE_DIR", "/tmp/e", 1);
    expectError(load({"--no-storage"}), {"storage_dir '/tmp/e' (from STRATA_STORAGE_DIR)"});
    ::unsetenv("STRATA_STORAGE_DIR");
    EXPECT_TRUE(load({"--no-storage"}).isOk());
    EXPECT_TRUE(load({"--storage-dir", "/tmp/d"}).isOk());
}

// The round watchdog's options (issue 15 item 3): a generous default, the command line, the
// environment and TOML like every option, and clear errors at parse time.
TEST_F(RunConfigTest, RoundWatchdogOptions) {
    auto d = load({});
    ASSERT_TRUE(d.isOk()) << d.status().toString();
    EXPECT_EQ(d->round_timeout_s, 120.0);
    EXPECT_EQ(d->on_round_timeout, "abort");
    auto cli = load({"--round-timeout-s", "2.5", "--on-round-timeout", "warn"});
    ASSERT_TRUE(cli.isOk()) << cli.status().toString();
    EXPECT_EQ(cli->round_timeout_s, 2.5);
    EXPECT_EQ(cli->on_round_timeout, "warn");
    ::setenv("STRATA_ROUND_TIMEOUT_S", "0", 1);
    ::setenv("STRATA_ON_ROUND_TIMEOUT", "warn", 1);
    auto env = load({});
    ASSERT_TRUE(env.isOk()) << env.status().toString();
    EXPECT_EQ(env->round_timeout_s, 0.0);
    EXPECT_EQ(env->on_round_timeout, "warn");
    EXPECT_EQ(env->origins.at("on_round_timeout").where, "STRATA_ON_ROUND_TIMEOUT");
    clearEnv();
    auto toml = load({"--config", writeToml("w.toml", "round_timeout_s = 30.0\n")});
    ASSERT_TRUE(toml.isOk()) << toml.status().toString();
    EXPECT_EQ(toml->round_timeout_s, 30.0);
    expectError(load({"--round-timeout-s=-1"}), {"round_timeout_s", "non-negative"});
    expectError(load({"--on-round-timeout", "ignore"}),
                {"on_round_timeout 'ignore'", "abort, warn"});
}

// Live metrics (issue 18): off by default; the command line, the environment and TOML like every
// option; a port above 65535, a too short interval and metrics without a cache are parse errors.
TEST_F(RunConfigTest, MetricsOptions) {
    auto d = load({});
    ASSERT_TRUE(d.isOk()) << d.status().toString();
    EXPECT_EQ(d->metrics_port, 0u);
    EXPECT_EQ(d->metrics_address, "0.0.0.0");
    EXPECT_EQ(d->metrics_file, "");
    EXPECT_EQ(d->metrics_interval_s, 5.0);
    auto cli = load({"--metrics-port", "9400", "--metrics-address", "127.0.0.1", "--metrics-file",
                     "/tmp/s-{rank}.prom", "--metrics-interval-s", "0.5"});
    ASSERT_TRUE(cli.isOk()) << cli.status().toString();
    EXPECT_EQ(cli->metrics_port, 9400u);
    EXPECT_EQ(cli->metrics_address, "127.0.0.1");
    EXPECT_EQ(cli->metrics_file, "/tmp/s-{rank}.prom");
    EXPECT_EQ(cli->metrics_interval_s, 0.5);
    ::setenv("STRATA_METRICS_PORT", "9500", 1);
    auto env = load({});
    ASSERT_TRUE(env.isOk()) << env.status().toString();
    EXPECT_EQ(env->metrics_port, 9500u);
    EXPECT_EQ(env->origins.at("metrics_port").where, "STRATA_METRICS_PORT");
    clearEnv();
    auto toml = load({"--config", writeToml("m.toml",
                                            "metrics_port = 9600\n"
                                            "metrics_file = \"x.prom\"\n")});
    ASSERT_TRUE(toml.isOk()) << toml.status().toString();
    EXPECT_EQ(toml->metrics_port, 9600u);
    EXPECT_EQ(toml->metrics_file, "x.prom");
    expectError(load({"--metrics-port", "70000"}),
                {"metrics_port (70000 from --metrics-port)", "1..65535"});
    expectError(load({"--metrics-interval-s", "0"}), {"metrics_interval_s (0 from", "0.05"});
    expectError(load({"--metrics-port", "9400", "--data", "none", "--workload", "mooncake",
                      "--trace", "t.jsonl", "--host-tokens", "0"}),
                {"metrics_port from --metrics-port", "data none"});
}

}  // namespace
}  // namespace strata::app

namespace strata::app {
namespace {

// One number parser for the command line, the environment and TOML (user_input.h).
TEST_F(RunConfigTest, NumbersWithExponentsAndSuffixesEverywhere) {
    auto cli = load({"--device-tokens", "1e6", "--host-tokens", "16Mi", "--requests", "2k",
                     "--host-layout", "page_first", "--round-timeout-s", "1.5e1"});
    ASSERT_TRUE(cli.isOk()) << cli.status().toString();
    EXPECT_EQ(cli->device_tokens, 1000000u);
    EXPECT_EQ(cli->host_tokens, 16u << 20);
    EXPECT_EQ(cli->requests, 2000u);
    EXPECT_DOUBLE_EQ(cli->round_timeout_s, 15.0);

    ::setenv("STRATA_DEVICE_TOKENS", "32k", 1);
    auto env = load({});
    ::unsetenv("STRATA_DEVICE_TOKENS");
    ASSERT_TRUE(env.isOk()) << env.status().toString();
    EXPECT_EQ(env->device_tokens, 32000u);

    const std::string toml =
        writeToml("numbers.toml", "device_tokens = 1e6\nhost_tokens = \"16Gi\"\nrequests = 300\n");
    auto file = load({"--config", toml});
    ASSERT_TRUE(file.isOk()) << file.status().toString();
    EXPECT_EQ(file->device_tokens, 1000000u);
    EXPECT_EQ(file->host_tokens, std::uint64_t{16} << 30);
    EXPECT_EQ(file->requests, 300u);

    expectError(load({"--tp", "1e10"}), {"--tp='1e10'", "out of range"});
    expectError(load({"--device-tokens", "1e-3"}), {"--device-tokens='1e-3'", "whole number"});
}

TEST_F(RunConfigTest, MisspeltChoicesGetASuggestion) {
    expectError(load({"--eviction", "lur"}), {"eviction 'lur'", "(did you mean 'lru'?)"});
    expectError(load({"--write-policy", "write_bak"}), {"(did you mean 'write_back'?)"});
    expectError(load({"--backend", "tpu"}), {"backend 'tpu'"});
}

TEST_F(RunConfigTest, VersionIsReportedNotAnError) {
    auto r = load({"--version"});
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    EXPECT_TRUE(r->version);
}

TEST_F(RunConfigTest, DescribeListsWhatDiffersFromTheDefaults) {
    auto defaults = load({});
    ASSERT_TRUE(defaults.isOk()) << defaults.status().toString();
    EXPECT_EQ(describe(*defaults, true), "(all defaults)\n");
    auto changed = load({"--requests", "50", "--deterministic"});
    ASSERT_TRUE(changed.isOk()) << changed.status().toString();
    const std::string short_list = describe(*changed, true);
    EXPECT_NE(short_list.find("requests"), std::string::npos) << short_list;
    EXPECT_NE(short_list.find("(--requests)"), std::string::npos) << short_list;
    EXPECT_NE(short_list.find("deterministic"), std::string::npos) << short_list;
    EXPECT_EQ(short_list.find("device_tokens"), std::string::npos) << short_list;
    // Every key at full length.
    EXPECT_NE(describe(*changed).find("device_tokens"), std::string::npos);
}

// The example configuration shipped in launch/ is accepted as it is.
TEST_F(RunConfigTest, ShippedExampleConfigLoads) {
    const std::string example = STRATA_EXAMPLE_TOML;
    auto r = load({"--config", example});
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    EXPECT_EQ(r->origins.at("device_tokens").where, example);
    EXPECT_EQ(r->origins.at("model").where, example);
}

}  // namespace
}  // namespace strata::app

namespace strata::app {
namespace {

// Found by tests/fuzz/fuzz_run_config: a table header whose key starts with neither a bare-key
// character nor a quote tripped toml++ 3.3's assertion in parse_key (an abort in the sanitizer
// trees). It is a clean error naming line and column; files with `[` elsewhere still load.
TEST_F(RunConfigTest, ATableHeaderWithoutAKeyIsAnErrorNamingTheColumn) {
    expectError(load({"--config", writeToml("bang.toml", "requests = 3\n[!run]\n")}),
                {"bang.toml:2:2:", "table header", "0x21"});
    expectError(load({"--config", writeToml("plus.toml", "[[ +]]\n")}), {"plus.toml:1:4:"});
    expectError(load({"--config", writeToml("nul.toml", std::string("[\0run]\n", 7))}),
                {"nul.toml:1:2:", "0x00"});
    expectError(load({"--config", writeToml("nl.toml", "[\nrun]\n")}), {"nl.toml:1:2:", "0x0a"});
    auto ok = load({"--config", writeToml("ok.toml",
                                          "# [!not a header]\nmodel = 'llama3-8b'\n"
                                          "[ \"run\" ]\nrequests = 7\n")});
    ASSERT_TRUE(ok.isOk()) << ok.status().toString();
    EXPECT_EQ(ok->requests, 7u);
    // A multi-line string holding a line that looks like a bad header is not a header.
    auto text = load({"--config", writeToml("ml.toml", "workload = \"\"\"\n[!x]\n\"\"\"\n")});
    ASSERT_FALSE(text.isOk());
    EXPECT_EQ(text.status().message().find("table header"), std::string::npos)
        << text.status().message();
}

}  // namespace
}  // namespace strata::app
