// The strata-run report: totals over the job (the caller sums per-rank figures), written as JSON
// and printed as a readable summary.
// A RunReport is a plain value that owns its strings and JSON. Thread-safety: pure functions.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "strata/app/run_config.h"
#include "strata/core/status.h"

namespace strata::app {

struct HitTokens {
    std::uint64_t device = 0;   // prompt tokens found in device pools
    std::uint64_t host = 0;     // prompt tokens loaded back from host pools
    std::uint64_t remote = 0;   // prompt tokens pulled from peers' host pools
    std::uint64_t storage = 0;  // prompt tokens read from the storage tier
    std::uint64_t total() const noexcept { return device + host + remote + storage; }
};

// One transfer path (device -> host backups, host -> device loads).
struct TransferPath {
    std::uint64_t bytes = 0;
    // Time the path's copy stream was busy with its batches (timed events before and after each
    // batch's copies, summed over batches and ranks): bytes over it is the path's bandwidth.
    double seconds = 0;
    std::uint64_t pages = 0;
    // Each batch's time from launch to the first round that saw it finished, summed: how long
    // copies were in flight as the scheduler saw them (rounds included), not a bandwidth.
    double round_seconds = 0;
    // bytes / seconds / 1e9; 0 when seconds is 0.
    double gbPerSecond() const noexcept;
};

struct SyncStats {
    std::uint64_t rounds = 0;
    double mean_us = 0;  // mean time of one agreement per round
    double p99_us = 0;
};

struct ConsistencyStats {
    std::uint64_t rounds_checked = 0;
    std::uint64_t divergences = 0;
};

struct StorageStats {
    std::uint64_t pages_written = 0;
    std::uint64_t pages_read = 0;
    std::uint64_t checksum_failures = 0;
};

// The remote tier (pages pulled from other replicas' host pools), summed over ranks.
struct RemoteReport {
    bool enabled = false;
    std::uint64_t pages_pulled = 0;       // served: pulled and checksum-verified
    std::uint64_t bytes = 0;              // bytes of those pages
    std::uint64_t pages_published = 0;    // pages announced to the directory
    std::uint64_t checksum_failures = 0;  // pulled but not served (slot reused meanwhile)
    std::uint64_t rejected_messages = 0;  // control messages that failed authentication
    std::uint64_t timeouts = 0;           // lookups or pulls whose peer did not answer in time
    double pull_seconds = 0;              // summed time in pulls (bandwidth = bytes / seconds)
};

// The host tier's memory per node and the node-wide host tier (--host-sharing node): bytes and
// copies are the largest over the job's nodes; the node stores' figures are summed over ranks.
struct HostTierReport {
    std::string sharing = "off";                // "node" or "off"
    std::uint64_t bytes_per_node = 0;           // host pool bytes of one node (as allocated)
    std::uint64_t bytes_per_node_unshared = 0;  // the same with per-rank pools
    double copies_per_replicated_page = 1;      // of a TP/CP-replicated pool's page, per replica
    std::uint64_t cross_replica_hit_pages = 0;  // pages copied from another replica's host pool
    std::uint64_t cross_replica_hit_bytes = 0;
    double cross_replica_seconds = 0;     // time in those copies (with their checksums)
    std::uint64_t pages_published = 0;    // entered the node index
    std::uint64_t checksum_failures = 0;  // copied but not served
    std::uint64_t retract_waits = 0;      // evictions that waited for a reader's pin
    std::uint64_t expired_leases = 0;     // pins whose lease lapsed (their reader stopped)
};

// Striped loads of replicated pools over NCCL (each rank loads a share, an all-gather completes
// them), summed over ranks.
struct StripedReport {
    bool enabled = false;
    std::string off_reason;   // why not, when the mode was auto (or "" when it was off)
    std::uint64_t pages = 0;  // pages of replicated pools loaded striped (per pool, per rank)
    std::uint64_t bytes = 0;  // their bytes on the GPUs (part of transfer.h2d.bytes)
};

// KV events (--kv-events): what the publishers (rank 0 of each replica) sent, summed over them.
// The figures per medium ("GPU", "CPU", "DISK") count pages; *_events count events.
struct KvEventsReport {
    bool enabled = false;
    std::uint64_t publishers = 0;
    std::uint64_t batches = 0, events = 0, dropped_batches = 0, dropped_events = 0, cleared = 0;
    std::map<std::string, std::uint64_t> stored_pages, removed_pages, stored_events, removed_events;
};

struct EvictionStats {
    std::uint64_t device_pages = 0;
    std::uint64_t host_pages = 0;
};

struct PoolVerification {
    std::string name;  // "kv", "indexer"
    std::string kind;  // pools::poolKindName
    std::uint64_t pages_verified = 0;
    std::uint64_t pages_mismatched = 0;
};

// One rank's own figures (request-level ones as the rank saw them: every rank of a replica serves
// the same requests).
struct RankFigures {
    int rank = 0;
    std::string host;
    std::uint64_t requests = 0;
    std::uint64_t prompt_tokens = 0;
    std::uint64_t computed_tokens = 0;
    HitTokens hit_tokens;
    std::uint64_t pages_verified = 0;
    std::uint64_t pages_mismatched = 0;
    std::uint64_t loads = 0;
    std::uint64_t backups = 0;
    std::uint64_t h2d_bytes = 0;
    std::uint64_t d2h_bytes = 0;
    double load_wait_seconds = 0;
    double elapsed_seconds = 0;
};

struct RunReport {
    // What ran, where and when (empty when not known: a report assembled by hand).
    std::string version;             // "0.1.0"
    std::string git_hash;            // build_info.h gitHash()
    std::string start_time;          // ISO 8601 UTC
    std::vector<std::string> hosts;  // distinct host names of the ranks, in rank order
    bool deterministic = false;      // completions at agreed points (RunConfig::deterministic)
    std::vector<RankFigures> per_rank;
    std::uint32_t ranks = 1;
    std::uint32_t tp = 1;
    std::uint32_t cp = 1;
    std::uint32_t pp = 1;
    std::uint32_t dp = 1;
    std::string model;
    std::string backend;  // the back end that ran ("cpu" or "cuda"), not the requested "auto"
    std::string workload;
    std::uint64_t requests = 0;          // served to the end
    std::uint64_t requests_planned = 0;  // in the workload (more than requests when interrupted)
    // The terminating signal (SIGTERM, SIGINT, SIGHUP) at which the ranks agreed to stop before
    // the end of the workload; 0 when the run served every request.
    int interrupt_signal = 0;
    std::uint64_t rounds = 0;
    std::uint64_t prompt_tokens = 0;  // not checked against computed + hits: the caller's job
    std::uint64_t computed_tokens = 0;
    HitTokens hit_tokens;
    std::uint64_t pages_verified = 0;
    std::uint64_t pages_mismatched = 0;
    // Per pool, in the order of the model's pools: a page counts as verified in a pool when every
    // row of that pool in the page matched (the totals above count a page once, for all pools).
    std::vector<PoolVerification> pools;
    TransferPath d2h;
    TransferPath h2d;
    std::uint64_t backups = 0;  // device -> host operations
    std::uint64_t loads = 0;    // host -> device operations
    EvictionStats evictions;
    std::uint64_t write_back_pages = 0;  // pages backed up on eviction (write_back)
    std::uint64_t dropped_pages = 0;     // pages evicted without a copy in a lower tier
    std::uint64_t rejected_admissions = 0;
    SyncStats sync;
    ConsistencyStats consistency;
    StorageStats storage;
    RemoteReport remote;
    HostTierReport host;
    StripedReport striped;
    KvEventsReport kv_events;
    // Time the worker spent blocked in waitLayer() for loads to arrive, summed over ranks.
    double load_wait_seconds = 0;
    double elapsed_seconds = 0;
    nlohmann::json config = nlohmann::json::object();  // the effective configuration (echo)
};

// Mean and p99 (nearest rank) of per-round agreement times in microseconds; all zero when empty.
SyncStats summarizeSync(std::vector<double> round_us);

// The effective configuration as a JSON object with typed values, keyed as in describe().
nlohmann::json configToJson(const RunConfig& config);

// Nested JSON: "ranks", "requests", "requests_planned", "interrupted" (bool),
// "interrupt_signal" (its name, e.g. "SIGTERM", or null), "rounds", "prompt_tokens",
// "computed_tokens", "hit_tokens": {"device","host","remote","storage"}, "pages_verified",
// "pages_mismatched", "pools": {<pool name>: {"kind","pages_verified","pages_mismatched"}},
// "tp","cp","pp","dp", "consistency": {"rounds_checked","divergences"},
// "sync": {"rounds","mean_us","p99_us"}, "hit_rate": {"device","host","remote","storage","total"}
// (fractions of prompt tokens, 0 without prompt tokens), "transfer": {"d2h","h2d"} each
// {"bytes","seconds","gb_per_s","pages"}, "storage": {"pages_written","pages_read",
// "checksum_failures"}, "remote": {"enabled","pages_pulled","bytes","pages_published",
// "checksum_failures","rejected_messages","timeouts","pull_seconds","gb_per_s"}, "host":
// {"sharing","bytes_per_node","bytes_per_node_unshared","copies_per_replicated_page",
// "cross_replica_hit_pages","cross_replica_hit_bytes","cross_replica_gb_per_s","pages_published",
// "checksum_failures","retract_waits","expired_leases"}, "striped":
// {"enabled","off_reason","pages","bytes"}, "kv_events": {"enabled","publishers","batches",
// "events","dropped_batches","dropped_events","cleared","stored_pages","removed_pages",
// "stored_events","removed_events"} (the last four keyed by medium), "load_wait_seconds", plus
// model, backend, workload, backups, loads, evictions, write_back_pages, dropped_pages,
// rejected_admissions, elapsed_seconds and "config"; "version", "git_hash", "start_time", "hosts",
// "deterministic" and "per_rank" (a list of {"rank","host","requests","prompt_tokens",
// "computed_tokens","hit_tokens":{...},"pages_verified","pages_mismatched","loads","backups",
// "h2d_bytes","d2h_bytes","load_wait_seconds","elapsed_seconds"}; empty for a replay).
nlohmann::json toJson(const RunReport& report);

// Writes toJson(report) (indented) to `path`, replacing the file. kIoError with the errno text when
// the file cannot be opened or written; OK otherwise.
Status writeJson(const RunReport& report, const std::string& path);

// Checks, before a run, that writeJson(…, path) will be able to write `path`, leaving the file
// system as it was: an existing file is opened for writing and not changed; a missing one is
// created and removed again. kIoError naming the path and the errno text (a directory, a missing
// or read-only parent, no permission); OK otherwise.
Status checkReportWritable(const std::string& path);

// A readable multi-line summary: hit rates per tier in %, tokens reused vs computed, bandwidth per
// path, verification result, sync cost.
std::string summaryText(const RunReport& report);

}  // namespace strata::app
