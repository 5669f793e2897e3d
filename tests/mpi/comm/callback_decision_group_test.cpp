// Unit tests (no MPI): CallbackDecisionGroup over an engine's all-reduce, here the in-process
// ThreadDecisionGroup's agreeMin standing for torch.distributed's all_reduce(MIN).
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "strata/comm/callback_decision_group.h"
#include "strata/testing/thread_decision_group.h"

namespace strata::comm {
namespace {

using strata::testing::ThreadDecisionGroup;

// One CallbackDecisionGroup per member of a ThreadDecisionGroup, each on its own thread.
template <typename Body>
void runOverCallbacks(int size, Body body) {
    auto members = ThreadDecisionGroup::createGroup(size);
    std::vector<std::thread> threads;
    for (auto& m : members) {
        threads.emplace_back([&body, inner = m.get()] {
            CallbackDecisionGroup g(
                [inner](std::span<std::int64_t> v) { return inner->agreeMin(v); }, inner->rank(),
                inner->size());
            body(g);
        });
    }
    for (auto& t : threads) t.join();
}

TEST(CallbackDecisionGroup, AgreeMinIsTheCallbacksMinAndEveryRankGetsTheSameVector) {
    constexpr int kRanks = 3;
    std::vector<std::vector<std::int64_t>> got(kRanks);
    runOverCallbacks(kRanks, [&](CallbackDecisionGroup& g) {
        const std::int64_t r = g.rank();
        std::vector<std::int64_t> v = {10 + r, -r, 7 - 3 * r, r == 1 ? -100 : 50};
        ASSERT_TRUE(g.agreeMin(v).isOk());
        got[static_cast<std::size_t>(r)] = v;
    });
    const std::vector<std::int64_t> want = {10, -2, 1, -100};
    for (int r = 0; r < kRanks; ++r) EXPECT_EQ(got[static_cast<std::size_t>(r)], want) << r;
}

TEST(CallbackDecisionGroup, GatherDigestsGivesEveryRanksDigestWhateverItsBits) {
    constexpr int kRanks = 4;
    const std::vector<std::uint64_t> digests = {0, std::numeric_limits<std::uint64_t>::max(),
                                                0x8000000000000000ull, 0x7fffffffffffffffull};
    std::vector<std::vector<std::uint64_t>> got(kRanks);
    runOverCallbacks(kRanks, [&](CallbackDecisionGroup& g) {
        const auto r = static_cast<std::size_t>(g.rank());
        ASSERT_TRUE(g.gatherDigests(digests[r], &got[r]).isOk());
        ASSERT_TRUE(g.barrier().isOk());
    });
    for (int r = 0; r < kRanks; ++r) EXPECT_EQ(got[static_cast<std::size_t>(r)], digests) << r;
}

TEST(CallbackDecisionGroup, DifferentLengthsAreAnErrorNamingThem) {
    // The engine's all-reduce of a rank that passed 2 values would leave MIN(n, 2) and
    // MIN(-n, -2) in the header; the group says so instead of using a vector of another length.
    CallbackDecisionGroup g(
        [](std::span<std::int64_t> v) {
            v[0] = std::min<std::int64_t>(v[0], 2);
            v[1] = std::min<std::int64_t>(v[1], -2);
            return Status::ok();
        },
        0, 2);
    std::vector<std::int64_t> v = {5, 6, 7};
    const Status s = g.agreeMin(v);
    EXPECT_EQ(s.code(), StatusCode::kInternal);
    EXPECT_NE(s.message().find("different lengths"), std::string::npos) << s.message();
    EXPECT_EQ(v, (std::vector<std::int64_t>{5, 6, 7})) << "values untouched on failure";
}

TEST(CallbackDecisionGroup, ACallbackFailureFailsTheRoundWithItsStatus) {
    CallbackDecisionGroup g(
        [](std::span<std::int64_t>) {
            return Status(StatusCode::kUnavailable, "the process group is gone");
        },
        1, 2);
    std::vector<std::int64_t> v = {1};
    const Status s = g.agreeMin(v);
    EXPECT_EQ(s.code(), StatusCode::kUnavailable);
    EXPECT_NE(s.message().find("agree_min failed"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("the process group is gone"), std::string::npos) << s.message();
    EXPECT_EQ(g.barrier().code(), StatusCode::kUnavailable);
    EXPECT_EQ(g.rank(), 1);
    EXPECT_EQ(g.size(), 2);
}

}  // namespace
}  // namespace strata::comm
