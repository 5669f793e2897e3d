#include "strata/core/hash.h"

#include <gtest/gtest.h>

#include <vector>

namespace strata::core {
namespace {

TEST(Hash, ChainIsDeterministicAndOrderSensitive) {
    std::vector<std::int32_t> a{1, 2, 3, 4}, b{1, 2, 4, 3};
    Digest128 seed = hash128(std::string_view("model"));
    EXPECT_EQ(chainHash(seed, a), chainHash(seed, a));
    EXPECT_NE(chainHash(seed, a), chainHash(seed, b));
    EXPECT_NE(chainHash(seed, a), chainHash(hash128(std::string_view("other")), a));
    // Chaining depends on the whole prefix.
    Digest128 k1 = chainHash(seed, a);
    EXPECT_NE(chainHash(k1, b), chainHash(chainHash(seed, b), b));
}

TEST(Hash, KnownValueIsStableAcrossRuns) {
    // Pinned so that a change of hash function (which would orphan every stored page) is noticed.
    EXPECT_EQ(hash128(std::string_view("strata")).hex(), "8f7bf5d0b6686c9649e9198681a76414");
    EXPECT_EQ(checksum64("strata", 6), 0x4b61a1897bfc215full);
    EXPECT_NE(checksum64("strata", 6), checksum64("strat4", 6));
}

TEST(Hash, FoldDigestIsOrderDependent) {
    EXPECT_NE(foldDigest(foldDigest(0, 1), 2), foldDigest(foldDigest(0, 2), 1));
}

}  // namespace
}  // namespace strata::core
