#include "rank_watch.h"

#include <fmt/format.h>
#include <mpi.h>
#include <sched.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <thread>
#include <utility>

#include "mpi_error.h"
#include "strata/comm/mpi_context.h"
#include "strata/comm/mpi_native.h"
#include "strata/core/log.h"

namespace strata::comm::detail {
namespace {

using Clock = std::chrono::steady_clock;

// Tag of the arrival notices on the watch's own communicator.
constexpr int kNoticeTag = 7310;
// A wait yields the CPU between tests for this long, then sleeps kSleep between tests (a rank that
// waits long for a straggler or a stopped peer should not spin a core the others need).
constexpr auto kSpinFor = std::chrono::milliseconds(2);
constexpr auto kSleep = std::chrono::microseconds(100);
// Tests between two yields while spinning (measured with strata-bench sync, 4 ranks on 2 cores:
// yielding after every test made a round 3-4x slower than a blocking MPI_Allreduce).
constexpr int kTestsPerYield = 8;

struct Notice {
    std::array<std::int64_t, 2> payload{};  // {op sequence number, round}
    MPI_Request request = MPI_REQUEST_NULL;
};

}  // namespace

struct RankWatch::Impl {
    MpiComm comm;  // duplicate of the members' communicator: notices only
    GridShape shape;
    int world_size = 1;
    RoundWatchdogOptions options;
    std::vector<int> world_ranks;    // per member
    std::vector<std::string> hosts;  // per member
    // Per member: the highest {op seq, round} it reported waiting in; seq -1 before any.
    std::vector<std::array<std::int64_t, 2>> last_notice;
    // Per member: this rank's notice to it (at most one in flight per peer). Heap, so that a
    // pending send's buffer can outlive the watch (see ~RankWatch).
    std::vector<Notice*> outbox;
    Status broken;  // set by a timeout in abort mode

    Status sendNotices(std::int64_t op_seq, std::int64_t round);
    Status drainNotices();
    std::string who(int member) const;
    std::string describe(const Op& op) const;
    std::string report(const Op& op, double waited_s, std::int64_t op_seq) const;
};

Result<RankWatch> RankWatch::create(const MpiComm& members, GridShape shape, int world_size,
                                    RoundWatchdogOptions options) {
    STRATA_RETURN_IF_ERROR(validateRoundWatchdogOptions(options));
    auto impl = std::make_unique<Impl>();
    STRATA_ASSIGN_OR_RETURN(impl->comm, members.dup());
    impl->shape = shape;
    impl->world_size = world_size;
    impl->options = std::move(options);
    const int n = members.size();
    MPI_Comm c = nativeComm(impl->comm);
    int world_rank = 0;
    STRATA_MPI_RETURN_IF_ERROR(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
    impl->world_ranks.assign(static_cast<std::size_t>(n), -1);
    STRATA_MPI_RETURN_IF_ERROR(
        MPI_Allgather(&world_rank, 1, MPI_INT, impl->world_ranks.data(), 1, MPI_INT, c));
    std::array<char, MPI_MAX_PROCESSOR_NAME> mine{};
    int len = 0;
    STRATA_MPI_RETURN_IF_ERROR(MPI_Get_processor_name(mine.data(), &len));
    std::vector<char> all(static_cast<std::size_t>(n) * mine.size());
    STRATA_MPI_RETURN_IF_ERROR(MPI_Allgather(mine.data(), static_cast<int>(mine.size()), MPI_CHAR,
                                             all.data(), static_cast<int>(mine.size()), MPI_CHAR,
                                             c));
    for (int m = 0; m < n; ++m) {
        const char* name = all.data() + static_cast<std::size_t>(m) * mine.size();
        impl->hosts.emplace_back(name, strnlen(name, mine.size()));
    }
    impl->last_notice.assign(static_cast<std::size_t>(n), {-1, 0});
    impl->outbox.assign(static_cast<std::size_t>(n), nullptr);
    for (int m = 0; m < n; ++m) {
        if (m != impl->comm.rank()) impl->outbox[static_cast<std::size_t>(m)] = new Notice();
    }
    return RankWatch(std::move(impl));
}

RankWatch::RankWatch(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
RankWatch::RankWatch(RankWatch&&) noexcept = default;
RankWatch& RankWatch::operator=(RankWatch&&) noexcept = default;

RankWatch::~RankWatch() {
    if (!impl_) return;
    const bool active = MpiContext::isActive();
    for (Notice*& n : impl_->outbox) {
        if (n == nullptr) continue;
        int done = 1;
        if (active && n->request != MPI_REQUEST_NULL) {
            MPI_Test(&n->request, &done, MPI_STATUS_IGNORE);
            if (!done) MPI_Request_free(&n->request);  // MPI may still read the buffer: leak it
        }
        if (done) delete n;
        n = nullptr;
    }
}

int RankWatch::rank() const noexcept { return impl_->comm.rank(); }
const RoundWatchdogOptions& RankWatch::options() const noexcept { return impl_->options; }

std::string RankWatch::describeMember(int member) const { return impl_->who(member); }

std::string RankWatch::Impl::who(int member) const {
    const auto m = static_cast<std::size_t>(member);
    const int world = world_ranks[m];
    auto coords = gridCoords(world, world_size, shape);
    if (!coords.isOk()) return fmt::format("world rank {} on host {}", world, hosts[m]);
    return fmt::format("world rank {} (tp {}, cp {}, pp {}, dp {}) on host {}", world,
                       coords->tp_rank, coords->cp_rank, coords->pp_rank, coords->dp_rank,
                       hosts[m]);
}

Status RankWatch::Impl::sendNotices(std::int64_t op_seq, std::int64_t round) {
    for (std::size_t m = 0; m < outbox.size(); ++m) {
        Notice* n = outbox[m];
        if (n == nullptr) continue;
        if (n->request != MPI_REQUEST_NULL) {
            int done = 0;
            STRATA_MPI_RETURN_IF_ERROR(MPI_Test(&n->request, &done, MPI_STATUS_IGNORE));
            if (!done) continue;  // the peer has not taken the last one: it learns nothing new
        }
        n->payload = {op_seq, round};
        STRATA_MPI_RETURN_IF_ERROR(MPI_Isend(n->payload.data(), 2, MPI_INT64_T, static_cast<int>(m),
                                             kNoticeTag, nativeComm(comm), &n->request));
    }
    return Status::ok();
}

Status RankWatch::Impl::drainNotices() {
    for (;;) {
        int flag = 0;
        MPI_Status st;
        STRATA_MPI_RETURN_IF_ERROR(
            MPI_Iprobe(MPI_ANY_SOURCE, kNoticeTag, nativeComm(comm), &flag, &st));
        if (!flag) return Status::ok();
        std::array<std::int64_t, 2> got{};
        STRATA_MPI_RETURN_IF_ERROR(MPI_Recv(got.data(), 2, MPI_INT64_T, st.MPI_SOURCE, kNoticeTag,
                                            nativeComm(comm), MPI_STATUS_IGNORE));
        auto& last = last_notice[static_cast<std::size_t>(st.MPI_SOURCE)];
        if (got[0] > last[0]) last = got;
    }
}

std::string RankWatch::Impl::describe(const Op& op) const {
    if (op.kind == "agreement") return fmt::format("agreement of round {}", op.round);
    if (op.round == 0) return fmt::format("{} before the first round", op.kind);
    return fmt::format("{} after round {}", op.kind, op.round);
}

std::string RankWatch::Impl::report(const Op& op, double waited_s, std::int64_t op_seq) const {
    std::vector<std::string> missing;
    std::vector<std::string> arrived;
    for (int member : op.awaited) {
        if (member == comm.rank()) continue;
        const auto& last = last_notice[static_cast<std::size_t>(member)];
        if (last[0] >= op_seq) {
            arrived.push_back(who(member));
        } else if (last[0] >= 0) {
            missing.push_back(
                fmt::format("{}, last seen waiting in round {}", who(member), last[1]));
        } else {
            missing.push_back(who(member));
        }
    }
    return roundTimeoutText(describe(op), waited_s, options, missing, arrived);
}

Status RankWatch::wait(const Op& op, const std::function<Status(bool*)>& test) {
    Impl& d = *impl_;
    if (!d.broken.isOk()) return d.broken;
    const auto op_seq = static_cast<std::int64_t>(op.seq);
    bool done = false;
    STRATA_RETURN_IF_ERROR(test(&done));
    if (done) return Status::ok();

    const auto start = Clock::now();
    RoundWatchdog dog(d.options, start);
    bool noticed = false;
    auto& log = core::logger("comm");
    for (;;) {
        // Tests back to back first (a step of the operation often lands within microseconds),
        // then gives the CPU away: oversubscribed ranks need it to make their own progress.
        if (Clock::now() - start < kSpinFor) {
            for (int i = 0; i < kTestsPerYield && !done; ++i) STRATA_RETURN_IF_ERROR(test(&done));
            if (done) break;
            sched_yield();
        } else {
            std::this_thread::sleep_for(kSleep);
        }
        STRATA_RETURN_IF_ERROR(test(&done));
        if (done) break;
        if (noticed) STRATA_RETURN_IF_ERROR(d.drainNotices());
        switch (dog.poll(Clock::now())) {
            case RoundWatchdog::Event::kNone:
                break;
            case RoundWatchdog::Event::kNotice:
                noticed = true;
                STRATA_RETURN_IF_ERROR(d.sendNotices(op_seq, static_cast<std::int64_t>(op.round)));
                STRATA_RETURN_IF_ERROR(d.drainNotices());
                break;
            case RoundWatchdog::Event::kWarn: {
                std::string text = d.report(op, dog.elapsedSeconds(Clock::now()), op_seq) +
                                   "; still waiting (on_round_timeout warn)";
                log.warn("{}", text);
                if (d.options.on_warning) d.options.on_warning(text);
                break;
            }
            case RoundWatchdog::Event::kTimeout: {
                d.broken = STRATA_ERROR(StatusCode::kTimeout,
                                        "{}; stopping the job (on_round_timeout = abort; a "
                                        "higher round_timeout_s waits longer, 0 forever)",
                                        d.report(op, dog.elapsedSeconds(Clock::now()), op_seq));
                log.error("{}", d.broken.message());
                return d.broken;
            }
        }
    }
    if (dog.warnings() > 0) {
        log.warn("round watchdog: the {} completed after {:.1f} s", d.describe(op),
                 dog.elapsedSeconds(Clock::now()));
    }
    return Status::ok();
}

}  // namespace strata::comm::detail
