#include "strata/comm/mpi_decision_group.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <utility>

#include "mpi_error.h"
#include "strata/comm/mpi_context.h"
#include "strata/comm/mpi_native.h"
#include "strata/core/log.h"

namespace strata::comm {
namespace {

// Tag of the PP forward on the group's own duplicate of the pp communicator.
constexpr int kPpForwardTag = 7301;
// Header in front of the values: [n, -n], reduced with MIN to (min length, -max length).
constexpr std::size_t kHeader = 2;

}  // namespace

SyncStats summarizeSamples(std::span<const float> samples_us) {
    SyncStats s;
    s.rounds = samples_us.size();
    if (samples_us.empty()) return s;
    std::vector<float> sorted(samples_us.begin(), samples_us.end());
    std::sort(sorted.begin(), sorted.end());
    for (float v : sorted) s.total_us += v;
    s.mean_us = s.total_us / static_cast<double>(sorted.size());
    auto rank = static_cast<std::size_t>(std::ceil(0.99 * static_cast<double>(sorted.size())));
    s.p99_us = sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
    s.max_us = sorted.back();
    return s;
}

struct MpiDecisionGroup::Impl {
    MpiComm decision;
    MpiComm pp;
    MpiComm replica;
    std::vector<std::int64_t> buf;
    // In flight to stage pp+1 until the next agreeMin (bounds the sends in flight to one).
    std::vector<std::int64_t> send_buf;
    MPI_Request pending = MPI_REQUEST_NULL;
    std::vector<float> samples_us;

    Status completePending() {
        if (pending == MPI_REQUEST_NULL) return Status::ok();
        STRATA_MPI_RETURN_IF_ERROR(MPI_Wait(&pending, MPI_STATUS_IGNORE));
        return Status::ok();
    }

    Status exchange(std::size_t n);
};

Result<MpiDecisionGroup> MpiDecisionGroup::create(const Grid& grid) {
    auto impl = std::make_unique<Impl>();
    STRATA_ASSIGN_OR_RETURN(impl->decision, grid.decisionComm().dup());
    STRATA_ASSIGN_OR_RETURN(impl->pp, grid.ppComm().dup());
    STRATA_ASSIGN_OR_RETURN(impl->replica, grid.replicaComm().dup());
    return MpiDecisionGroup(std::move(impl));
}

MpiDecisionGroup::MpiDecisionGroup(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
MpiDecisionGroup::MpiDecisionGroup(MpiDecisionGroup&&) noexcept = default;
MpiDecisionGroup& MpiDecisionGroup::operator=(MpiDecisionGroup&&) noexcept = default;

MpiDecisionGroup::~MpiDecisionGroup() {
    if (!impl_ || impl_->pending == MPI_REQUEST_NULL || !MpiContext::isActive()) return;
    Status s = impl_->completePending();
    if (!s.isOk()) core::logger("comm").error("decision group teardown: {}", s.message());
}

int MpiDecisionGroup::rank() const noexcept { return impl_->decision.rank(); }
int MpiDecisionGroup::size() const noexcept { return impl_->decision.size(); }
int MpiDecisionGroup::ppRank() const noexcept { return impl_->pp.rank(); }
int MpiDecisionGroup::ppSize() const noexcept { return impl_->pp.size(); }
int MpiDecisionGroup::replicaRank() const noexcept { return impl_->replica.rank(); }
int MpiDecisionGroup::replicaSize() const noexcept { return impl_->replica.size(); }

// Leaves the agreed vector (header first) in buf: reduced on stage 0, received from the previous
// stage elsewhere (its length is whatever stage 0 used); then forwards it to the next stage. The
// forward happens before any length check so that a mismatch is reported on every stage instead of
// hanging the later ones.
Status MpiDecisionGroup::Impl::exchange(std::size_t n) {
    const int count = static_cast<int>(n + kHeader);
    if (pp.rank() == 0) {
        STRATA_MPI_RETURN_IF_ERROR(MPI_Allreduce(MPI_IN_PLACE, buf.data(), count, MPI_INT64_T,
                                                 MPI_MIN, nativeComm(decision)));
    } else {
        // Matched probe, then receive exactly what stage s-1 sent: a stage that passed another
        // length still receives and forwards, and the header check below reports it.
        MPI_Message message;
        MPI_Status status;
        STRATA_MPI_RETURN_IF_ERROR(
            MPI_Mprobe(pp.rank() - 1, kPpForwardTag, nativeComm(pp), &message, &status));
        int received = 0;
        STRATA_MPI_RETURN_IF_ERROR(MPI_Get_count(&status, MPI_INT64_T, &received));
        buf.resize(static_cast<std::size_t>(std::max(received, 0)));
        STRATA_MPI_RETURN_IF_ERROR(
            MPI_Mrecv(buf.data(), received, MPI_INT64_T, &message, MPI_STATUS_IGNORE));
        if (received < static_cast<int>(kHeader)) {
            return STRATA_ERROR(StatusCode::kInternal,
                                "agreeMin: pp stage {} received {} values from stage {}, fewer "
                                "than the header",
                                pp.rank(), received, pp.rank() - 1);
        }
    }
    if (pp.rank() + 1 < pp.size()) {
        send_buf.assign(buf.begin(), buf.end());
        STRATA_MPI_RETURN_IF_ERROR(MPI_Isend(send_buf.data(), static_cast<int>(send_buf.size()),
                                             MPI_INT64_T, pp.rank() + 1, kPpForwardTag,
                                             nativeComm(pp), &pending));
    }
    return Status::ok();
}

Status MpiDecisionGroup::agreeMin(std::span<std::int64_t> values) {
    const auto start = std::chrono::steady_clock::now();
    Impl& d = *impl_;
    // The previous round's forward must be done before send_buf is reused.
    STRATA_RETURN_IF_ERROR(d.completePending());
    const std::size_t n = values.size();
    const auto len = static_cast<std::int64_t>(n);
    d.buf.resize(n + kHeader);
    d.buf[0] = len;
    d.buf[1] = -len;
    std::copy(values.begin(), values.end(), d.buf.begin() + kHeader);
    STRATA_RETURN_IF_ERROR(d.exchange(n));
    const std::int64_t min_len = d.buf[0];
    const std::int64_t max_len = -d.buf[1];
    if (min_len != len || max_len != len || d.buf.size() != n + kHeader) {
        Status s = STRATA_ERROR(StatusCode::kInternal,
                                "agreeMin length mismatch: this rank (decision {} pp {}) passed {} "
                                "values, the decision group passed between {} and {}",
                                rank(), ppRank(), len, min_len, max_len);
        core::logger("comm").error("{}", s.message());
        return s;
    }
    std::copy(d.buf.begin() + kHeader, d.buf.end(), values.begin());
    const auto elapsed = std::chrono::steady_clock::now() - start;
    d.samples_us.push_back(std::chrono::duration<float, std::micro>(elapsed).count());
    return Status::ok();
}

Status MpiDecisionGroup::gatherDigests(std::uint64_t mine, std::vector<std::uint64_t>* all) {
    std::vector<std::uint64_t> out(static_cast<std::size_t>(impl_->replica.size()));
    STRATA_MPI_RETURN_IF_ERROR(MPI_Allgather(&mine, 1, MPI_UINT64_T, out.data(), 1, MPI_UINT64_T,
                                             nativeComm(impl_->replica)));
    *all = std::move(out);
    return Status::ok();
}

Status MpiDecisionGroup::barrier() { return impl_->replica.barrier(); }

SyncStats MpiDecisionGroup::syncStats() const { return summarizeSamples(impl_->samples_us); }

std::span<const float> MpiDecisionGroup::syncSamplesUs() const noexcept {
    return impl_->samples_us;
}

void MpiDecisionGroup::resetSyncStats() noexcept { impl_->samples_us.clear(); }

}  // namespace strata::comm
