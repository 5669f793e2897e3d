// MpiComm: move-only owner of an MPI communicator. world() is borrowed (never freed); split(),
// splitShared() and dup() return owning communicators freed with MPI_Comm_free on destruction.
// No <mpi.h> here: the native handle is reached through strata/comm/mpi_native.h (comm/ only).
// Thread-safety: like a unique_ptr; MPI calls on one communicator need one thread at a time.
#pragma once

#include <cstdint>

#include "strata/core/status.h"

namespace strata::comm {

class MpiComm {
public:
    // An empty communicator (MPI_COMM_NULL); rank() and size() are 0.
    MpiComm() noexcept = default;

    // MPI_COMM_WORLD, borrowed. MPI must be active (a bug otherwise: core::fatal).
    static MpiComm world();

    // An engine's communicator given as its Fortran handle (MPI_Comm_c2f; mpi4py's py2f()),
    // borrowed: the engine keeps it alive and frees it. kInvalidArgument for a handle that is
    // MPI_COMM_NULL or not a communicator (MPI reports it).
    static Result<MpiComm> fromFortran(std::int64_t handle);

    // MPI_Comm_split: collective over this communicator; color >= 0. The result is owning.
    // Fails (and logs) with the MPI error text.
    Result<MpiComm> split(int color, int key) const;
    // MPI_Comm_split_type(MPI_COMM_TYPE_SHARED): the ranks of this communicator on this node.
    Result<MpiComm> splitShared(int key) const;
    // MPI_Comm_dup: same group, separate message space (owning).
    Result<MpiComm> dup() const;

    MpiComm(MpiComm&& other) noexcept;
    MpiComm& operator=(MpiComm&& other) noexcept;
    MpiComm(const MpiComm&) = delete;
    MpiComm& operator=(const MpiComm&) = delete;
    ~MpiComm() { reset(); }

    // Frees an owning communicator (logs a failure, never throws); leaves this empty.
    void reset() noexcept;

    bool valid() const noexcept { return handle_ != 0; }
    bool owning() const noexcept { return owning_; }
    int rank() const noexcept { return rank_; }
    int size() const noexcept { return size_; }

    // MPI_Barrier over this communicator.
    Status barrier() const;

    // The MPI_Comm stored as an integer (see mpi_native.h for the typed accessor).
    std::uintptr_t opaqueHandle() const noexcept { return handle_; }

private:
    MpiComm(std::uintptr_t handle, bool owning, int rank, int size) noexcept
        : handle_(handle), owning_(owning), rank_(rank), size_(size) {}
    friend struct MpiCommAccess;

    std::uintptr_t handle_ = 0;  // MPI_Comm bit pattern; 0 means MPI_COMM_NULL
    bool owning_ = false;
    int rank_ = 0;
    int size_ = 0;
};

}  // namespace strata::comm
