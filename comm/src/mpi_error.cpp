#include "mpi_error.h"

#include <string>

#include "strata/core/log.h"

namespace strata::comm::detail {

Status mpiStatus(int rc, const char* call, const char* file, int line) {
    if (rc == MPI_SUCCESS) return Status::ok();
    char text[MPI_MAX_ERROR_STRING] = {};
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) len = 0;
    int error_class = rc;
    MPI_Error_class(rc, &error_class);
    StatusCode code = StatusCode::kIoError;
    switch (error_class) {
        case MPI_ERR_ARG:
        case MPI_ERR_COUNT:
        case MPI_ERR_TYPE:
        case MPI_ERR_COMM:
        case MPI_ERR_OP:
        case MPI_ERR_BUFFER:
        case MPI_ERR_ROOT:
        case MPI_ERR_RANK:
        case MPI_ERR_TAG:
        case MPI_ERR_TRUNCATE:
            code = StatusCode::kInternal;
            break;
        default:
            break;
    }
    std::string what = len > 0 ? std::string(text, static_cast<std::size_t>(len))
                               : "mpi error " + std::to_string(rc);
    Status status = makeError(code, file, line, std::string(call) + " failed: " + what);
    core::logger("comm").error("{}", status.message());
    return status;
}

}  // namespace strata::comm::detail
