// MPI tests: MpiDecisionGroup (agreeMin over TP x CP with the PP chain, digests, barrier) and
// ConsistencyChecker over it, for every grid shape valid at the world size.
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <thread>
#include <vector>

#include "comm_test_util.h"
#include "strata/comm/consistency.h"
#include "strata/comm/grid.h"
#include "strata/comm/mpi_decision_group.h"
#include "strata/core/hash.h"
#include "strata/testing/mpi_test_util.h"

namespace strata::comm {
namespace {

using strata::testing::allRanks;
using strata::testing::worldRank;
using strata::testing::worldSize;

struct GroupSetup {
    Grid grid;
    MpiDecisionGroup group;
};

GroupSetup makeSetup(GridShape shape) {
    auto grid = Grid::create(MpiComm::world(), shape);
    EXPECT_TRUE(grid.isOk()) << grid.status().toString();
    auto group = MpiDecisionGroup::create(*grid);
    EXPECT_TRUE(group.isOk()) << group.status().toString();
    return GroupSetup{std::move(grid).value(), std::move(group).value()};
}

// What agreeMin must return on `world_rank`: the MIN over the TP x CP ranks of pipeline stage 0 of
// its dp replica (later stages receive stage 0's vector).
std::vector<std::int64_t> expectedAgreed(GridShape s, int world_rank, std::size_t len,
                                         std::uint64_t seed, std::uint64_t round) {
    const int n = worldSize();
    GridCoords me = gridCoords(world_rank, n, s).value();
    std::vector<std::int64_t> out(len, std::numeric_limits<std::int64_t>::max());
    for (int r = 0; r < n; ++r) {
        GridCoords c = gridCoords(r, n, s).value();
        if (c.dp_rank != me.dp_rank || c.pp_rank != 0) continue;
        for (std::size_t i = 0; i < len; ++i) {
            out[i] = std::min(out[i], test::rankValue(seed, r, i, round));
        }
    }
    return out;
}

std::uint64_t digestOf(const std::vector<std::int64_t>& v) {
    std::uint64_t d = 0x5157a7a;
    for (std::int64_t x : v) d = core::foldDigest(d, static_cast<std::uint64_t>(x));
    return d;
}

TEST(MpiDecisionGroup, SizesFollowTheGrid) {
    for (GridShape s : test::validShapes(worldSize())) {
        SCOPED_TRACE(test::shapeName(s));
        GroupSetup st = makeSetup(s);
        EXPECT_EQ(st.group.size(), s.tp * s.cp);
        EXPECT_EQ(st.group.rank(), st.grid.decisionRank());
        EXPECT_EQ(st.group.ppSize(), s.pp);
        EXPECT_EQ(st.group.ppRank(), st.grid.ppRank());
        EXPECT_EQ(st.group.replicaSize(), s.tp * s.cp * s.pp);
        EXPECT_EQ(st.group.replicaRank(), st.grid.replicaRank());
    }
}

TEST(MpiDecisionGroup, AgreeMinIsElementwiseMinAndIdenticalAcrossTheReplica) {
    constexpr std::uint64_t kSeed = 7;
    for (GridShape s : test::validShapes(worldSize())) {
        SCOPED_TRACE(test::shapeName(s));
        GroupSetup st = makeSetup(s);
        for (std::size_t len : {0u, 1u, 16u, 1000u}) {
            std::vector<std::int64_t> v(len);
            for (std::size_t i = 0; i < len; ++i)
                v[i] = test::rankValue(kSeed, worldRank(), i, len);
            Status status = st.group.agreeMin(v);
            EXPECT_TRUE(status.isOk()) << status.toString();
            EXPECT_EQ(v, expectedAgreed(s, worldRank(), len, kSeed, len)) << "len " << len;
            // Every rank of the replica (all PP stages) holds the same vector.
            std::vector<std::uint64_t> digests;
            ASSERT_TRUE(st.group.gatherDigests(digestOf(v), &digests).isOk());
            ASSERT_EQ(static_cast<int>(digests.size()), s.tp * s.cp * s.pp);
            for (std::uint64_t d : digests) EXPECT_EQ(d, digests.front());
        }
        EXPECT_EQ(st.group.syncStats().rounds, 4u);
    }
}

TEST(MpiDecisionGroup, ThousandsOfRoundsWithRandomDelaysAgreeEverywhere) {
    constexpr std::uint64_t kRounds = 3000;
    const std::uint64_t seed = 0xC0FFEE;
    if (worldRank() == 0) std::cout << "seed " << seed << "\n";
    std::vector<GridShape> shapes{{worldSize(), 1, 1}};
    if (worldSize() % 2 == 0) shapes.push_back({worldSize() / 2, 1, 2});  // a PP chain
    for (GridShape s : shapes) {
        SCOPED_TRACE(test::shapeName(s));
        GroupSetup st = makeSetup(s);
        std::mt19937_64 delay_rng(seed + static_cast<std::uint64_t>(worldRank()));
        std::uint64_t wrong_rounds = 0;
        std::uint64_t failed_rounds = 0;
        std::vector<std::int64_t> v(16);
        for (std::uint64_t k = 0; k < kRounds; ++k) {
            // Fault injection: a random rank-local delay before entering the round (not sync).
            if (delay_rng() % 8 == 0) {
                std::this_thread::sleep_for(std::chrono::microseconds(delay_rng() % 200));
            }
            for (std::size_t i = 0; i < v.size(); ++i)
                v[i] = test::rankValue(seed, worldRank(), i, k);
            if (!st.group.agreeMin(v).isOk()) ++failed_rounds;
            if (v != expectedAgreed(s, worldRank(), v.size(), seed, k)) ++wrong_rounds;
        }
        EXPECT_EQ(failed_rounds, 0u);
        EXPECT_EQ(wrong_rounds, 0u);
        SyncStats stats = st.group.syncStats();
        EXPECT_EQ(stats.rounds, kRounds);
        EXPECT_GT(stats.mean_us, 0.0);
        EXPECT_LE(stats.mean_us, stats.max_us);
        EXPECT_LE(stats.p99_us, stats.max_us);
        EXPECT_EQ(st.group.syncSamplesUs().size(), kRounds);
        st.group.resetSyncStats();
        EXPECT_EQ(st.group.syncStats().rounds, 0u);
        EXPECT_TRUE(st.group.barrier().isOk());
    }
}

TEST(MpiDecisionGroup, DecisionVectorCarriesMinCountsAndMaxFlags) {
    for (GridShape s : test::validShapes(worldSize())) {
        SCOPED_TRACE(test::shapeName(s));
        GroupSetup st = makeSetup(s);
        const int d = st.grid.decisionRank();
        const int last = st.grid.decisionSize() - 1;
        DecisionVector dv;
        std::size_t acks = dv.addMin(100 - d);         // MIN: 100 - last
        std::size_t terminate = dv.addMax(d == last);  // MAX: raised by one rank only
        std::size_t quiet = dv.addMax(0);              // MAX: nobody
        std::size_t progress = dv.addMax(3 * d + 1);   // MAX: 3 * last + 1
        ASSERT_TRUE(dv.agree(st.group).isOk());
        EXPECT_EQ(dv.get(acks), 100 - last);
        EXPECT_EQ(dv.get(terminate), 1);
        EXPECT_EQ(dv.get(quiet), 0);
        EXPECT_EQ(dv.get(progress), 3 * last + 1);
    }
}

TEST(MpiDecisionGroup, GatherDigestsIsIndexedByReplicaRank) {
    for (GridShape s : test::validShapes(worldSize())) {
        SCOPED_TRACE(test::shapeName(s));
        GroupSetup st = makeSetup(s);
        std::vector<std::uint64_t> all;
        const auto mine = static_cast<std::uint64_t>(1000 + worldRank());
        ASSERT_TRUE(st.group.gatherDigests(mine, &all).isOk());
        ASSERT_EQ(static_cast<int>(all.size()), st.group.replicaSize());
        const int base = st.grid.dpRank() * st.group.replicaSize();
        for (int i = 0; i < st.group.replicaSize(); ++i) {
            EXPECT_EQ(all[static_cast<std::size_t>(i)],
                      static_cast<std::uint64_t>(1000 + base + i));
        }
    }
}

TEST(MpiDecisionGroup, APpStageWithAnotherLengthIsReported) {
    STRATA_SKIP_BELOW_RANKS(2);
    // tp = cp = 1, pp = 2: stage 1 forwards-and-checks what stage 0 sent (exact, via mprobe).
    if (worldSize() % 2 != 0) GTEST_SKIP() << "needs an even world";
    GroupSetup st = makeSetup({1, 1, 2});
    std::vector<std::int64_t> v(st.grid.ppRank() == 1 ? 5 : 4, 1);
    Status s = st.group.agreeMin(v);
    if (st.grid.ppRank() == 1) {
        EXPECT_EQ(s.code(), StatusCode::kInternal);
        EXPECT_NE(s.message().find("passed 5 values, the decision group passed between 4 and 4"),
                  std::string::npos)
            << s.message();
        EXPECT_EQ(v, std::vector<std::int64_t>(5, 1));  // untouched on failure
    } else {
        EXPECT_TRUE(s.isOk()) << s.toString();
    }
}

TEST(ConsistencyChecker, FindsTheOneRankWithAnotherDigest) {
    STRATA_SKIP_BELOW_RANKS(2);
    for (GridShape s : test::validShapes(worldSize())) {
        if (s.tp * s.cp * s.pp < 2) continue;
        SCOPED_TRACE(test::shapeName(s));
        GroupSetup st = makeSetup(s);
        ConsistencyChecker checker(st.group);
        EXPECT_TRUE(checker.check(0xfeed, "start").isOk());
        const int odd = st.group.replicaSize() - 1;  // the last replica rank diverges
        const std::uint64_t digest = st.grid.replicaRank() == odd ? 0xbad : 0xfeed;
        Status status = checker.check(digest, "after evict");
        EXPECT_EQ(status.code(), StatusCode::kInternal);
        EXPECT_NE(status.message().find("after evict (round 1)"), std::string::npos)
            << status.message();
        EXPECT_NE(status.message().find(fmt::format("0x0000000000000bad on rank [{}]", odd)),
                  std::string::npos)
            << status.message();
        EXPECT_EQ(checker.roundsChecked(), 2u);
        EXPECT_EQ(checker.divergences(), 1u);
    }
}

}  // namespace
}  // namespace strata::comm
