#include "strata/app/run_config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <toml++/toml.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <string_view>
#include <system_error>
#include <variant>
#include <vector>

#include "strata/app/user_input.h"
#include "strata/comm/round_watchdog.h"
#include "strata/controller/cache_controller.h"
#include "strata/core/enum_names.h"
#include "strata/core/log.h"
#include "strata/kernels/transfer.h"
#include "strata/pools/pool_spec.h"
#include "strata/runtime/cache.h"
#include "strata/runtime/kv_events.h"

namespace strata::app {
namespace {

using Member = std::variant<std::string RunConfig::*, bool RunConfig::*, std::uint32_t RunConfig::*,
                            std::uint64_t RunConfig::*, double RunConfig::*>;

struct Field {
    std::string_view key;
    Member member;
    std::string_view value_name;  // shown in --help
    std::string_view help;
};

// Every option, in the order of --help and describe(). The key is the TOML key; the long option and
// the environment variable derive from it.
const std::vector<Field>& fields() {
    static const std::vector<Field> kFields = {
        {"config", &RunConfig::config_file, "FILE", "TOML file with options (keys as below)"},
        {"model", &RunConfig::model, "PRESET", "model preset (see --list-models)"},
        {"list_models", &RunConfig::list_models, "", "print the model presets and exit"},
        {"layers", &RunConfig::layers, "N", "layers to simulate; 0 = the preset's real count"},
        {"workload", &RunConfig::workload, "NAME",
         "synthetic | mooncake:PATH | kvtester:PATH (or the name with --trace PATH)"},
        {"trace", &RunConfig::trace_path, "PATH", "trace file of a mooncake/kvcache-tester run"},
        {"requests", &RunConfig::requests, "N",
         "requests to run (a trace: its first N; --data none: the whole trace unless given)"},
        {"seed", &RunConfig::seed, "N", "workload and jitter seed"},
        {"page_size", &RunConfig::page_size, "N", "tokens per page"},
        {"device_tokens", &RunConfig::device_tokens, "N", "device pool capacity in tokens"},
        {"host_tokens", &RunConfig::host_tokens, "N",
         "host pool capacity in tokens; 0 = use host_ratio"},
        {"host_ratio", &RunConfig::host_ratio, "X",
         "host capacity as a multiple of the device capacity; 0 = unused"},
        {"host_layout", &RunConfig::host_layout, "LAYOUT",
         "layer_first | page_first | page_first_direct"},
        {"state_slots", &RunConfig::state_slots, "N",
         "device slots of a per-request state (Mamba: qwen3-next): working slots of admitted "
         "requests plus checkpoints; host slots in the host/device ratio of the KV; 0 = max(16, "
         "device pages / 16)"},
        {"write_policy", &RunConfig::write_policy, "POLICY",
         "write_through | write_through_selective | write_back"},
        {"eviction", &RunConfig::eviction, "POLICY",
         "lru | lfu | priority | opt (Belady's offline optimum: --data none, device tier only)"},
        {"backend", &RunConfig::backend, "NAME", "auto | cpu | cuda"},
        {"report", &RunConfig::report_path, "PATH", "JSON report path; empty for none"},
        {"batch", &RunConfig::batch, "N", "requests admitted per round"},
        {"tp", &RunConfig::tp, "N", "tensor-parallel ranks per replica"},
        {"cp", &RunConfig::cp, "N", "context-parallel ranks per replica"},
        {"pp", &RunConfig::pp, "N", "pipeline stages per replica"},
        {"check_consistency", &RunConfig::check_consistency, "",
         "compare tree and allocator digests of all ranks every round"},
        {"jitter_us", &RunConfig::jitter_us, "N",
         "delay each rank's completions by random amounts up to N us"},
        {"log_level", &RunConfig::log_level, "LEVEL", "trace | debug | info | warn | error | off"},
        {"load_back_threshold", &RunConfig::load_back_threshold, "N",
         "host hits shorter than N tokens are recomputed"},
        {"storage_dir", &RunConfig::storage_dir, "DIR",
         "HDF5 storage tier directory; empty = a fresh temporary directory"},
        {"storage_tokens", &RunConfig::storage_tokens, "N",
         "storage capacity in tokens for the whole job; 0 = unlimited"},
        {"no_storage", &RunConfig::no_storage, "", "run without the storage tier"},
        {"prefetch_policy", &RunConfig::prefetch_policy, "POLICY",
         "best_effort | wait_complete | timeout"},
        {"data", &RunConfig::data, "MODE",
         "verify (move and check every byte) | none (metadata-only replay of a trace through the "
         "tree and tiers, one rank)"},
        {"warmup_fraction", &RunConfig::warmup_fraction, "F",
         "requests in this first fraction are replayed but not measured (--data none)"},
        {"replay_rules", &RunConfig::replay_rules, "RULES",
         "--data none counts hits by: simulator (the published simulators': a partial last page "
         "counts, a whole prompt can hit) | engine (the data path's: the last token is always "
         "computed, only full pages are cached)"},
        {"priority_levels", &RunConfig::priority_levels, "N",
         "eviction priority: a request's priority is a hash of its first block (--data none) or "
         "its first page of tokens modulo N (1 = all equal)"},
        {"remote", &RunConfig::remote, "on|off|auto",
         "remote tier: pages pulled from other DP replicas' host pools over UCX (auto = on when "
         "DP > 1 and UCX is built); the synthetic workload then routes a session's turns to "
         "different replicas"},
        {"remote_timeout_ms", &RunConfig::remote_timeout_ms, "N",
         "remote tier: time limit of one lookup-and-pull call in ms"},
        {"striped_loads", &RunConfig::striped_loads, "on|off|auto",
         "load pools replicated across the TP x CP ranks (MLA, indexer) striped: each rank loads "
         "a share over its own PCIe link, an NCCL all-gather completes the pages on every GPU "
         "(auto = on with --backend cuda, NCCL and 2 or more ranks per decision group, each on "
         "its own GPU)"},
        {"host_sharing", &RunConfig::host_sharing, "node|off",
         "node-wide host tier: node = the ranks of a node allocate their host pools as one MPI "
         "shared window; pools replicated across TP or CP (MLA, indexer) are stored once per "
         "node, and DP replicas on the node load each other's pages from it (host hits, no "
         "network); the remote tier then serves only between nodes (needs host_layout "
         "page_first or page_first_direct)"},
        {"round_timeout_s", &RunConfig::round_timeout_s, "S",
         "round watchdog: seconds a collective of the decision group (the per-round agreement, "
         "the digest gather, the barrier) may wait for the other ranks before the ranks that did "
         "not arrive are named (world rank, grid coordinates, host); 0 waits forever"},
        {"on_round_timeout", &RunConfig::on_round_timeout, "abort|warn",
         "round watchdog: abort (stop the job with MPI_Abort, naming the ranks and the round) | "
         "warn (log a warning naming them every min(5 s, round_timeout_s) and keep waiting)"},
        {"deterministic", &RunConfig::deterministic, "",
         "completions at agreed points (each round waits for the copies in flight; prefetches "
         "complete): two runs with the same seed give the same figures"},
        {"progress_s", &RunConfig::progress_s, "S",
         "seconds between progress lines (requests/s, tokens/s, hit rate so far, ETA); 0: none"},
        {"duration_s", &RunConfig::duration_s, "S",
         "run for S seconds: serve the requests in passes (pass p's tokens salted by p / 2, so "
         "each content is written once and read back once) and stop at an agreed round after S "
         "seconds; 0 = the requests once (--data verify only)"},
        {"metrics_port", &RunConfig::metrics_port, "N",
         "serve live metrics in the Prometheus text format over HTTP: the rank with node-local "
         "rank L listens on port N + L (GET /metrics; every sample labelled with rank, tp, cp, "
         "pp, dp and host); 0 = no endpoint"},
        {"metrics_address", &RunConfig::metrics_address, "ADDR",
         "address the metrics endpoint listens on (127.0.0.1: this host only)"},
        {"metrics_file", &RunConfig::metrics_file, "PATH",
         "write the same metrics text to PATH every metrics_interval_s seconds (a temporary file "
         "renamed over PATH), for a node exporter's textfile collector; '{rank}' in PATH is "
         "replaced by the world rank (required with several ranks); empty = none"},
        {"metrics_interval_s", &RunConfig::metrics_interval_s, "S",
         "seconds between writes of metrics_file"},
        {"kv_events", &RunConfig::kv_events, "ENDPOINT",
         "publish KV events (pages stored and removed per tier, vLLM's msgpack format) on this "
         "ZeroMQ PUB endpoint from rank 0 of each replica, e.g. tcp://*:5557 (bind) or "
         "tcp://HOST:PORT (connect); empty = off"},
        {"kv_events_layout", &RunConfig::kv_events_layout, "map|array",
         "KV events: map (vLLM's current structs) | array (array_like, earlier vLLM and SGLang)"},
        {"kv_events_topic", &RunConfig::kv_events_topic, "TOPIC",
         "KV events: the topic frame of every message"},
        {"kv_events_wait_ms", &RunConfig::kv_events_wait_ms, "N",
         "KV events: wait up to N ms for a subscriber before the first batch (0 = do not wait)"},
    };
    return kFields;
}

const Field* findField(std::string_view key) {
    for (const Field& f : fields()) {
        if (f.key == key) return &f;
    }
    return nullptr;
}

std::string optionName(std::string_view key) {
    std::string name = "--";
    for (char c : key) name.push_back(c == '_' ? '-' : c);
    return name;
}

std::string envName(std::string_view key) {
    std::string name = "STRATA_";
    for (char c : key)
        name.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
    return name;
}

bool isBool(const Field& f) { return std::holds_alternative<bool RunConfig::*>(f.member); }

bool isNumber(const Field& f) {
    return !isBool(f) && !std::holds_alternative<std::string RunConfig::*>(f.member);
}

std::vector<std::string> fieldKeys() {
    std::vector<std::string> keys;
    for (const Field& f : fields()) keys.emplace_back(f.key);
    return keys;
}

std::string formatValue(const Field& f, const RunConfig& config) {
    return std::visit(
        [&](auto member) -> std::string {
            const auto& value = config.*member;
            using T = std::decay_t<decltype(value)>;
            if constexpr (std::is_same_v<T, std::string>) {
                return value.empty() ? std::string("\"\"") : value;
            } else if constexpr (std::is_same_v<T, bool>) {
                return value ? "true" : "false";
            } else {
                return fmt::format("{}", value);
            }
        },
        f.member);
}

// ---- text values (environment and command line) ----------------------------------------------

// Each parser returns an empty string on success, else the problem ("is not a number"); numbers
// go through the one parser of user_input.h.
std::string parseBool(std::string_view text, bool* out) {
    std::string lower(text);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    for (std::string_view t : {"true", "1", "yes", "on"}) {
        if (lower == t) return (*out = true), std::string();
    }
    for (std::string_view t : {"false", "0", "no", "off"}) {
        if (lower == t) return (*out = false), std::string();
    }
    return "is not a boolean (use true or false)";
}

// Sets a field from text; `label` names the source ("STRATA_SEED", "command line option --seed").
Status setFromText(const Field& f, std::string_view text, const std::string& label,
                   RunConfig* config) {
    std::string problem = std::visit(
        [&](auto member) -> std::string {
            auto& slot = config->*member;
            using T = std::decay_t<decltype(slot)>;
            if constexpr (std::is_same_v<T, std::string>) {
                slot = std::string(text);
                return {};
            } else if constexpr (std::is_same_v<T, bool>) {
                return parseBool(text, &slot);
            } else if constexpr (std::is_same_v<T, double>) {
                return parseNumber(text, &slot);
            } else {
                std::uint64_t value = 0;
                std::string p = parseWholeNumber(text, std::numeric_limits<T>::max(), &value);
                if (p.empty()) slot = static_cast<T>(value);
                return p;
            }
        },
        f.member);
    if (!problem.empty()) {
        return Status(StatusCode::kInvalidArgument,
                      fmt::format("{}='{}' {}{}", label, text, problem,
                                  isNumber(f) ? " (numbers: 4096, 1e6, 32k, 16Gi)" : ""));
    }
    return Status::ok();
}

// ---- TOML ------------------------------------------------------------------------------------

Status setFromToml(const Field& f, const toml::node& node, const std::string& file,
                   RunConfig* config) {
    std::string problem = std::visit(
        [&](auto member) -> std::string {
            auto& slot = config->*member;
            using T = std::decay_t<decltype(slot)>;
            if constexpr (std::is_same_v<T, std::string>) {
                if (!node.is_string()) return "must be a string";
                slot = node.as_string()->get();
                return {};
            } else if constexpr (std::is_same_v<T, bool>) {
                if (!node.is_boolean()) return "must be a boolean (true or false)";
                slot = node.as_boolean()->get();
                return {};
            } else if constexpr (std::is_same_v<T, double>) {
                if (node.is_integer()) {
                    slot = static_cast<double>(node.as_integer()->get());
                } else if (node.is_floating_point() &&
                           std::isfinite(node.as_floating_point()->get())) {
                    slot = node.as_floating_point()->get();
                } else if (node.is_string()) {
                    return parseNumber(node.as_string()->get(), &slot);
                } else {
                    return "must be a number";
                }
                return {};
            } else {
                const T max = std::numeric_limits<T>::max();
                std::uint64_t value = 0;
                if (node.is_integer()) {
                    const std::int64_t v = node.as_integer()->get();
                    if (v < 0) return fmt::format("must be non-negative (got {})", v);
                    value = static_cast<std::uint64_t>(v);
                    if (value > max) {
                        return fmt::format("is out of range (got {}, max {})", value, max);
                    }
                } else if (node.is_floating_point() || node.is_string()) {
                    // 1e6 is a float in TOML; "32k" a string: both through the one parser.
                    const std::string text =
                        node.is_string() ? node.as_string()->get()
                                         : fmt::format("{}", node.as_floating_point()->get());
                    std::string p = parseWholeNumber(text, max, &value);
                    if (!p.empty()) return fmt::format("= {} {}", text, p);
                } else {
                    return "must be a number (4096, 1e6, \"32k\", \"16Gi\")";
                }
                slot = static_cast<T>(value);
                return {};
            }
        },
        f.member);
    if (!problem.empty()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "{}: key '{}' {}", file, f.key, problem);
    }
    return Status::ok();
}

Status applyTomlTable(const toml::table& table, const std::string& file, bool top_level,
                      RunConfig* config) {
    for (const auto& [key_node, node] : table) {
        const std::string key(key_node.str());
        if (top_level && key == "run" && node.is_table()) {
            STRATA_RETURN_IF_ERROR(applyTomlTable(*node.as_table(), file, false, config));
            continue;
        }
        const Field* f = findField(key);
        if (f == nullptr) {
            return Status(
                StatusCode::kInvalidArgument,
                fmt::format("unknown key '{}' in {}{}", key, file, didYouMean(key, fieldKeys())));
        }
        if (f->key == "config") {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "{}: key 'config' cannot be set inside a config file", file);
        }
        if (config->origins[key].source == ConfigSource::kFile) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "{}: key '{}' is set twice (top level and [run])", file, key);
        }
        STRATA_RETURN_IF_ERROR(setFromToml(*f, node, file, config));
        config->origins[key] = ValueOrigin{ConfigSource::kFile, file};
    }
    return Status::ok();
}

// toml++ 3.3 (Debian 12) asserts that a table header's key starts with a bare-key character or a
// quote (TOML_ASSERT_ASSUME in parse_key): `[!run]`, `[ +]` or a control byte after `[` abort a
// build without NDEBUG (the sanitizer trees) and are undefined behaviour (__builtin_assume) in a
// clang release build; a gcc release build reports them. Found by tests/fuzz/fuzz_run_config
// (corpus/fuzz_run_config/table_header_*). This scan finds every table header as toml++ does (a
// `[` at depth 0 at the start of a line, outside strings and comments) and rejects that case
// first, naming line and column; it never rejects a valid file (a header always starts with a key).
Status checkTableHeaders(std::string_view text, const std::string& file) {
    auto bare = [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-';
    };
    std::size_t line = 1, line_start = 0, depth = 0;
    bool at_line_start = true;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (c == '\n') {
            ++line;
            line_start = i + 1;
            at_line_start = true;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\r') continue;
        const bool statement_start = at_line_start && depth == 0;
        at_line_start = false;
        if (c == '#') {
            while (i + 1 < text.size() && text[i + 1] != '\n') ++i;
        } else if (c == '"' || c == '\'') {
            const bool multi = text.substr(i, 3) == std::string(3, c);
            const std::string_view close =
                multi ? std::string_view(text.data() + i, 3) : std::string_view(text.data() + i, 1);
            i += close.size();
            while (i < text.size() && text.substr(i, close.size()) != close) {
                if (text[i] == '\n') {
                    if (!multi) break;  // an unterminated string: toml++ reports it
                    ++line;
                    line_start = i + 1;
                } else if (c == '"' && text[i] == '\\') {
                    ++i;  // an escaped character
                }
                ++i;
            }
            if (i < text.size() && text[i] == '\n') {
                --i;  // the newline is counted by the loop
            } else {
                i += close.size() - 1;
            }
        } else if (c == '[' || c == '{') {
            ++depth;
            if (c == '[' && statement_start) {
                std::size_t k = i + 1;
                if (k < text.size() && text[k] == '[') ++k;
                while (k < text.size() && (text[k] == ' ' || text[k] == '\t')) ++k;
                if (k < text.size() && !bare(text[k]) && text[k] != '"' && text[k] != '\'' &&
                    text[k] != ']') {
                    return STRATA_ERROR(StatusCode::kInvalidArgument,
                                        "{}:{}:{}: a table header must start with a bare or "
                                        "quoted key, not byte 0x{:02x}",
                                        file, line, k - line_start + 1,
                                        static_cast<unsigned char>(text[k]));
                }
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
    return Status::ok();
}

Status applyTomlFile(const std::string& file, RunConfig* config) {
    std::error_code ec;
    if (!std::filesystem::exists(file, ec)) {
        return STRATA_ERROR(StatusCode::kNotFound, "config file '{}' does not exist", file);
    }
    if (std::filesystem::is_directory(file, ec)) {
        return STRATA_ERROR(StatusCode::kIoError, "config file '{}' is a directory", file);
    }
    std::ifstream in(file, std::ios::binary);
    std::string text;
    if (in.is_open()) {
        text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    if (!in.is_open() || in.bad()) {
        return STRATA_ERROR(StatusCode::kIoError, "config file '{}': {}", file,
                            std::strerror(errno));
    }
    STRATA_RETURN_IF_ERROR(checkTableHeaders(text, file));
    toml::table table;
    try {
        table = toml::parse(text, file);
    } catch (const toml::parse_error& e) {
        const auto& where = e.source().begin;
        return STRATA_ERROR(StatusCode::kInvalidArgument, "{}:{}:{}: {}", file, where.line,
                            where.column, e.description());
    }
    return applyTomlTable(table, file, true, config);
}

// ---- command line ----------------------------------------------------------------------------

// Raw command-line values: every option is captured as text and converted by setFromText, so that
// the command line gives the same messages as the environment.
struct CliCapture {
    std::vector<std::string> text;
    std::unique_ptr<bool[]> flag;
    std::vector<CLI::Option*> options;
    CLI::App* sweep = nullptr;
    std::string capacities;
    std::string out_dir = ".";
    bool with_opt = false;
    bool version = false;
};

void buildApp(CLI::App* app, CliCapture* capture) {
    const RunConfig defaults;
    const auto& all = fields();
    capture->text.assign(all.size(), std::string());
    capture->flag = std::make_unique<bool[]>(all.size());
    capture->options.assign(all.size(), nullptr);
    for (std::size_t i = 0; i < all.size(); ++i) {
        const Field& f = all[i];
        const std::string help = fmt::format("{} [env {}]", f.help, envName(f.key));
        if (isBool(f)) {
            capture->flag[i] = false;
            capture->options[i] = app->add_flag(optionName(f.key), capture->flag[i], help);
        } else {
            capture->options[i] = app->add_option(optionName(f.key), capture->text[i], help)
                                      ->type_name(std::string(f.value_name))
                                      ->default_str(formatValue(f, defaults));
        }
    }
    capture->sweep = app->add_subcommand(
        "sweep",
        "replay the trace once per device capacity (metadata only) and write sweep.csv, "
        "sweep.json, and sweep.png when gnuplot is on PATH; the other options apply to every "
        "replay");
    capture->sweep->fallthrough();
    capture->sweep
        ->add_option("--capacities", capture->capacities,
                     "device capacities in tokens, comma-separated (1e5,1e6,3e6,1e7)")
        ->required();
    capture->sweep->add_option("--out-dir", capture->out_dir, "output directory")->default_str(".");
    capture->sweep->add_flag("--with-opt", capture->with_opt,
                             "also replay each capacity with eviction opt (Belady)");
    app->add_flag("--version", capture->version, "print the version and the git commit, and exit");
    app->footer(
        "Numbers: 4096, 1e6, 1.5e6, 32k (x1000), 2M, 16Gi (x2^30), in every option, TOML value "
        "and variable. "
        "Precedence: defaults < TOML file (--config; keys as the long options with '_' for '-', "
        "at top level or in [run]) < environment (STRATA_<KEY>) < command line.");
}

// The names of an app's options and subcommands ("--device-tokens", "sweep"), its subcommands'
// included.
void collectNames(const CLI::App& app, std::vector<std::string>* names) {
    for (const CLI::Option* o : app.get_options()) {
        for (const std::string& n : o->get_lnames()) names->push_back("--" + n);
    }
    for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
        names->push_back(sub->get_name());
        collectNames(*sub, names);
    }
}

// "; did you mean '--device-tokens' for '--devce-tokens'?" for the first argument that names no
// option or subcommand and is close to one (option values are rarely close to an option name);
// "" when none is.
std::string unknownOptionHint(int argc, const char* const* argv, const CLI::App& app) {
    std::vector<std::string> names;
    collectNames(app, &names);
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg.rfind("--", 0) == 0) arg = arg.substr(0, arg.find('='));
        if (std::find(names.begin(), names.end(), arg) != names.end()) continue;
        if (std::string best = closestName(arg, names); !best.empty()) {
            return fmt::format("; did you mean '{}' for '{}'?", best, arg);
        }
    }
    return {};
}

int sourceRank(const ValueOrigin& origin) { return static_cast<int>(origin.source); }

const ValueOrigin& originOf(const RunConfig& config, const std::string& key) {
    static const ValueOrigin kDefault{ConfigSource::kDefault, "default"};
    auto it = config.origins.find(key);
    return it == config.origins.end() ? kDefault : it->second;
}

std::string whereOf(const RunConfig& config, const std::string& key) {
    const ValueOrigin& o = originOf(config, key);
    return o.where.empty() ? std::string("default") : o.where;
}

// host_ratio > 0 replaces host_tokens when host_tokens came from a lower-precedence source.
Status resolveHostCapacity(RunConfig* config) {
    if (config->host_ratio <= 0 || config->host_tokens == 0) return Status::ok();
    const ValueOrigin tokens = originOf(*config, "host_tokens");
    const ValueOrigin ratio = originOf(*config, "host_ratio");
    if (sourceRank(tokens) < sourceRank(ratio)) {
        config->host_tokens = 0;
        config->origins["host_tokens"] =
            ValueOrigin{ratio.source, fmt::format("replaced by host_ratio from {}", ratio.where)};
    } else if (sourceRank(tokens) > sourceRank(ratio)) {
        config->host_ratio = 0;
        config->origins["host_ratio"] = ValueOrigin{
            tokens.source, fmt::format("replaced by host_tokens from {}", tokens.where)};
    } else {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "host_tokens ({}) and host_ratio ({}) are both set in {}: set only one "
                            "(host_tokens = 0 uses host_ratio)",
                            config->host_tokens, config->host_ratio, tokens.where);
    }
    return Status::ok();
}

Status checkChoice(const RunConfig& config, const std::string& key, const std::string& value,
                   std::initializer_list<std::string_view> choices) {
    for (std::string_view c : choices) {
        if (value == c) return Status::ok();
    }
    const std::vector<std::string> names(choices.begin(), choices.end());
    return STRATA_ERROR(StatusCode::kInvalidArgument, "{} '{}' (from {}) must be one of {}{}", key,
                        value, whereOf(config, key), fmt::join(choices, ", "),
                        didYouMean(value, names));
}

// A choice that names a value of enum E: the allowed names are E's own (core/enum_names.h).
template <typename E>
Status checkEnum(const RunConfig& config, const std::string& key, const std::string& value) {
    if (core::parseEnum<E>(value).isOk()) return Status::ok();
    std::vector<std::string> names;
    for (const auto& e : enumNames(E{}).entries) names.emplace_back(e.name);  // by ADL
    return STRATA_ERROR(StatusCode::kInvalidArgument, "{} '{}' (from {}) must be one of {}{}", key,
                        value, whereOf(config, key), core::enumNameList<E>(),
                        didYouMean(value, names));
}

Status atLeast(const RunConfig& config, const std::string& key, std::uint64_t value,
               std::uint64_t minimum) {
    if (value >= minimum) return Status::ok();
    return STRATA_ERROR(StatusCode::kInvalidArgument, "{} must be at least {} (got {} from {})",
                        key, minimum, value, whereOf(config, key));
}

}  // namespace

Status validateRunConfig(const RunConfig& config) {
    STRATA_RETURN_IF_ERROR(atLeast(config, "page_size", config.page_size, 1));
    STRATA_RETURN_IF_ERROR(atLeast(config, "requests", config.requests, 1));
    STRATA_RETURN_IF_ERROR(atLeast(config, "batch", config.batch, 1));
    STRATA_RETURN_IF_ERROR(atLeast(config, "tp", config.tp, 1));
    STRATA_RETURN_IF_ERROR(atLeast(config, "cp", config.cp, 1));
    STRATA_RETURN_IF_ERROR(atLeast(config, "pp", config.pp, 1));
    if (config.device_tokens < config.page_size) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "device_tokens ({} from {}) must be at least page_size ({})",
                            config.device_tokens, whereOf(config, "device_tokens"),
                            config.page_size);
    }
    if (config.host_tokens != 0 && config.host_tokens < config.page_size) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "host_tokens ({} from {}) must be 0 (use host_ratio) or at least "
                            "page_size ({})",
                            config.host_tokens, whereOf(config, "host_tokens"), config.page_size);
    }
    if (!std::isfinite(config.host_ratio) || config.host_ratio < 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "host_ratio ({} from {}) must be a non-negative number",
                            config.host_ratio, whereOf(config, "host_ratio"));
    }
    STRATA_RETURN_IF_ERROR(checkChoice(config, "data", config.data, {"verify", "none"}));
    STRATA_RETURN_IF_ERROR(
        checkChoice(config, "replay_rules", config.replay_rules, {"simulator", "engine"}));
    STRATA_RETURN_IF_ERROR(checkChoice(config, "remote", config.remote, {"on", "off", "auto"}));
    STRATA_RETURN_IF_ERROR(
        checkEnum<runtime::StripedLoads>(config, "striped_loads", config.striped_loads));
    STRATA_RETURN_IF_ERROR(atLeast(config, "remote_timeout_ms", config.remote_timeout_ms, 1));
    STRATA_RETURN_IF_ERROR(
        checkEnum<runtime::HostSharing>(config, "host_sharing", config.host_sharing));
    if (config.host_sharing == "node" && config.host_layout == "layer_first") {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "host_sharing node (from {}) needs host_layout page_first or "
                            "page_first_direct, not layer_first (from {})",
                            whereOf(config, "host_sharing"), whereOf(config, "host_layout"));
    }
    STRATA_RETURN_IF_ERROR(
        checkEnum<runtime::KvWireLayout>(config, "kv_events_layout", config.kv_events_layout));
    if (!config.kv_events.empty() && config.data == "none") {
        return STRATA_ERROR(
            StatusCode::kInvalidArgument,
            "kv_events ({}) needs --data verify: a metadata-only replay (data none, "
            "from {}) has no cache tiers to report",
            whereOf(config, "kv_events"), whereOf(config, "data"));
    }
    if (!std::isfinite(config.round_timeout_s) || config.round_timeout_s < 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "round_timeout_s ({} from {}) must be a non-negative number of seconds "
                            "(0 waits forever)",
                            config.round_timeout_s, whereOf(config, "round_timeout_s"));
    }
    STRATA_RETURN_IF_ERROR(
        checkEnum<comm::RoundTimeoutAction>(config, "on_round_timeout", config.on_round_timeout));
    if (!std::isfinite(config.progress_s) || config.progress_s < 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "progress_s ({} from {}) must be a non-negative number of seconds (0: "
                            "no progress lines)",
                            config.progress_s, whereOf(config, "progress_s"));
    }
    if (!std::isfinite(config.duration_s) || config.duration_s < 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "duration_s ({} from {}) must be a non-negative number of seconds (0: "
                            "the requests once)",
                            config.duration_s, whereOf(config, "duration_s"));
    }
    if (config.duration_s > 0 && config.data == "none") {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "duration_s ({}) needs --data verify: a metadata-only replay (data "
                            "none, from {}) serves its trace once",
                            whereOf(config, "duration_s"), whereOf(config, "data"));
    }
    if (config.metrics_port > 65535) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "metrics_port ({} from {}) must be a TCP port (1..65535; 0 = no "
                            "endpoint)",
                            config.metrics_port, whereOf(config, "metrics_port"));
    }
    if (!std::isfinite(config.metrics_interval_s) || config.metrics_interval_s < 0.05) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "metrics_interval_s ({} from {}) must be at least 0.05 seconds",
                            config.metrics_interval_s, whereOf(config, "metrics_interval_s"));
    }
    if ((config.metrics_port != 0 || !config.metrics_file.empty()) && config.data == "none") {
        return STRATA_ERROR(
            StatusCode::kInvalidArgument,
            "live metrics ({} from {}) need a run with a cache: data none (from "
            "{}) replays metadata only",
            config.metrics_port != 0 ? "metrics_port" : "metrics_file",
            whereOf(config, config.metrics_port != 0 ? "metrics_port" : "metrics_file"),
            whereOf(config, "data"));
    }
    if (!(config.warmup_fraction >= 0.0 && config.warmup_fraction < 1.0)) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "warmup_fraction ({} from {}) must be in [0, 1)",
                            config.warmup_fraction, whereOf(config, "warmup_fraction"));
    }
    if (config.host_tokens == 0 && config.host_ratio == 0 && config.data != "none") {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "host_tokens and host_ratio are both 0: set one of them to size the "
                            "host pool");
    }
    if (config.host_tokens > 0 && config.host_ratio > 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "host_tokens ({}) and host_ratio ({}) are both set: set only one",
                            config.host_tokens, config.host_ratio);
    }
    if (config.model.empty()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "model (from {}) must not be empty",
                            whereOf(config, "model"));
    }
    if (auto preset = pools::findModelPreset(config.model); !preset.isOk()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "model (from {}): {}",
                            whereOf(config, "model"), preset.status().message());
    }
    STRATA_RETURN_IF_ERROR(
        checkEnum<controller::PrefetchPolicy>(config, "prefetch_policy", config.prefetch_policy));
    // What the Cache would refuse after start-up (rc 1), refused here (rc 2): striping needs a
    // decision group of 2 or more ranks, and GPUs.
    if (config.striped_loads == "on" && static_cast<std::uint64_t>(config.tp) * config.cp < 2) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "striped_loads on (from {}): the decision group (tp x cp) has one "
                            "rank: nothing to stripe (run with --tp or --cp of 2 or more)",
                            whereOf(config, "striped_loads"));
    }
    if (config.striped_loads == "on" && config.backend == "cpu") {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "striped_loads on (from {}): the back end is cpu (from {}; striped "
                            "loads need --backend cuda)",
                            whereOf(config, "striped_loads"), whereOf(config, "backend"));
    }
    if (config.no_storage && !config.storage_dir.empty()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "storage_dir '{}' (from {}) is set but no_storage (from {}) turns the "
                            "storage tier off: drop one of them",
                            config.storage_dir, whereOf(config, "storage_dir"),
                            whereOf(config, "no_storage"));
    }
    STRATA_RETURN_IF_ERROR(checkChoice(config, "workload", config.workload,
                                       {"synthetic", "mooncake", "kvcache-tester"}));
    if (config.workload == "synthetic" && !config.trace_path.empty()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "trace '{}' (from {}) is set but workload is 'synthetic': set workload "
                            "to mooncake or kvcache-tester, or drop the trace",
                            config.trace_path, whereOf(config, "trace"));
    }
    if (config.workload != "synthetic" && config.trace_path.empty()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "workload '{}' needs a trace file (--trace PATH)", config.workload);
    }
    STRATA_RETURN_IF_ERROR(
        checkEnum<kernels::HostLayout>(config, "host_layout", config.host_layout));
    STRATA_RETURN_IF_ERROR(
        checkEnum<controller::WritePolicy>(config, "write_policy", config.write_policy));
    STRATA_RETURN_IF_ERROR(
        checkChoice(config, "eviction", config.eviction, {"lru", "lfu", "priority", "opt"}));
    if (config.eviction == "opt" && config.data != "none" && !config.sweep) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "eviction opt (from {}) needs the future of a recorded trace: use it "
                            "with --data none (or strata-run sweep)",
                            whereOf(config, "eviction"));
    }
    STRATA_RETURN_IF_ERROR(atLeast(config, "priority_levels", config.priority_levels, 1));
    STRATA_RETURN_IF_ERROR(checkChoice(config, "backend", config.backend, {"auto", "cpu", "cuda"}));
    spdlog::level::level_enum level;
    if (!core::parseLogLevel(config.log_level, &level)) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "log_level '{}' (from {}) must be one of trace, debug, info, warn, "
                            "error, off",
                            config.log_level, whereOf(config, "log_level"));
    }
    return Status::ok();
}

Result<RunConfig> loadRunConfig(int argc, const char* const* argv) {
    RunConfig config;
    for (const Field& f : fields()) {
        config.origins[std::string(f.key)] = ValueOrigin{ConfigSource::kDefault, "default"};
    }

    CLI::App app("strata-run: runs the Strata KV cache as a model worker would",
                 argc > 0 && argv[0] != nullptr ? argv[0] : "strata-run");
    CliCapture cli;
    buildApp(&app, &cli);
    try {
        app.parse(argc, argv);
    } catch (const CLI::Success&) {
        config.help = true;
        return config;
    } catch (const CLI::ParseError& e) {
        return Status(StatusCode::kInvalidArgument,
                      fmt::format("command line: {}{} (see --help)", e.what(),
                                  unknownOptionHint(argc, argv, app)));
    }
    if (cli.version) {
        config.version = true;
        return config;
    }

    const auto& all = fields();
    auto given_on_cli = [&](std::size_t i) { return cli.options[i]->count() > 0; };

    // The config file itself: command line, else environment.
    const std::size_t config_index = static_cast<std::size_t>(findField("config") - all.data());
    if (given_on_cli(config_index)) {
        config.config_file = cli.text[config_index];
        config.origins["config"] = ValueOrigin{ConfigSource::kCommandLine, "--config"};
    } else if (const char* env = std::getenv("STRATA_CONFIG"); env != nullptr && *env != '\0') {
        config.config_file = env;
        config.origins["config"] = ValueOrigin{ConfigSource::kEnvironment, "STRATA_CONFIG"};
    }
    if (!config.config_file.empty()) {
        STRATA_RETURN_IF_ERROR(applyTomlFile(config.config_file, &config));
    }

    for (std::size_t i = 0; i < all.size(); ++i) {
        if (i == config_index) continue;
        const std::string name = envName(all[i].key);
        const char* env = std::getenv(name.c_str());
        if (env == nullptr || *env == '\0') continue;
        STRATA_RETURN_IF_ERROR(setFromText(all[i], env, name, &config));
        config.origins[std::string(all[i].key)] = ValueOrigin{ConfigSource::kEnvironment, name};
    }

    for (std::size_t i = 0; i < all.size(); ++i) {
        if (i == config_index || !given_on_cli(i)) continue;
        const std::string option = optionName(all[i].key);
        if (isBool(all[i])) {
            config.*std::get<bool RunConfig::*>(all[i].member) = cli.flag[i];
        } else {
            STRATA_RETURN_IF_ERROR(
                setFromText(all[i], cli.text[i], "command line option " + option, &config));
        }
        config.origins[std::string(all[i].key)] = ValueOrigin{ConfigSource::kCommandLine, option};
    }

    if (cli.sweep->parsed()) {
        config.sweep = true;
        config.sweep_capacities = cli.capacities;
        config.sweep_out_dir = cli.out_dir;
        config.sweep_with_opt = cli.with_opt;
        // A sweep replays metadata only.
        if (config.data != "none" && originOf(config, "data").source != ConfigSource::kDefault) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "strata-run sweep replays metadata only, but data is '{}' (from "
                                "{}): drop it or use none",
                                config.data, whereOf(config, "data"));
        }
        config.data = "none";
        config.origins["data"] = ValueOrigin{ConfigSource::kCommandLine, "sweep"};
    }
    STRATA_RETURN_IF_ERROR(resolveHostCapacity(&config));
    // "--workload mooncake:PATH" is "--workload mooncake --trace PATH"; "kvtester" names the
    // kv-cache-tester format too.
    if (auto colon = config.workload.find(':'); colon != std::string::npos) {
        if (!config.trace_path.empty()) {
            return STRATA_ERROR(
                StatusCode::kInvalidArgument,
                "workload '{}' names a trace and trace '{}' (from {}) names another: "
                "give one",
                config.workload, config.trace_path, whereOf(config, "trace"));
        }
        config.trace_path = config.workload.substr(colon + 1);
        config.workload.resize(colon);
        config.origins["trace"] = config.origins["workload"];
    }
    if (config.workload == "kvtester") config.workload = "kvcache-tester";
    STRATA_RETURN_IF_ERROR(validateRunConfig(config));
    return config;
}

std::string runConfigHelp(const std::string& program) {
    CLI::App app("strata-run: runs the Strata KV cache as a model worker would", program);
    CliCapture cli;
    buildApp(&app, &cli);
    return app.help();
}

std::string describe(const RunConfig& config, bool only_changed) {
    const RunConfig defaults;
    std::size_t width = 0;
    for (const Field& f : fields()) width = std::max(width, f.key.size());
    std::string out;
    for (const Field& f : fields()) {
        if (only_changed && formatValue(f, config) == formatValue(f, defaults)) continue;
        out += fmt::format("{:<{}} = {}  ({})\n", f.key, width, formatValue(f, config),
                           whereOf(config, std::string(f.key)));
    }
    if (out.empty()) out = "(all defaults)\n";
    return out;
}

}  // namespace strata::app
