// NodeWindow: one MPI-3 shared-memory window over the ranks of one node (MPI_Win_allocate_shared
// on a communicator of MpiComm::splitShared), the memory of the node-wide host tier. Each rank
// contributes a segment (rounded up to 4 KiB and started on a page boundary inside what MPI
// allocated, so segments are page-aligned and share no page); every rank sees every segment
// (through MPI_Win_shared_query). The window is in a passive-target epoch for
// its whole life (MPI_Win_lock_all at creation, MPI_Win_unlock_all before MPI_Win_free), so ranks
// read and write each other's segments with loads, stores and lock-free atomics, and sync()
// (MPI_Win_sync) orders them with MPI's rules. Creation and destruction are collective over the
// node. Ownership: owns the window (and so the memory) and a dup of the node communicator.
// Thread-safety: segment memory is shared by design; sync() may be called from any thread;
// barrier() and destruction are collective calls of one thread per rank.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "strata/comm/mpi_comm.h"
#include "strata/core/status.h"

namespace strata::comm {

class NodeWindow {
public:
    // Collective over `node`, whose ranks must share memory (MpiComm::splitShared; MPI's error
    // otherwise). local_bytes may differ per rank and be 0.
    // kInvalidArgument when MPI's memory model for the window is not MPI_WIN_UNIFIED (the
    // lock-free atomics of the node index need it); the outcome is agreed by every rank.
    static Result<std::unique_ptr<NodeWindow>> create(const MpiComm& node, std::size_t local_bytes);
    // Collective (MPI_Win_free): every rank of the node destroys its window at the same point.
    ~NodeWindow();
    NodeWindow(const NodeWindow&) = delete;
    NodeWindow& operator=(const NodeWindow&) = delete;

    int rank() const noexcept { return comm_.rank(); }
    int size() const noexcept { return comm_.size(); }
    const MpiComm& comm() const noexcept { return comm_; }
    // Node rank r's segment (zero-filled at creation), and its size in bytes.
    std::byte* segment(int node_rank) const noexcept { return bases_[node_rank]; }
    std::size_t segmentBytes(int node_rank) const noexcept { return sizes_[node_rank]; }
    std::byte* mySegment() const noexcept { return bases_[rank()]; }
    // Sum of every rank's segment: the node's bytes.
    std::size_t totalBytes() const noexcept;
    // MPI_Win_sync: makes this rank's stores to the window visible to, and other ranks' stores
    // visible from, the window memory (with a process synchronisation between the ranks).
    void sync() const noexcept;
    // MPI_Barrier over the node with sync() before and after: stores before it on any rank are
    // visible to loads after it on every rank.
    Status barrier() const;

private:
    NodeWindow() = default;
    MpiComm comm_;            // dup of the node communicator
    std::uintptr_t win_ = 0;  // MPI_Win bit pattern
    bool locked_ = false;     // in the lock_all epoch
    std::vector<std::byte*> bases_;
    std::vector<std::size_t> sizes_;
};

}  // namespace strata::comm
