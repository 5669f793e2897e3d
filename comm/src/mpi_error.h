// Private: turning MPI return codes into Status (world uses MPI_ERRORS_RETURN, see MpiContext).
#pragma once

#include <mpi.h>

#include "strata/core/status.h"

namespace strata::comm::detail {

// OK for MPI_SUCCESS; otherwise logs (logger "comm") and returns a Status naming `call` and the
// MPI_Error_string text. Argument/truncation errors (a bug) map to kInternal, the rest to kIoError.
Status mpiStatus(int rc, const char* call, const char* file, int line);

}  // namespace strata::comm::detail

// Evaluates an MPI call and returns its Status from the enclosing function on failure.
#define STRATA_MPI_RETURN_IF_ERROR(call)                                                         \
    do {                                                                                         \
        int strata_mpi_rc_ = (call);                                                             \
        if (strata_mpi_rc_ != MPI_SUCCESS) [[unlikely]]                                          \
            return ::strata::comm::detail::mpiStatus(strata_mpi_rc_, #call, __FILE__, __LINE__); \
    } while (0)
