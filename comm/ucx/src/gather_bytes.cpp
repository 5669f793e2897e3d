#include "gather_bytes.h"

#include "strata/comm/mpi_native.h"

namespace strata::comm::ucx {

namespace {
Status mpiError(int rc, const char* what) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    return STRATA_ERROR(StatusCode::kIoError, "{}: {}", what, std::string(text, len));
}
}  // namespace

Result<std::vector<std::vector<std::byte>>> allGatherBytes(const MpiComm& comm,
                                                           std::span<const std::byte> mine) {
    MPI_Comm c = nativeComm(comm);
    const int n = comm.size();
    int my_len = static_cast<int>(mine.size());
    std::vector<int> lens(static_cast<std::size_t>(n));
    int rc = MPI_Allgather(&my_len, 1, MPI_INT, lens.data(), 1, MPI_INT, c);
    if (rc != MPI_SUCCESS) return mpiError(rc, "MPI_Allgather of lengths");
    std::vector<int> displs(static_cast<std::size_t>(n));
    int total = 0;
    for (int i = 0; i < n; ++i) {
        displs[static_cast<std::size_t>(i)] = total;
        total += lens[static_cast<std::size_t>(i)];
    }
    std::vector<std::byte> all(static_cast<std::size_t>(total));
    rc = MPI_Allgatherv(mine.data(), my_len, MPI_BYTE, all.data(), lens.data(), displs.data(),
                        MPI_BYTE, c);
    if (rc != MPI_SUCCESS) return mpiError(rc, "MPI_Allgatherv");
    std::vector<std::vector<std::byte>> out(static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < out.size(); ++i) {
        out[i].assign(all.begin() + displs[i], all.begin() + displs[i] + lens[i]);
    }
    return out;
}

Result<int> countFailures(const MpiComm& comm, bool failed) {
    int mine = failed ? 1 : 0;
    int sum = 0;
    const int rc = MPI_Allreduce(&mine, &sum, 1, MPI_INT, MPI_SUM, nativeComm(comm));
    if (rc != MPI_SUCCESS) return mpiError(rc, "MPI_Allreduce of failures");
    return sum;
}

}  // namespace strata::comm::ucx
