// Configuration of strata-run: one struct with every option, loaded with the precedence
// defaults < TOML file (--config) < STRATA_* environment < command line.
// Owns its strings. Thread-safety: loadRunConfig reads the process environment (do not setenv
// concurrently); RunConfig is a plain value.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "strata/core/status.h"

namespace strata::app {

// Where a value came from, for the effective-configuration log and error messages.
enum class ConfigSource { kDefault, kFile, kEnvironment, kCommandLine };

struct ValueOrigin {
    ConfigSource source = ConfigSource::kDefault;
    std::string where;  // "default", the TOML file path, "STRATA_X" or "--x"
};

// Every strata-run option. Keys (TOML and describe()) are the member names below except where a
// comment gives the key; the long option is "--" + key with '_' -> '-'; the environment variable
// is "STRATA_" + upper-case key (STRATA_DEVICE_TOKENS).
struct RunConfig {
    std::string config_file;                 // key "config": TOML file; empty for none
    std::string model = "llama3-8b";         // model preset name (checked by the caller)
    bool list_models = false;                // print the presets and exit
    std::uint32_t layers = 4;                // layers to simulate; 0 = the preset's real count
    std::string workload = "synthetic";      // synthetic | mooncake | kvcache-tester
    std::string trace_path;                  // key "trace": trace file of a non-synthetic workload
    std::uint32_t requests = 400;            // requests to run (>= 1)
    std::uint64_t seed = 1;                  // workload and jitter seed
    std::uint32_t page_size = 64;            // tokens per page (>= 1)
    std::uint64_t device_tokens = 32768;     // device pool capacity in tokens (>= page_size)
    std::uint64_t host_tokens = 131072;      // host pool capacity in tokens; 0 = use host_ratio
    double host_ratio = 0.0;                 // host capacity as a multiple of device; 0 = unused
    std::string host_layout = "page_first";  // layer_first | page_first | page_first_direct
    std::uint64_t state_slots = 0;  // device slots of Mamba state (hybrid models); 0 = auto
    std::string write_policy = "write_through";      // write_through | write_through_selective |
                                                     // write_back
    std::string eviction = "lru";                    // lru | lfu | priority | opt (--data none)
    std::string backend = "auto";                    // auto | cpu | cuda
    std::string report_path = "strata-report.json";  // key "report": JSON report; empty for none
    std::uint32_t batch = 8;                         // requests admitted per round (>= 1)
    std::uint32_t tp = 1;                            // tensor-parallel ranks per replica (>= 1)
    std::uint32_t cp = 1;                            // context-parallel ranks per replica (>= 1)
    std::uint32_t pp = 1;                            // pipeline stages per replica (>= 1)
    bool check_consistency = false;           // all-gather tree/allocator digests every round
    std::uint32_t jitter_us = 0;              // random per-rank delay of completions (fault test)
    std::string log_level = "info";           // trace | debug | info | warn | error | off
    std::uint64_t load_back_threshold = 0;    // host hits shorter than this are recomputed
    std::string storage_dir;                  // HDF5 tier directory; empty: a fresh temporary one
    std::uint64_t storage_tokens = 0;         // storage capacity of the job in tokens; 0: unlimited
    bool no_storage = false;                  // run without the storage tier
    std::string prefetch_policy = "timeout";  // best_effort | wait_complete | timeout
    std::string data = "verify";   // verify: move and check bytes; none: metadata-only trace replay
    double warmup_fraction = 0.0;  // requests in this first fraction are replayed, not measured
    // --data none counts hits by: simulator (the published simulators' rules) | engine (the data
    // path's: the last token computed, only full pages kept; BlockReplayOptions::engine_rules)
    std::string replay_rules = "simulator";
    std::uint32_t priority_levels = 1;  // eviction priority: request priorities 0 .. levels-1
    std::string remote = "auto";        // remote tier: on | off | auto (on when DP > 1 with UCX)
    std::uint32_t remote_timeout_ms = 500;  // per remote-tier call (lookups and pulls)
    // Striped loads of replicated pools over NCCL: on | off | auto (on with the CUDA back end, NCCL
    // and a decision group of 2 or more ranks, each on its own GPU).
    std::string striped_loads = "auto";
    // Node-wide host tier: node (the ranks of a node share one host pool in an MPI shared window;
    // replicated pools stored once per node; DP replicas serve each other's pages) | off.
    std::string host_sharing = "off";
    // Round watchdog: seconds a collective of the decision group may wait for the other ranks (0:
    // forever), and what happens then: abort (name the ranks, stop the job) | warn (name them
    // every min(5 s, round_timeout_s) and keep waiting).
    double round_timeout_s = 120.0;
    std::string on_round_timeout = "abort";
    // Completions at agreed points: every round first waits for the copies and the storage work
    // in flight (which the round then reaps), and prefetches wait to complete instead of timing
    // out, so that what counts as a hit does not depend on timing: two runs with the same seed
    // give the same figures (times and bandwidths aside). Not the remote tier (DP > 1).
    bool deterministic = false;
    double progress_s = 5.0;  // seconds between rank 0's progress lines; 0: none
    // Run for this many seconds (0: off, the requests once): the request list is served in passes
    // (later passes with fresh ids; pass p's tokens salted by p / 2, so every content is served
    // twice in a row), and the ranks stop at an agreed round once any of them has run this long.
    // --data verify only. For soaks (strata-bench soak).
    double duration_s = 0.0;
    // Live metrics (Prometheus text format): the rank with node-local rank L serves them over HTTP
    // at metrics_address:(metrics_port + L)/metrics (0: no endpoint), and/or writes them to
    // metrics_file every metrics_interval_s seconds (atomically; a "{rank}" in the path is
    // replaced by the world rank, and must be there when several ranks run).
    std::uint32_t metrics_port = 0;
    std::string metrics_address = "0.0.0.0";
    std::string metrics_file;
    double metrics_interval_s = 5.0;
    // KV events (runtime/kv_events.h): rank 0 of each replica publishes what its tiers store and
    // remove on this ZeroMQ endpoint (empty: off), in vLLM's wire format.
    std::string kv_events;
    std::string kv_events_layout = "map";  // map (vLLM's current structs) | array (array_like)
    std::string kv_events_topic;           // first frame of every message
    std::uint32_t kv_events_wait_ms = 0;   // before the first batch, wait for a subscriber

    // The `sweep` subcommand (command line only): one metadata-only replay per device capacity.
    bool sweep = false;
    std::string sweep_capacities;     // --capacities 1e5,1e6,...
    std::string sweep_out_dir = ".";  // --out-dir: where sweep.csv, sweep.json, sweep.png go
    bool sweep_with_opt = false;      // --with-opt: Belady's hit rate beside each row

    // True when --help was given: loadRunConfig stopped after the command line (no file or
    // environment read, nothing validated); print runConfigHelp() and exit 0.
    bool help = false;
    // True when --version was given (command line only): print versionLine() and exit 0.
    bool version = false;
    // Origin of every key's value, keyed by key name ("device_tokens", "config", ...).
    std::map<std::string, ValueOrigin> origins;
};

// Loads the configuration from defaults, the TOML file named by --config or STRATA_CONFIG
// (top-level keys or a [run] table), the STRATA_* environment (empty variables are ignored) and the
// command line, then validates it. host_ratio > 0 replaces a host_tokens that was left at its
// default; when both are set explicitly, the higher-precedence source wins and the same source is
// an error. Fails with kInvalidArgument naming the key and its source for a malformed value (not an
// integer, negative, out of range, wrong TOML type), an unknown TOML key or command-line option, a
// value outside its choices or range; kNotFound/kIoError when the TOML file cannot be read.
Result<RunConfig> loadRunConfig(int argc, const char* const* argv);

// Range and choice checks of a config assembled by hand (loadRunConfig runs them already).
Status validateRunConfig(const RunConfig& config);

// The --help text (options, value names, defaults, sources).
std::string runConfigHelp(const std::string& program = "strata-run");

// The effective configuration, one "key = value  (origin)" line per key, for rank 0 to log; with
// only_changed, only the keys whose value differs from the default (or "(all defaults)").
std::string describe(const RunConfig& config, bool only_changed = false);

}  // namespace strata::app
