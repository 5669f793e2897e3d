// Typed access to the MPI_Comm inside an MpiComm, for code that calls MPI directly (comm/, its
// tests and benches). Includes <mpi.h>: do not include from headers other folders need.
// Thread-safety: pure conversions.
#pragma once

#include <mpi.h>

#include <cstring>
#include <type_traits>

#include "strata/comm/mpi_comm.h"

namespace strata::comm {

static_assert(sizeof(MPI_Comm) <= sizeof(std::uintptr_t), "MPI_Comm must fit an uintptr_t");
static_assert(std::is_trivially_copyable_v<MPI_Comm>);

inline std::uintptr_t toOpaqueComm(MPI_Comm comm) noexcept {
    if (comm == MPI_COMM_NULL) return 0;
    std::uintptr_t v = 0;
    std::memcpy(&v, &comm, sizeof(comm));
    return v;
}

// The native communicator; MPI_COMM_NULL for an empty MpiComm. Borrowed: never free it.
inline MPI_Comm nativeComm(const MpiComm& comm) noexcept {
    if (comm.opaqueHandle() == 0) return MPI_COMM_NULL;
    MPI_Comm c;
    std::uintptr_t v = comm.opaqueHandle();
    std::memcpy(&c, &v, sizeof(c));
    return c;
}

}  // namespace strata::comm
