// The engine's boundary (strata/strata.h): a Job, and a Cache over pools the engine declares and
// owns (plain host memory on the CPU back end), of a shape no preset has: K/V rows of 96 bytes on
// three layers, an indexer sidecar on two of them through per-layer tensors, and a sidecar
// compressed by 4 on one. Requests run admit / load / insert / release through the public API
// only, and every byte is checked where the engine put it, the padding between its layers too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "strata/strata.h"

namespace strata {
namespace {

constexpr std::uint32_t kPage = 16;
constexpr std::size_t kDeviceTokens = 16 * kPage;
constexpr std::byte kPad{0xEE};

std::uint64_t mix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

std::vector<std::int32_t> tokensOf(std::uint64_t seed, std::size_t n,
                                   std::vector<std::int32_t> prefix = {}) {
    while (prefix.size() < n) {
        seed = mix(seed);
        prefix.push_back(static_cast<std::int32_t>(seed % 50000));
    }
    return prefix;
}

// The engine's KV: what row (pool, buffer, model layer) of the token at `pos` holds. It depends on
// the whole prefix up to pos, as real KV does, and on the TP rank for per-rank pools.
std::byte pattern(std::size_t pool, std::uint32_t buffer, std::uint32_t layer,
                  std::uint64_t prefix_digest, std::size_t pos, int shard, std::size_t j) {
    std::uint64_t h =
        mix(prefix_digest ^ (pool << 56) ^ (std::uint64_t{buffer} << 48) ^
            (std::uint64_t{layer} << 40) ^ (pos << 8) ^ static_cast<std::uint64_t>(shard));
    return static_cast<std::byte>(mix(h + j) & 0xff);
}

std::vector<std::uint64_t> prefixDigests(const std::vector<std::int32_t>& tokens) {
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
};

class Engine {
public:
    explicit Engine(int tp_rank) : tp_rank_(tp_rank) {
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
                          .rows = kDeviceTokens,
                          .layer_stride = kv_layer,
                          .buffer_stride = kv_buffer};
        // idx: an indexer sidecar of 40-byte rows on layers 1 and 2, a tensor per layer.
        EnginePool idx;
        idx.decl.name = "idx";
        idx.decl.type = PoolType::kSidecar;
        idx.decl.indices_of = "kv";
        idx.decl.layers = {1, 2};
        idx.decl.row_bytes = 40;
        idx.decl.tp = TpSharding::kReplicated;
        for (int l = 0; l < 2; ++l) {
            idx.per_layer.emplace_back(kDeviceTokens * 40, kPad);
            idx.decl.memory.layer_ptrs.push_back(idx.per_layer.back().data());
        }
        idx.decl.memory.rows = kDeviceTokens;
        // c4: one 24-byte row per 4 tokens of kv's slots, on layer 0.
        EnginePool c4;
        c4.decl.name = "c4";
        c4.decl.type = PoolType::kSidecar;
        c4.decl.indices_of = "kv";
        c4.decl.tokens_per_row = 4;
        c4.decl.layers = {0};
        c4.decl.row_bytes = 24;
        c4.decl.tp = TpSharding::kReplicated;
        c4.memory.assign(kDeviceTokens / 4 * 24, kPad);
        c4.decl.memory = {.base = c4.memory.data(), .rows = kDeviceTokens / 4};
        pools_.push_back(std::move(kv));
        pools_.push_back(std::move(idx));
        pools_.push_back(std::move(c4));
    }

    std::vector<PoolDecl> decls() const {
        std::vector<PoolDecl> out;
        for (const EnginePool& p : pools_) out.push_back(p.decl);
        return out;
    }

    // The engine's address of a row, computed from its own layout (not from Strata's PoolInfo).
    std::byte* row(std::size_t pool, std::uint32_t buffer, std::size_t layer_index,
                   std::size_t row) {
        EnginePool& p = pools_[pool];
        const DeviceMemory& m = p.decl.memory;
        if (!p.per_layer.empty()) return p.per_layer[layer_index].data() + row * p.decl.row_bytes;
        return p.memory.data() + buffer * m.buffer_stride + layer_index * m.layer_stride +
               row * p.decl.row_bytes;
    }

    // Writes (compute) or checks (verify) the rows of positions [from, to) of a prompt.
    std::size_t visit(const std::vector<std::int32_t>& tokens, const Admission& a, std::size_t from,
                      std::size_t to, bool write) {
        const auto digests = prefixDigests(tokens);
        std::size_t bad = 0;
        for (std::size_t p = 0; p < pools_.size(); ++p) {
            const PoolDecl& d = pools_[p].decl;
            const int shard = d.tp == TpSharding::kPerRank ? tp_rank_ : 0;
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

    // Bytes outside every row (the gaps between layers and buffers) still hold the padding.
    std::size_t paddingChanged() const {
        const EnginePool& kv = pools_[0];
        const DeviceMemory& m = kv.decl.memory;
        std::size_t changed = 0;
        for (std::uint32_t b = 0; b < 2; ++b) {
            for (std::size_t l = 0; l < 3; ++l) {
                const std::size_t end = b * m.buffer_stride + l * m.layer_stride + m.rows * 96;
                const std::size_t next = l + 1 < 3 ? b * m.buffer_stride + (l + 1) * m.layer_stride
                                                   : (b + 1) * m.buffer_stride;
                for (std::size_t i = end; i < next; ++i) changed += kv.memory[i] != kPad;
            }
        }
        return changed;
    }

private:
    int tp_rank_;
    std::vector<EnginePool> pools_;
};

struct Rig {
    std::unique_ptr<Job> job;
    std::unique_ptr<Cache> cache;
};

Rig makeRig(Engine& engine) {
    JobOptions jo;
    auto probe = Job::create(jo);
    EXPECT_TRUE(probe.isOk()) << probe.status().toString();
    const int world = (*probe)->place().world_size;
    probe->reset();
    jo.tp = world;  // every rank one TP shard of the one replica
    auto job = Job::create(jo);
    EXPECT_TRUE(job.isOk()) << job.status().toString();
    CacheConfig cc;
    cc.model = "engine-test-model";
    cc.pools = engine.decls();
    cc.page_size = kPage;
    cc.device_tokens = kDeviceTokens;
    cc.host_tokens = 64 * kPage;
    cc.check_consistency = true;
    auto cache = Cache::create(**job, cc);
    EXPECT_TRUE(cache.isOk()) << cache.status().toString();
    return {std::move(job).value(), cache.isOk() ? std::move(cache).value() : nullptr};
}

// Serves one request as an engine does; returns its admission, with every reused byte checked.
Admission serve(Cache& cache, Engine& engine, Cache::RequestId id,
                const std::vector<std::int32_t>& tokens) {
    EXPECT_TRUE(cache.step().isOk());
    auto a = cache.admit(id, tokens);
    EXPECT_TRUE(a.isOk()) << a.status().toString();
    if (!a.isOk()) return {};
    EXPECT_TRUE(cache.launchLoads().isOk());
    for (std::uint32_t l = 0; l < 3; ++l) EXPECT_TRUE(cache.waitLayer(id, l).isOk());
    EXPECT_EQ(engine.visit(tokens, *a, 0, a->cached_tokens, false), 0u)
        << "request " << id << ": reused bytes differ from what the engine wrote";
    engine.visit(tokens, *a, a->cached_tokens, tokens.size(), true);
    EXPECT_TRUE(cache.insert(id).isOk());
    EXPECT_TRUE(cache.release(id).isOk());
    return *a;
}

TEST(EnginePools, EngineOwnedPoolsOfANewShapeServeHitsFromDeviceAndHostByteExact) {
    Engine engine(0);
    Rig rig = makeRig(engine);
    ASSERT_NE(rig.cache, nullptr);
    Cache& cache = *rig.cache;
    // The Cache reports the engine's own addresses.
    ASSERT_EQ(cache.pools().size(), 3u);
    EXPECT_EQ(cache.pools()[0].name, "kv");
    EXPECT_EQ(cache.pools()[0].layer_ptrs.at(1), engine.row(0, 0, 1, 0));
    EXPECT_EQ(cache.pools()[1].layer_ptrs.at(1), engine.row(1, 0, 1, 0));
    EXPECT_EQ(cache.pools()[2].layer_ptrs.at(0), engine.row(2, 0, 0, 0));

    const auto first = tokensOf(1, 5 * kPage + 3);
    Admission a = serve(cache, engine, 1, first);
    EXPECT_EQ(a.cached_tokens, 0u);
    ASSERT_TRUE(cache.drain().isOk());  // backed up to the host tier

    // On the device: a second request with the same prompt reuses its full pages in place.
    Admission again = serve(cache, engine, 2, first);
    EXPECT_EQ(again.device_hit_tokens, 5 * kPage);

    // Two unrelated prompts push it off the device; it comes back from the host tier.
    serve(cache, engine, 3, tokensOf(2, 7 * kPage));
    serve(cache, engine, 4, tokensOf(3, 7 * kPage));
    ASSERT_TRUE(cache.drain().isOk());
    Admission back = serve(cache, engine, 5, tokensOf(4, 6 * kPage, first));
    EXPECT_EQ(back.host_hit_tokens, 5 * kPage);
    EXPECT_EQ(back.cached_tokens, 5 * kPage);
    ASSERT_TRUE(cache.drain().isOk());
    EXPECT_GT(cache.stats().load_pages, 0u);
    EXPECT_EQ(engine.paddingChanged(), 0u) << "bytes written outside the engine's rows";
}

TEST(EnginePools, BadDeclarationsNameThePoolAndTheField) {
    JobOptions jo;
    auto job = Job::create(jo);
    ASSERT_TRUE(job.isOk()) << job.status().toString();
    Engine engine(0);
    CacheConfig cc;
    cc.model = "engine-test-model";
    cc.page_size = kPage;
    cc.device_tokens = kDeviceTokens;
    cc.host_tokens = 64 * kPage;

    cc.pools = engine.decls();
    cc.pools[1].indices_of = "nowhere";
    auto r = Cache::create(**job, cc);
    ASSERT_FALSE(r.isOk());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("pool 'idx'"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("nowhere"), std::string::npos) << r.status().message();

    cc.pools = engine.decls();
    cc.pools[0].memory.rows = kDeviceTokens / 2;
    r = Cache::create(**job, cc);
    ASSERT_FALSE(r.isOk());
    EXPECT_NE(r.status().message().find("pool 'kv'"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("rows"), std::string::npos) << r.status().message();

    cc.pools = engine.decls();
    cc.pools[0].memory.slot_stride = 128;
    r = Cache::create(**job, cc);
    ASSERT_FALSE(r.isOk());
    EXPECT_EQ(r.status().code(), StatusCode::kNotSupported);
    EXPECT_NE(r.status().message().find("slot stride"), std::string::npos) << r.status().message();

    cc.pools = engine.decls();
    cc.pools[2].tokens_per_row = 5;
    r = Cache::create(**job, cc);
    ASSERT_FALSE(r.isOk());
    EXPECT_NE(r.status().message().find("pool 'c4'"), std::string::npos) << r.status().message();
}

TEST(EnginePools, PresetPoolsAreWhatThePresetLayoutIs) {
    JobOptions jo;
    auto job = Job::create(jo);
    ASSERT_TRUE(job.isOk()) << job.status().toString();
    CacheConfig cc;
    cc.model = "deepseek-v3.2";
    cc.layers = 2;
    cc.device_tokens = 4096;
    cc.host_tokens = 8192;
    auto cache = Cache::create(**job, cc);
    ASSERT_TRUE(cache.isOk()) << cache.status().toString();
    ASSERT_EQ((*cache)->pools().size(), 2u);
    EXPECT_EQ((*cache)->pools()[0].name, "kv");
    EXPECT_EQ((*cache)->pools()[1].name, "indexer");
    EXPECT_EQ((*cache)->pools()[0].layer_ptrs.size(), 2u);
}

}  // namespace
}  // namespace strata
