// Unit tests (no MPI) of the round watchdog: the pure deadline logic (RoundWatchdog on a synthetic
// clock), its options and message, and ThreadDecisionGroup under it: a member that never arrives
// is named and the collective fails (abort), or is warned about until it arrives (warn).
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "strata/comm/round_watchdog.h"
#include "strata/testing/thread_decision_group.h"

namespace strata::comm {
namespace {

using Clock = RoundWatchdog::Clock;
using Event = RoundWatchdog::Event;
using std::chrono::milliseconds;
using strata::testing::ThreadDecisionGroup;

RoundWatchdogOptions options(double timeout_s, RoundTimeoutAction action,
                             double warn_interval_s = 5.0) {
    RoundWatchdogOptions o;
    o.timeout_s = timeout_s;
    o.on_timeout = action;
    o.warn_interval_s = warn_interval_s;
    return o;
}

TEST(RoundWatchdog, AbortNoticesOnceThenTimesOutAtTheDeadline) {
    const auto t0 = Clock::time_point{} + std::chrono::hours(1);
    RoundWatchdog dog(options(10, RoundTimeoutAction::kAbort), t0);
    EXPECT_EQ(dog.poll(t0), Event::kNone);
    EXPECT_EQ(dog.poll(t0 + milliseconds(999)), Event::kNone);
    EXPECT_EQ(dog.poll(t0 + milliseconds(1000)), Event::kNotice);  // min(1 s, 10 s / 4)
    EXPECT_EQ(dog.poll(t0 + milliseconds(1001)), Event::kNone);
    EXPECT_EQ(dog.poll(t0 + milliseconds(9999)), Event::kNone);
    EXPECT_EQ(dog.poll(t0 + milliseconds(10000)), Event::kTimeout);
    EXPECT_EQ(dog.poll(t0 + milliseconds(20000)), Event::kTimeout);
    EXPECT_EQ(dog.warnings(), 0u);
    EXPECT_DOUBLE_EQ(dog.elapsedSeconds(t0 + milliseconds(2500)), 2.5);
}

TEST(RoundWatchdog, NoticeComesBeforeATimeoutThatIsAlreadyDue) {
    const auto t0 = Clock::time_point{};
    RoundWatchdog dog(options(0.2, RoundTimeoutAction::kAbort), t0);
    EXPECT_EQ(dog.poll(t0 + milliseconds(49)), Event::kNone);
    // A waiter that was itself descheduled past the deadline still tells its peers first.
    EXPECT_EQ(dog.poll(t0 + milliseconds(500)), Event::kNotice);
    EXPECT_EQ(dog.poll(t0 + milliseconds(500)), Event::kTimeout);
}

TEST(RoundWatchdog, WarnModeWarnsAtTheDeadlineThenEveryIntervalAndNeverTimesOut) {
    const auto t0 = Clock::time_point{};
    RoundWatchdog dog(options(4, RoundTimeoutAction::kWarn, 2), t0);
    EXPECT_EQ(dog.poll(t0 + milliseconds(1000)), Event::kNotice);
    EXPECT_EQ(dog.poll(t0 + milliseconds(3999)), Event::kNone);
    EXPECT_EQ(dog.poll(t0 + milliseconds(4000)), Event::kWarn);
    EXPECT_EQ(dog.poll(t0 + milliseconds(5999)), Event::kNone);
    EXPECT_EQ(dog.poll(t0 + milliseconds(6000)), Event::kWarn);
    // After a long stall of the waiter itself: one warning, then the interval counts from it.
    EXPECT_EQ(dog.poll(t0 + milliseconds(60000)), Event::kWarn);
    EXPECT_EQ(dog.poll(t0 + milliseconds(61000)), Event::kNone);
    EXPECT_EQ(dog.poll(t0 + milliseconds(62000)), Event::kWarn);
    EXPECT_EQ(dog.warnings(), 4u);
}

TEST(RoundWatchdog, ZeroTimeoutWaitsForever) {
    const auto t0 = Clock::time_point{};
    RoundWatchdog dog(options(0, RoundTimeoutAction::kAbort), t0);
    EXPECT_EQ(dog.poll(t0 + std::chrono::hours(24)), Event::kNone);
}

TEST(RoundWatchdog, OptionsParseAndValidate) {
    EXPECT_EQ(*parseRoundTimeoutAction("abort"), RoundTimeoutAction::kAbort);
    EXPECT_EQ(*parseRoundTimeoutAction("warn"), RoundTimeoutAction::kWarn);
    auto bad = parseRoundTimeoutAction("ignore");
    ASSERT_FALSE(bad.isOk());
    EXPECT_NE(bad.status().message().find("'ignore' must be one of abort, warn"),
              std::string::npos);
    EXPECT_EQ(roundTimeoutActionName(RoundTimeoutAction::kWarn), "warn");
    EXPECT_TRUE(validateRoundWatchdogOptions(options(0, RoundTimeoutAction::kAbort)).isOk());
    EXPECT_FALSE(validateRoundWatchdogOptions(options(-1, RoundTimeoutAction::kAbort)).isOk());
    EXPECT_FALSE(validateRoundWatchdogOptions(options(1, RoundTimeoutAction::kWarn, 0)).isOk());
    EXPECT_DOUBLE_EQ(roundNoticeAfterSeconds(options(120, RoundTimeoutAction::kAbort)), 1.0);
    EXPECT_DOUBLE_EQ(roundNoticeAfterSeconds(options(2, RoundTimeoutAction::kAbort)), 0.5);
}

TEST(RoundWatchdog, TextNamesTheMissingAndTheArrivedRanks) {
    const std::vector<std::string> missing = {"world rank 2 (tp 0, cp 1, pp 0, dp 0) on host a"};
    const std::vector<std::string> arrived = {"world rank 1", "world rank 3"};
    const std::string text = roundTimeoutText(
        "agreement of round 7", 2.04, options(2, RoundTimeoutAction::kAbort), missing, arrived);
    EXPECT_EQ(text,
              "round watchdog: the agreement of round 7 has waited 2.0 s (limit 2 s) for a rank "
              "that did not arrive: world rank 2 (tp 0, cp 1, pp 0, dp 0) on host a; arrived: "
              "world rank 1; world rank 3");
    EXPECT_NE(roundTimeoutText("barrier", 1, options(1, RoundTimeoutAction::kAbort), {}, arrived)
                  .find("every rank it waits for reports waiting too"),
              std::string::npos);
}

// Members 0 and 1 enter round 1; member 2 never does: both fail with kTimeout naming member 2
// (and not each other), and the group stays unusable, also for member 2.
TEST(ThreadDecisionGroupWatchdog, AbortNamesTheMemberThatNeverArrived) {
    auto members = ThreadDecisionGroup::createGroup(3, options(0.2, RoundTimeoutAction::kAbort));
    std::vector<Status> got(2);
    std::vector<std::thread> threads;
    for (int m = 0; m < 2; ++m) {
        threads.emplace_back([&, m] {
            std::vector<std::int64_t> v = {m};
            got[static_cast<std::size_t>(m)] = members[static_cast<std::size_t>(m)]->agreeMin(v);
        });
    }
    for (auto& t : threads) t.join();
    for (const Status& s : got) {
        EXPECT_EQ(s.code(), StatusCode::kTimeout) << s.toString();
        EXPECT_NE(s.message().find("agreement of round 1"), std::string::npos) << s.message();
        EXPECT_NE(s.message().find("did not arrive: member 2"), std::string::npos) << s.message();
    }
    std::vector<std::int64_t> late = {2};
    EXPECT_EQ(members[2]->agreeMin(late).code(), StatusCode::kTimeout);
}

// Warn mode: members 0 and 1 wait in a digest gather while member 2 is held back until they have
// warned about it twice; then it arrives and every member gets every digest.
TEST(ThreadDecisionGroupWatchdog, WarnNamesTheLateMemberUntilItArrives) {
    std::mutex mu;
    std::condition_variable cv;
    int warnings_naming_2 = 0;
    auto o = options(0.05, RoundTimeoutAction::kWarn, 0.05);
    o.on_warning = [&](const std::string& text) {
        std::lock_guard lock(mu);
        if (text.find("did not arrive: member 2") != std::string::npos) ++warnings_naming_2;
        cv.notify_all();
    };
    auto members = ThreadDecisionGroup::createGroup(3, o);
    std::vector<std::vector<std::uint64_t>> all(3);
    std::vector<Status> got(3);
    std::vector<std::thread> threads;
    for (int m = 0; m < 3; ++m) {
        threads.emplace_back([&, m] {
            const auto i = static_cast<std::size_t>(m);
            if (m == 2) {
                std::unique_lock lock(mu);
                cv.wait(lock, [&] { return warnings_naming_2 >= 2; });
            }
            got[i] = members[i]->gatherDigests(100 + i, &all[i]);
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_GE(warnings_naming_2, 2);
    for (std::size_t m = 0; m < 3; ++m) {
        ASSERT_TRUE(got[m].isOk()) << got[m].toString();
        EXPECT_EQ(all[m], (std::vector<std::uint64_t>{100, 101, 102}));
    }
}

}  // namespace
}  // namespace strata::comm
