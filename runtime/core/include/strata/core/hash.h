// Hashing: 128-bit page keys (chained over page tokens) and 64-bit checksums of page bytes.
// Deterministic on every rank, node and run (xxHash XXH3, fixed seeds, little-endian tokens).
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

namespace strata::core {

struct Digest128 {
    std::uint64_t lo = 0;
    std::uint64_t hi = 0;
    friend bool operator==(const Digest128&, const Digest128&) = default;
    friend auto operator<=>(const Digest128&, const Digest128&) = default;
    // 32 lowercase hex characters, hi first.
    std::string hex() const;
};

// XXH3-128 of bytes.
Digest128 hash128(std::span<const std::byte> bytes) noexcept;
Digest128 hash128(std::string_view text) noexcept;
// key = H(previous || tokens as int32 little-endian).
Digest128 chainHash(const Digest128& previous, std::span<const std::int32_t> tokens) noexcept;
// XXH3-64 checksum of bytes.
std::uint64_t checksum64(std::span<const std::byte> bytes) noexcept;
std::uint64_t checksum64(const void* data, std::size_t size) noexcept;

// Order-dependent running digest for consistency checks: fold(d, v) mixes v into d.
std::uint64_t foldDigest(std::uint64_t digest, std::uint64_t value) noexcept;

}  // namespace strata::core

template <>
struct std::hash<strata::core::Digest128> {
    std::size_t operator()(const strata::core::Digest128& d) const noexcept {
        return static_cast<std::size_t>(d.lo ^ (d.hi * 0x9E3779B97F4A7C15ull));
    }
};
