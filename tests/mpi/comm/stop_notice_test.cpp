// MPI tests of StopNotice: a notice posted by one rank reaches every other rank without a
// collective, the largest reason wins, and finish() leaves nothing in flight.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "strata/comm/mpi_comm.h"
#include "strata/comm/stop_notice.h"
#include "strata/testing/mpi_test_util.h"

namespace strata::comm {
namespace {

using strata::testing::allRanks;
using strata::testing::worldRank;
using strata::testing::worldSize;

// Polls until a notice arrives or 60 s have passed (a loaded machine); returns the reason heard.
int pollUntilHeard(StopNotice& notice) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    for (;;) {
        auto heard = notice.poll();
        if (!heard.isOk()) {
            ADD_FAILURE() << heard.status().toString();
            return -1;
        }
        if (*heard != 0 || std::chrono::steady_clock::now() > deadline) return *heard;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

TEST(StopNotice, NoNoticeMeansZeroAndFinishCompletes) {
    auto notice = StopNotice::create(MpiComm::world());
    ASSERT_TRUE(notice.isOk()) << notice.status().toString();
    auto heard = notice->poll();
    ASSERT_TRUE(heard.isOk()) << heard.status().toString();
    EXPECT_EQ(*heard, 0);
    EXPECT_TRUE(allRanks(notice->finish().isOk()));
}

TEST(StopNotice, OneRanksNoticeReachesEveryOtherRank) {
    auto notice = StopNotice::create(MpiComm::world());
    ASSERT_TRUE(notice.isOk()) << notice.status().toString();
    const int sender = worldSize() - 1;  // not rank 0, when there are several
    bool ok = true;
    if (worldRank() == sender) {
        ok = notice->notify(15).isOk() && notice->notify(2).isOk();  // the second changes nothing
    } else {
        ok = pollUntilHeard(*notice) == 15;
    }
    EXPECT_TRUE(allRanks(ok));
    EXPECT_TRUE(allRanks(notice->finish().isOk()));
}

TEST(StopNotice, LargestReasonWinsAndFinishCollectsUnpolledNotices) {
    auto notice = StopNotice::create(MpiComm::world());
    ASSERT_TRUE(notice.isOk()) << notice.status().toString();
    // Every rank notifies (reason 1 + rank); none polls before finish(), which must still collect
    // the size - 1 notices each rank is sent and complete the sends.
    EXPECT_TRUE(allRanks(notice->notify(1 + worldRank()).isOk()));
    EXPECT_TRUE(allRanks(notice->finish().isOk()));
    auto heard = notice->poll();
    ASSERT_TRUE(heard.isOk()) << heard.status().toString();
    // The largest reason of the other ranks (none on one rank).
    int largest_other = worldRank() == worldSize() - 1 ? worldSize() - 1 : worldSize();
    if (worldSize() == 1) largest_other = 0;
    EXPECT_TRUE(allRanks(*heard == largest_other)) << "rank " << worldRank() << " heard " << *heard;
}

TEST(StopNotice, ZeroIsNoReason) {
    auto notice = StopNotice::create(MpiComm::world());
    ASSERT_TRUE(notice.isOk()) << notice.status().toString();
    EXPECT_TRUE(allRanks(notice->notify(0).isOk()));
    EXPECT_TRUE(allRanks(notice->finish().isOk()));
    auto heard = notice->poll();
    ASSERT_TRUE(heard.isOk());
    EXPECT_TRUE(allRanks(*heard == 0));
}

}  // namespace
}  // namespace strata::comm
