// The remote tier as the controller drives it: pages published when they enter a host pool (a
// reaped backup), pulled by another replica's prefetch into its host pool and grafted as host
// pages counted as remote hits (bit-exact), retracted when host eviction frees them, and a remote
// run followed by the storage tier for the rest of the prompt.
#include <gtest/gtest.h>

#include <map>
#include <mutex>

#include "harness.h"
#include "strata/testing/memory_page_store.h"

namespace strata::controller {
namespace {

using strata::testing::MemoryPageStore;
using testing::Harness;
using testing::HarnessOptions;
using testing::tokensOf;

// One directory shared by the replicas of a test: key -> (holder's host pool, slot).
struct Directory {
    std::mutex mu;
    std::map<PageKey, std::pair<const pools::HostPool*, std::uint32_t>> holders;
};

// A replica's view of the directory; pulls copy the holder's slot into this replica's pool.
// A page store with the publish_retract capability, like io::RemotePageStore.
class FakeRemote final : public io::PageStore {
public:
    explicit FakeRemote(Directory& d) : dir_(d) {}
    const pools::HostPool* pool = nullptr;  // this replica's host pool, set once built

    Capabilities capabilities() const noexcept override {
        return {.shared_across_ranks = true, .publish_retract = true};
    }

    Result<std::size_t> exists(std::span<const PageKey> keys) override {
        std::lock_guard lk(dir_.mu);
        std::size_t n = 0;
        while (n < keys.size() && heldElsewhere(keys[n])) ++n;
        return n;
    }
    Result<std::size_t> get(std::span<const PageKey> keys, const pools::HostPool& into,
                            std::span<const std::uint32_t> host_pages) override {
        EXPECT_EQ(&into, pool);
        std::lock_guard lk(dir_.mu);
        std::size_t n = 0;
        for (; n < keys.size() && heldElsewhere(keys[n]); ++n) {
            const auto& [holder, slot] = dir_.holders.at(keys[n]);
            MemoryPageStore copy;
            if (!copy.set(keys.subspan(n, 1), *holder, std::span(&slot, 1)).isOk()) break;
            if (*copy.get(keys.subspan(n, 1), *pool, host_pages.subspan(n, 1)) != 1) break;
        }
        pulled += n;
        return n;
    }
    Result<std::size_t> set(std::span<const PageKey> keys, const pools::HostPool& from,
                            std::span<const std::uint32_t> host_pages) override {
        STRATA_RETURN_IF_ERROR(publish(keys, from, host_pages));
        return keys.size();
    }
    io::StoreStats stats() const override { return {}; }
    Status publish(std::span<const PageKey> keys, const pools::HostPool& from,
                   std::span<const std::uint32_t> host_pages) override {
        EXPECT_EQ(&from, pool);
        std::lock_guard lk(dir_.mu);
        for (std::size_t i = 0; i < keys.size(); ++i) dir_.holders[keys[i]] = {pool, host_pages[i]};
        published += keys.size();
        return Status::ok();
    }
    Status retract(std::span<const PageKey> keys) override {
        std::lock_guard lk(dir_.mu);
        for (const PageKey& k : keys) {
            auto it = dir_.holders.find(k);
            if (it != dir_.holders.end() && it->second.first == pool) dir_.holders.erase(it);
        }
        retracted += keys.size();
        return Status::ok();
    }
    std::size_t published = 0, retracted = 0, pulled = 0;

private:
    bool heldElsewhere(const PageKey& k) const {
        auto it = dir_.holders.find(k);
        return it != dir_.holders.end() && it->second.first != pool;
    }
    Directory& dir_;
};

HarnessOptions remoteOptions(FakeRemote* remote, MemoryPageStore* store = nullptr) {
    HarnessOptions o;
    o.device_tokens = 16 * 10;
    o.host_tokens = 16 * 20;
    o.remote = remote;
    o.store = store;
    o.storage.prefetch_threshold_tokens = 32;
    o.storage.prefetch_policy = PrefetchPolicy::kWaitComplete;
    return o;
}

void settle(Harness& h) {
    ASSERT_TRUE(h.ctl().drain().isOk());
    ASSERT_TRUE(h.ctl().checkInvariants().isOk()) << h.ctl().checkInvariants().toString();
}

TEST(Remote, TheRuleForHybridModelsIsDecidedInOnePlace) {
    EXPECT_TRUE(remoteTierServes("llama3-8b", false).isOk());
    const Status refused = remoteTierServes("gpt-oss", true);
    EXPECT_EQ(refused.code(), StatusCode::kNotSupported);
    for (const char* part :
         {"model 'gpt-oss'", "the remote tier does not serve hybrid models", "--remote off"}) {
        EXPECT_NE(refused.message().find(part), std::string::npos) << refused.message();
    }
}

TEST(Remote, AStoreThatCannotPublishIsRefusedAsTheRemoteTier) {
    MemoryPageStore plain;  // a storage-like store: no publish_retract capability
    EXPECT_FALSE(plain.capabilities().publish_retract);
    auto backend = std::move(kernels::Backend::create(kernels::BackendKind::kCpu, {})).value();
    pools::PoolSpec spec;
    spec.name = "kv";
    spec.kind = pools::PoolKind::kMha;
    spec.num_layers = 2;
    spec.num_buffers = 2;
    spec.row_bytes = 16;
    auto dev = std::move(pools::DevicePool::create(*backend, spec, 16 * 4, 16)).value();
    auto host = std::move(pools::HostPool::create(*backend, spec, 16 * 8, 16,
                                                  kernels::HostLayout::kPageFirst))
                    .value();
    EXPECT_EQ(plain.publish({}, host, {}).code(), StatusCode::kNotSupported);
    EXPECT_EQ(plain.retract({}).code(), StatusCode::kNotSupported);
    comm::LocalDecisionGroup group;
    ControllerConfig cc;
    cc.page_size = 16;
    auto c = CacheController::create(cc, *backend, {{&dev, &host, nullptr, &plain, 0, {}}}, group);
    ASSERT_FALSE(c.isOk());
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(c.status().message().find("publish_retract"), std::string::npos)
        << c.status().message();
}

TEST(Remote, AnotherReplicaPullsPublishedPagesAsRemoteHits) {
    Directory dir;
    FakeRemote ra(dir), rb(dir);
    Harness a(remoteOptions(&ra));
    ra.pool = &a.hostPool();
    Harness b(remoteOptions(&rb));
    rb.pool = &b.hostPool();
    auto prompt = tokensOf(7, 16 * 8 + 5);
    a.serve(1, prompt);
    settle(a);
    EXPECT_EQ(ra.published, 8u);  // write-through: published once the backup was reaped
    b.prefetchAndSettle(1, prompt);
    Admission got = b.serve(1, prompt);  // serve() checks every reused byte
    EXPECT_EQ(got.remote_hit_tokens, 16u * 8);
    EXPECT_EQ(got.host_hit_tokens, 16u * 8);
    EXPECT_EQ(got.storage_hit_tokens, 0u);
    EXPECT_EQ(rb.pulled, 8u);
    EXPECT_EQ(b.ctl().stats().remote_prefetch_pages, 8u);
    EXPECT_EQ(rb.published, 8u);  // the grafted pages are B's to serve now
    settle(b);
    b.expectAllUnlocked();
}

TEST(Remote, HostEvictionRetractsAndAnEvictedPageIsNoHit) {
    Directory dir;
    FakeRemote ra(dir), rb(dir);
    Harness a(remoteOptions(&ra));
    ra.pool = &a.hostPool();
    auto prompt = tokensOf(8, 16 * 6 + 3);
    a.serve(1, prompt);
    settle(a);
    for (int i = 0; i < 5; ++i) {  // pushes the prompt out of A's device and host pools
        a.serve(100 + static_cast<RequestId>(i), tokensOf(50 + i, 16 * 9 + 1));
        settle(a);
    }
    ASSERT_EQ(a.ctl().match(a.keys(prompt)).host_pages, 0u);
    EXPECT_GE(ra.retracted, 6u);
    Harness b(remoteOptions(&rb));
    rb.pool = &b.hostPool();
    b.prefetchAndSettle(1, prompt);
    Admission got = b.serve(1, prompt);
    EXPECT_EQ(got.remote_hit_tokens, 0u);
    EXPECT_EQ(rb.pulled, 0u);
    settle(b);
}

TEST(Remote, RemoteRunThenStorageForTheRest) {
    Directory dir;
    MemoryPageStore store;
    FakeRemote ra(dir), rb(dir);
    auto prompt = tokensOf(9, 16 * 8 + 1);
    auto head = std::vector<std::int32_t>(prompt.begin(), prompt.begin() + 16 * 5 + 1);
    {
        // An earlier job stored the whole prompt; replica A holds only its first 5 pages.
        Harness writer(remoteOptions(nullptr, &store));
        writer.serve(1, prompt);
        settle(writer);
    }
    Harness a(remoteOptions(&ra));
    ra.pool = &a.hostPool();
    a.serve(1, head);
    settle(a);
    Harness b(remoteOptions(&rb, &store));
    rb.pool = &b.hostPool();
    b.prefetchAndSettle(1, prompt);
    Admission got = b.serve(1, prompt);
    EXPECT_EQ(got.host_hit_tokens, 16u * 8);
    EXPECT_EQ(got.remote_hit_tokens, 16u * 5);
    EXPECT_EQ(got.storage_hit_tokens, 16u * 3);
    settle(b);
    b.expectAllUnlocked();
}

}  // namespace
}  // namespace strata::controller
