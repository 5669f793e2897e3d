// Jobs that are not MPI jobs (JobOptions::agree_min), through the public C++ API: two threads of
// one process, each its own Job and Cache (TP2 over engine-owned pools), whose decision group is
// an all-reduce the test provides. MPI is never initialised; both ranks take identical decisions
// and the prefixes hit as expected, every reused byte checked (engine_model.h).
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "engine_model.h"
#include "strata/strata.hpp"

namespace strata {
namespace {

using engine_test::Engine;
using engine_test::kDeviceTokens;
using engine_test::kPage;
using engine_test::tokensOf;

// Element-wise MIN over `size` threads: what torch.distributed's all_reduce(MIN) is to an engine.
class ThreadAllReduce {
public:
    explicit ThreadAllReduce(int size) : size_(size) {}

    Status agreeMin(std::span<std::int64_t> values) {
        std::unique_lock lock(mutex_);
        ++calls_;
        if (arrived_ == 0) {
            acc_.assign(values.begin(), values.end());
        } else if (acc_.size() != values.size()) {
            return Status(StatusCode::kInternal, "lengths differ");  // the test fails: a hang
        } else {
            for (std::size_t i = 0; i < values.size(); ++i) acc_[i] = std::min(acc_[i], values[i]);
        }
        const std::uint64_t generation = generation_;
        if (++arrived_ == size_) {
            result_ = acc_;
            arrived_ = 0;
            ++generation_;
            cv_.notify_all();
        } else if (!cv_.wait_for(lock, std::chrono::seconds(120),
                                 [&] { return generation_ != generation; })) {
            return Status(StatusCode::kTimeout, "the other rank never came");
        }
        std::copy(result_.begin(), result_.end(), values.begin());
        return Status::ok();
    }

    std::uint64_t calls() {
        std::lock_guard lock(mutex_);
        return calls_;
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    int size_;
    int arrived_ = 0;
    std::uint64_t generation_ = 0, calls_ = 0;
    std::vector<std::int64_t> acc_, result_;
};

bool mpiInitialized() {
    int flag = 0;
    MPI_Initialized(&flag);
    return flag != 0;
}

TEST(EngineCallback, TwoRanksWithoutMpiTakeIdenticalDecisionsAndHit) {
    constexpr int kRanks = 2;
    ThreadAllReduce reduce(kRanks);
    std::vector<std::vector<Admission>> got(kRanks);
    std::vector<RankPlace> places(kRanks);
    std::vector<std::thread> threads;
    for (int rank = 0; rank < kRanks; ++rank) {
        threads.emplace_back([&, rank] {
            JobOptions jo;
            jo.tp = kRanks;
            jo.agree_min = [&reduce](std::span<std::int64_t> v) { return reduce.agreeMin(v); };
            jo.rank = rank;
            jo.world_size = kRanks;
            jo.local_rank = rank;
            jo.log_level = "warn";
            auto job = Job::create(jo);
            ASSERT_TRUE(job.isOk()) << job.status().toString();
            places[static_cast<std::size_t>(rank)] = (*job)->place();
            Engine engine(rank);
            CacheConfig cc;
            cc.model = "engine-test-model";
            cc.pools = engine.decls();
            cc.page_size = kPage;
            cc.device_tokens = kDeviceTokens;
            cc.host_tokens = 64 * kPage;
            cc.check_consistency = true;
            auto cache = Cache::create(**job, cc);
            ASSERT_TRUE(cache.isOk()) << cache.status().toString();
            Cache& c = **cache;
            auto serve = [&](Cache::RequestId id, const std::vector<std::int32_t>& tokens) {
                got[static_cast<std::size_t>(rank)].push_back(engine_test::serve(
                    c, engine, id, tokens, [] {}, [] {}));
            };
            const auto first = tokensOf(1, 5 * kPage + 3);
            serve(1, first);
            ASSERT_TRUE(c.drain().isOk());
            serve(2, first);
            serve(3, tokensOf(2, 7 * kPage));
            serve(4, tokensOf(3, 7 * kPage));
            ASSERT_TRUE(c.drain().isOk());
            serve(5, tokensOf(4, 6 * kPage, first));
            ASSERT_TRUE(c.drain().isOk());
            EXPECT_EQ(engine.paddingChanged(), 0u);
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_FALSE(mpiInitialized()) << "a job with agree_min initialised MPI";
    EXPECT_GT(reduce.calls(), 0u);
    for (int rank = 0; rank < kRanks; ++rank) {
        const RankPlace& p = places[static_cast<std::size_t>(rank)];
        EXPECT_EQ(p.world_rank, rank);
        EXPECT_EQ(p.tp_rank, rank);
        EXPECT_EQ(p.tp_size, kRanks);
        EXPECT_EQ(p.dp_size, 1);
        EXPECT_EQ(p.device, -1);
    }
    ASSERT_EQ(got[0].size(), 5u);
    ASSERT_EQ(got[1].size(), 5u);
    for (std::size_t i = 0; i < 5; ++i) {
        EXPECT_EQ(got[0][i].cached_tokens, got[1][i].cached_tokens) << "request " << i + 1;
        EXPECT_EQ(got[0][i].pages, got[1][i].pages) << "request " << i + 1;
        for (std::size_t p = 0; p < got[0][i].pools.size(); ++p) {
            EXPECT_EQ(got[0][i].pools[p].pages, got[1][i].pools.at(p).pages) << i + 1;
        }
    }
    EXPECT_EQ(got[0][1].device_hit_tokens, 5 * kPage);
    EXPECT_EQ(got[0][4].host_hit_tokens, 5 * kPage);
}

TEST(EngineCallback, OptionsThatNeedMpiAreRefused) {
    JobOptions jo;
    jo.agree_min = [](std::span<std::int64_t>) { return Status::ok(); };
    jo.pp = 2;
    jo.world_size = 2;
    auto job = Job::create(jo);
    ASSERT_FALSE(job.isOk());
    EXPECT_EQ(job.status().code(), StatusCode::kNotSupported);
    EXPECT_NE(job.status().message().find("pp 2"), std::string::npos) << job.status().message();
    jo.pp = 1;
    jo.remote = "auto";
    job = Job::create(jo);
    ASSERT_FALSE(job.isOk());
    EXPECT_NE(job.status().message().find("remote 'auto'"), std::string::npos)
        << job.status().message();
    jo.remote = "off";
    jo.tp = 4;  // does not divide 2 ranks
    job = Job::create(jo);
    ASSERT_FALSE(job.isOk());
    EXPECT_EQ(job.status().code(), StatusCode::kInvalidArgument);
    EXPECT_FALSE(mpiInitialized());
}

}  // namespace
}  // namespace strata
