#include "strata/controller/prefix_tree.h"

#include <gtest/gtest.h>

namespace strata::controller {
namespace {

std::vector<PageKey> chain(std::uint64_t seed, std::size_t n) {
    std::vector<PageKey> k;
    for (std::size_t i = 0; i < n; ++i) k.push_back(PageKey{seed, i + 1});
    return k;
}

std::vector<std::uint32_t> pages(std::uint32_t first, std::size_t n) {
    std::vector<std::uint32_t> p;
    for (std::size_t i = 0; i < n; ++i) p.push_back(first + static_cast<std::uint32_t>(i));
    return p;
}

TEST(PrefixTree, MatchSplitsInsideANodeAndKeepsTheOriginalAsLowerPart) {
    PrefixTree t;
    auto k = chain(7, 6);
    Node* a = t.addChild(t.root(), k, pages(10, 6));
    auto m = t.match(std::span(k).first(4));
    EXPECT_EQ(m.device_pages, 4u);
    EXPECT_EQ(m.host_pages, 0u);
    EXPECT_EQ(m.device_page_list, pages(10, 4));
    ASSERT_NE(m.device_last, a);
    EXPECT_EQ(m.device_last->numPages(), 4u);
    EXPECT_EQ(a->numPages(), 2u);  // the original object holds the lower fragment
    EXPECT_EQ(a->parent, m.device_last);
    EXPECT_EQ(a->device_pages, pages(14, 2));
    EXPECT_EQ(t.nodeCount(), 2u);
    EXPECT_TRUE(t.checkInvariants().isOk()) << t.checkInvariants().toString();
}

TEST(PrefixTree, PathLocksSurviveASplit) {
    PrefixTree t;
    auto k = chain(3, 5);
    Node* a = t.addChild(t.root(), k, pages(0, 5));
    t.lockDevice(a, +1);
    Node* upper = t.split(a, 2);
    EXPECT_EQ(upper->device_locks, 1);
    EXPECT_EQ(a->device_locks, 1);
    EXPECT_EQ(t.nextDeviceVictim(), nullptr);
    t.lockDevice(a, -1);  // unlocking the lower fragment releases both
    EXPECT_EQ(upper->device_locks, 0);
    EXPECT_EQ(t.nextDeviceVictim(), a);  // only the leaf is evictable
    EXPECT_TRUE(t.checkInvariants().isOk()) << t.checkInvariants().toString();
}

TEST(PrefixTree, LruVictimOrderFollowsAccessClock) {
    PrefixTree t;
    Node* a = t.addChild(t.root(), chain(1, 2), pages(0, 2));
    Node* b = t.addChild(t.root(), chain(2, 2), pages(2, 2));
    Node* c = t.addChild(t.root(), chain(3, 2), pages(4, 2));
    EXPECT_EQ(t.nextDeviceVictim(), a);
    t.touch(a);
    EXPECT_EQ(t.nextDeviceVictim(), b);
    EXPECT_EQ(t.nextDeviceVictim({b->id}), c);
    EXPECT_TRUE(t.checkInvariants().isOk());
}

TEST(PrefixTree, LfuPrefersFewerHits) {
    PrefixTree t(EvictionPolicy::kLfu);
    Node* a = t.addChild(t.root(), chain(1, 1), pages(0, 1));
    Node* b = t.addChild(t.root(), chain(2, 1), pages(1, 1));
    t.addHit(a);
    t.addHit(a);
    t.addHit(b);
    t.touch(b);  // more recent, but fewer hits
    EXPECT_EQ(t.nextDeviceVictim(), b);
}

TEST(PrefixTree, PriorityEvictsTheLowestPriorityFirstAndLruWithinAPriority) {
    PrefixTree t(EvictionPolicy::kPriority);
    Node* a = t.addChild(t.root(), chain(1, 1), pages(0, 1));
    Node* b = t.addChild(t.root(), chain(2, 1), pages(1, 1));
    Node* c = t.addChild(t.root(), chain(3, 1), pages(2, 1));
    t.raisePriority(a, 2);
    t.raisePriority(c, 1);
    // b (priority 0) goes first although a is older; then c (1), then a (2).
    EXPECT_EQ(t.nextDeviceVictim(), b);
    EXPECT_EQ(t.nextDeviceVictim({b->id}), c);
    Node* d = t.addChild(t.root(), chain(4, 1), pages(3, 1));  // priority 0, newest
    EXPECT_EQ(t.nextDeviceVictim(), b);                        // LRU within priority 0
    t.touch(b);
    EXPECT_EQ(t.nextDeviceVictim(), d);
    // Raising never lowers: a stays at 2.
    t.raisePriority(a, 1);
    EXPECT_EQ(a->priority, 2u);
    EXPECT_TRUE(t.checkInvariants().isOk()) << t.checkInvariants().toString();
}

TEST(PrefixTree, PriorityRisesAlongThePathAndSurvivesASplit) {
    PrefixTree t(EvictionPolicy::kPriority);
    auto k = chain(5, 4);
    Node* a = t.addChild(t.root(), std::vector(k.begin(), k.begin() + 2), pages(0, 2));
    Node* b = t.addChild(a, std::vector(k.begin() + 2, k.end()), pages(2, 2));
    t.raisePriority(b, 3);
    EXPECT_EQ(a->priority, 3u);
    Node* upper = t.split(b, 1);
    EXPECT_EQ(upper->priority, 3u);
    EXPECT_EQ(b->priority, 3u);
    Node* other = t.addChild(t.root(), chain(6, 1), pages(9, 1));
    EXPECT_EQ(t.nextDeviceVictim(), other);  // the priority-3 leaf b outlives the newer other
    EXPECT_TRUE(t.checkInvariants().isOk()) << t.checkInvariants().toString();
}

TEST(PrefixTree, OptimalEvictsTheFarthestNextUse) {
    PrefixTree t(EvictionPolicy::kOptimal);
    Node* a = t.addChild(t.root(), chain(1, 1), pages(0, 1));
    Node* b = t.addChild(t.root(), chain(2, 1), pages(1, 1));
    Node* c = t.addChild(t.root(), chain(3, 1), pages(2, 1));
    t.setNextUse(a, 10);
    t.setNextUse(b, 30);
    t.setNextUse(c, 20);
    EXPECT_EQ(t.nextDeviceVictim(), b);
    t.setNextUse(b, 5);
    EXPECT_EQ(t.nextDeviceVictim(), c);
    EXPECT_TRUE(t.checkInvariants().isOk()) << t.checkInvariants().toString();
}

TEST(PrefixTree, HostOnlyLeafIsHostEvictableAndParentIsNotADeviceLeafWhileChildOnDevice) {
    PrefixTree t;
    auto k = chain(9, 4);
    Node* a = t.addChild(t.root(), std::vector(k.begin(), k.begin() + 2), pages(0, 2));
    Node* b = t.addChild(a, std::vector(k.begin() + 2, k.end()), pages(2, 2));
    EXPECT_EQ(t.nextDeviceVictim(), b);  // a has a child on device
    b->host_pages = pages(5, 2);
    b->device_pages.clear();
    t.refresh(b);
    t.refresh(a);
    EXPECT_EQ(t.nextHostVictim(), b);
    EXPECT_EQ(t.nextDeviceVictim(), a);
    auto m = t.match(k);
    EXPECT_EQ(m.device_pages, 2u);
    EXPECT_EQ(m.host_pages, 2u);
    ASSERT_EQ(m.host_chain.size(), 1u);
    EXPECT_EQ(m.host_chain[0], b);
    EXPECT_TRUE(t.checkInvariants().isOk()) << t.checkInvariants().toString();
}

TEST(PrefixTree, InvariantCheckCatchesStaleEvictableSet) {
    PrefixTree t;
    Node* a = t.addChild(t.root(), chain(1, 1), pages(0, 1));
    a->device_locks = 1;  // changed without refresh()
    Status s = t.checkInvariants();
    EXPECT_EQ(s.code(), StatusCode::kInternal);
}

TEST(PrefixTree, DigestChangesWithStateAndMatchesForEqualHistories) {
    PrefixTree t1, t2;
    t1.addChild(t1.root(), chain(1, 3), pages(0, 3));
    t2.addChild(t2.root(), chain(1, 3), pages(0, 3));
    EXPECT_EQ(t1.digest(), t2.digest());
    t2.match(chain(1, 2));  // splits and touches
    EXPECT_NE(t1.digest(), t2.digest());
}

}  // namespace
}  // namespace strata::controller
