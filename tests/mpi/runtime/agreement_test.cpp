// Whole caches on every rank of a TP x CP (x PP) grid, with per-rank copy jitter: ranks never
// diverge, and each failure shape the closest system shipped either stays consistent or stops
// every rank in the same round with a clear error.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include <filesystem>

#include "strata/app/kv_pattern.h"
#include "strata/comm/consistency.h"
#include "strata/comm/grid.h"
#include "strata/comm/job_collectives.h"
#include "strata/comm/mpi_decision_group.h"
#include "strata/io/hdf5_page_store.h"
#include "strata/runtime/cache.h"
#include "strata/testing/mpi_test_util.h"

namespace strata::runtime {
namespace {

using app::fillRow;
using app::PrefixDigests;
using app::verifyRow;
using testing::worldRank;
using testing::worldSize;

comm::GridShape shapeFor(int world) {
    if (world % 4 == 0) return {2, 2, 1};
    if (world % 2 == 0) return {2, 1, 1};
    return {1, 1, 1};
}

// The same seed on every rank (rank 0 draws it and prints it).
std::uint64_t sharedSeed() {
    std::uint64_t seed = std::random_device{}();
    std::vector<std::byte> bytes(sizeof seed);
    std::memcpy(bytes.data(), &seed, sizeof seed);
    EXPECT_TRUE(comm::broadcastBytes(comm::MpiComm::world(), &bytes, 0).isOk());
    std::memcpy(&seed, bytes.data(), sizeof seed);
    if (worldRank() == 0) std::printf("[ seed ] %llu\n", static_cast<unsigned long long>(seed));
    return seed;
}

struct Rig {
    comm::Grid grid;
    comm::MpiDecisionGroup group;
    std::unique_ptr<Cache> cache;

    static Rig make(comm::GridShape shape, CacheOptions o) {
        auto grid = comm::Grid::create(comm::MpiComm::world(), shape);
        EXPECT_TRUE(grid.isOk()) << grid.status().toString();
        auto group = comm::MpiDecisionGroup::create(*grid);
        EXPECT_TRUE(group.isOk()) << group.status().toString();
        Rig rig{std::move(grid).value(), std::move(group).value(), nullptr};
        o.controller.storage.tp_rank = rig.grid.tpRank();
        o.controller.storage.tp_size = rig.grid.tpSize();
        auto cache = Cache::create(o, rig.group);
        EXPECT_TRUE(cache.isOk()) << cache.status().toString();
        rig.cache = std::move(cache).value();
        return rig;
    }
};

CacheOptions smallOptions(std::uint64_t jitter_seed) {
    CacheOptions o;
    o.model = "llama3-8b";
    o.layers = 2;
    o.page_size = 16;
    o.device_tokens = 16 * 40;
    o.host = {.tokens = 16 * 64};
    o.backend = kernels::BackendKind::kCpu;
    o.backend_options.jitter_us = 150;
    o.backend_options.jitter_seed = jitter_seed + static_cast<std::uint64_t>(worldRank()) * 7919;
    return o;
}

// Serves one request the way a worker does, checking every reused byte.
std::size_t serve(Cache& cache, RequestId id, const std::vector<std::int32_t>& tokens, int shard) {
    auto a = cache.admit(id, tokens);
    if (!a.isOk()) {
        EXPECT_EQ(a.status().code(), StatusCode::kResourceExhausted) << a.status().toString();
        return 0;
    }
    PrefixDigests d(tokens);
    std::size_t bad = 0;
    const auto& pool = cache.devicePools().front();
    const std::size_t P = cache.options().page_size, row = pool.spec().row_bytes;
    EXPECT_TRUE(cache.launchLoads().isOk());
    for (std::uint32_t l = 0; l < cache.numLayers(); ++l) {
        EXPECT_TRUE(cache.waitLayer(id, l).isOk());
        for (std::size_t t = 0; t < tokens.size(); ++t) {
            std::size_t slot = a->device_pages[t / P] * P + t % P;
            for (std::uint32_t b = 0; b < pool.spec().num_buffers; ++b) {
                std::span<std::byte> r(pool.row(b, l, slot), row);
                if (t < a->reusedTokens()) {
                    bad += !verifyRow(r, d.at(t), l, 0, static_cast<std::uint32_t>(shard), b);
                } else {
                    fillRow(r, d.at(t), l, 0, static_cast<std::uint32_t>(shard), b);
                }
            }
        }
    }
    EXPECT_TRUE(cache.insert(id).isOk());
    EXPECT_TRUE(cache.release(id).isOk());
    return bad;
}

// A request stream with shared prefixes, identical on every rank for one seed.
class Stream {
public:
    explicit Stream(std::uint64_t seed) : rng_(seed) {
        for (int i = 0; i < 5; ++i) roots_.push_back(draw(16 * (2 + rng_() % 6)));
    }
    std::vector<std::int32_t> next() {
        auto t = roots_[rng_() % roots_.size()];
        t.resize(rng_() % (t.size() + 1));
        auto tail = draw(1 + rng_() % 120);
        t.insert(t.end(), tail.begin(), tail.end());
        return t;
    }
    std::uint64_t draw() { return rng_(); }

private:
    std::vector<std::int32_t> draw(std::size_t n) {
        std::vector<std::int32_t> v(n);
        for (auto& x : v) x = static_cast<std::int32_t>(rng_() % 30000);
        return v;
    }
    std::mt19937_64 rng_;
    std::vector<std::vector<std::int32_t>> roots_;
};

TEST(Agreement, LongJitteredRunsNeverDiverge) {
    const std::uint64_t seed = sharedSeed();
    Rig rig = Rig::make(shapeFor(worldSize()), smallOptions(seed));
    comm::ConsistencyChecker checker(rig.group);
    Stream stream(seed);
    std::size_t bad = 0;
    RequestId id = 1;
    const int rounds = 2000;
    for (int round = 0; round < rounds; ++round) {
        ASSERT_TRUE(rig.cache->step().isOk());
        Status c = checker.check(rig.cache->controller().stateDigest(), "agreement test");
        ASSERT_TRUE(c.isOk()) << c.toString();
        int n = static_cast<int>(stream.draw() % 3);
        for (int i = 0; i < n; ++i)
            bad += serve(*rig.cache, id++, stream.next(), rig.grid.tpRank());
    }
    ASSERT_TRUE(rig.cache->drain().isOk());
    ASSERT_TRUE(checker.check(rig.cache->controller().stateDigest(), "end").isOk());
    EXPECT_EQ(checker.divergences(), 0u);
    EXPECT_EQ(checker.roundsChecked(), static_cast<std::uint64_t>(rounds) + 1);
    EXPECT_EQ(bad, 0u);
    const auto& st = rig.cache->controller().stats();
    EXPECT_GT(st.load_pages, 0u);
    EXPECT_GT(st.device_evicted_pages, 0u);
    EXPECT_TRUE(rig.cache->controller().checkInvariants().isOk());
}

// Runs rounds until step() fails (or `rounds` pass); returns the failing round or -1.
int roundOfFirstFailure(Rig& rig, Stream& stream, int rounds, std::string* message,
                        const std::function<void(int round, RequestId& id)>& extra = {}) {
    RequestId id = 1;
    for (int round = 0; round < rounds; ++round) {
        Status s = rig.cache->step();
        if (!s.isOk()) {
            *message = s.message();
            return round;
        }
        if (extra) extra(round, id);
        serve(*rig.cache, id++, stream.next(), rig.grid.tpRank());
    }
    return -1;
}

void expectSameFailureRoundEverywhere(int failed_round, const std::string& message) {
    std::vector<double> all;
    ASSERT_TRUE(comm::allGather(comm::MpiComm::world(), failed_round, &all).isOk());
    for (double r : all) EXPECT_EQ(r, all[0]) << "ranks stopped in different rounds";
    EXPECT_GE(failed_round, 0) << "no rank noticed";
    EXPECT_NE(message.find("different cache decisions"), std::string::npos) << message;
}

TEST(Agreement, HostAllocationFailingOnOneRankStopsEveryRankInTheSameRound) {
    STRATA_SKIP_BELOW_RANKS(2);
    const std::uint64_t seed = sharedSeed();
    CacheOptions o = smallOptions(seed);
    if (worldRank() == 1) o.controller.fail_host_allocation = 5;
    Rig rig = Rig::make(shapeFor(worldSize()), o);
    Stream stream(seed);
    std::string message;
    int failed = roundOfFirstFailure(rig, stream, 400, &message);
    expectSameFailureRoundEverywhere(failed, message);
}

TEST(Agreement, RequestKnownToOneRankStopsEveryRankInTheSameRound) {
    STRATA_SKIP_BELOW_RANKS(2);
    const std::uint64_t seed = sharedSeed();
    Rig rig = Rig::make(shapeFor(worldSize()), smallOptions(seed));
    Stream stream(seed);
    std::string message;
    int failed = roundOfFirstFailure(rig, stream, 400, &message, [&](int round, RequestId& id) {
        if (round == 10 && worldRank() == 0) serve(*rig.cache, 1000000, stream.next(), 0);
        (void)id;
    });
    expectSameFailureRoundEverywhere(failed, message);
}

TEST(Agreement, AbortingRequestsWithCopiesInFlightKeepsRanksIdentical) {
    const std::uint64_t seed = sharedSeed();
    Rig rig = Rig::make(shapeFor(worldSize()), smallOptions(seed));
    comm::ConsistencyChecker checker(rig.group);
    Stream stream(seed);
    RequestId id = 1;
    for (int round = 0; round < 400; ++round) {
        ASSERT_TRUE(rig.cache->step().isOk());
        ASSERT_TRUE(checker.check(rig.cache->controller().stateDigest(), "abort").isOk());
        auto tokens = stream.next();
        if (stream.draw() % 3 == 0) {
            // Admitted, loads launched, then aborted before anything is computed.
            auto a = rig.cache->admit(id, tokens);
            if (a.isOk()) {
                ASSERT_TRUE(rig.cache->launchLoads().isOk());
                ASSERT_TRUE(rig.cache->abort(id).isOk());
            }
            ++id;
        } else {
            EXPECT_EQ(serve(*rig.cache, id++, tokens, rig.grid.tpRank()), 0u);
        }
    }
    ASSERT_TRUE(rig.cache->drain().isOk());
    ASSERT_TRUE(checker.check(rig.cache->controller().stateDigest(), "end").isOk());
    EXPECT_TRUE(rig.cache->controller().checkInvariants().isOk());
}

// Replicated pools (MLA) are written to the shared storage tier by exactly one rank per page: the
// pages written, summed over the ranks, equal the distinct pages on disk.
TEST(Agreement, OneWriterPerReplicatedPage) {
    const std::uint64_t seed = sharedSeed();
    std::vector<std::byte> path;
    if (worldRank() == 0) {
        std::string dir = (std::filesystem::temp_directory_path() /
                           ("strata-mpi-writers-" + std::to_string(seed)))
                              .string();
        path.assign(reinterpret_cast<const std::byte*>(dir.data()),
                    reinterpret_cast<const std::byte*>(dir.data()) + dir.size());
    }
    ASSERT_TRUE(comm::broadcastBytes(comm::MpiComm::world(), &path, 0).isOk());
    const std::string dir(reinterpret_cast<const char*>(path.data()), path.size());
    CacheOptions o = smallOptions(seed);
    o.model = "deepseek-v3";
    o.storage_dir = dir;
    o.world_rank = worldRank();
    o.host = {.tokens = 16 * 48};
    comm::GridShape shape = shapeFor(worldSize());
    o.controller.storage.cp_rank = worldRank() / shape.tp % shape.cp;
    o.controller.storage.cp_size = shape.cp;
    std::uint64_t written = 0;
    {
        Rig rig = Rig::make(shape, o);
        Stream stream(seed);
        RequestId id = 1;
        for (int round = 0; round < 200; ++round) {
            ASSERT_TRUE(rig.cache->step().isOk());
            serve(*rig.cache, id++, stream.next(), 0);
        }
        ASSERT_TRUE(rig.cache->drain().isOk());
        written = rig.cache->storageStats().pages_written;
        EXPECT_EQ(rig.cache->storageStats().checksum_failures, 0u);
    }
    std::vector<std::uint64_t> total{written};
    ASSERT_TRUE(comm::allReduceSum(comm::MpiComm::world(), total).isOk());
    if (worldRank() == 0) {
        std::size_t on_disk = 0;
        for (const auto& e : std::filesystem::directory_iterator(dir)) {
            io::Hdf5StoreOptions so;
            so.directory = dir;
            so.pool_signature = e.path().filename().string();
            so.page_bytes = 16 * 2 * 1152;  // deepseek-v3: 576 bf16 values per row, 2 layers
            auto store = io::Hdf5PageStore::create(so);
            ASSERT_TRUE(store.isOk()) << store.status().toString();
            on_disk += (*store)->indexedPages();
        }
        EXPECT_GT(on_disk, 0u);
        EXPECT_EQ(total[0], on_disk) << "a replicated page was written by more than one rank";
        std::filesystem::remove_all(dir);
    }
}

TEST(Agreement, DeviceCapacityDifferingByOnePageStaysConsistent) {
    STRATA_SKIP_BELOW_RANKS(2);
    const std::uint64_t seed = sharedSeed();
    CacheOptions o = smallOptions(seed);
    if (worldRank() == 1) o.device_tokens += o.page_size;
    Rig rig = Rig::make(shapeFor(worldSize()), o);
    std::vector<double> pages;
    ASSERT_TRUE(comm::allGather(comm::MpiComm::world(),
                                rig.cache->controller().deviceAllocator().numPages(), &pages)
                    .isOk());
    for (double p : pages) EXPECT_EQ(p, 40.0);  // everyone uses the smallest capacity
    comm::ConsistencyChecker checker(rig.group);
    Stream stream(seed);
    std::string message;
    RequestId id = 1;
    for (int round = 0; round < 300; ++round) {
        ASSERT_TRUE(rig.cache->step().isOk());
        ASSERT_TRUE(checker.check(rig.cache->controller().stateDigest(), "capacity").isOk());
        serve(*rig.cache, id++, stream.next(), rig.grid.tpRank());
    }
    EXPECT_EQ(checker.divergences(), 0u);
}

TEST(Agreement, PipelineStagesWithDifferentBytesPerTokenAgreeOnCapacity) {
    STRATA_SKIP_BELOW_RANKS(2);
    if (worldSize() % 2 != 0) GTEST_SKIP() << "needs an even world";
    const std::uint64_t seed = sharedSeed();
    comm::GridShape shape{worldSize() / 2, 1, 2};
    auto grid = comm::Grid::create(comm::MpiComm::world(), shape);
    ASSERT_TRUE(grid.isOk()) << grid.status().toString();
    CacheOptions o = smallOptions(seed);
    o.layers = grid->ppRank() == 0 ? 3 : 2;  // an uneven split: stage 0 holds more bytes per token
    o.host = {.bytes = 16 * 64 * 4096 * 2};
    Rig rig = Rig::make(shape, o);
    std::vector<double> pages;
    ASSERT_TRUE(comm::allGather(comm::MpiComm::world(),
                                rig.cache->controller().hostAllocator().numPages(), &pages)
                    .isOk());
    for (double p : pages) EXPECT_EQ(p, pages[0]) << "stages disagree on host capacity";
    comm::ConsistencyChecker checker(rig.group);
    Stream stream(seed);
    RequestId id = 1;
    for (int round = 0; round < 300; ++round) {
        ASSERT_TRUE(rig.cache->step().isOk());
        Status c = checker.check(rig.cache->controller().stateDigest(), "pp");
        ASSERT_TRUE(c.isOk()) << c.toString();
        serve(*rig.cache, id++, stream.next(), rig.grid.tpRank());
    }
    ASSERT_TRUE(rig.cache->drain().isOk());
    EXPECT_EQ(checker.divergences(), 0u);
}

}  // namespace
}  // namespace strata::runtime
