// Unit tests (no MPI) of the pure grid math and CUDA_VISIBLE_DEVICES parsing.
#include <gtest/gtest.h>

#include <set>
#include <tuple>

#include "comm_test_util.h"
#include "strata/comm/grid.h"

namespace strata::comm {
namespace {

TEST(GridMath, TpIsFastestThenCpThenPpThenDp) {
    // 16 ranks as dp2 x pp2 x cp2 x tp2.
    const GridShape shape{2, 2, 2};
    auto c = gridCoords(13, 16, shape);  // 13 = 1*8 + 1*4 + 0*2 + 1
    ASSERT_TRUE(c.isOk()) << c.status().toString();
    EXPECT_EQ(c->tp_rank, 1);
    EXPECT_EQ(c->cp_rank, 0);
    EXPECT_EQ(c->pp_rank, 1);
    EXPECT_EQ(c->dp_rank, 1);
    EXPECT_EQ(c->dp_size, 2);
    EXPECT_EQ(c->decision_rank, 1);
    EXPECT_EQ(c->replica_rank, 5);
}

TEST(GridMath, EveryShapeIsABijection) {
    for (int n : {1, 2, 3, 4, 6, 8, 12, 16, 24}) {
        for (GridShape s : test::validShapes(n)) {
            std::set<std::tuple<int, int, int, int>> seen;
            for (int r = 0; r < n; ++r) {
                auto c = gridCoords(r, n, s);
                ASSERT_TRUE(c.isOk()) << c.status().toString();
                EXPECT_LT(c->tp_rank, s.tp);
                EXPECT_LT(c->cp_rank, s.cp);
                EXPECT_LT(c->pp_rank, s.pp);
                EXPECT_LT(c->dp_rank, c->dp_size);
                EXPECT_EQ(c->dp_size * s.tp * s.cp * s.pp, n);
                // Rebuild the rank from the coordinates: DP x PP x CP x TP, TP fastest.
                EXPECT_EQ(
                    ((c->dp_rank * s.pp + c->pp_rank) * s.cp + c->cp_rank) * s.tp + c->tp_rank, r)
                    << test::shapeName(s) << " n=" << n;
                EXPECT_EQ(c->decision_rank, c->cp_rank * s.tp + c->tp_rank);
                EXPECT_EQ(c->replica_rank, (c->pp_rank * s.cp + c->cp_rank) * s.tp + c->tp_rank);
                seen.insert({c->tp_rank, c->cp_rank, c->pp_rank, c->dp_rank});
            }
            EXPECT_EQ(static_cast<int>(seen.size()), n) << test::shapeName(s);
        }
    }
}

TEST(GridMath, InvalidShapesNameTheSizes) {
    Status s = validateGridShape(6, {4, 1, 1});
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("world size 6"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("4*1*1 = 4"), std::string::npos) << s.message();
    EXPECT_EQ(validateGridShape(4, {0, 1, 1}).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(validateGridShape(4, {1, -2, 1}).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(validateGridShape(0, {1, 1, 1}).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(gridCoords(4, 4, {2, 2, 1}).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(gridCoords(-1, 4, {2, 2, 1}).status().code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(validateGridShape(12, {2, 3, 2}).isOk());
}

TEST(GridMath, PhysicalDeviceFromCudaVisibleDevices) {
    EXPECT_EQ(physicalDeviceId(1, nullptr), "1");
    EXPECT_EQ(physicalDeviceId(1, ""), "1");
    EXPECT_EQ(physicalDeviceId(0, "4,5,6"), "4");
    EXPECT_EQ(physicalDeviceId(2, "4,5,6"), "6");
    EXPECT_EQ(physicalDeviceId(1, "GPU-aa11, GPU-bb22"), "GPU-bb22");
    EXPECT_EQ(physicalDeviceId(0, "MIG-3f2e"), "MIG-3f2e");
    EXPECT_EQ(physicalDeviceId(3, "4,5"), "3");  // fewer entries than devices: the ordinal
    EXPECT_EQ(physicalDeviceId(-1, "4,5"), "");
}

}  // namespace
}  // namespace strata::comm
