#include "strata/comm/mpi_decision_group.h"

#include <mpi.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <utility>

#include "mpi_error.h"
#include "rank_watch.h"
#include "strata/comm/mpi_context.h"
#include "strata/comm/mpi_native.h"
#include "strata/core/log.h"

namespace strata::comm {
namespace {

// Tag of the PP forward on the group's own duplicate of the pp communicator.
constexpr int kPpForwardTag = 7301;
// Tag of the recursive-doubling messages on the group's own duplicate of the decision communicator.
constexpr int kDoublingTag = 7302;
// Header in front of the values: [n, -n], reduced with MIN to (min length, -max length).
constexpr std::size_t kHeader = 2;

// The ranks of `from` in `to` (both over the same processes or a subset).
Result<std::vector<int>> translateRanks(const MpiComm& from, const MpiComm& to) {
    MPI_Group a = MPI_GROUP_NULL;
    MPI_Group b = MPI_GROUP_NULL;
    STRATA_MPI_RETURN_IF_ERROR(MPI_Comm_group(nativeComm(from), &a));
    STRATA_MPI_RETURN_IF_ERROR(MPI_Comm_group(nativeComm(to), &b));
    std::vector<int> in(static_cast<std::size_t>(from.size()));
    for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<int>(i);
    std::vector<int> out(in.size(), MPI_UNDEFINED);
    const int rc =
        MPI_Group_translate_ranks(a, static_cast<int>(in.size()), in.data(), b, out.data());
    MPI_Group_free(&a);
    MPI_Group_free(&b);
    STRATA_MPI_RETURN_IF_ERROR(rc);
    return out;
}

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
    Impl(MpiComm d, MpiComm p, MpiComm r, detail::RankWatch w) noexcept
        : decision(std::move(d)), pp(std::move(p)), replica(std::move(r)), watch(std::move(w)) {}

    MpiComm decision;
    MpiComm pp;
    MpiComm replica;
    detail::RankWatch watch;  // over the replica: names the ranks a timed-out collective awaits
    // Replica ranks each collective waits for: the decision group (stage 0's agreement), the
    // previous and next pp stage (forwards), the whole replica (digests, barrier).
    std::vector<int> decision_members;
    std::vector<int> pp_prev;
    std::vector<int> pp_next;
    std::vector<int> replica_members;
    std::uint64_t seq = 0;     // collectives so far (agreeMin, gatherDigests, barrier)
    std::uint64_t rounds = 0;  // agreeMin calls so far
    // Buffers and requests of the collectives live here, not on the stack: after a timeout the
    // operation stays pending and MPI may still write into them (see ~MpiDecisionGroup).
    std::vector<std::int64_t> buf;
    MPI_Request request = MPI_REQUEST_NULL;
    std::uint64_t digest_in = 0;
    std::vector<std::uint64_t> digests;
    // In flight to stage pp+1 until the next agreeMin (bounds the sends in flight to one).
    std::vector<std::int64_t> send_buf;
    MPI_Request pending = MPI_REQUEST_NULL;
    bool timed_out = false;
    std::vector<float> samples_us;
    // Recursive doubling over the decision group (its size a power of two): the step's partner
    // mask, the values received, and one send buffer and request per step (all live until the
    // agreement completes).
    unsigned mask = 0;
    std::vector<std::int64_t> recv_buf;
    std::vector<std::vector<std::int64_t>> step_send;
    std::vector<MPI_Request> step_req;

    void postStep();
    Status testDoubling(bool* done);

    Status waitFor(MPI_Request* req, std::string_view kind, std::uint64_t op_seq,
                   std::uint64_t round, std::span<const int> awaited) {
        Status s = watch.wait({op_seq, kind, round, awaited}, [req](bool* done) {
            int flag = 0;
            STRATA_MPI_RETURN_IF_ERROR(MPI_Test(req, &flag, MPI_STATUS_IGNORE));
            *done = flag != 0;
            return Status::ok();
        });
        if (s.code() == StatusCode::kTimeout) timed_out = true;
        return s;
    }

    Status completePending(std::uint64_t op_seq, std::uint64_t round) {
        if (pending == MPI_REQUEST_NULL) return Status::ok();
        return waitFor(&pending, "pp forward", op_seq, round, pp_next);
    }

    Status exchange(std::size_t n, std::uint64_t op_seq);
};

Result<MpiDecisionGroup> MpiDecisionGroup::create(const Grid& grid, RoundWatchdogOptions watchdog) {
    STRATA_ASSIGN_OR_RETURN(auto decision, grid.decisionComm().dup());
    STRATA_ASSIGN_OR_RETURN(auto pp, grid.ppComm().dup());
    STRATA_ASSIGN_OR_RETURN(auto replica, grid.replicaComm().dup());
    STRATA_ASSIGN_OR_RETURN(
        auto watch,
        detail::RankWatch::create(replica, grid.shape(), grid.worldSize(), std::move(watchdog)));
    auto impl = std::make_unique<Impl>(std::move(decision), std::move(pp), std::move(replica),
                                       std::move(watch));
    STRATA_ASSIGN_OR_RETURN(impl->decision_members, translateRanks(impl->decision, impl->replica));
    STRATA_ASSIGN_OR_RETURN(auto chain, translateRanks(impl->pp, impl->replica));
    const auto stage = static_cast<std::size_t>(impl->pp.rank());
    if (stage > 0) impl->pp_prev = {chain[stage - 1]};
    if (stage + 1 < chain.size()) impl->pp_next = {chain[stage + 1]};
    for (int r = 0; r < impl->replica.size(); ++r) impl->replica_members.push_back(r);
    const auto n = static_cast<unsigned>(impl->decision.size());
    if (n > 1 && std::has_single_bit(n)) {
        const auto steps = static_cast<std::size_t>(std::countr_zero(n));
        impl->step_send.resize(steps);
        impl->step_req.assign(steps, MPI_REQUEST_NULL);
    }
    return MpiDecisionGroup(std::move(impl));
}

MpiDecisionGroup::MpiDecisionGroup(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
MpiDecisionGroup::MpiDecisionGroup(MpiDecisionGroup&&) noexcept = default;
MpiDecisionGroup& MpiDecisionGroup::operator=(MpiDecisionGroup&&) noexcept = default;

MpiDecisionGroup::~MpiDecisionGroup() {
    if (!impl_ || !MpiContext::isActive()) return;
    if (impl_->timed_out) {
        // A collective is still pending on a rank that never arrived: MPI may write into the
        // buffers any time, and completing it would hang. The job is going down (the caller
        // aborts); leak the state rather than free memory MPI still owns.
        (void)impl_.release();
        return;
    }
    if (impl_->pending == MPI_REQUEST_NULL) return;
    Status s = impl_->completePending(impl_->seq, impl_->rounds);
    if (!s.isOk()) core::logger("comm").error("decision group teardown: {}", s.message());
}

int MpiDecisionGroup::rank() const noexcept { return impl_->decision.rank(); }
int MpiDecisionGroup::size() const noexcept { return impl_->decision.size(); }
int MpiDecisionGroup::ppRank() const noexcept { return impl_->pp.rank(); }
int MpiDecisionGroup::ppSize() const noexcept { return impl_->pp.size(); }
int MpiDecisionGroup::replicaRank() const noexcept { return impl_->replica.rank(); }
int MpiDecisionGroup::replicaSize() const noexcept { return impl_->replica.size(); }

// Sends this rank's partial result to the step's partner (rank ^ mask).
void MpiDecisionGroup::Impl::postStep() {
    const std::size_t step = static_cast<std::size_t>(std::countr_zero(mask));
    step_send[step] = buf;
    MPI_Isend(step_send[step].data(), static_cast<int>(buf.size()), MPI_INT64_T,
              decision.rank() ^ static_cast<int>(mask), kDoublingTag, nativeComm(decision),
              &step_req[step]);
}

// One poll of the recursive doubling: takes the partner's message of the current step when it is
// there (any length: a rank that passed another length is reported by the header), folds it in
// with MIN and posts the next step. Done once every step is folded in and every send completed.
Status MpiDecisionGroup::Impl::testDoubling(bool* done) {
    const auto n = static_cast<unsigned>(decision.size());
    while (mask < n) {
        int flag = 0;
        MPI_Message message = MPI_MESSAGE_NULL;
        MPI_Status status;
        const int partner = decision.rank() ^ static_cast<int>(mask);
        STRATA_MPI_RETURN_IF_ERROR(
            MPI_Improbe(partner, kDoublingTag, nativeComm(decision), &flag, &message, &status));
        if (!flag) {
            *done = false;
            return Status::ok();
        }
        int received = 0;
        STRATA_MPI_RETURN_IF_ERROR(MPI_Get_count(&status, MPI_INT64_T, &received));
        recv_buf.resize(static_cast<std::size_t>(std::max(received, 0)));
        STRATA_MPI_RETURN_IF_ERROR(
            MPI_Mrecv(recv_buf.data(), received, MPI_INT64_T, &message, MPI_STATUS_IGNORE));
        const std::size_t common = std::min(recv_buf.size(), buf.size());
        for (std::size_t i = 0; i < common; ++i) buf[i] = std::min(buf[i], recv_buf[i]);
        if (common < kHeader) buf[0] = std::min<std::int64_t>(buf[0], received);  // malformed
        mask <<= 1;
        if (mask < n) postStep();
    }
    int flag = 0;
    STRATA_MPI_RETURN_IF_ERROR(MPI_Testall(static_cast<int>(step_req.size()), step_req.data(),
                                           &flag, MPI_STATUSES_IGNORE));
    *done = flag != 0;
    return Status::ok();
}

// Leaves the agreed vector (header first) in buf: reduced on stage 0, received from the previous
// stage elsewhere (its length is whatever stage 0 used); then forwards it to the next stage. The
// forward happens before any length check so that a mismatch is reported on every stage instead of
// hanging the later ones. Both waits run under the round watchdog.
Status MpiDecisionGroup::Impl::exchange(std::size_t n, std::uint64_t op_seq) {
    const int count = static_cast<int>(n + kHeader);
    if (pp.rank() == 0 && !step_req.empty()) {
        // A power-of-two group: recursive doubling on point-to-point messages, the fastest
        // small-vector all-reduce that can be polled (MPI_Iallreduce's schedule costs about 2x).
        mask = 1;
        postStep();
        Status s = watch.wait({op_seq, "agreement", rounds, decision_members},
                              [this](bool* done) { return testDoubling(done); });
        if (s.code() == StatusCode::kTimeout) timed_out = true;
        STRATA_RETURN_IF_ERROR(s);
    } else if (pp.rank() == 0) {
        STRATA_MPI_RETURN_IF_ERROR(MPI_Iallreduce(MPI_IN_PLACE, buf.data(), count, MPI_INT64_T,
                                                  MPI_MIN, nativeComm(decision), &request));
        STRATA_RETURN_IF_ERROR(waitFor(&request, "agreement", op_seq, rounds, decision_members));
    } else {
        // Matched probe, then receive exactly what stage s-1 sent: a stage that passed another
        // length still receives and forwards, and the header check below reports it.
        MPI_Message message = MPI_MESSAGE_NULL;
        MPI_Status status;
        MPI_Comm c = nativeComm(pp);
        const int prev = pp.rank() - 1;
        Status s = watch.wait({op_seq, "agreement", rounds, pp_prev}, [&](bool* done) {
            int flag = 0;
            STRATA_MPI_RETURN_IF_ERROR(
                MPI_Improbe(prev, kPpForwardTag, c, &flag, &message, &status));
            *done = flag != 0;
            return Status::ok();
        });
        if (s.code() == StatusCode::kTimeout) timed_out = true;
        STRATA_RETURN_IF_ERROR(s);
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
    const std::uint64_t op_seq = d.seq++;
    ++d.rounds;
    // The previous round's forward must be done before send_buf is reused.
    STRATA_RETURN_IF_ERROR(d.completePending(op_seq, d.rounds));
    const std::size_t n = values.size();
    const auto len = static_cast<std::int64_t>(n);
    d.buf.resize(n + kHeader);
    d.buf[0] = len;
    d.buf[1] = -len;
    std::copy(values.begin(), values.end(), d.buf.begin() + kHeader);
    STRATA_RETURN_IF_ERROR(d.exchange(n, op_seq));
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
    Impl& d = *impl_;
    const std::uint64_t op_seq = d.seq++;
    d.digest_in = mine;
    d.digests.assign(static_cast<std::size_t>(d.replica.size()), 0);
    STRATA_MPI_RETURN_IF_ERROR(MPI_Iallgather(&d.digest_in, 1, MPI_UINT64_T, d.digests.data(), 1,
                                              MPI_UINT64_T, nativeComm(d.replica), &d.request));
    STRATA_RETURN_IF_ERROR(
        d.waitFor(&d.request, "digest gather", op_seq, d.rounds, d.replica_members));
    *all = d.digests;
    return Status::ok();
}

Status MpiDecisionGroup::barrier() {
    Impl& d = *impl_;
    const std::uint64_t op_seq = d.seq++;
    STRATA_MPI_RETURN_IF_ERROR(MPI_Ibarrier(nativeComm(d.replica), &d.request));
    return d.waitFor(&d.request, "barrier", op_seq, d.rounds, d.replica_members);
}

SyncStats MpiDecisionGroup::syncStats() const { return summarizeSamples(impl_->samples_us); }

std::span<const float> MpiDecisionGroup::syncSamplesUs() const noexcept {
    return impl_->samples_us;
}

void MpiDecisionGroup::resetSyncStats() noexcept { impl_->samples_us.clear(); }

}  // namespace strata::comm
