// The storage tier as the controller drives it: write-through backups reach the store, prefetch
// brings pages back as host-only nodes (bit-exact, every host layout), corrupt pages are misses,
// the prefetch policies behave, and an aborted prefetch returns every pin and page.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>
#include <utility>

#include "harness.h"
#include "strata/io/hdf5_page_store.h"
#include "strata/testing/memory_page_store.h"

namespace strata::controller {
namespace {

using strata::testing::MemoryPageStore;
using testing::Harness;
using testing::HarnessOptions;
using testing::tokensOf;

void settle(Harness& h) {
    ASSERT_TRUE(h.ctl().drain().isOk());
    ASSERT_TRUE(h.ctl().checkInvariants().isOk()) << h.ctl().checkInvariants().toString();
}

HarnessOptions storageOptions(MemoryPageStore* store) {
    HarnessOptions o;
    o.device_tokens = 16 * 10;
    o.host_tokens = 16 * 20;
    o.store = store;
    o.storage.prefetch_threshold_tokens = 32;
    o.storage.prefetch_policy = PrefetchPolicy::kWaitComplete;
    return o;
}

// Pushes everything of earlier requests out of device and host.
void flush(Harness& h, std::uint64_t seed) {
    for (int i = 0; i < 4; ++i) {
        h.serve(900000 + seed * 10 + static_cast<RequestId>(i),
                tokensOf(seed * 100 + i, 16 * 9 + 1));
        settle(h);
    }
}

TEST(Storage, DeviceHostStorageHostDeviceRoundTripIsBitExact) {
    for (auto layout : {kernels::HostLayout::kLayerFirst, kernels::HostLayout::kPageFirst,
                        kernels::HostLayout::kPageFirstDirect}) {
        SCOPED_TRACE(std::string(kernels::hostLayoutName(layout)));
        MemoryPageStore store;
        HarnessOptions o = storageOptions(&store);
        o.layout = layout;
        o.jitter_us = 300;
        Harness h(o);
        auto prompt = tokensOf(7, 16 * 8 + 5);
        h.serve(1, prompt);
        settle(h);
        EXPECT_EQ(store.size(), 8u);  // write-through: every backed-up page reached the store
        flush(h, 1);
        auto m = h.ctl().match(h.keys(prompt));
        ASSERT_EQ(m.device_pages + m.host_pages, 0u);
        h.prefetchAndSettle(2, prompt);
        Admission a = h.serve(2, prompt);  // serve() checks every reused byte
        EXPECT_EQ(a.storage_hit_tokens, 16u * 8);
        EXPECT_EQ(a.host_hit_tokens, 16u * 8);
        settle(h);
        h.expectAllUnlocked();
    }
}

// The same round trip through real HDF5 page files, and a later job (a new store object on the
// same directory, as the next run would open it) served from them.
TEST(Storage, RoundTripThroughHdf5FilesForEveryLayout) {
    for (auto layout : {kernels::HostLayout::kLayerFirst, kernels::HostLayout::kPageFirst,
                        kernels::HostLayout::kPageFirstDirect}) {
        SCOPED_TRACE(std::string(kernels::hostLayoutName(layout)));
        const auto dir = std::filesystem::temp_directory_path() /
                         ("strata-ctl-h5-" + std::to_string(::getpid()) + "-" +
                          std::string(kernels::hostLayoutName(layout)));
        std::filesystem::remove_all(dir);
        io::Hdf5StoreOptions so;
        so.directory = dir.string();
        so.pool_signature = "kv";
        so.page_bytes = 16 * 3 * 2 * 40;  // page_size x layers x buffers x row bytes (harness)
        auto prompt = tokensOf(23, 16 * 8 + 5);
        {
            auto store = io::Hdf5PageStore::create(so);
            ASSERT_TRUE(store.isOk()) << store.status().toString();
            HarnessOptions o = storageOptions(nullptr);
            o.store = store->get();
            o.layout = layout;
            Harness h(o);
            h.serve(1, prompt);
            settle(h);
            EXPECT_EQ((*store)->stats().pages_written, 8u);
        }
        auto store = io::Hdf5PageStore::create(so);
        ASSERT_TRUE(store.isOk()) << store.status().toString();
        HarnessOptions o = storageOptions(nullptr);
        o.store = store->get();
        o.layout = layout;
        Harness h(o);
        h.prefetchAndSettle(1, prompt);
        Admission a = h.serve(1, prompt);  // every reused byte checked
        EXPECT_EQ(a.storage_hit_tokens, 16u * 8);
        settle(h);
        std::filesystem::remove_all(dir);
    }
}

TEST(Storage, ALaterJobOnTheSameStoreGetsStorageHits) {
    MemoryPageStore store;
    auto prompt = tokensOf(9, 16 * 6 + 2);
    {
        Harness first(storageOptions(&store));
        first.serve(1, prompt);
        settle(first);
    }
    Harness second(storageOptions(&store));
    second.prefetchAndSettle(1, prompt);
    Admission a = second.serve(1, prompt);
    EXPECT_EQ(a.storage_hit_tokens, 16u * 6);
    settle(second);
}

TEST(Storage, CorruptPageIsAMissNotServed) {
    MemoryPageStore store;
    Harness h(storageOptions(&store));
    auto prompt = tokensOf(11, 16 * 8 + 1);
    h.serve(1, prompt);
    settle(h);
    flush(h, 2);
    // Corrupt the 4th page: the fetch stops there, the first 3 are served.
    auto keys = h.keys(prompt);
    store.corruptPage(core::storageKey(keys[3], "kv", -1));
    h.prefetchAndSettle(2, prompt);
    Admission a = h.serve(2, prompt);
    EXPECT_EQ(a.storage_hit_tokens, 16u * 3);
    EXPECT_EQ(store.stats().checksum_failures, 1u);
    settle(h);
}

TEST(Storage, PrefetchPolicies) {
    for (auto policy :
         {PrefetchPolicy::kBestEffort, PrefetchPolicy::kWaitComplete, PrefetchPolicy::kTimeout}) {
        SCOPED_TRACE(std::string(prefetchPolicyName(policy)));
        MemoryPageStore store;
        HarnessOptions o = storageOptions(&store);
        o.storage.prefetch_policy = policy;
        o.storage.timeout_base_ms = 5;
        o.storage.timeout_per_1k_tokens_ms = 0;
        Harness h(o);
        auto prompt = tokensOf(13, 16 * 8 + 1);
        h.serve(1, prompt);
        settle(h);
        flush(h, 3);
        store.setDelay(std::chrono::milliseconds(60));  // a slow store
        auto keys = h.keys(prompt);
        ASSERT_TRUE(h.ctl().prefetch(2, keys, prompt.size()).isOk());
        ASSERT_TRUE(h.ctl().step().isOk());
        if (policy == PrefetchPolicy::kBestEffort) {
            EXPECT_TRUE(h.ctl().prefetchSettled(2));
        } else {
            EXPECT_FALSE(h.ctl().prefetchSettled(2));  // the query is still running
        }
        int rounds = 0;
        while (!h.ctl().prefetchSettled(2)) {
            ASSERT_TRUE(h.ctl().waitForProgress().isOk());
            ASSERT_TRUE(h.ctl().step().isOk());
            ++rounds;
            ASSERT_LT(rounds, 100000);
        }
        if (policy == PrefetchPolicy::kTimeout) {
            // Settled by the timeout long before the slow store finished both phases.
            EXPECT_EQ(h.ctl().stats().prefetch_timeouts, 1u);
        }
        store.setDelay({});
        settle(h);  // the prefetch still completes and grafts in the background
        EXPECT_EQ(h.ctl().stats().prefetch_pages, 8u);
        Admission a = h.serve(2, prompt);
        EXPECT_EQ(a.reusedTokens(), 16u * 8);
        settle(h);
        h.expectAllUnlocked();
    }
}

TEST(Storage, AbortedRequestMidPrefetchReturnsEveryPinAndPage) {
    MemoryPageStore store;
    Harness h(storageOptions(&store));
    auto prompt = tokensOf(17, 16 * 8 + 1);
    h.serve(1, prompt);
    settle(h);
    flush(h, 4);
    store.setDelay(std::chrono::milliseconds(20));
    auto keys = h.keys(prompt);
    ASSERT_TRUE(h.ctl().prefetch(2, keys, prompt.size()).isOk());
    ASSERT_TRUE(h.ctl().step().isOk());
    // The request goes away before its prefetch is done; the prefetch finishes on its own and
    // every host page it took is either in the tree or free again.
    settle(h);
    h.expectAllUnlocked();
    EXPECT_EQ(h.ctl().liveRequests(), 0u);
    EXPECT_TRUE(h.ctl().prefetchSettled(2));
}

TEST(Storage, WriteBackStoresHostPagesBeforeFreeingThem) {
    MemoryPageStore store;
    HarnessOptions o = storageOptions(&store);
    o.policy = WritePolicy::kWriteBack;
    Harness h(o);
    auto prompt = tokensOf(19, 16 * 8 + 1);
    h.serve(1, prompt);
    settle(h);
    EXPECT_EQ(store.size(), 0u);  // nothing leaves the device under write-back until eviction
    flush(h, 5);
    EXPECT_GE(store.size(), 8u);  // evicted from host: stored first
    h.prefetchAndSettle(2, prompt);
    Admission a = h.serve(2, prompt);
    EXPECT_EQ(a.storage_hit_tokens, 16u * 8);
    settle(h);
}

// Regression (issue 19): under write-back a prefix cached on the device has no host copy, and the
// prefetch refused to graft below it, so the storage tier served nothing after a device hit (the
// data path found 0 storage hit tokens where the replay found 184,320 on the Mooncake trace).
TEST(Storage, WriteBackPrefetchServesStoragePagesBelowADeviceResidentPrefix) {
    MemoryPageStore store;
    HarnessOptions o = storageOptions(&store);
    o.policy = WritePolicy::kWriteBack;
    Harness h(o);
    auto prompt = tokensOf(23, 16 * 8 + 1);
    h.serve(1, prompt);
    settle(h);
    flush(h, 6);  // all 8 pages: device -> host -> storage
    ASSERT_GE(store.size(), 8u);
    // The first 3 pages computed again (no prefetch): device-only nodes, as write-back keeps them.
    h.serve(2, std::vector<std::int32_t>(prompt.begin(), prompt.begin() + 16 * 3 + 1));
    settle(h);
    h.prefetchAndSettle(3, prompt);
    Admission a = h.serve(3, prompt);
    EXPECT_EQ(a.device_hit_tokens, 16u * 3);
    EXPECT_EQ(a.storage_hit_tokens, 16u * 5);  // pages 3..7, grafted below the device prefix
    settle(h);
}

// Storage keys and writers over a TP 2 x CP 2 decision group: a pool's key carries the TP rank
// when it is sharded across TP and the CP rank when it is sharded across CP; the ranks that hold
// the same bytes of a page share its key, and exactly one of them writes it.
TEST(Storage, KeysAndWritersFollowTheShardingOfEachPool) {
    struct Case {
        const char* name;
        bool tp, cp;
    };
    const Case cases[] = {
        {"rep", false, false}, {"tp", true, false}, {"cp", false, true}, {"both", true, true}};
    std::vector<PageKey> pages;
    PageKey k{0x1234, 0x5678};
    for (int i = 0; i < 64; ++i) {
        k = core::storageKey(k, "chain", i);
        pages.push_back(k);
    }
    std::set<PageKey> all_keys;
    for (const Case& c : cases) {
        SCOPED_TRACE(c.name);
        pools::PoolSpec spec;
        spec.name = c.name;
        spec.sharded_across_tp = c.tp;
        spec.sharded_across_cp = c.cp;
        for (const PageKey& page : pages) {
            // The storage key and the writers of each group of ranks holding the same bytes.
            std::map<PageKey, int> writers;
            std::map<PageKey, std::set<std::pair<int, int>>> holders;
            for (int cp = 0; cp < 2; ++cp) {
                for (int tp = 0; tp < 2; ++tp) {
                    StorageConfig s;
                    s.tp_rank = tp;
                    s.tp_size = 2;
                    s.cp_rank = cp;
                    s.cp_size = 2;
                    const PageKey key = storageKeyOf(page, spec, s);
                    EXPECT_NE(key, page);
                    writers[key] += writesStoragePage(page, spec, s) ? 1 : 0;
                    holders[key].insert({c.tp ? tp : -1, c.cp ? cp : -1});
                    all_keys.insert(key);
                }
            }
            // One key per shard: 1 replicated, 2 per TP or CP rank, 4 per rank on both axes.
            EXPECT_EQ(writers.size(), std::size_t{1} << ((c.tp ? 1 : 0) + (c.cp ? 1 : 0)));
            for (const auto& [key, n] : writers) {
                EXPECT_EQ(n, 1) << "a shard of a page needs exactly one writer";
                EXPECT_EQ(holders[key].size(), 1u) << "ranks of different bytes share a key";
            }
        }
    }
    // The pools never share a key (the pool's name is in it).
    EXPECT_EQ(all_keys.size(), pages.size() * (1 + 2 + 2 + 4));
    // Replicated across CP: the key of before CP sharding existed.
    pools::PoolSpec kv;
    kv.name = "kv";
    kv.sharded_across_tp = true;
    StorageConfig s;
    s.tp_rank = 1;
    s.tp_size = 2;
    s.cp_rank = 1;
    s.cp_size = 2;
    EXPECT_EQ(storageKeyOf(pages[0], kv, s), core::storageKey(pages[0], "kv", 1));
    kv.sharded_across_cp = true;
    EXPECT_NE(storageKeyOf(pages[0], kv, s), core::storageKey(pages[0], "kv", 1));
    EXPECT_EQ(storageKeyOf(pages[0], kv, s), core::storageKey(pages[0], "kv", 1, 1));
}

}  // namespace
}  // namespace strata::controller
