// Private to runtime/: the node-wide host tier of one rank's Cache (--host-sharing node). The
// ranks of a node allocate their host pools as one MPI-3 shared window (comm::NodeWindow), pinned
// for DMA by each rank (Backend::registerHost); pools every rank of a replica on the node holds
// identically (replicated across TP or CP: no shard suffix in their keys) are allocated once per
// replica and node and written by one rank (PoolPair::host_writer); the node index
// (comm::NodePageIndex, in node rank 0's segment) lets DP replicas serve each other's pages
// (io::NodePageStore). Without sharing it only measures the footprint the report gives.
// Ownership: owns the window (collective free: every rank of the node destroys its Cache at the
// same point), the registration, the index; the adopted host pools borrow the window and must go
// first. Thread-safety: created and destroyed on one thread; the index is thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "strata/comm/mpi_comm.h"
#include "strata/comm/node_page_index.h"
#include "strata/comm/node_window.h"
#include "strata/io/node_page_store.h"
#include "strata/kernels/backend.h"
#include "strata/pools/host_pool.h"
#include "strata/pools/pool_spec.h"
#include "strata/runtime/cache.h"

namespace strata::runtime {

class NodeHostTier {
public:
    struct PoolNeed {
        pools::PoolSpec spec;
        std::size_t capacity = 0;  // index units, as for HostPool::create
    };
    // Collective over every rank of `job` (each node's ranks meet in the window). `decision`: the
    // TP x CP ranks of this replica's stage. share: allocate in a node window (otherwise only the
    // footprint is measured). tp/cp: this rank's place (which pools hold the same bytes).
    static Result<std::unique_ptr<NodeHostTier>> create(
        bool share, const comm::MpiComm& job, const comm::MpiComm& decision,
        kernels::Backend& backend, const std::vector<PoolNeed>& needs, std::uint32_t page_size,
        kernels::HostLayout layout, int tp_rank, int cp_rank, int cp_size,
        std::chrono::milliseconds lease);
    ~NodeHostTier();

    bool sharing() const noexcept { return window_ != nullptr; }
    // Sharing, and some rank of this decision group has ranks of other replicas on its node
    // (agreed over the group): only then do node stores serve pages across replicas.
    bool crossReplica() const noexcept { return sharing() && cross_replica_; }
    // The adopted host pools (sharing only), in the order of `needs`.
    std::vector<pools::HostPool> takePools() { return std::move(pools_); }
    // Whether this rank writes pool i's host bytes (always without sharing).
    bool writer(std::size_t i) const { return writers_.at(i); }
    // The node store of pool i over the node index (sharing only), in the place of the remote
    // tier, with `fallback` (the UCX remote tier, may be null) for pages the node lacks.
    Result<std::unique_ptr<io::NodePageStore>> makeStore(std::size_t i, const pools::HostPool& pool,
                                                         io::PageStore* fallback) const;
    const HostFootprint& footprint() const noexcept { return footprint_; }
    const comm::NodeWindow* window() const noexcept { return window_.get(); }

private:
    NodeHostTier() = default;
    std::unique_ptr<comm::NodeWindow> window_;    // owns the memory of pools_
    std::vector<kernels::Memory> registrations_;  // of the segments; destroyed before them
    std::shared_ptr<comm::NodePageIndex> index_;
    std::vector<pools::HostPool> pools_;
    std::vector<bool> writers_;
    // peer_pools_[i][r]: pool i of node rank r in this process's mapping of the window.
    std::vector<std::vector<const std::byte*>> peer_pools_;
    HostFootprint footprint_;
    bool cross_replica_ = false;
};

}  // namespace strata::runtime
