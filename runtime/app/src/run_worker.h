// The per-rank body of strata-run: serves a request list through a Cache as a model worker would,
// verifying every reused byte and writing deterministic KV for every computed token.
// Private to runtime/. Thread-safety: one call per rank at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "strata/app/report.h"
#include "strata/app/run_config.h"
#include "strata/app/workload.h"
#include "strata/comm/decision_group.h"
#include "strata/comm/mpi_comm.h"
#include "strata/comm/stop_notice.h"
#include "strata/core/status.h"
#include "strata/runtime/cache.h"
#include "strata/runtime/kv_events.h"
#include "strata/runtime/metrics.h"

namespace strata::app {

// Where this rank sits in the job.
struct RankPlace {
    int world_rank = 0;
    int world_size = 1;
    int tp_rank = 0, tp_size = 1;
    int cp_rank = 0, cp_size = 1;
    int pp_rank = 0, pp_size = 1;
    int dp_rank = 0, dp_size = 1;
    int replica_rank = 0;  // 0: this rank reports the replica's request-level counts
    int device = -1;       // the CUDA device bound to this rank (-1: none)
    // The TP x CP ranks of this replica's stage (Grid::decisionComm()), for striped loads; must
    // outlive runWorker(). Null: striped loads stay off.
    const comm::MpiComm* decision_comm = nullptr;
    // Every rank of the job (Grid::world()), for the node-wide host tier (and its footprint in
    // the report); must outlive runWorker(). Null: neither.
    const comm::MpiComm* job_comm = nullptr;
    // Remote tier (null transport: none): the job's UCX transport and the ranks holding the same
    // shards in the other replicas (Grid::dpComm()); they must outlive runWorker().
    std::shared_ptr<comm::ucx::UcxTransport> remote_transport;
    const comm::MpiComm* remote_group = nullptr;
    // Live metrics (null: none): the worker publishes a snapshot of its Cache (with
    // metrics_labels on every sample and the figures `agreement` returns, if set) at most every
    // kMetricsSnapshotInterval and once more after the run; must outlive runWorker().
    runtime::MetricsRegistry* metrics = nullptr;
    runtime::MetricLabels metrics_labels;
    std::function<runtime::AgreementFigures()> agreement;
    // KV events (rank 0 of each replica when --kv-events is set; null: none): told what the
    // cache stores and removes, flushed once per round; must outlive runWorker().
    runtime::KvEventPublisher* kv_events = nullptr;
    // With several DP replicas (which share no per-round collective): how a rank's stop request
    // reaches the other replicas (null: one replica, the per-round agreement reaches every rank).
    // Must outlive runWorker(); the caller calls finish() after it.
    comm::StopNotice* stop_notice = nullptr;
};

// How often the worker refreshes the metrics snapshot while it runs (the endpoint and the file
// serve the last one).
inline constexpr std::chrono::milliseconds kMetricsSnapshotInterval{500};

// Observes each agreed round (consistency checks); may fail the run.
class RoundObserver {
public:
    virtual ~RoundObserver() = default;
    virtual Status afterStep(std::uint64_t round, std::uint64_t state_digest) = 0;
};

// How long a clean stop may take from the first terminating signal to the process's exit (drain,
// report) before the signal watcher ends the process anyway: under Slurm's default KillWait (30 s)
// between SIGTERM and SIGKILL.
inline constexpr double kCleanStopBoundSeconds = 20.0;

// Runs the requests on this rank and returns this rank's local report (not yet summed over ranks).
// Fails on the first error any part reports; a page that does not verify is counted, not an error.
// A terminating signal (temp_storage.h, armed here once the Cache exists) stops the ranks of the
// group at the same round: the requests not yet admitted are left, copies in flight drained, and
// the report says so (interrupt_signal, requests of requests_planned).
Result<RunReport> runWorker(const RunConfig& config, const RankPlace& place,
                            const std::vector<RequestSpec>& requests, comm::DecisionGroup& group,
                            RoundObserver* observer);

}  // namespace strata::app
