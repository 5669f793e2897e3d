// MpiDecisionGroup: DecisionGroup over a Grid. agreeMin is one MPI_Iallreduce(MIN) over the TP x CP
// decision communicator on pipeline stage 0, forwarded down the PP chain (recv from stage s-1,
// isend to s+1), so every rank of the replica gets the identical vector. Digests and barriers span
// the whole replica (TP x CP x PP). Every collective waits under the round watchdog
// (round_watchdog.h): past its timeout it names the ranks that did not arrive (world rank, grid
// coordinates, host) and fails with kTimeout or keeps waiting with warnings. Ownership: owns
// duplicates of the grid's communicators (the Grid need not outlive it). Thread-safety: one thread
// (the scheduler loop) calls it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "strata/comm/decision_group.h"
#include "strata/comm/grid.h"
#include "strata/comm/round_watchdog.h"
#include "strata/core/status.h"

namespace strata::comm {

// Timing of agreeMin rounds (strata-run reports sync.rounds / sync.mean_us / sync.p99_us).
struct SyncStats {
    std::uint64_t rounds = 0;
    double total_us = 0.0;
    double mean_us = 0.0;
    double p99_us = 0.0;
    double max_us = 0.0;
};

// Summarises per-round durations in microseconds (p99: the nearest-rank 99th percentile).
SyncStats summarizeSamples(std::span<const float> samples_us);

class MpiDecisionGroup final : public DecisionGroup {
public:
    // Collective over the grid's world (duplicates the decision, pp and replica communicators and
    // all-gathers the replica's host names). Fails with the MPI error, or kInvalidArgument for
    // invalid watchdog options.
    static Result<MpiDecisionGroup> create(const Grid& grid, RoundWatchdogOptions watchdog = {});

    MpiDecisionGroup(MpiDecisionGroup&&) noexcept;
    MpiDecisionGroup& operator=(MpiDecisionGroup&&) noexcept;
    // Completes the last forwarded send (the next stage receives it in its last agreeMin). After
    // a timeout (kAbort) nothing is completed and the state is leaked: MPI may still write into
    // it, and the job is going down.
    ~MpiDecisionGroup() override;

    int rank() const noexcept override;  // rank in the TP x CP decision group
    int size() const noexcept override;  // size of the TP x CP decision group
    int ppRank() const noexcept;
    int ppSize() const noexcept;
    int replicaRank() const noexcept;
    int replicaSize() const noexcept;  // tp * cp * pp: the number of entries gatherDigests returns

    // Element-wise MIN over the decision group, forwarded down the PP chain; in place, set only on
    // success. The length travels with the vector: ranks that passed different lengths all get
    // kInternal naming the lengths (or the MPI truncation error). Every call is timed.
    // On the watchdog's timeout in kAbort mode: kTimeout naming the ranks that did not arrive;
    // the group is unusable afterwards (every call fails the same way) and the caller must end
    // the job (core::fatal / MPI_Abort). The same holds for gatherDigests and barrier.
    Status agreeMin(std::span<std::int64_t> values) override;

    // MPI_Allgather over the replica: `all` gets replicaSize() entries (not size()), indexed by
    // replica rank (= world rank % (tp*cp*pp)). Set only on success.
    Status gatherDigests(std::uint64_t mine, std::vector<std::uint64_t>* all) override;

    // MPI_Barrier over the replica (every TP, CP and PP rank of this dp replica).
    Status barrier() override;

    // Rounds, total, mean, p99 and max of agreeMin durations since creation or the last reset.
    SyncStats syncStats() const;
    // Per-round agreeMin durations in microseconds, in call order.
    std::span<const float> syncSamplesUs() const noexcept;
    void resetSyncStats() noexcept;

private:
    struct Impl;
    explicit MpiDecisionGroup(std::unique_ptr<Impl> impl) noexcept;
    std::unique_ptr<Impl> impl_;
};

}  // namespace strata::comm
