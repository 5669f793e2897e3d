// strata-run's metadata-only replay (--data none) from its configuration, and the capacity sweep
// (`strata-run sweep`): one replay per device capacity, written as sweep.csv, sweep.json and a
// gnuplot PNG of hit rate against capacity.
// Private to runtime/. Thread-safety: functions of their inputs (runSweep writes files and runs
// gnuplot as a child process).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "strata/app/block_replay.h"
#include "strata/app/report.h"
#include "strata/app/run_config.h"
#include "strata/app/trace.h"
#include "strata/core/status.h"

namespace strata::app {

// The configured trace (mooncake or kv-cache-tester): its first cfg.requests requests when
// --requests was given (from the command line, a file or the environment), else all of them.
// kInvalidArgument for the synthetic workload, else the loader's errors.
Result<Trace> loadTrace(const RunConfig& cfg);

// The replay options of a configuration: device_tokens, host_tokens (or host_ratio x device), the
// storage tier (none with no_storage, unlimited when storage_tokens is 0), page size, eviction,
// warm-up, priority levels. kInvalidArgument for an unknown eviction policy.
Result<BlockReplayOptions> replayOptions(const RunConfig& cfg);

// The strata-run report of a replay (hit tokens per tier, evictions, storage traffic).
RunReport replayReport(const RunConfig& cfg, const BlockReplayResult& r);

// "1e5,1e6,3e6,32k" -> {100000, 1000000, 3000000, 32000} (each item through parseWholeNumber of
// user_input.h). kInvalidArgument naming the item that is not a positive whole number of tokens,
// and for an empty list.
Result<std::vector<std::uint64_t>> parseCapacities(const std::string& text);

struct SweepRow {
    std::uint64_t capacity_tokens = 0;
    double device = 0, host = 0, storage = 0, total = 0;  // hit rates
    double opt = -1;                                      // Belady's hit rate; < 0 when not run
};

// Replays the trace once per capacity (as the device tier; the other tiers as configured), and with
// cfg.sweep_with_opt once more with eviction opt (one tier only). Writes sweep.csv, sweep.json and
// sweep.png into cfg.sweep_out_dir (created if missing) and returns the rows. Without gnuplot on
// PATH (or with a directory gnuplot cannot take) it writes the CSV and JSON, warns that there is
// no plot, and succeeds. kIoError when a file cannot be written or gnuplot fails; the replay's
// errors.
Result<std::vector<SweepRow>> runSweep(const RunConfig& cfg);

}  // namespace strata::app
