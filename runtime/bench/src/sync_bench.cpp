// Bench `sync`: the cost of one round of multi-rank agreement on a 16-entry decision vector
// (D2H acks, H2D acks, prefetch hits, prefetch progress, queue drains, backup acks, termination
// flags). Strata: MpiDecisionGroup::agreeMin (one fused MIN all-reduce over the TP x CP decision
// communicator, flags MAX-encoded). Baselines in the same run: `raw_allreduce` (one bare
// MPI_Allreduce of the same vector over the same ranks) and `naive_per_decision` (one all-reduce
// per decision kind over TP, then over CP: how the closest system did it before fusing).
#include <fmt/format.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <vector>

#include "registry.h"
#include "strata/comm/grid.h"
#include "strata/comm/mpi_context.h"
#include "strata/comm/mpi_decision_group.h"
#include "strata/comm/mpi_native.h"

namespace strata::bench {
namespace {

struct DecisionKind {
    const char* name;
    int entries;
    bool max;  // termination flags agree by MAX; every other kind by MIN
};

constexpr DecisionKind kKinds[] = {
    {"d2h_acks", 1, false},          {"h2d_acks", 1, false},     {"prefetch_hits", 4, false},
    {"prefetch_progress", 4, false}, {"queue_drains", 3, false}, {"backup_acks", 1, false},
    {"termination_flags", 2, true},
};

constexpr int vectorEntries() {
    int n = 0;
    for (const auto& k : kKinds) n += k.entries;
    return n;
}
constexpr int kEntries = vectorEntries();
static_assert(kEntries == 16);

using Clock = std::chrono::steady_clock;

// This rank's raw decision values in round k (flags are 0/1), identical input for every method.
void fillRound(std::vector<std::int64_t>& raw, int rank, std::uint64_t k) {
    int i = 0;
    for (const auto& kind : kKinds) {
        for (int e = 0; e < kind.entries; ++e, ++i) {
            std::uint64_t x = (k * 2654435761u) ^ (static_cast<std::uint64_t>(rank) * 40503u + i);
            raw[i] = kind.max ? static_cast<std::int64_t>((x >> 7) & 1)
                              : static_cast<std::int64_t>(x % 64);
        }
    }
}

// Encodes MAX kinds as negated values so one MIN reduction serves both (as DecisionVector does).
void encode(const std::vector<std::int64_t>& raw, std::vector<std::int64_t>& out) {
    int i = 0;
    for (const auto& kind : kKinds) {
        for (int e = 0; e < kind.entries; ++e, ++i) out[i] = kind.max ? -raw[i] : raw[i];
    }
}

void decode(std::vector<std::int64_t>& v) { encode(std::vector<std::int64_t>(v), v); }

class SyncBench final : public Bench {
public:
    void addOptions(CLI::App& app) override {
        app.add_option("--tp", shape_.tp, "tensor-parallel size (default: world / (cp * pp))");
        app.add_option("--cp", shape_.cp, "context-parallel size")->capture_default_str();
        app.add_option("--pp", shape_.pp, "pipeline stages")->capture_default_str();
        app.add_option("--rounds", rounds_, "measured rounds per method")->capture_default_str();
        app.add_option("--block", block_, "rounds per measured block (methods alternate by block)")
            ->capture_default_str();
        app.add_option("--warmup", warmup_, "warm-up rounds per method (results cross-checked)")
            ->capture_default_str();
        tp_given_ = app.get_option("--tp");
    }

    Result<BenchReport> run(BenchContext& ctx) override;

private:
    comm::GridShape shape_{0, 1, 1};
    int rounds_ = 20000;
    int warmup_ = 1000;
    int block_ = 100;
    CLI::Option* tp_given_ = nullptr;
};

struct MethodResult {
    double mean_us = 0.0;  // max over ranks of the per-rank mean
    double p99_us = 0.0;   // max over ranks of the per-rank p99
    double min_rank_mean_us = 0.0;
};

// Summarises this rank's samples and takes the slowest rank (a round ends for all at the latest).
Result<MethodResult> summarize(const std::vector<float>& samples) {
    comm::SyncStats s = comm::summarizeSamples(samples);
    double mine[2] = {s.mean_us, s.p99_us};
    double worst[2] = {0, 0};
    double best_mean = 0;
    if (MPI_Allreduce(mine, worst, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS ||
        MPI_Allreduce(&s.mean_us, &best_mean, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD) !=
            MPI_SUCCESS) {
        return STRATA_ERROR(StatusCode::kIoError, "reduction of bench timings failed");
    }
    return MethodResult{worst[0], worst[1], best_mean};
}

Result<BenchReport> SyncBench::run(BenchContext& ctx) {
    STRATA_ASSIGN_OR_RETURN(comm::MpiContext mpi, comm::MpiContext::create());
    ctx.reporter = mpi.worldRank() == 0;
    const int world = mpi.worldSize();
    comm::GridShape shape = shape_;
    if (tp_given_->count() == 0) {
        shape.tp = std::max(1, world / std::max(1, shape.cp * shape.pp));
    }
    if (rounds_ < 1 || warmup_ < 0 || block_ < 1) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "--rounds and --block must be >= 1, --warmup >= 0");
    }
    STRATA_ASSIGN_OR_RETURN(comm::Grid grid, comm::Grid::create(comm::MpiComm::world(), shape));
    STRATA_ASSIGN_OR_RETURN(comm::MpiDecisionGroup group, comm::MpiDecisionGroup::create(grid));
    MPI_Comm decision = comm::nativeComm(grid.decisionComm());
    MPI_Comm tp = comm::nativeComm(grid.tpComm());
    MPI_Comm cp = comm::nativeComm(grid.cpComm());
    const int rank = grid.worldRank();

    std::vector<std::int64_t> raw(kEntries);
    std::vector<std::int64_t> strata_v(kEntries);
    std::vector<std::int64_t> raw_v(kEntries);
    std::vector<std::int64_t> naive_v(kEntries);

    auto strataRound = [&]() -> Status { return group.agreeMin(strata_v); };
    auto rawRound = [&]() -> Status {
        if (MPI_Allreduce(MPI_IN_PLACE, raw_v.data(), kEntries, MPI_INT64_T, MPI_MIN, decision) !=
            MPI_SUCCESS) {
            return STRATA_ERROR(StatusCode::kIoError, "raw MPI_Allreduce failed");
        }
        return Status::ok();
    };
    auto naiveRound = [&]() -> Status {
        int offset = 0;
        for (const auto& kind : kKinds) {
            MPI_Op op = kind.max ? MPI_MAX : MPI_MIN;
            for (MPI_Comm c : {tp, cp}) {
                if ((c == tp ? shape.tp : shape.cp) == 1) continue;
                if (MPI_Allreduce(MPI_IN_PLACE, naive_v.data() + offset, kind.entries, MPI_INT64_T,
                                  op, c) != MPI_SUCCESS) {
                    return STRATA_ERROR(StatusCode::kIoError, "naive MPI_Allreduce failed");
                }
            }
            offset += kind.entries;
        }
        return Status::ok();
    };

    // Warm-up: every method each round, and their agreed decisions must match exactly.
    std::uint64_t mismatches = 0;
    for (int k = 0; k < warmup_; ++k) {
        fillRound(raw, rank, static_cast<std::uint64_t>(k));
        encode(raw, strata_v);
        encode(raw, raw_v);
        naive_v = raw;
        STRATA_RETURN_IF_ERROR(strataRound());
        STRATA_RETURN_IF_ERROR(rawRound());
        STRATA_RETURN_IF_ERROR(naiveRound());
        if (shape.pp == 1 || grid.ppRank() == 0) {
            decode(strata_v);
            decode(raw_v);
            if (strata_v != naive_v || raw_v != naive_v) ++mismatches;
        }
    }
    std::uint64_t total_mismatches = 0;
    MPI_Allreduce(&mismatches, &total_mismatches, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);

    // Measured phases: blocks of `block_` rounds of one method, separated by world barriers, with
    // the methods interleaved (and their order rotated) so that load bursts on a shared machine
    // hit every method alike instead of whichever phase they happened to fall in.
    std::vector<float> strata_samples;
    std::vector<float> raw_samples;
    std::vector<float> naive_samples;
    for (auto* v : {&strata_samples, &raw_samples, &naive_samples}) {
        v->reserve(static_cast<std::size_t>(rounds_));
    }
    auto measureBlock = [&](int method, int first_round, int count) -> Status {
        STRATA_RETURN_IF_ERROR(grid.world().barrier());
        for (int k = first_round; k < first_round + count; ++k) {
            fillRound(raw, rank, static_cast<std::uint64_t>(k));
            Status st;
            Clock::time_point t0;
            if (method == 0) {
                encode(raw, strata_v);
                t0 = Clock::now();
                st = strataRound();
            } else if (method == 1) {
                encode(raw, raw_v);
                t0 = Clock::now();
                st = rawRound();
            } else {
                naive_v = raw;
                t0 = Clock::now();
                st = naiveRound();
            }
            const auto t1 = Clock::now();
            STRATA_RETURN_IF_ERROR(st);
            const float us = std::chrono::duration<float, std::micro>(t1 - t0).count();
            (method == 0   ? strata_samples
             : method == 1 ? raw_samples
                           : naive_samples)
                .push_back(us);
        }
        return Status::ok();
    };
    group.resetSyncStats();
    int block_index = 0;
    for (int first = 0; first < rounds_; first += block_, ++block_index) {
        const int count = std::min(block_, rounds_ - first);
        for (int m = 0; m < 3; ++m) {
            STRATA_RETURN_IF_ERROR(measureBlock((block_index + m) % 3, first, count));
        }
    }
    STRATA_RETURN_IF_ERROR(grid.world().barrier());
    comm::SyncStats internal = group.syncStats();

    STRATA_ASSIGN_OR_RETURN(MethodResult s, summarize(strata_samples));
    STRATA_ASSIGN_OR_RETURN(MethodResult r, summarize(raw_samples));
    STRATA_ASSIGN_OR_RETURN(MethodResult n, summarize(naive_samples));
    double internal_mean = 0;
    MPI_Allreduce(&internal.mean_us, &internal_mean, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);

    int naive_collectives = 0;
    for (int i = 0; i < static_cast<int>(std::size(kKinds)); ++i) {
        naive_collectives += (shape.tp > 1) + (shape.cp > 1);
    }
    const std::string case_name =
        fmt::format("np{}_tp{}_cp{}_pp{}_v{}", world, shape.tp, shape.cp, shape.pp, kEntries);
    auto extra = [&](const MethodResult& sm, const MethodResult& rm, const MethodResult& nm) {
        nlohmann::ordered_json e;
        e["world_size"] = world;
        e["tp"] = shape.tp;
        e["cp"] = shape.cp;
        e["pp"] = shape.pp;
        e["entries"] = kEntries;
        e["rounds"] = rounds_;
        e["warmup_rounds"] = warmup_;
        e["block_rounds"] = block_;
        e["naive_collectives_per_round"] = naive_collectives;
        e["results_match"] = total_mismatches == 0;
        e["strata_fastest_rank_mean_us"] = sm.min_rank_mean_us;
        e["raw_allreduce_fastest_rank_mean_us"] = rm.min_rank_mean_us;
        e["naive_fastest_rank_mean_us"] = nm.min_rank_mean_us;
        e["strata_internal_mean_us"] = internal_mean;
        e["aggregation"] = "max over ranks of each rank's statistic";
        return e;
    };
    BenchReport report("sync", "cpu");
    report.addRow({case_name,
                   "mean_us",
                   "us",
                   false,
                   s.mean_us,
                   {{"raw_allreduce", r.mean_us}, {"naive_per_decision", n.mean_us}},
                   extra(s, r, n)});
    report.addRow({case_name,
                   "p99_us",
                   "us",
                   false,
                   s.p99_us,
                   {{"raw_allreduce", r.p99_us}, {"naive_per_decision", n.p99_us}},
                   extra(s, r, n)});
    const double vs_raw = s.mean_us / r.mean_us;
    const double vs_naive = n.mean_us / s.mean_us;
    report.addNote(fmt::format("goal: strata mean within 1.5x of raw_allreduce: {} ({:.2f}x)",
                               vs_raw <= 1.5 ? "MET" : "MISSED", vs_raw));
    report.addNote(fmt::format(
        "goal: strata >= 4x faster than naive_per_decision at 4 ranks: {} ({:.2f}x, {} ranks, "
        "{} naive all-reduces per round)",
        world != 4 ? "n/a" : (vs_naive >= 4.0 ? "MET" : "MISSED"), vs_naive, world,
        naive_collectives));
    report.addNote(fmt::format("decisions agreed identically by all methods over {} rounds: {}",
                               warmup_, total_mismatches == 0 ? "yes" : "NO"));
    if (total_mismatches != 0) {
        return STRATA_ERROR(StatusCode::kInternal,
                            "methods disagreed on {} rank-rounds: the benchmark is invalid",
                            total_mismatches);
    }
    return report;
}

}  // namespace

std::unique_ptr<Bench> makeSyncBench() { return std::make_unique<SyncBench>(); }

}  // namespace strata::bench
