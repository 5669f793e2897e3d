#include "strata/app/kv_pattern.h"

#include <gtest/gtest.h>

#include <chrono>
#include <vector>

namespace strata::app {
namespace {

std::vector<std::byte> filled(std::size_t size, std::uint64_t digest, std::uint32_t layer,
                              std::uint32_t pool, std::uint32_t shard, std::uint32_t buffer) {
    std::vector<std::byte> row(size);
    fillRow(row, digest, layer, pool, shard, buffer);
    return row;
}

TEST(PrefixDigests, SharedPrefixesShareDigests) {
    std::vector<std::int32_t> a{1, 2, 3, 4, 5}, b{1, 2, 3, 9, 5};
    PrefixDigests da(a), db(b);
    ASSERT_EQ(da.size(), 5u);
    EXPECT_EQ(da.at(0), db.at(0));
    EXPECT_EQ(da.at(2), db.at(2));
    EXPECT_NE(da.at(3), db.at(3));
    EXPECT_NE(da.at(4), db.at(4));  // the prefix differs even though the token is the same
    EXPECT_NE(da.at(0), da.at(1));
}

TEST(PrefixDigests, AppendContinuesTheChain) {
    std::vector<std::int32_t> all{10, 20, 30, 40};
    PrefixDigests whole(all);
    PrefixDigests parts{std::span<const std::int32_t>(all).first(1)};
    parts.append(std::span<const std::int32_t>(all).subspan(1));
    ASSERT_EQ(parts.size(), whole.size());
    for (std::size_t i = 0; i < all.size(); ++i) EXPECT_EQ(parts.at(i), whole.at(i));
    EXPECT_EQ(whole.at(1), nextPrefixDigest(whole.at(0), 20));
    PrefixDigests other_seed(all, 12345);
    EXPECT_NE(other_seed.at(3), whole.at(3));
}

TEST(KvPattern, FillVerifyRoundTripForManyLengths) {
    for (std::size_t size : {0, 1, 7, 8, 9, 15, 16, 64, 576, 656, 1152, 4096, 4099}) {
        auto row = filled(size, 42, 3, 1, 0, 1);
        EXPECT_TRUE(verifyRow(row, 42, 3, 1, 0, 1)) << size;
        EXPECT_EQ(firstMismatch(row, 42, 3, 1, 0, 1), kNoMismatch) << size;
    }
}

TEST(KvPattern, FillIsDeterministicAndPrefixOfLongerRow) {
    auto a = filled(656, 7, 0, 0, 0, 0);
    auto b = filled(656, 7, 0, 0, 0, 0);
    EXPECT_EQ(a, b);
    // A shorter row is a prefix of a longer one: the pattern does not depend on the length.
    auto longer = filled(1024, 7, 0, 0, 0, 0);
    EXPECT_TRUE(std::equal(a.begin(), a.end(), longer.begin()));
}

TEST(KvPattern, FlippedByteIsFoundAtItsOffset) {
    const std::size_t size = 656;
    for (std::size_t offset : {std::size_t{0}, std::size_t{5}, std::size_t{8}, std::size_t{333},
                               std::size_t{647}, std::size_t{648}, std::size_t{655}}) {
        auto row = filled(size, 99, 2, 4, 1, 0);
        row[offset] ^= std::byte{0x10};
        EXPECT_FALSE(verifyRow(row, 99, 2, 4, 1, 0)) << offset;
        EXPECT_EQ(firstMismatch(row, 99, 2, 4, 1, 0), offset);
    }
    // Odd tail lengths: the last byte of the row.
    auto odd = filled(13, 1, 0, 0, 0, 0);
    odd[12] ^= std::byte{1};
    EXPECT_EQ(firstMismatch(odd, 1, 0, 0, 0, 0), 12u);
}

TEST(KvPattern, EveryInputChangesTheBytes) {
    const auto base = filled(656, 5, 1, 2, 3, 0);
    const std::vector<std::vector<std::byte>> others = {
        filled(656, 6, 1, 2, 3, 0),  // prefix
        filled(656, 5, 2, 2, 3, 0),  // layer
        filled(656, 5, 1, 3, 3, 0),  // pool
        filled(656, 5, 1, 2, 4, 0),  // shard
        filled(656, 5, 1, 2, 3, 1),  // buffer
        filled(656, 5, 2, 1, 3, 0),  // layer and pool swapped
    };
    for (std::size_t i = 0; i < others.size(); ++i) {
        EXPECT_NE(base, others[i]) << i;
        EXPECT_FALSE(verifyRow(others[i], 5, 1, 2, 3, 0)) << i;
        EXPECT_LT(firstMismatch(others[i], 5, 1, 2, 3, 0), 8u) << i;
    }
}

TEST(KvPattern, FillsHundredsOfMegabytesQuickly) {
    std::vector<std::byte> buffer(64u << 20);
    const std::size_t row = 656;
    const auto start = std::chrono::steady_clock::now();
    std::size_t rows = buffer.size() / row;
    for (std::size_t i = 0; i < rows; ++i) {
        fillRow(std::span(buffer).subspan(i * row, row), i, 0, 0, 0, 0);
    }
    std::size_t bad = 0;
    for (std::size_t i = 0; i < rows; ++i) {
        bad += !verifyRow(std::span(buffer).subspan(i * row, row), i, 0, 0, 0, 0);
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(bad, 0u);
    // 128 MB of fill + verify; generous bound so that debug and sanitizer builds pass.
    EXPECT_LT(seconds, 10.0);
    std::printf("fill+verify of %zu MB: %.3f s\n", 2 * buffer.size() >> 20, seconds);
}

}  // namespace
}  // namespace strata::app
