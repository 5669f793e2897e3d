#include "strata/pools/slot_allocator.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace strata::pools {
namespace {

using Pages = std::vector<std::uint32_t>;

SlotAllocator make(std::size_t pages) {
    auto a = SlotAllocator::create(pages, 64);
    EXPECT_TRUE(a.isOk());
    return std::move(a).value();
}

TEST(SlotAllocator, RejectsZeroPageSize) {
    auto a = SlotAllocator::create(4, 0);
    ASSERT_FALSE(a.isOk());
    EXPECT_EQ(a.status().code(), StatusCode::kInvalidArgument);
}

TEST(SlotAllocator, CapacityAndAscendingFreshOrder) {
    SlotAllocator a = make(6);
    EXPECT_EQ(a.numPages(), 6u);
    EXPECT_EQ(a.freePages(), 6u);
    EXPECT_EQ(a.usedPages(), 0u);
    EXPECT_EQ(a.pageSize(), 64u);
    EXPECT_EQ(*a.allocate(2), (Pages{0, 1}));
    EXPECT_EQ(*a.allocate(3), (Pages{2, 3, 4}));
    EXPECT_EQ(a.usedPages(), 5u);
    EXPECT_TRUE(a.isAllocated(4));
    EXPECT_FALSE(a.isAllocated(5));
    EXPECT_FALSE(a.isAllocated(600));
    EXPECT_TRUE(a.allocate(0)->empty());
}

TEST(SlotAllocator, ExhaustionAllocatesNothing) {
    SlotAllocator a = make(4);
    ASSERT_TRUE(a.allocate(3).isOk());
    const std::uint64_t before = a.digest();
    auto r = a.allocate(2);
    ASSERT_FALSE(r.isOk());
    EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
    EXPECT_EQ(a.freePages(), 1u);
    EXPECT_FALSE(a.isAllocated(3));
    EXPECT_EQ(a.digest(), before);
    EXPECT_EQ(*a.allocate(1), (Pages{3}));
}

TEST(SlotAllocator, FreedPagesAreReusedLastInFirstOut) {
    SlotAllocator a = make(8);
    ASSERT_TRUE(a.allocate(6).isOk());
    ASSERT_TRUE(a.free(Pages{1}).isOk());
    ASSERT_TRUE(a.free(Pages{4, 2}).isOk());
    EXPECT_EQ(*a.allocate(2), (Pages{4, 2}));  // the last freed run first, in its order
    EXPECT_EQ(*a.allocate(1), (Pages{1}));
    EXPECT_EQ(*a.allocate(2), (Pages{6, 7}));
}

class SlotAllocatorBadFree : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(a.allocate(4).isOk());  // pages 0..3 used, 4..7 free
        before = a.digest();
    }
    void expectRejected(const Pages& pages, const std::string& needle) {
        Status s = a.free(pages);
        ASSERT_FALSE(s.isOk());
        EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
        EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
        // Nothing was freed, not even the valid pages listed before the bad one.
        EXPECT_EQ(a.usedPages(), 4u);
        for (std::uint32_t p = 0; p < 4; ++p) EXPECT_TRUE(a.isAllocated(p)) << p;
        EXPECT_EQ(a.digest(), before);
    }
    SlotAllocator a = make(8);
    std::uint64_t before = 0;
};

TEST_F(SlotAllocatorBadFree, OutOfRange) { expectRejected({0, 1, 8}, "page 8"); }
TEST_F(SlotAllocatorBadFree, NotAllocated) { expectRejected({2, 5}, "page 5"); }
TEST_F(SlotAllocatorBadFree, DuplicateInOneCall) { expectRejected({3, 1, 3}, "page 3"); }
TEST_F(SlotAllocatorBadFree, DoubleFree) {
    ASSERT_TRUE(a.free(Pages{2}).isOk());
    ASSERT_TRUE(a.allocate(1).isOk());  // page 2 again
    ASSERT_TRUE(a.free(Pages{2}).isOk());
    before = a.digest();
    Status s = a.free(Pages{0, 2});
    ASSERT_FALSE(s.isOk());
    EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(s.message().find("page 2"), std::string::npos) << s.message();
    EXPECT_TRUE(a.isAllocated(0));
    EXPECT_EQ(a.digest(), before);
}

TEST(SlotAllocator, DigestTracksStateAndHistory) {
    const std::uint64_t seed = 20240607;
    SCOPED_TRACE(::testing::Message() << "seed=" << seed);
    SlotAllocator a = make(32), b = make(32), c = make(32);
    EXPECT_EQ(a.digest(), b.digest());
    EXPECT_NE(make(31).digest(), a.digest());

    // Equal random histories give equal digests; each mutation changes it.
    std::mt19937_64 rng(seed);
    std::vector<Pages> held;
    for (int step = 0; step < 200; ++step) {
        const std::uint64_t d = a.digest();
        if (held.empty() || (rng() % 2 == 0 && a.freePages() > 0)) {
            const std::size_t n = 1 + rng() % std::min<std::size_t>(a.freePages(), 4);
            Pages pa = *a.allocate(n);
            Pages pb = *b.allocate(n);
            ASSERT_EQ(pa, pb);
            held.push_back(pa);
        } else {
            const std::size_t i = rng() % held.size();
            ASSERT_TRUE(a.free(held[i]).isOk());
            ASSERT_TRUE(b.free(held[i]).isOk());
            held.erase(held.begin() + static_cast<std::ptrdiff_t>(i));
        }
        EXPECT_NE(a.digest(), d) << "step " << step;
        ASSERT_EQ(a.digest(), b.digest()) << "step " << step;
    }
    // Same used set, different free-list order: different digests (allocations would differ).
    ASSERT_TRUE(c.allocate(3).isOk());
    SlotAllocator e = make(32);
    ASSERT_TRUE(e.allocate(3).isOk());
    ASSERT_TRUE(c.free(Pages{0, 1}).isOk());
    ASSERT_TRUE(e.free(Pages{1, 0}).isOk());
    EXPECT_NE(c.digest(), e.digest());
}

}  // namespace
}  // namespace strata::pools
