// Deterministic KV bytes for strata-run: the bytes of a token's row are a function of the digest of
// the whole token prefix up to it, the layer, the pool, the shard and the buffer (K, V, ...), so
// every row loaded back from a lower tier can be checked byte for byte.
// Owns only its digest vector. Thread-safety: PrefixDigests is a value (no shared state); the free
// functions are pure and may run concurrently on disjoint rows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace strata::app {

// Returned by firstMismatch when the row matches.
inline constexpr std::size_t kNoMismatch = static_cast<std::size_t>(-1);

// Running digests of a token sequence: at(t) = H(at(t - 1), tokens[t]), starting from a seed, so
// at(t) identifies the whole prefix tokens[0..t] (two prompts that share a prefix share its
// digests). Identical on every rank, node and run.
class PrefixDigests {
public:
    static constexpr std::uint64_t kDefaultSeed = 0x5354524154414b56ull;  // "STRATAKV"

    PrefixDigests() = default;
    explicit PrefixDigests(std::span<const std::int32_t> tokens, std::uint64_t seed = kDefaultSeed);

    // Appends tokens, continuing the chain (cheap: one 16-byte hash per token).
    void append(std::span<const std::int32_t> tokens);

    std::size_t size() const noexcept { return digests_.size(); }
    bool empty() const noexcept { return digests_.empty(); }
    // Digest of tokens[0..position]. Requires position < size().
    std::uint64_t at(std::size_t position) const { return digests_.at(position); }
    std::span<const std::uint64_t> digests() const noexcept { return digests_; }

private:
    std::uint64_t seed_ = kDefaultSeed;
    std::vector<std::uint64_t> digests_;
};

// One step of the chain: the digest after `previous` followed by `token`.
std::uint64_t nextPrefixDigest(std::uint64_t previous, std::int32_t token) noexcept;

// Fills `row` (any length, tails included) with pseudo-random bytes determined by all the other
// arguments; `buffer` tells apart rows of one token in one pool (0 = K, 1 = V, 2 = indexer, ...).
void fillRow(std::span<std::byte> row, std::uint64_t prefix_digest, std::uint32_t layer,
             std::uint32_t pool_index, std::uint32_t shard, std::uint32_t buffer) noexcept;

// True when `row` holds exactly what fillRow would write for the same arguments.
bool verifyRow(std::span<const std::byte> row, std::uint64_t prefix_digest, std::uint32_t layer,
               std::uint32_t pool_index, std::uint32_t shard, std::uint32_t buffer) noexcept;

// Offset of the first byte of `row` that differs from the expected pattern, or kNoMismatch.
std::size_t firstMismatch(std::span<const std::byte> row, std::uint64_t prefix_digest,
                          std::uint32_t layer, std::uint32_t pool_index, std::uint32_t shard,
                          std::uint32_t buffer) noexcept;

}  // namespace strata::app
