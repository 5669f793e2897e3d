// Striped loads in the controller (ControllerConfig::striped_loader), on the CPU back end with an
// in-process stand-in for the NCCL loader: every rank of a ThreadDecisionGroup runs its own
// controller over the same request sequence. The stand-in checks that every rank makes the same
// collective calls (pool geometry, layer range, page list with host and device slots, in the same
// order) and emulates the all-gather: page i of a call is read by rank i % n from its own host pool
// and written into every rank's device pool at that rank's device slot, so a page list that named
// different pages on different ranks would load wrong bytes, which the byte checks would see.
#include <gtest/gtest.h>

#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "strata/comm/nccl/striped_loader.h"
#include "strata/controller/cache_controller.h"
#include "strata/kernels/transfer.h"
#include "strata/testing/thread_decision_group.h"

namespace strata::controller {
namespace {

using testing::mix;
using testing::tokensOf;

// What the ranks' loaders share: the jobs of the current call, a generation barrier, and counts.
struct Rendezvous {
    explicit Rendezvous(int n) : n(n), jobs(static_cast<std::size_t>(n)) {}
    const int n;
    std::mutex mu;
    std::condition_variable cv;
    int arrived = 0;
    std::uint64_t generation = 0;
    std::vector<const kernels::CopyJob*> jobs;
    std::uint64_t calls = 0, mismatched_calls = 0, multi_layer_calls = 0, sharded_calls = 0;

    void arriveAndWait() {
        std::unique_lock lock(mu);
        const std::uint64_t gen = generation;
        if (++arrived == n) {
            arrived = 0;
            ++generation;
            cv.notify_all();
            return;
        }
        cv.wait(lock, [&] { return generation != gen; });
    }
};

std::string describeJob(const kernels::CopyJob& j) {
    std::string s =
        std::to_string(j.geometry.num_layers) + "/" + std::to_string(j.geometry.num_buffers) + "/" +
        std::to_string(j.geometry.row_bytes) + "/" + std::to_string(j.geometry.page_size) + " L" +
        std::to_string(j.layer_begin) + "-" + std::to_string(j.layer_end) + ":";
    for (const kernels::PageCopy& pc : j.pages) {
        s += " " + std::to_string(pc.device_page) + "<" + std::to_string(pc.host_page);
    }
    return s;
}

class FakeStripedLoader final : public comm::nccl::StripedLoader {
public:
    FakeStripedLoader(std::shared_ptr<Rendezvous> rv, int rank, kernels::Backend& backend,
                      std::size_t sharded_row_bytes)
        : rv_(std::move(rv)), rank_(rank), sharded_row_bytes_(sharded_row_bytes) {
        stream_ = std::move(backend.createStream()).value();
    }
    int rank() const noexcept override { return rank_; }
    int size() const noexcept override { return rv_->n; }
    std::size_t batchPagesPerRank(const kernels::CopyJob& job) const noexcept override {
        return job.pages.size();
    }
    Result<kernels::EventPtr> load(const kernels::CopyJob& job) override {
        {
            std::lock_guard lock(rv_->mu);
            rv_->jobs[rank_] = &job;
        }
        rv_->arriveAndWait();  // every rank has posted its job
        if (rank_ == 0) {
            std::lock_guard lock(rv_->mu);
            ++rv_->calls;
            const std::string mine = describeJob(job);
            for (const kernels::CopyJob* other : rv_->jobs) {
                if (describeJob(*other) != mine) {
                    ++rv_->mismatched_calls;
                    break;
                }
            }
            if (job.layer_end - job.layer_begin != 1) ++rv_->multi_layer_calls;
            if (job.geometry.row_bytes == sharded_row_bytes_) ++rv_->sharded_calls;
        }
        // The all-gather: this rank's stripe from its own host pool into every rank's GPU.
        const std::size_t n = static_cast<std::size_t>(rv_->n);
        for (std::size_t i = static_cast<std::size_t>(rank_); i < job.pages.size(); i += n) {
            for (const kernels::CopyJob* q : rv_->jobs) {
                const kernels::PageCopy pc{q->pages[i].device_page, job.pages[i].host_page};
                kernels::copyPagesCpu(job.geometry, q->device, job.host, {&pc, 1}, job.layer_begin,
                                      job.layer_end, kernels::Direction::kHostToDevice);
            }
        }
        rv_->arriveAndWait();  // every stripe has landed everywhere (the jobs may go now)
        return stream_->record();
    }

private:
    std::shared_ptr<Rendezvous> rv_;
    int rank_;
    std::size_t sharded_row_bytes_;
    std::unique_ptr<kernels::Stream> stream_;
};

constexpr std::uint32_t kPage = 8;
constexpr std::uint32_t kLayers = 4;

// One rank: an MLA-like replicated pool, a replicated sidecar on model layers 1 and 3 only, and
// a TP-sharded MHA pool, all in one slot space.
class Rank {
public:
    Rank(int rank, comm::DecisionGroup& group, comm::nccl::StripedLoader* loader,
         std::shared_ptr<Rendezvous> rv, std::uint64_t seed)
        : rank_(rank), group_(group) {
        kernels::BackendOptions bo;
        bo.jitter_us = 200;  // ranks see their copies finish at different times
        bo.jitter_seed = seed * 31 + static_cast<std::uint64_t>(rank);
        backend_ = std::move(kernels::Backend::create(kernels::BackendKind::kCpu, bo)).value();
        specs_.push_back({"kv", pools::PoolKind::kMla, kLayers, 1, 24, false});
        specs_.push_back({"indexer", pools::PoolKind::kIndexer, 2, 1, 12, false});
        specs_.push_back({"mha", pools::PoolKind::kMha, kLayers, 2, 20, true});
        layer_maps_ = {{}, {1, 3}, {}};
        for (const pools::PoolSpec& s : specs_) {
            dev_.push_back(std::make_unique<pools::DevicePool>(
                std::move(pools::DevicePool::create(*backend_, s, kPage * 12, kPage).value())));
            host_.push_back(std::make_unique<pools::HostPool>(
                std::move(pools::HostPool::create(*backend_, s, kPage * 64, kPage,
                                                  kernels::HostLayout::kPageFirst)
                              .value())));
        }
        if (rv != nullptr) {
            fake_ = std::make_unique<FakeStripedLoader>(rv, rank, *backend_, specs_[2].row_bytes);
            loader = fake_.get();
        }
        std::vector<PoolPair> pairs;
        for (std::size_t i = 0; i < specs_.size(); ++i) {
            pairs.push_back({dev_[i].get(), host_[i].get(), nullptr, nullptr, 0, layer_maps_[i]});
        }
        ControllerConfig cc;
        cc.page_size = kPage;
        cc.striped_loader = loader;
        auto c = CacheController::create(cc, *backend_, std::move(pairs), group);
        status_ = c.status();
        if (c.isOk()) ctl_ = std::move(c).value();
    }
    ~Rank() { ctl_.reset(); }

    const Status& createStatus() const { return status_; }
    CacheController& ctl() { return *ctl_; }

    void row(std::size_t pool, std::uint64_t prefix, std::uint32_t layer, std::uint32_t buf,
             std::byte* out) const {
        const std::uint64_t shard = specs_[pool].sharded_across_tp ? rank_ + 1 : 0;
        std::uint64_t s = mix(prefix ^ mix(pool * 7919 + layer * 131 + buf + shard * 104729));
        for (std::size_t i = 0; i < specs_[pool].row_bytes; ++i) {
            if (i % 8 == 0) s = mix(s);
            out[i] = static_cast<std::byte>(s >> (8 * (i % 8)));
        }
    }

    // Verifies model layer `layer` of tokens [0, reused) and writes it for [reused, end).
    std::size_t layerPass(const std::vector<std::int32_t>& tokens, const Admission& a,
                          std::uint32_t layer) {
        std::vector<std::uint64_t> d = testing::Harness::prefixDigests(tokens);
        std::size_t bad = 0;
        std::vector<std::byte> want(64);
        for (std::size_t p = 0; p < specs_.size(); ++p) {
            std::uint32_t pl = layer;
            if (!layer_maps_[p].empty()) {
                auto it = std::find(layer_maps_[p].begin(), layer_maps_[p].end(), layer);
                if (it == layer_maps_[p].end()) continue;
                pl = static_cast<std::uint32_t>(it - layer_maps_[p].begin());
            }
            for (std::size_t t = 0; t < tokens.size(); ++t) {
                const std::size_t slot = a.device_pages[t / kPage] * kPage + t % kPage;
                for (std::uint32_t b = 0; b < specs_[p].num_buffers; ++b) {
                    row(p, d[t], layer, b, want.data());
                    std::byte* got = dev_[p]->row(b, pl, slot);
                    if (t < a.reusedTokens()) {
                        bad += std::memcmp(got, want.data(), specs_[p].row_bytes) != 0;
                    } else {
                        std::memcpy(got, want.data(), specs_[p].row_bytes);
                    }
                }
            }
        }
        return bad;
    }

private:
    int rank_;
    comm::DecisionGroup& group_;
    std::unique_ptr<kernels::Backend> backend_;
    std::vector<pools::PoolSpec> specs_;
    std::vector<std::vector<std::uint32_t>> layer_maps_;
    std::vector<std::unique_ptr<pools::DevicePool>> dev_;
    std::vector<std::unique_ptr<pools::HostPool>> host_;
    std::unique_ptr<FakeStripedLoader> fake_;
    Status status_;
    std::unique_ptr<CacheController> ctl_;
};

struct RankResult {
    std::size_t mismatched_rows = 0;
    std::uint64_t host_hit_tokens = 0;
    ControllerStats stats;
    Status status;
};

// The same request sequence on every rank: prompts that share prefixes, on a device pool small
// enough that prefixes move to the host and are loaded back.
RankResult serveAll(Rank& r, std::uint64_t seed) {
    RankResult out;
    CacheController& c = r.ctl();
    std::vector<std::vector<std::int32_t>> prefixes;
    for (int i = 0; i < 4; ++i) prefixes.push_back(tokensOf(seed * 100 + i, 3 * kPage));
    RequestId next = 1;
    for (int round = 0; round < 24 && out.status.isOk(); ++round) {
        out.status = c.step();
        if (!out.status.isOk()) break;
        std::vector<std::pair<std::vector<std::int32_t>, Admission>> batch;
        for (int k = 0; k < 2; ++k) {
            const std::uint64_t pick = mix(seed + round * 2 + k);
            auto tokens = tokensOf(pick, 5 * kPage + pick % kPage, prefixes[pick % 4]);
            auto keys = core::pageKeys(core::PageKey{1, 2}, tokens, kPage);
            auto a = c.admit(next, keys, tokens.size());
            if (!a.isOk()) break;
            batch.emplace_back(std::move(tokens), std::move(a).value());
            ++next;
        }
        out.status = c.launchLoads();
        RequestId id = next - batch.size();
        for (auto& [tokens, a] : batch) {
            for (std::uint32_t l = 0; l < kLayers && out.status.isOk(); ++l) {
                out.status = c.waitLayer(id, l);
                out.mismatched_rows += r.layerPass(tokens, a, l);
            }
            out.host_hit_tokens += a.host_hit_tokens;
            if (out.status.isOk()) out.status = c.insert(id);
            if (out.status.isOk()) out.status = c.release(id);
            ++id;
        }
        if (batch.empty() && out.status.isOk()) out.status = c.waitForProgress();
    }
    if (out.status.isOk()) out.status = c.drain();
    if (out.status.isOk()) out.status = c.checkInvariants();
    out.stats = c.stats();
    return out;
}

std::vector<RankResult> runGroup(int n, bool striped, std::uint64_t seed,
                                 std::shared_ptr<Rendezvous>* rv_out = nullptr) {
    auto members = strata::testing::ThreadDecisionGroup::createGroup(n);
    auto rv = striped ? std::make_shared<Rendezvous>(n) : nullptr;
    if (rv_out != nullptr) *rv_out = rv;
    std::vector<RankResult> results(static_cast<std::size_t>(n));
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) {
        threads.emplace_back([&, i] {
            Rank r(i, *members[i], nullptr, rv, seed);
            if (!r.createStatus().isOk()) {
                results[i].status = r.createStatus();
                return;
            }
            results[i] = serveAll(r, seed);
        });
    }
    for (auto& t : threads) t.join();
    return results;
}

TEST(StripedLoads, ReplicatedPoolsGoThroughTheLoaderWithIdenticalListsOnEveryRank) {
    for (int n : {2, 3}) {
        for (std::uint64_t seed : {1u, 2u}) {
            SCOPED_TRACE("ranks " + std::to_string(n) + " seed " + std::to_string(seed));
            std::shared_ptr<Rendezvous> rv;
            auto results = runGroup(n, true, seed, &rv);
            for (const RankResult& r : results) {
                ASSERT_TRUE(r.status.isOk()) << r.status.toString();
                EXPECT_EQ(r.mismatched_rows, 0u);
                EXPECT_GT(r.host_hit_tokens, 0u) << "the workload must load pages back";
                EXPECT_GT(r.stats.striped_pages, 0u);
                // kv and indexer pages per loaded page: both replicated pools went striped.
                EXPECT_EQ(r.stats.striped_pages, 2 * r.stats.load_pages);
                EXPECT_LT(r.stats.striped_bytes, r.stats.load_bytes);  // mha stayed local
                EXPECT_EQ(r.stats.striped_pages, results[0].stats.striped_pages);
            }
            EXPECT_GT(rv->calls, 0u);
            EXPECT_EQ(rv->mismatched_calls, 0u) << "ranks made different collective calls";
            EXPECT_EQ(rv->multi_layer_calls, 0u) << "striped loads run one model layer a call";
            EXPECT_EQ(rv->sharded_calls, 0u) << "the TP-sharded pool must not be striped";
        }
    }
}

// Every row either path loads back is the row that was computed. How many pages each run loads
// depends on when its backups complete before the next admission (a thread's timing), so the two
// runs are not compared page for page: that comparison failed under load and AddressSanitizer
// (18 pages loaded against 27), while every loaded byte was right.
TEST(StripedLoads, SameBytesAsTheOrdinaryPath) {
    auto plain = runGroup(2, false, 5);
    auto striped = runGroup(2, true, 5);
    for (int i = 0; i < 2; ++i) {
        ASSERT_TRUE(plain[i].status.isOk()) << plain[i].status.toString();
        ASSERT_TRUE(striped[i].status.isOk()) << striped[i].status.toString();
        EXPECT_EQ(plain[i].mismatched_rows, 0u);
        EXPECT_EQ(striped[i].mismatched_rows, 0u);
        EXPECT_EQ(plain[i].stats.striped_pages, 0u);
        EXPECT_GT(plain[i].stats.load_pages, 0u);
        EXPECT_GT(striped[i].stats.load_pages, 0u);
        EXPECT_EQ(striped[i].stats.striped_pages, 2 * striped[i].stats.load_pages);
        // The ranks of one group agree on every load, whatever the timing.
        EXPECT_EQ(plain[i].stats.load_pages, plain[0].stats.load_pages);
        EXPECT_EQ(striped[i].stats.load_pages, striped[0].stats.load_pages);
    }
}

TEST(StripedLoads, OneRankGroupKeepsTheOrdinaryPath) {
    auto results = runGroup(1, true, 3);
    ASSERT_TRUE(results[0].status.isOk()) << results[0].status.toString();
    EXPECT_EQ(results[0].mismatched_rows, 0u);
    EXPECT_GT(results[0].stats.load_pages, 0u);
    EXPECT_EQ(results[0].stats.striped_pages, 0u);
}

TEST(StripedLoads, LoaderOfAnotherGroupIsRefused) {
    comm::LocalDecisionGroup one;
    auto rv = std::make_shared<Rendezvous>(2);
    kernels::BackendOptions bo;
    auto backend = std::move(kernels::Backend::create(kernels::BackendKind::kCpu, bo)).value();
    FakeStripedLoader loader(rv, 1, *backend, 0);
    Rank r(0, one, &loader, nullptr, 1);
    EXPECT_EQ(r.createStatus().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.createStatus().message().find("rank 1 of 2"), std::string::npos)
        << r.createStatus().message();
}

}  // namespace
}  // namespace strata::controller
