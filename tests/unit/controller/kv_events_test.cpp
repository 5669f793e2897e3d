// The controller's KV event sink: replaying the events gives exactly what each tier holds (device
// and host against the tree, storage against the store), nothing is stored twice or removed without
// having been stored, a stored run's parent was stored before it, request pages name their request,
// and the controller decides the same with and without a sink.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <utility>

#include "harness.h"
#include "strata/controller/kv_events.h"
#include "strata/testing/memory_page_store.h"

namespace strata::controller {
namespace {

using strata::testing::MemoryPageStore;
using testing::Harness;
using testing::HarnessOptions;
using testing::tokensOf;

// Replays the events as a subscriber would, failing the test on an impossible one.
struct Replay {
    std::map<KvTier, std::set<PageKey>> held;
    std::set<PageKey> ever_stored;
    std::map<KvTier, std::size_t> stored_pages, removed_pages;
    std::size_t request_events = 0;

    void operator()(const KvEvent& e) {
        ASSERT_FALSE(e.keys.empty());
        std::set<PageKey>& tier = held[e.tier];
        if (e.kind == KvEventKind::kRemoved) {
            EXPECT_FALSE(e.parent.has_value());
            for (const PageKey& k : e.keys) {
                EXPECT_EQ(tier.erase(k), 1u) << "removed a page the tier does not hold";
            }
            removed_pages[e.tier] += e.keys.size();
            return;
        }
        if (e.parent) {
            EXPECT_TRUE(ever_stored.contains(*e.parent)) << "parent never stored";
        }
        if (e.request) ++request_events;
        for (const PageKey& k : e.keys) {
            // The storage tier may be written again (a page recomputed after leaving every tier).
            if (e.tier != KvTier::kStorage) {
                EXPECT_TRUE(tier.insert(k).second) << "stored a page the tier already holds";
            } else {
                tier.insert(k);
            }
            ever_stored.insert(k);
        }
        stored_pages[e.tier] += e.keys.size();
    }
};

HarnessOptions smallOptions(MemoryPageStore* store) {
    HarnessOptions o;
    o.device_tokens = 16 * 12;
    o.host_tokens = 16 * 24;
    o.store = store;
    o.storage.prefetch_threshold_tokens = 32;
    o.storage.prefetch_policy = PrefetchPolicy::kWaitComplete;
    return o;
}

// Requests that share prefixes (a few system prompts), overflow the device and the host, and come
// back after leaving both (served from storage).
void workload(Harness& h, int rounds) {
    RequestId id = 1;
    for (int r = 0; r < rounds; ++r) {
        for (std::uint64_t sys = 0; sys < 3; ++sys) {
            // Every third round repeats the prompts of six rounds before (gone from the host).
            const int from = r >= 6 && r % 3 == 2 ? r - 6 : r;
            auto prompt = tokensOf(1000 + static_cast<std::uint64_t>(from) * 7 + sys, 16 * 7 + 5,
                                   tokensOf(sys, 16 * 4));
            if (from != r) h.prefetchAndSettle(id, prompt);
            h.serve(id++, prompt);
            // Reaped at once, so that every run decides the same (copies finish at their pace).
            ASSERT_TRUE(h.ctl().drain().isOk());
        }
    }
    ASSERT_TRUE(h.ctl().drain().isOk());
    ASSERT_TRUE(h.ctl().checkInvariants().isOk()) << h.ctl().checkInvariants().toString();
}

TEST(KvEvents, ReplayGivesWhatEachTierHolds) {
    MemoryPageStore store;
    Harness h(smallOptions(&store));
    Replay replay;
    h.ctl().setEventSink([&](const KvEvent& e) { replay(e); });
    workload(h, 12);

    std::set<PageKey> device, host;
    h.ctl().tree().forEach([&](const Node& n) {
        for (const PageKey& k : n.keys) {
            if (n.onDevice()) device.insert(k);
            if (n.onHost()) host.insert(k);
        }
    });
    EXPECT_EQ(replay.held[KvTier::kDevice], device);
    EXPECT_EQ(replay.held[KvTier::kHost], host);
    // One pool, one rank: the store holds one entry per page the storage tier was told of.
    EXPECT_EQ(replay.held[KvTier::kStorage].size(), store.size());
    const ControllerStats& st = h.ctl().stats();
    EXPECT_GT(st.device_evicted_pages, 0u);
    EXPECT_GT(st.host_evicted_pages, 0u);
    EXPECT_GT(st.prefetch_pages, 0u);
    EXPECT_EQ(replay.removed_pages[KvTier::kDevice], st.device_evicted_pages);
    EXPECT_EQ(replay.removed_pages[KvTier::kHost], st.host_evicted_pages + st.dropped_pages);
    EXPECT_GT(replay.request_events, 0u);
}

// A storage tier smaller than what the workload writes: the store drops its oldest pages, and the
// sink is told (BlockRemoved of medium DISK), so the replay still gives what the store holds.
TEST(KvEvents, TheStorageTiersOwnEvictionsAreTold) {
    MemoryPageStore store;
    store.setCapacity(48);  // above one request's pages, below the workload's
    Harness h(smallOptions(&store));
    Replay replay;
    h.ctl().setEventSink([&](const KvEvent& e) { replay(e); });
    workload(h, 12);
    ASSERT_GT(store.stats().pages_evicted, 0u);
    EXPECT_EQ(replay.removed_pages[KvTier::kStorage], store.stats().pages_evicted);
    EXPECT_EQ(replay.held[KvTier::kStorage].size(), store.size());
    // Every page the replay holds on storage is there.
    for (const PageKey& k : replay.held[KvTier::kStorage]) {
        const PageKey sk = storageKeyOf(k, h.hostPool().spec(), smallOptions(&store).storage);
        EXPECT_EQ(*store.exists(std::span(&sk, 1)), 1u);
    }
}

TEST(KvEvents, RequestPagesNameTheirRequestAndPromptPage) {
    Harness h(smallOptions(nullptr));
    std::vector<KvEvent> seen;
    std::vector<std::vector<PageKey>> keys;
    h.ctl().setEventSink([&](const KvEvent& e) {
        seen.push_back(e);
        keys.emplace_back(e.keys.begin(), e.keys.end());
    });
    const auto shared = tokensOf(5, 16 * 2);
    h.serve(7, tokensOf(6, 16 * 4 + 3, shared));
    h.serve(8, tokensOf(9, 16 * 5, shared));  // shares the first two pages
    ASSERT_TRUE(h.ctl().drain().isOk());
    std::vector<std::pair<std::uint64_t, std::size_t>> device_stores;
    for (std::size_t i = 0; i < seen.size(); ++i) {
        if (seen[i].kind != KvEventKind::kStored || seen[i].tier != KvTier::kDevice) continue;
        ASSERT_TRUE(seen[i].request.has_value());
        device_stores.emplace_back(*seen[i].request, seen[i].first_page);
        const auto prompt =
            *seen[i].request == 7 ? tokensOf(6, 16 * 4 + 3, shared) : tokensOf(9, 16 * 5, shared);
        const auto all = h.keys(prompt);
        for (std::size_t k = 0; k < keys[i].size(); ++k) {
            EXPECT_EQ(keys[i][k], all[seen[i].first_page + k]);
        }
    }
    // Request 7 stores its 4 full pages from page 0; request 8 only its 3 pages after the shared 2.
    const std::vector<std::pair<std::uint64_t, std::size_t>> want = {{7, 0}, {8, 2}};
    EXPECT_EQ(device_stores, want);
}

TEST(KvEvents, TheSinkOnlyObserves) {
    MemoryPageStore with_store, without_store;
    Harness with(smallOptions(&with_store));
    Harness without(smallOptions(&without_store));
    std::size_t events = 0;
    with.ctl().setEventSink([&](const KvEvent&) { ++events; });
    workload(with, 8);
    workload(without, 8);
    EXPECT_GT(events, 0u);
    EXPECT_EQ(with.ctl().stateDigest(), without.ctl().stateDigest());
    EXPECT_EQ(with.ctl().decisionDigest(), without.ctl().decisionDigest());
}

}  // namespace
}  // namespace strata::controller
