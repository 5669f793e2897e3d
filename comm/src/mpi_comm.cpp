#include "strata/comm/mpi_comm.h"

#include <mpi.h>

#include <utility>

#include "mpi_error.h"
#include "strata/comm/mpi_context.h"
#include "strata/comm/mpi_native.h"
#include "strata/core/check.h"
#include "strata/core/log.h"

namespace strata::comm {

// Builds MpiComm values from native handles (the constructor is private).
struct MpiCommAccess {
    static Result<MpiComm> adopt(MPI_Comm comm, bool owning) {
        int rank = 0;
        int size = 0;
        Status s =
            detail::mpiStatus(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank", __FILE__, __LINE__);
        if (s.isOk()) {
            s = detail::mpiStatus(MPI_Comm_size(comm, &size), "MPI_Comm_size", __FILE__, __LINE__);
        }
        if (!s.isOk()) {
            if (owning) MPI_Comm_free(&comm);
            return s;
        }
        return MpiComm(toOpaqueComm(comm), owning, rank, size);
    }
};

MpiComm MpiComm::world() {
    STRATA_CHECK(MpiContext::isActive(), "MpiComm::world() needs an initialised mpi");
    Result<MpiComm> w = MpiCommAccess::adopt(MPI_COMM_WORLD, /*owning=*/false);
    STRATA_CHECK(w.isOk(), "cannot query MPI_COMM_WORLD: {}", w.status().toString());
    return std::move(w).value();
}

Result<MpiComm> MpiComm::fromFortran(std::int64_t handle) {
    STRATA_CHECK(MpiContext::isActive(), "MpiComm::fromFortran() needs an initialised mpi");
    const MPI_Comm comm = MPI_Comm_f2c(static_cast<MPI_Fint>(handle));
    if (comm == MPI_COMM_NULL) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "MPI communicator handle {} is MPI_COMM_NULL", handle);
    }
    return MpiCommAccess::adopt(comm, /*owning=*/false);
}

Result<MpiComm> MpiComm::split(int color, int key) const {
    if (!valid()) return STRATA_ERROR(StatusCode::kFailedPrecondition, "split of a null comm");
    if (color < 0) return STRATA_ERROR(StatusCode::kInvalidArgument, "split color {} < 0", color);
    MPI_Comm out = MPI_COMM_NULL;
    STRATA_MPI_RETURN_IF_ERROR(MPI_Comm_split(nativeComm(*this), color, key, &out));
    return MpiCommAccess::adopt(out, /*owning=*/true);
}

Result<MpiComm> MpiComm::splitShared(int key) const {
    if (!valid()) return STRATA_ERROR(StatusCode::kFailedPrecondition, "split of a null comm");
    MPI_Comm out = MPI_COMM_NULL;
    STRATA_MPI_RETURN_IF_ERROR(
        MPI_Comm_split_type(nativeComm(*this), MPI_COMM_TYPE_SHARED, key, MPI_INFO_NULL, &out));
    return MpiCommAccess::adopt(out, /*owning=*/true);
}

Result<MpiComm> MpiComm::dup() const {
    if (!valid()) return STRATA_ERROR(StatusCode::kFailedPrecondition, "dup of a null comm");
    MPI_Comm out = MPI_COMM_NULL;
    STRATA_MPI_RETURN_IF_ERROR(MPI_Comm_dup(nativeComm(*this), &out));
    return MpiCommAccess::adopt(out, /*owning=*/true);
}

MpiComm::MpiComm(MpiComm&& other) noexcept
    : handle_(std::exchange(other.handle_, 0)),
      owning_(std::exchange(other.owning_, false)),
      rank_(std::exchange(other.rank_, 0)),
      size_(std::exchange(other.size_, 0)) {}

MpiComm& MpiComm::operator=(MpiComm&& other) noexcept {
    if (this != &other) {
        reset();
        handle_ = std::exchange(other.handle_, 0);
        owning_ = std::exchange(other.owning_, false);
        rank_ = std::exchange(other.rank_, 0);
        size_ = std::exchange(other.size_, 0);
    }
    return *this;
}

void MpiComm::reset() noexcept {
    if (owning_ && handle_ != 0) {
        // Freeing after MPI_Finalize is an error; a communicator that outlives MPI is leaked.
        if (MpiContext::isActive()) {
            MPI_Comm comm = nativeComm(*this);
            int rc = MPI_Comm_free(&comm);
            if (rc != MPI_SUCCESS) {
                core::logger("comm").error("MPI_Comm_free failed with code {}", rc);
            }
        } else {
            core::logger("comm").warn("communicator outlived MPI_Finalize; not freed");
        }
    }
    handle_ = 0;
    owning_ = false;
    rank_ = 0;
    size_ = 0;
}

Status MpiComm::barrier() const {
    if (!valid()) return STRATA_ERROR(StatusCode::kFailedPrecondition, "barrier on a null comm");
    STRATA_MPI_RETURN_IF_ERROR(MPI_Barrier(nativeComm(*this)));
    return Status::ok();
}

}  // namespace strata::comm
