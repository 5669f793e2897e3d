#include "strata/core/hash.h"

#define XXH_INLINE_ALL  // full XXH3_state_t definition for stack-allocated states
#include <xxhash.h>

#include <bit>
#include <cstring>
#include <vector>

#include <fmt/format.h>

namespace strata::core {

static_assert(std::endian::native == std::endian::little,
              "page keys hash tokens as little-endian int32");

std::string Digest128::hex() const { return fmt::format("{:016x}{:016x}", hi, lo); }

Digest128 hash128(std::span<const std::byte> bytes) noexcept {
    XXH128_hash_t h = XXH3_128bits(bytes.data(), bytes.size());
    return Digest128{h.low64, h.high64};
}

Digest128 hash128(std::string_view text) noexcept {
    return hash128(std::as_bytes(std::span<const char>(text.data(), text.size())));
}

Digest128 chainHash(const Digest128& previous, std::span<const std::int32_t> tokens) noexcept {
    XXH3_state_t state;
    XXH3_128bits_reset(&state);
    XXH3_128bits_update(&state, &previous.lo, sizeof previous.lo);
    XXH3_128bits_update(&state, &previous.hi, sizeof previous.hi);
    XXH3_128bits_update(&state, tokens.data(), tokens.size_bytes());
    XXH128_hash_t h = XXH3_128bits_digest(&state);
    return Digest128{h.low64, h.high64};
}

std::uint64_t checksum64(std::span<const std::byte> bytes) noexcept {
    return XXH3_64bits(bytes.data(), bytes.size());
}

std::uint64_t checksum64(const void* data, std::size_t size) noexcept {
    return XXH3_64bits(data, size);
}

std::uint64_t foldDigest(std::uint64_t digest, std::uint64_t value) noexcept {
    std::uint64_t pair[2] = {digest, value};
    return XXH3_64bits(pair, sizeof pair);
}

}  // namespace strata::core
