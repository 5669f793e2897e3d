#include "strata/comm/job_collectives.h"

#include <limits>

#include "mpi_error.h"
#include "strata/comm/mpi_native.h"

namespace strata::comm {

Status broadcastBytes(const MpiComm& comm, std::vector<std::byte>* bytes, int root) {
    MPI_Comm c = nativeComm(comm);
    std::uint64_t size = bytes->size();
    STRATA_MPI_RETURN_IF_ERROR(MPI_Bcast(&size, 1, MPI_UINT64_T, root, c));
    bytes->resize(size);
    // MPI counts are ints: send in chunks below 1 GiB.
    constexpr std::uint64_t kChunk = 1u << 30;
    for (std::uint64_t off = 0; off < size; off += kChunk) {
        int n = static_cast<int>(std::min(kChunk, size - off));
        STRATA_MPI_RETURN_IF_ERROR(MPI_Bcast(bytes->data() + off, n, MPI_BYTE, root, c));
    }
    return Status::ok();
}

Status allReduceSum(const MpiComm& comm, std::span<std::uint64_t> values) {
    STRATA_MPI_RETURN_IF_ERROR(MPI_Allreduce(MPI_IN_PLACE, values.data(),
                                             static_cast<int>(values.size()), MPI_UINT64_T, MPI_SUM,
                                             nativeComm(comm)));
    return Status::ok();
}

Status allReduceSum(const MpiComm& comm, std::span<double> values) {
    STRATA_MPI_RETURN_IF_ERROR(MPI_Allreduce(MPI_IN_PLACE, values.data(),
                                             static_cast<int>(values.size()), MPI_DOUBLE, MPI_SUM,
                                             nativeComm(comm)));
    return Status::ok();
}

Status allReduceMax(const MpiComm& comm, std::span<double> values) {
    STRATA_MPI_RETURN_IF_ERROR(MPI_Allreduce(MPI_IN_PLACE, values.data(),
                                             static_cast<int>(values.size()), MPI_DOUBLE, MPI_MAX,
                                             nativeComm(comm)));
    return Status::ok();
}

Status allGather(const MpiComm& comm, double mine, std::vector<double>* all) {
    all->assign(static_cast<std::size_t>(comm.size()), 0.0);
    STRATA_MPI_RETURN_IF_ERROR(
        MPI_Allgather(&mine, 1, MPI_DOUBLE, all->data(), 1, MPI_DOUBLE, nativeComm(comm)));
    return Status::ok();
}

}  // namespace strata::comm
