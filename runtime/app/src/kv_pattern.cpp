#include "strata/app/kv_pattern.h"

#include <bit>
#include <cstring>

#include "strata/core/hash.h"

namespace strata::app {
namespace {

static_assert(std::endian::native == std::endian::little,
              "rows are written as little-endian words");

constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ull;

// splitmix64's finaliser. The generator is counter based (word i = mix(seed + (i + 1) * golden)),
// so each 8-byte word is independent of the others and a row is filled in one pass.
inline std::uint64_t mix64(std::uint64_t z) noexcept {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

inline std::uint64_t rowSeed(std::uint64_t prefix_digest, std::uint32_t layer,
                             std::uint32_t pool_index, std::uint32_t shard,
                             std::uint32_t buffer) noexcept {
    std::uint64_t seed =
        core::foldDigest(prefix_digest, (static_cast<std::uint64_t>(layer) << 32) | pool_index);
    return core::foldDigest(seed, (static_cast<std::uint64_t>(shard) << 32) | buffer);
}

// Little-endian load/store of the first `n` (< 8) bytes of a word.
inline std::uint64_t loadTail(const std::byte* p, std::size_t n) noexcept {
    std::uint64_t w = 0;
    std::memcpy(&w, p, n);
    return w;
}

inline std::size_t firstDifferingByte(std::uint64_t a, std::uint64_t b) noexcept {
    std::uint64_t diff = a ^ b;
    std::size_t i = 0;
    while ((diff & 0xFF) == 0) {
        diff >>= 8;
        ++i;
    }
    return i;
}

}  // namespace

PrefixDigests::PrefixDigests(std::span<const std::int32_t> tokens, std::uint64_t seed)
    : seed_(seed) {
    append(tokens);
}

void PrefixDigests::append(std::span<const std::int32_t> tokens) {
    std::uint64_t d = digests_.empty() ? seed_ : digests_.back();
    digests_.reserve(digests_.size() + tokens.size());
    for (std::int32_t token : tokens) {
        d = nextPrefixDigest(d, token);
        digests_.push_back(d);
    }
}

std::uint64_t nextPrefixDigest(std::uint64_t previous, std::int32_t token) noexcept {
    return core::foldDigest(previous, static_cast<std::uint32_t>(token));
}

void fillRow(std::span<std::byte> row, std::uint64_t prefix_digest, std::uint32_t layer,
             std::uint32_t pool_index, std::uint32_t shard, std::uint32_t buffer) noexcept {
    const std::uint64_t seed = rowSeed(prefix_digest, layer, pool_index, shard, buffer);
    const std::size_t words = row.size() / 8;
    std::byte* p = row.data();
    std::uint64_t counter = seed;
    for (std::size_t i = 0; i < words; ++i) {
        counter += kGolden;
        const std::uint64_t w = mix64(counter);
        std::memcpy(p + i * 8, &w, 8);
    }
    const std::size_t tail = row.size() % 8;
    if (tail != 0) {
        const std::uint64_t w = mix64(counter + kGolden);
        std::memcpy(p + words * 8, &w, tail);
    }
}

std::size_t firstMismatch(std::span<const std::byte> row, std::uint64_t prefix_digest,
                          std::uint32_t layer, std::uint32_t pool_index, std::uint32_t shard,
                          std::uint32_t buffer) noexcept {
    const std::uint64_t seed = rowSeed(prefix_digest, layer, pool_index, shard, buffer);
    const std::size_t words = row.size() / 8;
    const std::byte* p = row.data();
    std::uint64_t counter = seed;
    for (std::size_t i = 0; i < words; ++i) {
        counter += kGolden;
        const std::uint64_t expected = mix64(counter);
        std::uint64_t actual;
        std::memcpy(&actual, p + i * 8, 8);
        if (actual != expected) return i * 8 + firstDifferingByte(actual, expected);
    }
    const std::size_t tail = row.size() % 8;
    if (tail != 0) {
        // loadTail reads the low `tail` bytes of a little-endian word: mask the rest off.
        const std::uint64_t mask = (std::uint64_t{1} << (8 * tail)) - 1;
        const std::uint64_t expected = mix64(counter + kGolden) & mask;
        const std::uint64_t actual = loadTail(p + words * 8, tail);
        if (actual != expected) return words * 8 + firstDifferingByte(actual, expected);
    }
    return kNoMismatch;
}

bool verifyRow(std::span<const std::byte> row, std::uint64_t prefix_digest, std::uint32_t layer,
               std::uint32_t pool_index, std::uint32_t shard, std::uint32_t buffer) noexcept {
    return firstMismatch(row, prefix_digest, layer, pool_index, shard, buffer) == kNoMismatch;
}

}  // namespace strata::app
