#include "strata/comm/stop_notice.h"

#include <mpi.h>

#include <algorithm>
#include <vector>

#include "mpi_error.h"
#include "strata/comm/mpi_native.h"

namespace strata::comm {

namespace {
constexpr int kTag = 1;
}  // namespace

struct StopNotice::Impl {
    MpiComm comm;
    int sent_reason = 0;  // the buffer of the sends: lives as long as they may be in flight
    std::vector<MPI_Request> sends;
    int received = 0;  // notices received
    int heard = 0;     // the largest reason received
};

StopNotice::StopNotice(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StopNotice::StopNotice(StopNotice&&) noexcept = default;
StopNotice& StopNotice::operator=(StopNotice&&) noexcept = default;
StopNotice::~StopNotice() = default;

Result<StopNotice> StopNotice::create(const MpiComm& comm) {
    auto impl = std::make_unique<Impl>();
    STRATA_ASSIGN_OR_RETURN(impl->comm, comm.dup());
    return StopNotice(std::move(impl));
}

Status StopNotice::notify(int reason) {
    Impl& s = *impl_;
    if (s.sent_reason != 0 || reason <= 0) return Status::ok();
    s.sent_reason = reason;
    const MPI_Comm c = nativeComm(s.comm);
    for (int r = 0; r < s.comm.size(); ++r) {
        if (r == s.comm.rank()) continue;
        MPI_Request req = MPI_REQUEST_NULL;
        STRATA_MPI_RETURN_IF_ERROR(MPI_Isend(&s.sent_reason, 1, MPI_INT, r, kTag, c, &req));
        s.sends.push_back(req);
    }
    return Status::ok();
}

Result<int> StopNotice::poll() {
    Impl& s = *impl_;
    const MPI_Comm c = nativeComm(s.comm);
    for (;;) {
        int flag = 0;
        MPI_Status st;
        STRATA_MPI_RETURN_IF_ERROR(MPI_Iprobe(MPI_ANY_SOURCE, kTag, c, &flag, &st));
        if (!flag) return s.heard;
        int reason = 0;
        STRATA_MPI_RETURN_IF_ERROR(
            MPI_Recv(&reason, 1, MPI_INT, st.MPI_SOURCE, kTag, c, MPI_STATUS_IGNORE));
        ++s.received;
        s.heard = std::max(s.heard, reason);
    }
}

Status StopNotice::finish() {
    Impl& s = *impl_;
    const MPI_Comm c = nativeComm(s.comm);
    // Each rank notified every other one or none: summed, entry r counts the notices sent to r.
    std::vector<int> to(static_cast<std::size_t>(s.comm.size()), s.sent_reason != 0 ? 1 : 0);
    to[static_cast<std::size_t>(s.comm.rank())] = 0;
    std::vector<int> expected(to.size(), 0);
    STRATA_MPI_RETURN_IF_ERROR(MPI_Allreduce(to.data(), expected.data(),
                                             static_cast<int>(to.size()), MPI_INT, MPI_SUM, c));
    for (; s.received < expected[static_cast<std::size_t>(s.comm.rank())]; ++s.received) {
        int reason = 0;
        STRATA_MPI_RETURN_IF_ERROR(
            MPI_Recv(&reason, 1, MPI_INT, MPI_ANY_SOURCE, kTag, c, MPI_STATUS_IGNORE));
        s.heard = std::max(s.heard, reason);
    }
    STRATA_MPI_RETURN_IF_ERROR(
        MPI_Waitall(static_cast<int>(s.sends.size()), s.sends.data(), MPI_STATUSES_IGNORE));
    s.sends.clear();
    return Status::ok();
}

}  // namespace strata::comm
