#include "strata/pools/host_pool_group.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "strata/pools/hybrid_layout.h"

namespace strata::pools {
namespace {

std::unique_ptr<kernels::Backend> cpu() {
    return std::move(kernels::Backend::create(kernels::BackendKind::kCpu, {})).value();
}

// The host and device pools of a hybrid layout, and the group over them.
struct Built {
    HybridLayout layout;
    std::vector<std::unique_ptr<HostPool>> hosts;
    std::vector<std::unique_ptr<DevicePool>> devices;
    std::vector<GroupEntry> entries;
};

Built build(kernels::Backend& backend, std::string_view model, std::uint32_t layers,
            std::uint32_t page, std::size_t host_pages, std::size_t swa_pages = 0) {
    Built b;
    auto layout = hybridLayout(model, layers, 1, page);
    EXPECT_TRUE(layout.isOk()) << layout.status().toString();
    b.layout = *layout;
    for (const HybridPool& p : b.layout.pools) {
        GroupEntry e;
        e.name = p.spec.name;
        e.role = p.role;
        e.layer_map = p.layer_map;
        e.indices_from = p.indices_from;
        e.ratio = p.ratio;
        e.hit_policy = p.hit_policy;
        e.trailing_pages = p.trailing_pages;
        std::size_t pages = host_pages;
        if (swa_pages > 0 && (p.spec.kind == PoolKind::kSwa || p.indices_from == "swa")) {
            pages = swa_pages;
        }
        if (p.spec.kind == PoolKind::kLogical) {
            e.logical_pages = pages;
        } else {
            const std::size_t units = pages * p.spec.unitsPerPage(page);
            auto host =
                HostPool::create(backend, p.spec, units, page, kernels::HostLayout::kPageFirst);
            auto dev = DevicePool::create(backend, p.spec, units, page);
            EXPECT_TRUE(host.isOk()) << host.status().toString();
            EXPECT_TRUE(dev.isOk()) << dev.status().toString();
            b.hosts.push_back(std::make_unique<HostPool>(std::move(*host)));
            b.devices.push_back(std::make_unique<DevicePool>(std::move(*dev)));
            e.host = b.hosts.back().get();
            e.device = b.devices.back().get();
        }
        b.entries.push_back(std::move(e));
    }
    return b;
}

HostPoolGroup groupOf(const Built& b, std::uint32_t page) {
    auto g = HostPoolGroup::create(b.entries, page);
    EXPECT_TRUE(g.isOk()) << g.status().toString();
    return std::move(g).value();
}

std::vector<std::size_t> freeCounts(const HostPoolGroup& g) {
    std::vector<std::size_t> out;
    for (const GroupEntry& e : g.entries()) out.push_back(g.freePages(e.name));
    return out;
}

const char* const kModels[] = {"llama3-8b", "deepseek-v3.2", "qwen3-next", "gpt-oss",
                               "deepseek-v4"};

TEST(HostPoolGroup, EveryPresetAllocatesItsPoliciesAndFreesBack) {
    auto backend = cpu();
    for (const char* model : kModels) {
        SCOPED_TRACE(model);
        Built b = build(*backend, model, 4, 128, 8);
        HostPoolGroup g = groupOf(b, 128);
        const std::uint64_t digest0 = g.digest();
        auto a = g.allocate(5);
        ASSERT_TRUE(a.isOk()) << a.status().toString();
        ASSERT_EQ(a->entries.size(), b.layout.pools.size());
        for (std::size_t i = 0; i < a->entries.size(); ++i) {
            const HybridPool& p = b.layout.pools[i];
            const EntryPages& part = a->entries[i];
            EXPECT_EQ(part.name, p.spec.name);
            const std::size_t expect = p.hit_policy == HitPolicy::kAllPages
                                           ? 5
                                           : std::min<std::size_t>(5, p.trailing_pages);
            EXPECT_EQ(part.pages.size(), expect) << part.name;
            EXPECT_EQ(part.first_page, 5 - expect) << part.name;
            EXPECT_EQ(part.owned, p.role != PoolRole::kSidecar) << part.name;
            if (p.role == PoolRole::kSidecar) {
                EXPECT_EQ(part.pages, a->find(p.indices_from)->pages) << part.name;
            }
        }
        EXPECT_NE(g.digest(), digest0);
        ASSERT_TRUE(g.free(*a).isOk());
        EXPECT_EQ(g.digest(), digest0);
        // A double free is refused as a whole.
        auto again = g.free(*a);
        EXPECT_EQ(again.code(), StatusCode::kFailedPrecondition);
        EXPECT_EQ(g.digest(), digest0);
    }
}

TEST(HostPoolGroup, InjectedFailureInAnyEntryLeavesNothingAllocated) {
    auto backend = cpu();
    for (const char* model : kModels) {
        Built b = build(*backend, model, 4, 128, 8);
        HostPoolGroup g = groupOf(b, 128);
        auto held = g.allocate(2);  // not from a fresh state
        ASSERT_TRUE(held.isOk());
        for (const GroupEntry& e : b.entries) {
            SCOPED_TRACE(std::string(model) + " / " + e.name);
            const std::uint64_t digest = g.digest();
            const std::vector<std::size_t> free_before = freeCounts(g);
            ASSERT_TRUE(g.injectFailure(e.name).isOk());
            auto r = g.allocate(3);
            ASSERT_FALSE(r.isOk());
            EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
            EXPECT_NE(r.status().message().find("'" + e.name + "'"), std::string::npos)
                << r.status().message();
            EXPECT_EQ(g.digest(), digest);
            EXPECT_EQ(freeCounts(g), free_before);
            auto next = g.allocate(3);  // the hook fires once
            ASSERT_TRUE(next.isOk()) << next.status().toString();
            ASSERT_TRUE(g.free(*next).isOk());
            EXPECT_EQ(g.digest(), digest);
        }
        ASSERT_TRUE(g.free(*held).isOk());
        for (const GroupEntry& e : b.entries) {
            if (const SlotAllocator* a = g.allocator(e.name)) {
                EXPECT_EQ(a->usedPages(), 0u) << e.name;
            }
        }
    }
    Built b = build(*backend, "gpt-oss", 4, 128, 8);
    HostPoolGroup g = groupOf(b, 128);
    EXPECT_EQ(g.injectFailure("nope").code(), StatusCode::kNotFound);
}

TEST(HostPoolGroup, ExhaustedIndependentEntryRollsBackTheAnchor) {
    auto backend = cpu();
    Built b = build(*backend, "gpt-oss", 4, 64, 16, /*swa_pages=*/3);  // swa: 2 pages each
    HostPoolGroup g = groupOf(b, 64);
    auto first = g.allocate(4);
    ASSERT_TRUE(first.isOk());
    EXPECT_EQ(first->find("swa")->pages.size(), 2u);
    EXPECT_EQ(first->find("swa")->first_page, 2u);
    const std::uint64_t digest = g.digest();
    const std::size_t kv_free = g.freePages("kv");
    auto second = g.allocate(4);  // kv has 12 pages left, swa 1
    ASSERT_FALSE(second.isOk());
    EXPECT_EQ(second.status().code(), StatusCode::kResourceExhausted);
    EXPECT_NE(second.status().message().find("'swa'"), std::string::npos)
        << second.status().message();
    EXPECT_EQ(g.freePages("kv"), kv_free);
    EXPECT_EQ(g.digest(), digest);
    auto one = g.allocate(1);  // one page of each still fits
    ASSERT_TRUE(one.isOk()) << one.status().toString();
    EXPECT_EQ(g.freePages("swa"), 0u);
}

TEST(HostPoolGroup, SidecarsDerivedFromSwaAndFromKvWithARatio) {
    auto backend = cpu();
    Built b = build(*backend, "deepseek-v4", 4, 128, 16, /*swa_pages=*/4);
    HostPoolGroup g = groupOf(b, 128);
    auto a = g.allocate(6);
    ASSERT_TRUE(a.isOk()) << a.status().toString();
    const EntryPages& kv = *a->find("kv");
    const EntryPages& swa = *a->find("swa");
    EXPECT_EQ(kv.pages.size(), 6u);
    EXPECT_EQ(swa.pages.size(), 1u);  // 128-token window, pages of 128
    EXPECT_EQ(swa.first_page, 5u);
    for (const char* name : {"c4", "c4_indexer", "c128"}) {
        EXPECT_EQ(a->find(name)->pages, kv.pages) << name;
        EXPECT_FALSE(a->find(name)->owned) << name;
    }
    for (const char* name : {"c4_state", "c4_indexer_state"}) {
        EXPECT_EQ(a->find(name)->pages, swa.pages) << name;
        EXPECT_EQ(a->find(name)->first_page, 5u) << name;
    }
    EXPECT_EQ(g.freePages("c4_state"), g.freePages("swa"));
    // Ratio mapping: c4 page p holds rows [32p, 32p + 32); the KV slot s of a token maps to row
    // s / 4 of the c4 device pool, and c128 page p is its row p.
    const std::size_t c4_index = 2;
    const std::size_t c128_index = 4;
    ASSERT_EQ(b.entries[c4_index].name, "c4");
    ASSERT_EQ(b.entries[c128_index].name, "c128");
    const DevicePool& c4 = *b.entries[c4_index].device;
    const DevicePool& c128 = *b.entries[c128_index].device;
    const std::size_t slot = std::size_t{kv.pages[1]} * 128 + 8;
    EXPECT_EQ(c4.rowOfSlot(slot), std::size_t{kv.pages[1]} * 32 + 2);
    EXPECT_EQ(c128.rowOfSlot(std::size_t{kv.pages[1]} * 128), kv.pages[1]);
    EXPECT_EQ(c4.geometry().page_size, 32u);
    EXPECT_EQ(b.entries[c4_index].host->pageBlob(kv.pages[1]).size(),
              32u * 656 * c4.spec().num_layers);
    ASSERT_TRUE(g.free(*a).isOk());
}

TEST(HostPoolGroup, SlotSpacesAllocateAnyCountsInBothTiersAllOrNothing) {
    auto backend = cpu();
    Built b = build(*backend, "gpt-oss", 4, 64, 16, /*swa_pages=*/3);
    b.entries[0].host_pages = 10;  // fewer slots than the pool has (a replica's agreed count)
    HostPoolGroup g = groupOf(b, 64);
    ASSERT_EQ(g.numSpaces(), 2u);
    EXPECT_EQ(g.spaceEntry(0).name, "kv");
    EXPECT_EQ(g.spaceEntry(1).name, "swa");
    EXPECT_EQ(g.spaceOf("swa"), 1u);
    EXPECT_EQ(g.spaceOf("nope"), 2u);
    EXPECT_EQ(g.allocator(SlotTier::kHost, 0)->numPages(), 10u);
    EXPECT_EQ(g.allocator(SlotTier::kHost, 1)->numPages(), 3u);
    EXPECT_EQ(g.allocator(SlotTier::kDevice, 0)->numPages(), 16u);
    const std::size_t counts[] = {5, 3};
    auto a = g.allocateSlots(SlotTier::kDevice, counts);
    ASSERT_TRUE(a.isOk()) << a.status().toString();
    EXPECT_EQ((*a)[0].size(), 5u);
    EXPECT_EQ((*a)[1].size(), 3u);
    EXPECT_EQ(g.allocator(SlotTier::kHost, 0)->usedPages(), 0u);  // the other tier is untouched
    // Space 1 is full: space 0's pages come back, after make_room was asked for what it lacks.
    const std::uint64_t device_digest = g.allocator(SlotTier::kDevice, 0)->digest();
    std::vector<std::pair<std::size_t, std::size_t>> asked;
    const std::size_t more[] = {2, 1};
    auto full = g.allocateSlots(SlotTier::kDevice, more,
                                [&](std::size_t s, std::size_t n) { asked.emplace_back(s, n); });
    ASSERT_FALSE(full.isOk());
    EXPECT_EQ(full.status().code(), StatusCode::kResourceExhausted);
    EXPECT_NE(full.status().message().find("'swa'"), std::string::npos);
    EXPECT_EQ(asked, (std::vector<std::pair<std::size_t, std::size_t>>{{1, 1}}));
    EXPECT_EQ(g.allocator(SlotTier::kDevice, 0)->digest(), device_digest);
    // make_room frees what the space lacks, then it allocates.
    auto roomy = g.allocateSlots(SlotTier::kDevice, more, [&](std::size_t s, std::size_t) {
        ASSERT_TRUE(g.freeSlots(SlotTier::kDevice, s, {&(*a)[1][0], 1}).isOk());
    });
    ASSERT_TRUE(roomy.isOk()) << roomy.status().toString();
    EXPECT_EQ((*roomy)[1], std::vector<std::uint32_t>{(*a)[1][0]});
    // An injected failure in space 1 gives back space 0's host slots.
    ASSERT_TRUE(g.injectFailure("swa").isOk());
    const std::size_t host_counts[] = {4, 1};
    auto injected = g.allocateSlots(SlotTier::kHost, host_counts);
    ASSERT_FALSE(injected.isOk());
    EXPECT_EQ(g.allocator(SlotTier::kHost, 0)->usedPages(), 0u);
    // Frees are validated: a slot freed twice frees nothing.
    EXPECT_EQ(g.freeSlots(SlotTier::kDevice, 0, (*a)[0]).code(), StatusCode::kOk);
    EXPECT_EQ(g.freeSlots(SlotTier::kDevice, 0, (*a)[0]).code(), StatusCode::kFailedPrecondition);
    EXPECT_EQ(g.freeSlots(SlotTier::kDevice, 5, (*a)[0]).code(), StatusCode::kFailedPrecondition);
    const std::size_t wrong[] = {1};
    EXPECT_EQ(g.allocateSlots(SlotTier::kHost, wrong).status().code(),
              StatusCode::kInvalidArgument);
}

TEST(HostPoolGroup, CreationValidatesEveryEntry) {
    auto backend = cpu();
    Built b = build(*backend, "deepseek-v4", 4, 128, 8);
    auto expectBad = [&](std::vector<GroupEntry> entries, const std::string& needle) {
        auto g = HostPoolGroup::create(std::move(entries), 128);
        ASSERT_FALSE(g.isOk()) << needle;
        EXPECT_EQ(g.status().code(), StatusCode::kInvalidArgument);
        EXPECT_NE(g.status().message().find(needle), std::string::npos) << g.status().message();
    };
    auto e = b.entries;
    e[1].role = PoolRole::kAnchor;
    e[1].hit_policy = HitPolicy::kAllPages;
    expectBad(e, "2 anchors");
    e = b.entries;
    e[0].role = PoolRole::kIndependent;
    expectBad(e, "no host pool");
    e = b.entries;
    std::swap(e[1], e[5]);  // c4_state before swa
    expectBad(e, "'c4_state' takes its indices from 'swa', which is not an earlier entry");
    e = b.entries;
    e[5].indices_from = "c4";
    expectBad(e, "itself a sidecar");
    e = b.entries;
    e[2].ratio = 3;
    expectBad(e, "ratio 3 does not divide the page size 128");
    e = b.entries;
    e[2].ratio = 2;
    expectBad(e, "ratio 2 differs from its pool's tokens per row 4");
    e = b.entries;
    e[0].logical_pages = 9;  // more anchor pages than the sidecars have
    expectBad(e, "fewer than the 9 of its source 'kv'");
    e = b.entries;
    e[2].layer_map.pop_back();
    expectBad(e, "layer map has 1 layers, its pool 2");
    e = b.entries;
    std::swap(e[2].layer_map[0], e[2].layer_map[1]);
    expectBad(e, "not ascending");
    e = b.entries;
    e[2].device = b.entries[3].device;  // c4_indexer's device pool under c4
    expectBad(e, "does not match host pool 'c4'");
    e = b.entries;
    e[1].trailing_pages = 0;
    expectBad(e, "trailing-pages policy with 0 pages");
    e = b.entries;
    e[3].name = "c4";
    expectBad(e, "'c4' is repeated");
    EXPECT_FALSE(HostPoolGroup::create(b.entries, 64).isOk());  // pools have pages of 128
    auto g = HostPoolGroup::create(b.entries, 128);
    ASSERT_TRUE(g.isOk());
    EXPECT_EQ(g->allocate(0).status().code(), StatusCode::kInvalidArgument);
    auto a = g->allocate(9);  // the logical anchor has 8 pages
    ASSERT_FALSE(a.isOk());
    EXPECT_NE(a.status().message().find("'kv'"), std::string::npos) << a.status().message();
}

}  // namespace
}  // namespace strata::pools
