// Unit tests (no MPI): ThreadDecisionGroup, DecisionVector, ConsistencyChecker, describeDigests,
// summarizeSamples.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "comm_test_util.h"
#include "strata/comm/consistency.h"
#include "strata/comm/decision_group.h"
#include "strata/comm/mpi_decision_group.h"
#include "strata/testing/thread_decision_group.h"

namespace strata::comm {
namespace {

using strata::testing::ThreadDecisionGroup;

// Runs body(member) on one thread per member and joins them.
template <typename Body>
void runMembers(std::vector<std::unique_ptr<ThreadDecisionGroup>>& members, Body body) {
    std::vector<std::thread> threads;
    for (auto& m : members) threads.emplace_back([&body, g = m.get()] { body(*g); });
    for (auto& t : threads) t.join();
}

TEST(ThreadDecisionGroup, AgreeMinIsElementwiseMinOverManyRounds) {
    constexpr int kMembers = 4;
    constexpr std::uint64_t kRounds = 2000;
    constexpr std::uint64_t kSeed = 20261121;
    std::cout << "seed " << kSeed << "\n";
    auto members = ThreadDecisionGroup::createGroup(kMembers);
    std::vector<int> mismatches(kMembers, 0);
    runMembers(members, [&](ThreadDecisionGroup& g) {
        std::vector<std::int64_t> v(5);
        for (std::uint64_t k = 0; k < kRounds; ++k) {
            for (std::size_t i = 0; i < v.size(); ++i)
                v[i] = test::rankValue(kSeed, g.rank(), i, k);
            if (!g.agreeMin(v).isOk()) ++mismatches[g.rank()];
            for (std::size_t i = 0; i < v.size(); ++i) {
                std::int64_t expected = test::rankValue(kSeed, 0, i, k);
                for (int r = 1; r < kMembers; ++r) {
                    expected = std::min(expected, test::rankValue(kSeed, r, i, k));
                }
                if (v[i] != expected) ++mismatches[g.rank()];
            }
        }
    });
    for (int r = 0; r < kMembers; ++r) EXPECT_EQ(mismatches[r], 0) << "member " << r;
    EXPECT_EQ(members[0]->rounds(), kRounds);
}

TEST(ThreadDecisionGroup, LengthMismatchFailsEveryMember) {
    auto members = ThreadDecisionGroup::createGroup(3);
    std::vector<Status> results(3);
    runMembers(members, [&](ThreadDecisionGroup& g) {
        std::vector<std::int64_t> v(g.rank() == 2 ? 4 : 3, 7);
        results[g.rank()] = g.agreeMin(v);
    });
    for (const Status& s : results) {
        EXPECT_EQ(s.code(), StatusCode::kInternal);
        EXPECT_NE(s.message().find("between 3 and 4"), std::string::npos) << s.message();
    }
}

TEST(DecisionVector, MaxFlagsAndMinCountsInOneRound) {
    auto members = ThreadDecisionGroup::createGroup(3);
    std::vector<std::vector<std::int64_t>> got(3);
    runMembers(members, [&](ThreadDecisionGroup& g) {
        DecisionVector dv;
        std::size_t acks = dv.addMin(10 + g.rank());  // min 10
        std::size_t done = dv.addMax(g.rank() == 1);  // only rank 1 raises it: max 1
        std::size_t none = dv.addMax(0);              // nobody raises it: max 0
        std::size_t worst = dv.addMax(5 * g.rank());  // max 10
        EXPECT_TRUE(dv.agree(g).isOk());
        got[g.rank()] = {dv.get(acks), dv.get(done), dv.get(none), dv.get(worst)};
    });
    for (const auto& v : got) EXPECT_EQ(v, (std::vector<std::int64_t>{10, 1, 0, 10}));
}

TEST(LocalDecisionGroup, IsAGroupOfOne) {
    LocalDecisionGroup g;
    std::vector<std::int64_t> v{3, -4};
    ASSERT_TRUE(g.agreeMin(v).isOk());
    EXPECT_EQ(v, (std::vector<std::int64_t>{3, -4}));
    ConsistencyChecker checker(g);
    EXPECT_TRUE(checker.check(42, "local").isOk());
    EXPECT_EQ(checker.roundsChecked(), 1u);
    EXPECT_EQ(checker.divergences(), 0u);
}

TEST(DescribeDigests, GroupsRanksByValueMajorityFirst) {
    std::vector<std::uint64_t> d{0xa, 0xb, 0xa, 0xa};
    EXPECT_EQ(describeDigests(d),
              "0x000000000000000a on ranks [0, 2, 3]; 0x000000000000000b on rank [1]");
    std::vector<std::uint64_t> two{0x2, 0x1};
    EXPECT_EQ(describeDigests(two),
              "0x0000000000000002 on rank [0]; 0x0000000000000001 on rank [1]");
}

TEST(ConsistencyChecker, DetectsTheDivergentMemberAndNamesIt) {
    constexpr int kMembers = 4;
    auto members = ThreadDecisionGroup::createGroup(kMembers);
    std::vector<Status> first(kMembers);
    std::vector<Status> second(kMembers);
    std::vector<std::uint64_t> rounds(kMembers);
    std::vector<std::uint64_t> divergences(kMembers);
    runMembers(members, [&](ThreadDecisionGroup& g) {
        ConsistencyChecker checker(g);
        first[g.rank()] = checker.check(0x1234, "round 0");
        std::uint64_t digest = g.rank() == 2 ? 0xbad : 0x5678;
        second[g.rank()] = checker.check(digest, "after insert");
        rounds[g.rank()] = checker.roundsChecked();
        divergences[g.rank()] = checker.divergences();
    });
    for (int r = 0; r < kMembers; ++r) {
        EXPECT_TRUE(first[r].isOk()) << first[r].toString();
        EXPECT_EQ(second[r].code(), StatusCode::kInternal);
        EXPECT_NE(second[r].message().find("after insert (round 1)"), std::string::npos)
            << second[r].message();
        EXPECT_NE(second[r].message().find("0x0000000000005678 on ranks [0, 1, 3]"),
                  std::string::npos)
            << second[r].message();
        EXPECT_NE(second[r].message().find("0x0000000000000bad on rank [2]"), std::string::npos)
            << second[r].message();
        EXPECT_EQ(rounds[r], 2u);
        EXPECT_EQ(divergences[r], 1u);
    }
}

TEST(SyncStats, SummarizesSamples) {
    std::vector<float> samples;
    for (int i = 1; i <= 200; ++i) samples.push_back(static_cast<float>(i));
    SyncStats s = summarizeSamples(samples);
    EXPECT_EQ(s.rounds, 200u);
    EXPECT_DOUBLE_EQ(s.total_us, 20100.0);
    EXPECT_DOUBLE_EQ(s.mean_us, 100.5);
    EXPECT_DOUBLE_EQ(s.p99_us, 198.0);
    EXPECT_DOUBLE_EQ(s.max_us, 200.0);
    EXPECT_EQ(summarizeSamples({}).rounds, 0u);
}

}  // namespace
}  // namespace strata::comm
