// Pools sharded across context-parallel ranks, through the engine's boundary (strata/strata.hpp),
// on a TP 2 x CP 2 grid of four ranks: an engine declares a K/V pool per TP rank, a sidecar per CP
// rank, a sidecar per rank on both axes and a sidecar replicated on both, and writes bytes that
// depend on its (tp, cp) coordinates in every sharded pool. Prompts sharing prefixes come back
// from the device, from the host tier (pushed off a small device pool) and, in a second Cache over
// the same storage directory, from the HDF5 storage tier; every rank checks that every byte it
// gets back is its own (a CP rank served another CP rank's bytes, or a page that its CP rank
// never stored, fails the check or the hit length). On a CP 2 x DP 2 grid, the remote tier serves
// each CP rank of another replica its own shard.
#include <gtest/gtest.h>
#include <mpi.h>

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "engine_model.h"
#include "strata/strata.hpp"
#include "strata/testing/mpi_test_util.h"

namespace strata {
namespace {

using engine_test::Engine;
using engine_test::kPage;
using engine_test::tokensOf;

constexpr std::size_t kDevice = 48 * kPage;  // token slots of the device pools
constexpr std::size_t kPrefixPages = 20;     // more than the storage tier's prefetch threshold

std::vector<PoolDecl> shardedDecls() {
    auto pool = [](std::string name, PoolType type, std::vector<std::uint32_t> layers,
                   std::uint32_t buffers, std::size_t row_bytes, TpSharding tp, CpSharding cp) {
        PoolDecl d;
        d.name = std::move(name);
        d.type = type;
        if (type == PoolType::kSidecar) d.indices_of = "kv";
        d.layers = std::move(layers);
        d.buffers = buffers;
        d.row_bytes = row_bytes;
        d.tp = tp;
        d.cp = cp;
        return d;
    };
    return {
        pool("kv", PoolType::kKv, {0, 1, 2}, 2, 64, TpSharding::kPerRank, CpSharding::kReplicated),
        pool("per_cp", PoolType::kSidecar, {0, 2}, 1, 48, TpSharding::kReplicated,
             CpSharding::kPerRank),
        pool("per_both", PoolType::kSidecar, {1}, 2, 32, TpSharding::kPerRank,
             CpSharding::kPerRank),
        pool("replicated", PoolType::kSidecar, {1, 2}, 1, 40, TpSharding::kReplicated,
             CpSharding::kReplicated),
    };
}

Admission serve(Cache& cache, Engine& engine, Cache::RequestId id,
                const std::vector<std::int32_t>& tokens) {
    return engine_test::serve(
        cache, engine, id, tokens, [] {}, [] {});
}

TEST(EngineCpShard, PoolsPerCpRankComeBackFromEveryTierAsTheRanksOwnBytes) {
    JobOptions jo;
    jo.tp = 2;
    jo.cp = 2;
    auto job = Job::create(jo);
    ASSERT_TRUE(job.isOk()) << job.status().toString();
    const RankPlace& place = (*job)->place();
    ASSERT_EQ(place.world_size, 4) << "a TP 2 x CP 2 grid of one replica";
    ASSERT_EQ(place.dp_size, 1);
    const std::string dir = testing::sharedTempDir("strata-engine-cp");
    Engine engine(place.tp_rank, place.cp_rank, shardedDecls(), kDevice);

    CacheConfig cc;
    cc.model = "engine-cp-model";
    cc.pools = engine.decls();
    cc.page_size = kPage;
    cc.device_tokens = kDevice;
    cc.host_tokens = 160 * kPage;
    cc.storage_dir = dir;
    cc.check_consistency = true;

    const auto first = tokensOf(1, kPrefixPages * kPage + 5);
    const std::vector<std::int32_t> shared(first.begin(), first.begin() + kPrefixPages * kPage);
    {
        auto made = Cache::create(**job, cc);
        ASSERT_TRUE(made.isOk()) << made.status().toString();
        Cache& cache = **made;
        EXPECT_EQ(serve(cache, engine, 1, first).cached_tokens, 0u);
        ASSERT_TRUE(cache.drain().isOk());
        // A prompt that shares the prefix reuses it on the device.
        Admission again = serve(cache, engine, 2, tokensOf(2, 24 * kPage, shared));
        EXPECT_EQ(again.device_hit_tokens, kPrefixPages * kPage);
        // Unrelated prompts push it off the device; the prefix comes back from the host tier.
        for (Cache::RequestId id = 3; id < 6; ++id) {
            EXPECT_EQ(serve(cache, engine, id, tokensOf(id, 24 * kPage)).cached_tokens, 0u);
            ASSERT_TRUE(cache.drain().isOk());
        }
        Admission back = serve(cache, engine, 6, tokensOf(6, 23 * kPage, shared));
        EXPECT_EQ(back.host_hit_tokens, kPrefixPages * kPage);
        EXPECT_EQ(back.cached_tokens, kPrefixPages * kPage);
        ASSERT_TRUE(cache.drain().isOk());
        EXPECT_GT(cache.stats().load_pages, 0u);
    }

    // A fresh Cache over the same storage directory, and an engine memory without the old bytes:
    // the prefix comes back from the storage tier, each rank's own shard of it.
    engine.wipe();
    {
        auto made = Cache::create(**job, cc);
        ASSERT_TRUE(made.isOk()) << made.status().toString();
        Cache& cache = **made;
        const auto again = tokensOf(7, 22 * kPage, shared);
        ASSERT_TRUE(cache.prefetch(10, again).isOk());
        ASSERT_TRUE(cache.drain().isOk());
        Admission stored = serve(cache, engine, 10, again);
        EXPECT_EQ(stored.storage_hit_tokens, kPrefixPages * kPage);
        EXPECT_EQ(stored.cached_tokens, kPrefixPages * kPage);
        // A shorter branch of the same prefix: on the device now.
        const std::vector<std::int32_t> half(shared.begin(), shared.begin() + 10 * kPage);
        Admission branch = serve(cache, engine, 11, tokensOf(8, 12 * kPage + 3, half));
        EXPECT_EQ(branch.device_hit_tokens, 10 * kPage);
        ASSERT_TRUE(cache.drain().isOk());
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (place.world_rank == 0) std::filesystem::remove_all(dir);
}

// The same pool declared per CP rank and replicated never share pages: a second Cache over the
// storage directory with the replicated declaration finds nothing of the first one's.
TEST(EngineCpShard, ReplicatedAndPerRankDeclarationsDoNotSharePages) {
    JobOptions jo;
    jo.tp = 2;
    jo.cp = 2;
    auto job = Job::create(jo);
    ASSERT_TRUE(job.isOk()) << job.status().toString();
    const RankPlace& place = (*job)->place();
    ASSERT_EQ(place.world_size, 4) << "a TP 2 x CP 2 grid of one replica";
    const std::string dir = testing::sharedTempDir("strata-engine-cp");
    const auto prompt = tokensOf(9, kPrefixPages * kPage + 1);
    auto config = [&](Engine& engine) {
        CacheConfig cc;
        cc.model = "engine-cp-model";
        cc.pools = engine.decls();
        cc.page_size = kPage;
        cc.device_tokens = kDevice;
        cc.host_tokens = 160 * kPage;
        cc.storage_dir = dir;
        return cc;
    };
    {
        Engine engine(place.tp_rank, place.cp_rank, shardedDecls(), kDevice);
        auto made = Cache::create(**job, config(engine));
        ASSERT_TRUE(made.isOk()) << made.status().toString();
        serve(**made, engine, 1, prompt);
        ASSERT_TRUE((*made)->drain().isOk());
    }
    std::vector<PoolDecl> replicated = shardedDecls();
    for (PoolDecl& d : replicated) d.cp = CpSharding::kReplicated;
    Engine engine(place.tp_rank, place.cp_rank, replicated, kDevice);
    {
        auto made = Cache::create(**job, config(engine));
        ASSERT_TRUE(made.isOk()) << made.status().toString();
        ASSERT_TRUE((*made)->prefetch(2, prompt).isOk());
        ASSERT_TRUE((*made)->drain().isOk());
        Admission a = serve(**made, engine, 2, prompt);
        EXPECT_EQ(a.cached_tokens, 0u) << "a replicated declaration reused per-CP-rank pages";
        ASSERT_TRUE((*made)->drain().isOk());
    }
    // The per-rank declaration itself does find them (the directory holds them).
    Engine again(place.tp_rank, place.cp_rank, shardedDecls(), kDevice);
    {
        auto made = Cache::create(**job, config(again));
        ASSERT_TRUE(made.isOk()) << made.status().toString();
        ASSERT_TRUE((*made)->prefetch(3, prompt).isOk());
        ASSERT_TRUE((*made)->drain().isOk());
        Admission a = serve(**made, again, 3, prompt);
        EXPECT_EQ(a.storage_hit_tokens, kPrefixPages * kPage);
        ASSERT_TRUE((*made)->drain().isOk());
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (place.world_rank == 0) std::filesystem::remove_all(dir);
}

// The remote tier on a CP 2 x DP 2 grid: replica 0 computes a prefix, replica 1 pulls it from the
// host pools of its peers (the ranks of its CP coordinate in replica 0), each CP rank its own
// shard of the per-CP-rank pools, and checks every byte.
TEST(EngineCpShard, PeersInAnotherReplicaServeEachCpRankItsOwnShard) {
    JobOptions jo;
    jo.cp = 2;
    jo.remote = "on";
    auto job = Job::create(jo);
    ASSERT_TRUE(job.isOk()) << job.status().toString();
    const RankPlace& place = (*job)->place();
    ASSERT_EQ(place.dp_size, 2) << "a CP 2 grid of two replicas";
    ASSERT_TRUE((*job)->remote());
    Engine engine(place.tp_rank, place.cp_rank, shardedDecls(), kDevice);
    CacheConfig cc;
    cc.model = "engine-cp-model";
    cc.pools = engine.decls();
    cc.page_size = kPage;
    cc.device_tokens = kDevice;
    cc.host_tokens = 160 * kPage;
    cc.check_consistency = true;
    auto made = Cache::create(**job, cc);
    ASSERT_TRUE(made.isOk()) << made.status().toString();
    Cache& cache = **made;
    const auto first = tokensOf(10, kPrefixPages * kPage + 5);
    const std::vector<std::int32_t> shared(first.begin(), first.begin() + kPrefixPages * kPage);
    if (place.dp_rank == 0) {
        EXPECT_EQ(serve(cache, engine, 1, first).cached_tokens, 0u);
        ASSERT_TRUE(cache.drain().isOk());  // in the host pool: published to the peers
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (place.dp_rank == 1) {
        const auto again = tokensOf(11, 22 * kPage, shared);
        // The directory learns of the pages asynchronously: ask again until it has (the tree is
        // agreed, so every rank of the replica takes the same branch).
        Cache::RequestId id = 100;
        for (int attempt = 0; attempt < 50; ++attempt) {
            ASSERT_TRUE(cache.prefetch(id++, again).isOk());
            ASSERT_TRUE(cache.drain().isOk());
            if (cache.matchTokens(again) >= kPrefixPages * kPage) break;
            ::usleep(100 * 1000);
        }
        Admission pulled = serve(cache, engine, id, again);
        EXPECT_EQ(pulled.remote_hit_tokens, kPrefixPages * kPage);
        EXPECT_EQ(pulled.cached_tokens, kPrefixPages * kPage);
        EXPECT_GT(cache.stats().remote_pages_pulled, 0u);
        ASSERT_TRUE(cache.drain().isOk());
    }
    MPI_Barrier(MPI_COMM_WORLD);  // replica 0's pools serve until replica 1 is done
}

}  // namespace
}  // namespace strata
