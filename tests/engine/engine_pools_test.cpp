// The engine's boundary (strata/strata.hpp): a Job, and a Cache over pools the engine declares and
// owns (plain host memory on the CPU back end), of a shape no preset has: K/V rows of 96 bytes on
// three layers, an indexer sidecar on two of them through per-layer tensors, and a sidecar
// compressed by 4 on one. Requests run admit / load / insert / release through the public API
// only, and every byte is checked where the engine put it, the padding between its layers too.
#include <gtest/gtest.h>

#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "engine_model.h"
#include "strata/strata.hpp"
#include "strata/testing/mpi_test_util.h"

namespace strata {
namespace {

using engine_test::Engine;
using engine_test::kDeviceTokens;
using engine_test::kPage;
using engine_test::tokensOf;

struct Rig {
    std::unique_ptr<Job> job;
    std::unique_ptr<Cache> cache;
};

// A Job (new, or `job` when given) and a Cache over the engine's pools; with a storage tier in
// `storage_dir` when given.
Rig makeRig(Engine& engine, const std::string& storage_dir = "",
            std::unique_ptr<Job> job = nullptr) {
    if (job == nullptr) {
        JobOptions jo;
        auto probe = Job::create(jo);
        EXPECT_TRUE(probe.isOk()) << probe.status().toString();
        const int world = (*probe)->place().world_size;
        probe->reset();
        jo.tp = world;  // every rank one TP shard of the one replica
        auto made = Job::create(jo);
        EXPECT_TRUE(made.isOk()) << made.status().toString();
        job = std::move(made).value();
    }
    CacheConfig cc;
    cc.storage_dir = storage_dir;
    cc.prefetch_threshold_tokens = kPage;
    cc.model = "engine-test-model";
    cc.pools = engine.decls();
    cc.page_size = kPage;
    cc.device_tokens = kDeviceTokens;
    cc.host_tokens = 64 * kPage;
    cc.check_consistency = true;
    auto cache = Cache::create(*job, cc);
    EXPECT_TRUE(cache.isOk()) << cache.status().toString();
    return {std::move(job), cache.isOk() ? std::move(cache).value() : nullptr};
}

Admission serve(Cache& cache, Engine& engine, Cache::RequestId id,
                const std::vector<std::int32_t>& tokens) {
    return engine_test::serve(
        cache, engine, id, tokens, [] {}, [] {});
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

    // Strides whose rows would overlap: a slot stride below the row, a layer stride below a
    // layer's rows at a larger slot stride, K and V one row apart inside a one-row slot stride.
    cc.pools = engine.decls();
    cc.pools[0].memory.slot_stride = 64;
    r = Cache::create(**job, cc);
    ASSERT_FALSE(r.isOk());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("slot stride 64"), std::string::npos)
        << r.status().message();
    cc.pools = engine.decls();
    cc.pools[0].memory.slot_stride = 128;  // the layer stride leaves room for 96-byte rows only
    r = Cache::create(**job, cc);
    ASSERT_FALSE(r.isOk());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("layer stride"), std::string::npos) << r.status().message();
    cc.pools = engine.decls();
    cc.pools[0].memory.buffer_stride = 96;  // V of slot s on K of slot s + 1
    r = Cache::create(**job, cc);
    ASSERT_FALSE(r.isOk());
    EXPECT_NE(r.status().message().find("overlap"), std::string::npos) << r.status().message();

    cc.pools = engine.decls();
    cc.pools[2].tokens_per_row = 5;
    r = Cache::create(**job, cc);
    ASSERT_FALSE(r.isOk());
    EXPECT_NE(r.status().message().find("pool 'c4'"), std::string::npos) << r.status().message();
}

// Rows that do not follow each other: K and V interleaved per token in one block (a slot stride
// of two rows, a buffer stride of one), an indexer whose per-layer tensors pad each row to 48
// bytes, a compressed sidecar padded to 32. Device, host and HDF5 hits come back byte exact, and
// no byte between rows (the padding) is ever written.
TEST(EnginePools, StridedRowsServeHitsFromDeviceHostAndStorageByteExact) {
    Engine engine(0, /*strided=*/true);
    ASSERT_EQ(engine.decls()[0].memory.slot_stride, 192u);
    ASSERT_EQ(engine.decls()[0].memory.buffer_stride, 96u);
    const std::string dir = testing::sharedTempDir("strata-engine-strided");
    Rig rig = makeRig(engine, dir);
    ASSERT_NE(rig.cache, nullptr);
    const auto first = tokensOf(1, 5 * kPage + 3);
    {
        Cache& cache = *rig.cache;
        EXPECT_EQ(cache.pools()[0].layer_ptrs.at(3 + 1), engine.row(0, 1, 1, 0));  // V, layer 1
        EXPECT_EQ(serve(cache, engine, 1, first).cached_tokens, 0u);
        ASSERT_TRUE(cache.drain().isOk());
        Admission again = serve(cache, engine, 2, first);
        EXPECT_EQ(again.device_hit_tokens, 5 * kPage);
        serve(cache, engine, 3, tokensOf(2, 7 * kPage));
        serve(cache, engine, 4, tokensOf(3, 7 * kPage));
        ASSERT_TRUE(cache.drain().isOk());
        Admission back = serve(cache, engine, 5, tokensOf(4, 6 * kPage, first));
        EXPECT_EQ(back.host_hit_tokens, 5 * kPage);
        EXPECT_EQ(back.cached_tokens, 5 * kPage);
        ASSERT_TRUE(cache.drain().isOk());
        EXPECT_EQ(engine.paddingChanged(), 0u) << "bytes written between the engine's rows";
    }
    rig.cache.reset();
    // A fresh engine and Cache over the same storage: the prefix comes from HDF5.
    Engine fresh(0, /*strided=*/true);
    rig = makeRig(fresh, dir, std::move(rig.job));
    ASSERT_NE(rig.cache, nullptr);
    Cache& cache = *rig.cache;
    const auto prompt = tokensOf(5, 6 * kPage, first);
    ASSERT_TRUE(cache.prefetch(1, prompt).isOk());
    ASSERT_TRUE(cache.drain().isOk());
    Admission hit = serve(cache, fresh, 1, prompt);
    EXPECT_EQ(hit.storage_hit_tokens, 5 * kPage);
    EXPECT_EQ(hit.cached_tokens, 5 * kPage);
    ASSERT_TRUE(cache.drain().isOk());
    EXPECT_EQ(fresh.paddingChanged(), 0u) << "bytes written between the engine's rows";
    rig.cache.reset();
    MPI_Barrier(MPI_COMM_WORLD);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0) std::filesystem::remove_all(dir);
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
