// MPI tests: MpiContext, MpiComm and Grid at any world size.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <vector>

#include "comm_test_util.h"
#include "strata/comm/grid.h"
#include "strata/comm/mpi_comm.h"
#include "strata/comm/mpi_context.h"
#include "strata/comm/mpi_native.h"
#include "strata/testing/mpi_test_util.h"

namespace strata::comm {
namespace {

using strata::testing::allRanks;
using strata::testing::worldRank;
using strata::testing::worldSize;

TEST(MpiContext, SecondCreateBorrowsTheRunningMpi) {
    auto ctx = MpiContext::create();
    ASSERT_TRUE(ctx.isOk()) << ctx.status().toString();
    EXPECT_FALSE(ctx->ownsMpi());  // the test main initialised MPI
    EXPECT_GE(ctx->threadLevel(), MpiContext::ThreadLevel::kFunneled);
    EXPECT_EQ(ctx->worldRank(), worldRank());
    EXPECT_EQ(ctx->worldSize(), worldSize());
    EXPECT_TRUE(MpiContext::isActive());
}

TEST(MpiContext, MpiErrorsComeBackAsStatus) {
    // World returns errors instead of aborting: a send to a rank that does not exist.
    int value = 0;
    int rc = MPI_Send(&value, 1, MPI_INT, worldSize() + 5, 0, MPI_COMM_WORLD);
    EXPECT_NE(rc, MPI_SUCCESS);
}

TEST(MpiComm, WorldIsBorrowedAndSplitIsOwning) {
    MpiComm world = MpiComm::world();
    EXPECT_TRUE(world.valid());
    EXPECT_FALSE(world.owning());
    EXPECT_EQ(world.rank(), worldRank());
    EXPECT_EQ(world.size(), worldSize());
    EXPECT_EQ(nativeComm(world), MPI_COMM_WORLD);

    auto halves = world.split(world.rank() % 2, world.rank());
    ASSERT_TRUE(halves.isOk()) << halves.status().toString();
    EXPECT_TRUE(halves->owning());
    EXPECT_EQ(halves->size(), (world.size() + 1 - world.rank() % 2) / 2);
    EXPECT_EQ(halves->rank(), world.rank() / 2);

    MpiComm moved = std::move(halves).value();
    EXPECT_TRUE(moved.valid());
    MpiComm target;
    target = std::move(moved);
    EXPECT_FALSE(moved.valid());  // NOLINT(bugprone-use-after-move): the moved-from state
    EXPECT_EQ(nativeComm(moved), MPI_COMM_NULL);
    EXPECT_TRUE(target.barrier().isOk());
    target.reset();
    EXPECT_FALSE(target.valid());

    auto dup = world.dup();
    ASSERT_TRUE(dup.isOk());
    EXPECT_EQ(dup->size(), world.size());
    EXPECT_NE(nativeComm(*dup), MPI_COMM_WORLD);

    auto shared = world.splitShared(world.rank());
    ASSERT_TRUE(shared.isOk());
    EXPECT_GE(shared->size(), 1);
    EXPECT_LE(shared->size(), world.size());

    EXPECT_EQ(world.split(-1, 0).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(MpiComm().split(0, 0).status().code(), StatusCode::kFailedPrecondition);
}

// World ranks of every member of `comm`, in comm rank order.
std::vector<int> membersOf(const MpiComm& comm) {
    std::vector<int> members(static_cast<std::size_t>(comm.size()));
    int me = worldRank();
    MPI_Allgather(&me, 1, MPI_INT, members.data(), 1, MPI_INT, nativeComm(comm));
    return members;
}

// Expected members of a communicator: world ranks whose coordinates equal mine under `same`,
// ordered by the coordinate `key` (which is also their rank in the communicator).
template <typename Same, typename Key>
std::vector<int> expectedMembers(int n, GridShape s, const GridCoords& me, Same same, Key key) {
    std::vector<std::pair<int, int>> keyed;
    for (int r = 0; r < n; ++r) {
        GridCoords c = gridCoords(r, n, s).value();
        if (same(c, me)) keyed.push_back({key(c), r});
    }
    std::sort(keyed.begin(), keyed.end());
    std::vector<int> out;
    for (auto& [k, r] : keyed) out.push_back(r);
    return out;
}

TEST(Grid, EveryValidShapeHasTheRightCoordinatesAndCommunicators) {
    const int n = worldSize();
    MpiComm world = MpiComm::world();
    for (GridShape s : test::validShapes(n)) {
        SCOPED_TRACE(test::shapeName(s));
        auto grid = Grid::create(world, s, /*device_count=*/2);
        ASSERT_TRUE(allRanks(grid.isOk())) << grid.status().toString();
        const Grid& g = *grid;
        GridCoords me = gridCoords(worldRank(), n, s).value();
        EXPECT_EQ(g.worldRank(), worldRank());
        EXPECT_EQ(g.worldSize(), n);
        EXPECT_EQ(g.tpRank(), me.tp_rank);
        EXPECT_EQ(g.cpRank(), me.cp_rank);
        EXPECT_EQ(g.ppRank(), me.pp_rank);
        EXPECT_EQ(g.dpRank(), me.dp_rank);
        EXPECT_EQ(g.dpSize(), n / (s.tp * s.cp * s.pp));

        EXPECT_EQ(g.tpComm().size(), s.tp);
        EXPECT_EQ(g.tpComm().rank(), me.tp_rank);
        EXPECT_EQ(g.cpComm().size(), s.cp);
        EXPECT_EQ(g.cpComm().rank(), me.cp_rank);
        EXPECT_EQ(g.ppComm().size(), s.pp);
        EXPECT_EQ(g.ppComm().rank(), me.pp_rank);
        EXPECT_EQ(g.dpComm().size(), g.dpSize());
        EXPECT_EQ(g.dpComm().rank(), me.dp_rank);
        EXPECT_EQ(g.decisionComm().size(), s.tp * s.cp);
        EXPECT_EQ(g.decisionSize(), s.tp * s.cp);
        EXPECT_EQ(g.decisionComm().rank(), me.decision_rank);
        EXPECT_EQ(g.replicaComm().size(), s.tp * s.cp * s.pp);
        EXPECT_EQ(g.replicaComm().rank(), me.replica_rank);
        EXPECT_EQ(g.world().size(), n);

        auto same_except = [](auto... fields) {
            return [=](const GridCoords& a, const GridCoords& b) {
                return ((a.*fields == b.*fields) && ...);
            };
        };
        using C = GridCoords;
        EXPECT_EQ(membersOf(g.tpComm()),
                  expectedMembers(n, s, me, same_except(&C::cp_rank, &C::pp_rank, &C::dp_rank),
                                  [](const C& c) { return c.tp_rank; }));
        EXPECT_EQ(membersOf(g.cpComm()),
                  expectedMembers(n, s, me, same_except(&C::tp_rank, &C::pp_rank, &C::dp_rank),
                                  [](const C& c) { return c.cp_rank; }));
        EXPECT_EQ(membersOf(g.ppComm()),
                  expectedMembers(n, s, me, same_except(&C::tp_rank, &C::cp_rank, &C::dp_rank),
                                  [](const C& c) { return c.pp_rank; }));
        EXPECT_EQ(membersOf(g.dpComm()),
                  expectedMembers(n, s, me, same_except(&C::tp_rank, &C::cp_rank, &C::pp_rank),
                                  [](const C& c) { return c.dp_rank; }));
        EXPECT_EQ(membersOf(g.decisionComm()),
                  expectedMembers(n, s, me, same_except(&C::pp_rank, &C::dp_rank),
                                  [](const C& c) { return c.decision_rank; }));
        EXPECT_EQ(membersOf(g.replicaComm()),
                  expectedMembers(n, s, me, same_except(&C::dp_rank),
                                  [](const C& c) { return c.replica_rank; }));

        EXPECT_GE(g.localRank(), 0);
        EXPECT_LT(g.localRank(), g.localSize());
        EXPECT_EQ(g.device(), g.localRank() % 2);
        EXPECT_FALSE(g.physicalDevice().empty());
    }
}

TEST(Grid, NoDevicesMeansNoBinding) {
    auto grid = Grid::create(MpiComm::world(), {});
    ASSERT_TRUE(allRanks(grid.isOk()));
    EXPECT_EQ(grid->device(), -1);
    EXPECT_EQ(grid->physicalDevice(), "");
    EXPECT_NE(grid->describe().find("world "), std::string::npos);
}

TEST(Grid, InvalidShapesAreRejectedOnEveryRank) {
    const int n = worldSize();
    MpiComm world = MpiComm::world();
    for (GridShape s : {GridShape{n + 1, 1, 1}, GridShape{1, 2 * n, 1}, GridShape{1, 1, n + 1},
                        GridShape{0, 1, 1}, GridShape{1, 1, -1}}) {
        SCOPED_TRACE(test::shapeName(s));
        auto grid = Grid::create(world, s);
        EXPECT_EQ(grid.status().code(), StatusCode::kInvalidArgument);
        if (s.tp > 0 && s.pp > 0) {
            EXPECT_NE(grid.status().message().find(fmt::format("world size {}", n)),
                      std::string::npos)
                << grid.status().message();
        }
        EXPECT_TRUE(allRanks(!grid.isOk()));  // every rank rejected it (and nobody hung)
    }
    EXPECT_EQ(Grid::create(world, {}, -1).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace strata::comm
