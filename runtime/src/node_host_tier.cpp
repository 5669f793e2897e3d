#include "node_host_tier.h"

#include <algorithm>
#include <cstring>

#include "strata/comm/job_collectives.h"
#include "strata/core/log.h"

namespace strata::runtime {

namespace {

constexpr std::size_t kAlign = 4096;  // every pool of the window starts on a page boundary
std::size_t roundUp(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

}  // namespace

NodeHostTier::~NodeHostTier() = default;

Result<std::unique_ptr<NodeHostTier>> NodeHostTier::create(
    bool share, const comm::MpiComm& job, const comm::MpiComm& decision, kernels::Backend& backend,
    const std::vector<PoolNeed>& needs, std::uint32_t page_size, kernels::HostLayout layout,
    int tp_rank, int cp_rank, int cp_size, std::chrono::milliseconds lease) {
    std::unique_ptr<NodeHostTier> t(new NodeHostTier());
    STRATA_ASSIGN_OR_RETURN(comm::MpiComm node, job.splitShared(job.rank()));
    STRATA_ASSIGN_OR_RETURN(comm::MpiComm group_node, decision.splitShared(decision.rank()));
    // Pools are shared only inside a decision group that lies on one node: its ranks take the
    // same decisions, so their slot allocators agree and one rank's writes serve them all.
    const bool whole_group = group_node.size() == decision.size();
    const std::size_t n = needs.size();
    std::vector<std::size_t> bytes(n);
    std::vector<comm::MpiComm> sets(n);
    std::vector<bool> shared(n, false);
    t->writers_.assign(n, true);
    std::uint64_t unshared_bytes = 0;
    double copies = 1;
    for (std::size_t i = 0; i < n; ++i) {
        const pools::PoolSpec& s = needs[i].spec;
        bytes[i] = pools::HostPool::bytesFor(s, needs[i].capacity, page_size);
        unshared_bytes += bytes[i];
        // The ranks of the group that hold the same bytes of this pool: all of them for a
        // replicated pool, those of one TP (CP) rank for a pool sharded across TP (CP).
        const int color = (s.sharded_across_tp ? tp_rank + 1 : 0) * (cp_size + 1) +
                          (s.sharded_across_cp ? cp_rank + 1 : 0);
        STRATA_ASSIGN_OR_RETURN(sets[i], decision.split(color, decision.rank()));
        STRATA_ASSIGN_OR_RETURN(comm::MpiComm set_node, sets[i].splitShared(sets[i].rank()));
        shared[i] = share && whole_group && sets[i].size() > 1;
        t->writers_[i] = !shared[i] || sets[i].rank() == 0;
        if (sets[i].size() > 1) {
            copies = std::max(copies, shared[i] ? 1.0 : static_cast<double>(set_node.size()));
        }
    }
    t->footprint_.node_sharing = share;
    t->footprint_.node_ranks = static_cast<std::uint32_t>(node.size());
    t->footprint_.copies_per_replicated_page = copies;
    {
        std::vector<std::uint64_t> sum = {unshared_bytes};
        STRATA_RETURN_IF_ERROR(comm::allReduceSum(node, sum));
        t->footprint_.bytes_per_node_unshared = sum[0];
    }
    if (!share) {
        t->footprint_.bytes_this_rank = unshared_bytes;
        t->footprint_.bytes_per_node = t->footprint_.bytes_per_node_unshared;
        return t;
    }

    // Sharing: this rank's segment holds the pools it writes (node rank 0: the index first).
    std::uint64_t my_pages = 0;
    std::vector<std::size_t> offset(n, 0);
    std::size_t local = 0;
    for (std::size_t i = 0; i < n; ++i) {
        if (!t->writers_[i]) continue;
        my_pages += needs[i].capacity / needs[i].spec.unitsPerPage(page_size);
    }
    std::vector<std::uint64_t> pages = {my_pages};
    STRATA_RETURN_IF_ERROR(comm::allReduceSum(node, pages));
    const comm::NodePageIndex::Geometry geo =
        comm::NodePageIndex::geometryFor(pages[0], static_cast<std::uint32_t>(node.size()));
    const std::size_t index_bytes = comm::NodePageIndex::bytesFor(geo);
    if (node.rank() == 0) local = roundUp(index_bytes);
    for (std::size_t i = 0; i < n; ++i) {
        if (!t->writers_[i]) continue;
        offset[i] = local;
        local += roundUp(bytes[i]);
    }
    STRATA_ASSIGN_OR_RETURN(t->window_, comm::NodeWindow::create(node, local));
    const comm::NodeWindow& w = *t->window_;
    if (w.rank() == 0) {
        STRATA_RETURN_IF_ERROR(comm::NodePageIndex::initialise(w.segment(0), index_bytes, geo));
    }
    STRATA_RETURN_IF_ERROR(w.barrier());
    STRATA_ASSIGN_OR_RETURN(
        auto index, comm::NodePageIndex::attach(w.segment(0), w.segmentBytes(0),
                                                static_cast<std::uint32_t>(w.rank()), lease));
    t->index_ = std::make_shared<comm::NodePageIndex>(std::move(index));

    // Where each pool lives: its writer's node rank and offset, sent to the others of its set.
    std::vector<std::uint64_t> owner(n), pool_offset(n);
    for (std::size_t i = 0; i < n; ++i) {
        std::vector<std::byte> loc(2 * sizeof(std::uint64_t));
        const std::uint64_t mine[2] = {static_cast<std::uint64_t>(w.rank()), offset[i]};
        std::memcpy(loc.data(), mine, sizeof(mine));
        if (shared[i]) STRATA_RETURN_IF_ERROR(comm::broadcastBytes(sets[i], &loc, 0));
        std::uint64_t got[2];
        std::memcpy(got, loc.data(), sizeof(got));
        owner[i] = got[0];
        pool_offset[i] = got[1];
    }
    // Every rank pins the whole node's memory: it loads from other ranks' segments too.
    for (int r = 0; r < w.size(); ++r) {
        if (w.segmentBytes(r) == 0) continue;
        STRATA_ASSIGN_OR_RETURN(kernels::Memory reg,
                                backend.registerHost(w.segment(r), w.segmentBytes(r)));
        t->registrations_.push_back(std::move(reg));
    }
    for (std::size_t i = 0; i < n; ++i) {
        std::byte* base = w.segment(static_cast<int>(owner[i])) + pool_offset[i];
        STRATA_ASSIGN_OR_RETURN(
            auto pool, pools::HostPool::adopt(needs[i].spec, needs[i].capacity, page_size, layout,
                                              base, bytes[i]));
        t->pools_.push_back(std::move(pool));
    }

    // Every rank's pools, for the node store's reads: a row per node rank of (owner, offset,
    // page bytes) per pool. Every rank of the node must run the same pools.
    std::vector<double> count = {static_cast<double>(n), -static_cast<double>(n)};
    STRATA_RETURN_IF_ERROR(comm::allReduceMax(node, count));
    if (count[0] != -count[1]) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "--host-sharing node: the ranks of this node run models with {} to {} "
                            "pools; every rank of a node must run the same pools",
                            -count[1], count[0]);
    }
    const std::size_t row = 3 * n;
    std::vector<std::uint64_t> table(row * static_cast<std::size_t>(w.size()), 0);
    for (std::size_t i = 0; i < n; ++i) {
        std::uint64_t* cell = table.data() + static_cast<std::size_t>(w.rank()) * row + 3 * i;
        cell[0] = owner[i];
        cell[1] = pool_offset[i];
        cell[2] = needs[i].spec.geometry(page_size).bytesPerPage();
    }
    STRATA_RETURN_IF_ERROR(comm::allReduceSum(node, table));
    t->peer_pools_.assign(n, std::vector<const std::byte*>(static_cast<std::size_t>(w.size())));
    for (int r = 0; r < w.size(); ++r) {
        for (std::size_t i = 0; i < n; ++i) {
            const std::uint64_t* cell = table.data() + static_cast<std::size_t>(r) * row + 3 * i;
            if (cell[2] != needs[i].spec.geometry(page_size).bytesPerPage()) {
                return STRATA_ERROR(StatusCode::kInvalidArgument,
                                    "--host-sharing node: pool '{}' has {}-byte pages on node "
                                    "rank {} and {}-byte pages here; every rank of a node must "
                                    "run the same pools",
                                    needs[i].spec.name, cell[2], r,
                                    needs[i].spec.geometry(page_size).bytesPerPage());
            }
            t->peer_pools_[i][static_cast<std::size_t>(r)] =
                w.segment(static_cast<int>(cell[0])) + cell[1];
        }
    }
    std::vector<double> cross = {node.size() > group_node.size() ? 1.0 : 0.0};
    STRATA_RETURN_IF_ERROR(comm::allReduceMax(decision, cross));
    t->cross_replica_ = cross[0] > 0;
    t->footprint_.bytes_this_rank = w.segmentBytes(w.rank());
    t->footprint_.bytes_per_node = w.totalBytes();
    if (node.rank() == 0) {
        core::logger("runtime").info(
            "node-wide host tier: {} ranks share one window of {:.2f} GiB ({:.2f} GiB as "
            "per-rank pools), {} copies of a replicated page, index of {} entries",
            w.size(), static_cast<double>(w.totalBytes()) / static_cast<double>(1ull << 30),
            static_cast<double>(t->footprint_.bytes_per_node_unshared) /
                static_cast<double>(1ull << 30),
            copies, geo.entries);
    }
    return t;
}

Result<std::unique_ptr<io::NodePageStore>> NodeHostTier::makeStore(std::size_t i,
                                                                   const pools::HostPool& pool,
                                                                   io::PageStore* fallback) const {
    if (!index_) {
        return STRATA_ERROR(StatusCode::kFailedPrecondition, "node store without node sharing");
    }
    return io::NodePageStore::create(index_, static_cast<std::uint32_t>(i), pool, peer_pools_.at(i),
                                     fallback);
}

}  // namespace strata::runtime
