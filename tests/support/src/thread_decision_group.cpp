#include "strata/testing/thread_decision_group.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <string>

#include "strata/core/log.h"

namespace strata::testing {
namespace {

// "digest gather after round 3" (as MpiDecisionGroup words it).
std::string opName(std::string_view kind, std::uint64_t rounds) {
    if (rounds == 0) return fmt::format("{} before the first round", kind);
    return fmt::format("{} after round {}", kind, rounds);
}

}  // namespace

// Each collective is one generation: every member publishes its input in its own slot and marks
// itself arrived; the last to arrive computes every member's output into that member's own output
// slot (read only by its owner, and written again only once the owner arrives at the next
// collective), then starts the next generation and wakes the others.
struct ThreadDecisionGroup::State {
    State(int n, comm::RoundWatchdogOptions o)
        : size(n),
          options(std::move(o)),
          arrived(static_cast<std::size_t>(n), false),
          vectors(static_cast<std::size_t>(n)),
          digests(static_cast<std::size_t>(n)),
          out_vectors(static_cast<std::size_t>(n)),
          out_status(static_cast<std::size_t>(n)),
          out_digests(static_cast<std::size_t>(n)) {}
    int size;
    comm::RoundWatchdogOptions options;
    std::mutex mu;
    std::condition_variable cv;
    std::uint64_t generation = 0;
    int count = 0;
    std::vector<bool> arrived;
    Status broken;  // a timeout (kAbort) made the group unusable
    std::vector<std::vector<std::int64_t>> vectors;
    std::vector<std::uint64_t> digests;
    std::vector<std::vector<std::int64_t>> out_vectors;
    std::vector<Status> out_status;
    std::vector<std::vector<std::uint64_t>> out_digests;

    // Arrives (the caller holds `lock` and has published its input); the last member runs
    // `complete` and starts the next generation. Waits under the round watchdog.
    template <typename Complete>
    Status rendezvous(std::unique_lock<std::mutex>& lock, int rank, std::string_view what,
                      Complete complete);
};

template <typename Complete>
Status ThreadDecisionGroup::State::rendezvous(std::unique_lock<std::mutex>& lock, int rank,
                                              std::string_view what, Complete complete) {
    if (!broken.isOk()) return broken;
    arrived[static_cast<std::size_t>(rank)] = true;
    if (++count == size) {
        complete();
        std::fill(arrived.begin(), arrived.end(), false);
        count = 0;
        ++generation;
        cv.notify_all();
        return Status::ok();
    }
    using Clock = comm::RoundWatchdog::Clock;
    const std::uint64_t mine = generation;
    comm::RoundWatchdog dog(options, Clock::now());
    // Wakes at least this often to run the watchdog (the completion itself notifies).
    const auto tick = std::chrono::milliseconds(5);
    while (generation == mine) {
        cv.wait_for(lock, tick);
        if (generation != mine) break;
        if (!broken.isOk()) return broken;  // another member timed out
        const auto event = dog.poll(Clock::now());
        if (event != comm::RoundWatchdog::Event::kWarn &&
            event != comm::RoundWatchdog::Event::kTimeout) {
            continue;
        }
        std::vector<std::string> missing;
        std::vector<std::string> present;
        for (int m = 0; m < size; ++m) {
            if (m == rank) continue;
            (arrived[static_cast<std::size_t>(m)] ? present : missing)
                .push_back(fmt::format("member {}", m));
        }
        std::string text = comm::roundTimeoutText(what, dog.elapsedSeconds(Clock::now()), options,
                                                  missing, present);
        if (event == comm::RoundWatchdog::Event::kTimeout) {
            broken = Status(StatusCode::kTimeout, text + "; stopping");
            core::logger("comm").error("{}", broken.message());
            cv.notify_all();  // the other waiters fail too
            return broken;
        }
        core::logger("comm").warn("{}; still waiting", text);
        if (options.on_warning) {
            // The callback may wake a member that then needs the lock to arrive.
            lock.unlock();
            options.on_warning(text);
            lock.lock();
        }
    }
    return Status::ok();
}

std::vector<std::unique_ptr<ThreadDecisionGroup>> ThreadDecisionGroup::createGroup(
    int size, comm::RoundWatchdogOptions watchdog) {
    auto state = std::make_shared<State>(std::max(size, 1), std::move(watchdog));
    std::vector<std::unique_ptr<ThreadDecisionGroup>> members;
    for (int r = 0; r < state->size; ++r) {
        members.push_back(std::make_unique<ThreadDecisionGroup>(state, r));
    }
    return members;
}

int ThreadDecisionGroup::size() const noexcept { return state_->size; }

Status ThreadDecisionGroup::agreeMin(std::span<std::int64_t> values) {
    State& s = *state_;
    std::unique_lock lock(s.mu);
    const auto me = static_cast<std::size_t>(rank_);
    s.vectors[me].assign(values.begin(), values.end());
    ++rounds_;
    STRATA_RETURN_IF_ERROR(
        s.rendezvous(lock, rank_, fmt::format("agreement of round {}", rounds_), [&s] {
            std::size_t min_len = std::numeric_limits<std::size_t>::max();
            std::size_t max_len = 0;
            for (const auto& v : s.vectors) {
                min_len = std::min(min_len, v.size());
                max_len = std::max(max_len, v.size());
            }
            for (std::size_t m = 0; m < s.vectors.size(); ++m) {
                const std::size_t len = s.vectors[m].size();
                if (min_len != len || max_len != len) {
                    s.out_status[m] = Status(
                        StatusCode::kInternal,
                        fmt::format("agreeMin length mismatch: member {} passed {} values, the "
                                    "group passed between {} and {}",
                                    m, len, min_len, max_len));
                    continue;
                }
                s.out_status[m] = Status::ok();
                s.out_vectors[m].assign(len, std::numeric_limits<std::int64_t>::max());
                for (const auto& v : s.vectors) {
                    for (std::size_t i = 0; i < len; ++i)
                        s.out_vectors[m][i] = std::min(s.out_vectors[m][i], v[i]);
                }
            }
        }));
    if (!s.out_status[me].isOk()) return s.out_status[me];
    std::copy(s.out_vectors[me].begin(), s.out_vectors[me].end(), values.begin());
    return Status::ok();
}

Status ThreadDecisionGroup::gatherDigests(std::uint64_t mine, std::vector<std::uint64_t>* all) {
    State& s = *state_;
    std::unique_lock lock(s.mu);
    const auto me = static_cast<std::size_t>(rank_);
    s.digests[me] = mine;
    STRATA_RETURN_IF_ERROR(s.rendezvous(lock, rank_, opName("digest gather", rounds_), [&s] {
        for (auto& out : s.out_digests) out = s.digests;
    }));
    *all = s.out_digests[me];
    return Status::ok();
}

Status ThreadDecisionGroup::barrier() {
    std::unique_lock lock(state_->mu);
    return state_->rendezvous(lock, rank_, opName("barrier", rounds_), [] {});
}

}  // namespace strata::testing
