// A model engine for the tests of the engine's boundary (tests/engine, tests/cuda/engine): pools it
// declares and owns, of a shape no preset has (K/V rows of 96 bytes on three layers with gaps
// between layers and buffers, an indexer sidecar on two layers through per-layer tensors, a
// sidecar compressed by 4 on one layer), or pools a test declares, and the KV bytes a real model
// would write: each row depends on the whole prefix up to its token, and on the rank's TP and CP
// coordinates for pools sharded across them. The memory is host vectors; a CUDA test mirrors it
// in device memory. Test-only; header-only.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "strata/strata.hpp"

namespace strata::engine_test {

constexpr std::uint32_t kPage = 16;
constexpr std::size_t kDeviceTokens = 16 * kPage;
constexpr std::byte kPad{0xEE};

inline std::uint64_t mix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

inline std::vector<std::int32_t> tokensOf(std::uint64_t seed, std::size_t n,
                                          std::vector<std::int32_t> prefix = {}) {
    while (prefix.size() < n) {
        seed = mix(seed);
        prefix.push_back(static_cast<std::int32_t>(seed % 50000));
    }
    return prefix;
}

// The engine's KV: what row (pool, buffer, model layer) of the token at `pos` holds. It depends on
// the whole prefix up to pos, as real KV does, and on the shard for per-rank pools.
inline std::byte pattern(std::size_t pool, std::uint32_t buffer, std::uint32_t layer,
                         std::uint64_t prefix_digest, std::size_t pos, int shard, std::size_t j) {
    std::uint64_t h =
        mix(prefix_digest ^ (pool << 56) ^ (std::uint64_t{buffer} << 48) ^
            (std::uint64_t{layer} << 40) ^ (pos << 8) ^ static_cast<std::uint64_t>(shard));
    return static_cast<std::byte>(mix(h + j) & 0xff);
}

inline std::vector<std::uint64_t> prefixDigests(const std::vector<std::int32_t>& tokens) {
    std::vector<std::uint64_t> d(tokens.size());
    std::uint64_t h = 0;
    for (std::size_t i = 0; i < tokens.size(); ++i) {
        h = mix(h ^ static_cast<std::uint32_t>(tokens[i]));
        d[i] = h;
    }
    return d;
}

// One pool of the engine: its declaration and its memory, padded between layers and buffers.
struct EnginePool {
    PoolDecl decl;
    std::vector<std::byte> memory;                  // base + strides
    std::vector<std::vector<std::byte>> per_layer;  // layer_ptrs

    // The address of a row from the declaration's own layout (not from Strata's PoolInfo).
    std::byte* rowAt(std::uint32_t buffer, std::size_t layer_index, std::size_t row) {
        const DeviceMemory& m = decl.memory;
        const std::size_t stride = m.slot_stride == 0 ? decl.row_bytes : m.slot_stride;
        if (!per_layer.empty()) return per_layer[layer_index].data() + row * stride;
        const std::size_t layer = m.layer_stride == 0 ? m.rows * stride : m.layer_stride;
        const std::size_t buf = m.buffer_stride == 0 ? decl.layers.size() * layer : m.buffer_stride;
        return memory.data() + buffer * buf + layer_index * layer + row * stride;
    }
};

// The engine: its pools and what it writes and checks in them.
class Engine {
public:
    // strided: rows that do not follow each other: kv holds K and V interleaved per token in one
    // block per layer ((rows, 2, 96 bytes): buffer stride 96, slot stride 192), idx's rows are
    // padded to 48 bytes and c4's to 32.
    explicit Engine(int tp_rank, bool strided = false) : tp_rank_(tp_rank), cp_rank_(0) {
        // kv: K and V of 96 bytes on 3 layers, one block with gaps between layers and buffers.
        EnginePool kv;
        kv.decl.name = "kv";
        kv.decl.type = PoolType::kKv;
        kv.decl.layers = {0, 1, 2};
        kv.decl.buffers = 2;
        kv.decl.row_bytes = 96;
        kv.decl.dtype = "fp16";
        const std::size_t kv_layer = kDeviceTokens * 96 + 64;
        const std::size_t kv_buffer = 3 * kv_layer + 128;
        kv.memory.assign(2 * kv_buffer, kPad);
        kv.decl.memory = {.base = kv.memory.data(),
                          .layer_ptrs = {},
                          .rows = kDeviceTokens,
                          .slot_stride = 0,
                          .layer_stride = kv_layer,
                          .buffer_stride = kv_buffer};
        if (strided) {
            kv.decl.memory.slot_stride = 2 * 96;
            kv.decl.memory.layer_stride = kDeviceTokens * 2 * 96 + 64;
            kv.decl.memory.buffer_stride = 96;
        }
        const std::size_t idx_stride = strided ? 48 : 0;
        const std::size_t c4_stride = strided ? 32 : 24;
        // idx: an indexer sidecar of 40-byte rows on layers 1 and 2, a tensor per layer.
        EnginePool idx;
        idx.decl.name = "idx";
        idx.decl.type = PoolType::kSidecar;
        idx.decl.indices_of = "kv";
        idx.decl.layers = {1, 2};
        idx.decl.row_bytes = 40;
        idx.decl.tp = TpSharding::kReplicated;
        for (int l = 0; l < 2; ++l) {
            idx.per_layer.emplace_back(kDeviceTokens * (strided ? idx_stride : 40), kPad);
            idx.decl.memory.layer_ptrs.push_back(idx.per_layer.back().data());
        }
        idx.decl.memory.rows = kDeviceTokens;
        idx.decl.memory.slot_stride = idx_stride;
        // c4: one 24-byte row per 4 tokens of kv's slots, on layer 0.
        EnginePool c4;
        c4.decl.name = "c4";
        c4.decl.type = PoolType::kSidecar;
        c4.decl.indices_of = "kv";
        c4.decl.tokens_per_row = 4;
        c4.decl.layers = {0};
        c4.decl.row_bytes = 24;
        c4.decl.tp = TpSharding::kReplicated;
        c4.memory.assign(kDeviceTokens / 4 * c4_stride, kPad);
        c4.decl.memory = {.base = c4.memory.data(),
                          .layer_ptrs = {},
                          .rows = kDeviceTokens / 4,
                          .slot_stride = strided ? c4_stride : 0,
                          .layer_stride = 0,
                          .buffer_stride = 0};
        pools_.push_back(std::move(kv));
        pools_.push_back(std::move(idx));
        pools_.push_back(std::move(c4));
    }

    // Pools a test declares (kKv and kSidecar, on model layers 0 to 2), each in one block of
    // `device_tokens` rows (per tokens_per_row), layers then buffers, for the rank at (tp_rank,
    // cp_rank) of its grid.
    Engine(int tp_rank, int cp_rank, std::vector<PoolDecl> decls, std::size_t device_tokens)
        : tp_rank_(tp_rank), cp_rank_(cp_rank) {
        for (PoolDecl& d : decls) {
            EnginePool p;
            const std::size_t rows = device_tokens / d.tokens_per_row;
            const std::size_t layer = rows * d.row_bytes;
            p.memory.assign(d.buffers * d.layers.size() * layer, kPad);
            d.memory = {.base = p.memory.data(),
                        .layer_ptrs = {},
                        .rows = rows,
                        .slot_stride = 0,
                        .layer_stride = layer,
                        .buffer_stride = d.layers.size() * layer};
            p.decl = std::move(d);
            pools_.push_back(std::move(p));
        }
    }

    // Overwrites every byte of every pool with padding (what a fresh engine's memory holds).
    void wipe() {
        for (EnginePool& p : pools_) {
            std::fill(p.memory.begin(), p.memory.end(), kPad);
            for (auto& t : p.per_layer) std::fill(t.begin(), t.end(), kPad);
        }
    }

    // What distinguishes this rank's bytes of pool `d`: the TP rank for pools per TP rank, the
    // CP rank for pools per CP rank; 0 for a pool replicated on both axes.
    int shardOf(const PoolDecl& d) const {
        return (d.tp == TpSharding::kPerRank ? tp_rank_ : 0) +
               (d.cp == CpSharding::kPerRank ? 16 * (cp_rank_ + 1) : 0);
    }

    std::vector<PoolDecl> decls() const {
        std::vector<PoolDecl> out;
        for (const EnginePool& p : pools_) out.push_back(p.decl);
        return out;
    }

    // The engine's memory blocks of a pool: 0 its base block, l + 1 the tensor of its layer l.
    std::vector<std::byte>* block(std::size_t pool, std::size_t i) {
        EnginePool& p = pools_[pool];
        return i == 0 ? &p.memory : &p.per_layer[i - 1];
    }

    // The engine's address of a row, computed from its own layout (not from Strata's PoolInfo).
    std::byte* row(std::size_t pool, std::uint32_t buffer, std::size_t layer_index,
                   std::size_t row) {
        return pools_[pool].rowAt(buffer, layer_index, row);
    }

    // Writes (compute) or checks (verify) the rows of positions [from, to) of a prompt.
    std::size_t visit(const std::vector<std::int32_t>& tokens, const Admission& a, std::size_t from,
                      std::size_t to, bool write) {
        const auto digests = prefixDigests(tokens);
        std::size_t bad = 0;
        for (std::size_t p = 0; p < pools_.size(); ++p) {
            const PoolDecl& d = pools_[p].decl;
            const int shard = shardOf(d);
            const std::uint32_t r = d.tokens_per_row;
            for (std::size_t pos = from; pos < to; ++pos) {
                if ((pos + 1) % r != 0) continue;  // a compressed row: written at its last token
                const std::size_t first = pos + 1 - r;
                const std::size_t slot =
                    std::size_t{a.pools[p].pages.at(first / kPage)} * kPage + first % kPage;
                for (std::uint32_t b = 0; b < d.buffers; ++b) {
                    for (std::size_t li = 0; li < d.layers.size(); ++li) {
                        std::byte* bytes = row(p, b, li, slot / r);
                        for (std::size_t j = 0; j < d.row_bytes; ++j) {
                            const std::byte want =
                                pattern(p, b, d.layers[li], digests[pos], pos, shard, j);
                            if (write) {
                                bytes[j] = want;
                            } else if (bytes[j] != want) {
                                ++bad;
                            }
                        }
                    }
                }
            }
        }
        return bad;
    }

    // Bytes outside every row of every pool (the gaps between layers and buffers, a padded row's
    // tail) still hold the padding.
    std::size_t paddingChanged() {
        std::size_t changed = 0;
        for (EnginePool& p : pools_) {
            const PoolDecl& d = p.decl;
            std::vector<std::vector<std::byte>*> blocks;
            if (p.per_layer.empty()) blocks.push_back(&p.memory);
            for (auto& t : p.per_layer) blocks.push_back(&t);
            std::vector<std::vector<bool>> in_row;
            for (auto* b : blocks) in_row.emplace_back(b->size(), false);
            for (std::uint32_t b = 0; b < d.buffers; ++b) {
                for (std::size_t li = 0; li < d.layers.size(); ++li) {
                    const std::size_t k = p.per_layer.empty() ? 0 : li;
                    for (std::size_t r = 0; r < d.memory.rows; ++r) {
                        const auto off =
                            static_cast<std::size_t>(p.rowAt(b, li, r) - blocks[k]->data());
                        for (std::size_t j = 0; j < d.row_bytes; ++j) in_row[k][off + j] = true;
                    }
                }
            }
            for (std::size_t k = 0; k < blocks.size(); ++k) {
                for (std::size_t i = 0; i < blocks[k]->size(); ++i) {
                    changed += !in_row[k][i] && (*blocks[k])[i] != kPad;
                }
            }
        }
        return changed;
    }

private:
    int tp_rank_;
    int cp_rank_;
    std::vector<EnginePool> pools_;
};

// Serves one request as an engine does; returns its admission, with every reused byte checked.
// `before_check` runs after the loads (a CUDA test copies the device rows to the host there) and
// `after_write` after the engine wrote the computed rows (it copies them to the device).
template <typename BeforeCheck, typename AfterWrite>
Admission serve(Cache& cache, Engine& engine, Cache::RequestId id,
                const std::vector<std::int32_t>& tokens, BeforeCheck before_check,
                AfterWrite after_write) {
    EXPECT_TRUE(cache.step().isOk());
    auto a = cache.admit(id, tokens);
    EXPECT_TRUE(a.isOk()) << a.status().toString();
    if (!a.isOk()) return {};
    EXPECT_TRUE(cache.launchLoads().isOk());
    for (std::uint32_t l = 0; l < 3; ++l) EXPECT_TRUE(cache.waitLayer(id, l).isOk());
    before_check();
    EXPECT_EQ(engine.visit(tokens, *a, 0, a->cached_tokens, false), 0u)
        << "request " << id << ": reused bytes differ from what the engine wrote";
    engine.visit(tokens, *a, a->cached_tokens, tokens.size(), true);
    after_write();
    EXPECT_TRUE(cache.insert(id).isOk());
    EXPECT_TRUE(cache.release(id).isOk());
    return *a;
}

}  // namespace strata::engine_test
