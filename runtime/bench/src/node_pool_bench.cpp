// Bench `node-pool` (run under mpirun with 4 ranks on one host; 2 ranks run all but TP 4): the
// node-wide host tier (--host-sharing node) against per-rank host pools.
//   footprint     - host bytes per cached token per node for DeepSeek-V3 (MLA, 61 layers) at TP 2
//                   and 4: a runtime::Cache built with host sharing node, beside one built with
//                   per-rank pools (baseline), both from their allocations (goal: 1/TP).
//   cross-replica - a same-node cross-replica host hit: node rank 0 copies pages that node rank 1
//                   published, with io::NodePageStore::get (node index lookup, pin, copy out of
//                   rank 1's pool in the shared window, checksum, unpin), against a plain memcpy
//                   of the same pages between the same two ranks' window segments (goal >= 0.9x).
//   pooled        - hit rates on the Mooncake conversation trace (metadata replay, as
//                   strata-run --data none): N replicas with a cache of C tokens each, requests
//                   spread over them, against one shared cache of N x C tokens; requests are
//                   spread by session (a conversation: its first block past the system prompt's
//                   block 0) or one by one (a hash of the request id). Rank 0 only.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "registry.h"
#include "strata/app/block_replay.h"
#include "strata/app/trace.h"
#include "strata/comm/grid.h"
#include "strata/comm/mpi_comm.h"
#include "strata/comm/mpi_context.h"
#include "strata/comm/mpi_decision_group.h"
#include "strata/comm/node_page_index.h"
#include "strata/comm/node_window.h"
#include "strata/core/hash.h"
#include "strata/io/node_page_store.h"
#include "strata/kernels/backend.h"
#include "strata/pools/host_pool.h"
#include "strata/pools/pool_spec.h"
#include "strata/runtime/cache.h"

#ifndef STRATA_TRACES_DIR
#define STRATA_TRACES_DIR "../shared/traces"
#endif

namespace strata::bench {
namespace {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
}

void fillPage(std::byte* page, std::size_t bytes, std::uint64_t seed) {
    std::uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (std::size_t i = 0; i + 8 <= bytes; i += 8) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        std::memcpy(page + i, &s, 8);
    }
}

class NodePoolBench final : public Bench {
public:
    void addOptions(CLI::App& app) override {
        app.add_option("--host-tokens", host_tokens_, "footprint: host tokens per replica")
            ->check(CLI::Range(64, 1 << 20));
        app.add_option("--pages", pages_, "cross-replica: DeepSeek-V3 pages (4.5 MB) copied")
            ->check(CLI::Range(4, 4096));
        app.add_option("--repeats", repeats_, "cross-replica: repeats (median reported)")
            ->check(CLI::Range(1, 50));
        app.add_option("--trace", trace_, "pooled: Mooncake JSONL trace");
        app.add_option("--replica-tokens", replica_tokens_,
                       "pooled: cache of one replica in tokens (C)");
        app.add_option("--replicas", replicas_, "pooled: replica counts N")->delimiter(',');
        app.add_flag("--skip-replay", skip_replay_, "skip the pooled hit-rate part");
    }

    Result<BenchReport> run(BenchContext& ctx) override {
        STRATA_ASSIGN_OR_RETURN(comm::MpiContext mpi, comm::MpiContext::create());
        ctx.reporter = mpi.worldRank() == 0;
        const comm::MpiComm world = comm::MpiComm::world();
        STRATA_ASSIGN_OR_RETURN(comm::MpiComm node, world.splitShared(world.rank()));
        if (node.size() != world.size() || world.size() < 2) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "strata-bench node-pool needs 2 or more ranks on one host "
                                "(mpirun -np 4), got {} ranks, {} on this host",
                                world.size(), node.size());
        }
        BenchReport report("node-pool", "cpu");
        for (int tp : {2, 4}) {
            if (world.size() % tp != 0) continue;
            STRATA_ASSIGN_OR_RETURN(BenchRow row, footprint(world, tp));
            report.addRow(std::move(row));
        }
        STRATA_ASSIGN_OR_RETURN(BenchRow copy, crossReplica(node));
        report.addRow(std::move(copy));
        if (!skip_replay_ && world.rank() == 0) {
            STRATA_RETURN_IF_ERROR(pooled(&report));
        }
        STRATA_RETURN_IF_ERROR(world.barrier());
        report.addNote(
            "goals: host bytes per cached token per node with sharing = 1/TP of per-rank pools "
            "(MLA); a cross-replica host hit >= 0.9x a memcpy between two ranks; pooled vs "
            "local hit rate: the Mooncake paper reports about 2.2x for ten nodes with 3M-token "
            "caches (17% vs 37.5%)");
        return report;
    }

private:
    // Host bytes per cached token per node of DeepSeek-V3 at `tp`, with and without sharing.
    Result<BenchRow> footprint(const comm::MpiComm& world, int tp) {
        STRATA_ASSIGN_OR_RETURN(comm::Grid grid, comm::Grid::create(world, {tp, 1, 1}));
        STRATA_ASSIGN_OR_RETURN(comm::MpiDecisionGroup group, comm::MpiDecisionGroup::create(grid));
        double per_token[2] = {0, 0};
        runtime::HostFootprint fp[2];
        for (int share = 0; share < 2; ++share) {
            runtime::CacheOptions o;
            o.model = "deepseek-v3";
            o.layers = 0;  // all 61
            o.device_tokens = 1024;
            o.host = {.tokens = host_tokens_};
            o.controller.storage.tp_rank = grid.tpRank();
            o.controller.storage.tp_size = tp;
            o.world_rank = world.rank();
            o.host_sharing = share ? runtime::HostSharing::kNode : runtime::HostSharing::kOff;
            o.host_sharing_job = &grid.world();
            o.host_sharing_group = &grid.decisionComm();
            STRATA_ASSIGN_OR_RETURN(auto cache, runtime::Cache::create(o, group));
            fp[share] = cache->hostFootprint();
            const double replicas_on_node = static_cast<double>(fp[share].node_ranks) / tp;
            per_token[share] =
                static_cast<double>(fp[share].bytes_per_node) /
                (static_cast<double>(cache->hostCapacityTokens()) * replicas_on_node);
            STRATA_RETURN_IF_ERROR(world.barrier());
        }
        BenchRow row;
        row.case_name = fmt::format("deepseek-v3 (MLA) tp {}", tp);
        row.metric = "host bytes per cached token per node";
        row.unit = "B/token";
        row.higher_is_better = false;
        row.strata = per_token[1];
        row.baselines = {{"per_rank_pools", per_token[0]}};
        row.extra["ratio"] = per_token[1] / per_token[0];
        row.extra["goal_ratio"] = 1.0 / tp;
        row.extra["node_ranks"] = fp[1].node_ranks;
        row.extra["bytes_per_node"] = fp[1].bytes_per_node;
        row.extra["bytes_per_node_unshared"] = fp[0].bytes_per_node;
        row.extra["copies_per_replicated_page"] = fp[1].copies_per_replicated_page;
        row.extra["copies_per_replicated_page_unshared"] = fp[0].copies_per_replicated_page;
        return row;
    }

    // Node rank 0 reads pages node rank 1 published, through the node store and by memcpy.
    Result<BenchRow> crossReplica(const comm::MpiComm& node) {
        pools::PoolSpec spec;  // DeepSeek-V3's MLA pool: 576 bf16 values per token and layer
        spec.name = "kv";
        spec.kind = pools::PoolKind::kMla;
        spec.num_layers = 61;
        spec.num_buffers = 1;
        spec.row_bytes = 576 * 2;
        constexpr std::uint32_t P = 64;
        const std::size_t tokens = std::size_t{pages_} * P;
        const std::size_t pool_bytes = pools::HostPool::bytesFor(spec, tokens, P);
        const auto geo =
            comm::NodePageIndex::geometryFor(2 * pages_, static_cast<std::uint32_t>(node.size()));
        const std::size_t index_bytes = (comm::NodePageIndex::bytesFor(geo) + 4095) / 4096 * 4096;
        const int me = node.rank();
        const std::size_t mine = me == 0 ? index_bytes + pool_bytes : me == 1 ? pool_bytes : 0;
        STRATA_ASSIGN_OR_RETURN(auto win, comm::NodeWindow::create(node, mine));
        if (me == 0) {
            STRATA_RETURN_IF_ERROR(
                comm::NodePageIndex::initialise(win->segment(0), index_bytes, geo));
        }
        STRATA_RETURN_IF_ERROR(win->barrier());
        STRATA_ASSIGN_OR_RETURN(auto idx,
                                comm::NodePageIndex::attach(win->segment(0), index_bytes,
                                                            static_cast<std::uint32_t>(me),
                                                            std::chrono::milliseconds(10000)));
        auto index = std::make_shared<comm::NodePageIndex>(std::move(idx));
        std::byte* pool0 = win->segment(0) + index_bytes;
        std::byte* pool1 = win->segment(1);
        std::vector<const std::byte*> peers(static_cast<std::size_t>(node.size()), nullptr);
        peers[0] = pool0;
        peers[1] = pool1;
        const std::size_t page_bytes = spec.geometry(P).bytesPerPage();
        std::vector<core::PageKey> keys;
        std::vector<std::uint32_t> slots;
        for (std::uint32_t i = 0; i < pages_; ++i) {
            keys.push_back(core::hash128("node-pool-bench-" + std::to_string(i)));
            slots.push_back(i);
        }
        double strata_gbps = 0, memcpy_gbps = 0;
        std::uint64_t served = 0;
        if (me <= 1) {
            STRATA_ASSIGN_OR_RETURN(
                auto pool, pools::HostPool::adopt(spec, tokens, P, kernels::HostLayout::kPageFirst,
                                                  me == 0 ? pool0 : pool1, pool_bytes));
            STRATA_ASSIGN_OR_RETURN(auto store, io::NodePageStore::create(index, 0, pool, peers));
            if (me == 1) {
                for (std::uint32_t i = 0; i < pages_; ++i) {
                    fillPage(pool.pageBlob(i).data(), page_bytes, i + 1);
                }
                STRATA_RETURN_IF_ERROR(store->publish(keys, pool, slots));
            }
            STRATA_RETURN_IF_ERROR(win->barrier());
            if (me == 0) {
                std::vector<double> s, m;
                // Warm-up: first touch of the destination pages and of the caches.
                std::memcpy(pool0, pool1, pool_bytes);
                for (int r = 0; r < repeats_; ++r) {
                    auto t0 = Clock::now();
                    std::memcpy(pool0, pool1, pool_bytes);
                    m.push_back(static_cast<double>(pool_bytes) / secondsSince(t0) / 1e9);
                    t0 = Clock::now();
                    STRATA_ASSIGN_OR_RETURN(std::size_t got, store->get(keys, pool, slots));
                    s.push_back(static_cast<double>(got * page_bytes) / secondsSince(t0) / 1e9);
                    served += got;
                }
                strata_gbps = median(s);
                memcpy_gbps = median(m);
                if (served != std::size_t{pages_} * static_cast<std::size_t>(repeats_)) {
                    return STRATA_ERROR(StatusCode::kInternal,
                                        "cross-replica bench: {} of {} pages served", served,
                                        std::size_t{pages_} * repeats_);
                }
            }
            STRATA_RETURN_IF_ERROR(win->barrier());
        } else {
            STRATA_RETURN_IF_ERROR(win->barrier());
            STRATA_RETURN_IF_ERROR(win->barrier());
        }
        BenchRow row;
        row.case_name = fmt::format("cross-replica host hit, {} MB pages", page_bytes >> 20);
        row.metric = "copy bandwidth";
        row.unit = "GB/s";
        row.higher_is_better = true;
        row.strata = strata_gbps;
        row.baselines = {{"memcpy_between_ranks", memcpy_gbps}};
        row.extra["ratio"] = memcpy_gbps > 0 ? strata_gbps / memcpy_gbps : 0.0;
        row.extra["page_bytes"] = page_bytes;
        row.extra["pages"] = pages_;
        row.extra["repeats"] = repeats_;
        row.extra["pages_served"] = served;
        return row;
    }

    // Pooled against local hit rates on the trace (rank 0).
    Status pooled(BenchReport* report) {
        STRATA_ASSIGN_OR_RETURN(app::Trace trace, app::loadMooncakeTrace(trace_));
        app::BlockReplayOptions pooled_opts;
        for (std::uint32_t n : replicas_) {
            pooled_opts.capacity_tokens = replica_tokens_ * n;
            auto t0 = Clock::now();
            STRATA_ASSIGN_OR_RETURN(app::BlockReplayResult pool,
                                    app::replayBlocks(trace, pooled_opts));
            for (const char* routing : {"session", "request"}) {
                std::vector<app::Trace> parts(n);
                for (auto& p : parts) {
                    p.name = trace.name;
                    p.block_tokens = trace.block_tokens;
                }
                for (const app::TraceRequest& r : trace.requests) {
                    std::uint64_t route = r.id;
                    if (std::strcmp(routing, "session") == 0 && !r.block_ids.empty()) {
                        route = r.block_ids[std::min<std::size_t>(1, r.block_ids.size() - 1)];
                    }
                    app::Trace& part = parts[core::checksum64(&route, sizeof(route)) % n];
                    part.requests.push_back(r);
                    part.requests.back().id = part.requests.size() - 1;
                }
                std::uint64_t hit = 0, measured = 0;
                app::BlockReplayOptions local_opts;
                local_opts.capacity_tokens = replica_tokens_;
                for (const app::Trace& part : parts) {
                    if (part.requests.empty()) continue;
                    STRATA_ASSIGN_OR_RETURN(app::BlockReplayResult loc,
                                            app::replayBlocks(part, local_opts));
                    hit += loc.hit_tokens;
                    measured += loc.measured_tokens;
                }
                const double local = measured == 0 ? 0.0 : static_cast<double>(hit) / measured;
                BenchRow row;
                row.case_name = fmt::format("mooncake conversation, N={} by {}, C={:.0e}", n,
                                            routing, static_cast<double>(replica_tokens_));
                row.metric = "hit rate";
                row.unit = "fraction";
                row.higher_is_better = true;
                row.strata = pool.hitRate();
                row.baselines = {{"local_caches", local}};
                row.extra["ratio"] = local > 0 ? pool.hitRate() / local : 0.0;
                row.extra["replicas"] = n;
                row.extra["replica_tokens"] = replica_tokens_;
                row.extra["pooled_tokens"] = pooled_opts.capacity_tokens;
                row.extra["routing"] = routing;
                row.extra["requests"] = trace.requests.size();
                if (n == 10) row.extra["paper_ratio"] = 2.2;
                report->addRow(std::move(row));
            }
            (void)t0;
        }
        return Status::ok();
    }

    std::size_t host_tokens_ = 2048;
    std::uint32_t pages_ = 64;
    int repeats_ = 5;
    std::string trace_ =
        STRATA_TRACES_DIR "/mooncake-FAST25-release/traces/conversation_trace.jsonl";
    std::uint64_t replica_tokens_ = 3000000;
    std::vector<std::uint32_t> replicas_ = {2, 4, 10};
    bool skip_replay_ = false;
};

}  // namespace

std::unique_ptr<Bench> makeNodePoolBench() { return std::make_unique<NodePoolBench>(); }

}  // namespace strata::bench
