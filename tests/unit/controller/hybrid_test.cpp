// Hybrid models in the controller: a full-attention KV pool with a compressed sidecar (slot space
// 0), a sliding window with a sidecar derived from it (its own space, trailing pages only) and a
// Mamba state (one working slot per request, checkpoints at the ends of inserted prefixes). Every
// byte of every pool is checked after device hits, host loads and storage prefetches; a prefix
// whose window or state is missing is never a hit; allocation across spaces is all or nothing.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "harness.h"
#include "strata/testing/memory_page_store.h"

namespace strata::controller {
namespace {

using strata::testing::MemoryPageStore;
using testing::mix;
using testing::tokensOf;

constexpr std::uint32_t kPage = 16;
constexpr std::uint32_t kWindowPages = 2;

struct HybridOptions {
    bool swa = true;
    bool mamba = true;
    std::size_t device_pages = 24;
    std::size_t host_pages = 48;
    std::size_t state_slots = 6;  // Mamba device slots (host: twice as many)
    std::uint32_t jitter_us = 0;
    io::PageStore* store = nullptr;
    WritePolicy policy = WritePolicy::kWriteThrough;
    std::uint64_t fail_host_allocation = 0;
};

// One pool of the harness: its spec, slot space, model layers and the pools themselves.
struct Pool {
    pools::PoolSpec spec;
    std::uint32_t space = 0;
    std::vector<std::uint32_t> layer_map;
    std::unique_ptr<pools::DevicePool> dev;
    std::unique_ptr<pools::HostPool> host;
};

class HybridHarness {
public:
    explicit HybridHarness(const HybridOptions& o) : o_(o) {
        kernels::BackendOptions bo;
        bo.jitter_us = o.jitter_us;
        backend_ = std::move(kernels::Backend::create(kernels::BackendKind::kCpu, bo)).value();
        ControllerConfig cc;
        cc.page_size = kPage;
        cc.write_policy = o.policy;
        cc.fail_host_allocation = o.fail_host_allocation;
        cc.storage.prefetch_threshold_tokens = kPage;
        cc.storage.prefetch_policy = PrefetchPolicy::kWaitComplete;
        cc.spaces.push_back({"kv", pools::HitPolicy::kAllPages, 0, false});
        // Model layers 0..3: full attention on 1 and 3, sliding window (and Mamba) on 0 and 2.
        add("kv", pools::PoolKind::kMha, 2, 24, 0, {1, 3});
        add("c4", pools::PoolKind::kCompressed, 1, 40, 0, {3}, 4);
        if (o.swa) {
            cc.spaces.push_back({"swa", pools::HitPolicy::kTrailingPages, kWindowPages, false});
            swa_space_ = static_cast<std::uint32_t>(cc.spaces.size() - 1);
            add("swa", pools::PoolKind::kSwa, 2, 24, swa_space_, {0, 2});
            add("swa_state", pools::PoolKind::kCompressedState, 1, 16, swa_space_, {2});
        }
        if (o.mamba) {
            cc.spaces.push_back({"mamba", pools::HitPolicy::kTrailingPages, 1, true});
            mamba_space_ = static_cast<std::uint32_t>(cc.spaces.size() - 1);
            add("mamba", pools::PoolKind::kMamba, 1, 100, mamba_space_, {0, 2});
        }
        std::vector<PoolPair> pairs;
        for (auto& p : pools_) {
            pairs.push_back({p.dev.get(), p.host.get(), o.store, nullptr, p.space, p.layer_map});
        }
        auto c = CacheController::create(cc, *backend_, std::move(pairs), group_);
        EXPECT_TRUE(c.isOk()) << c.status().toString();
        ctl_ = std::move(c).value();
    }
    ~HybridHarness() { ctl_.reset(); }

    CacheController& ctl() { return *ctl_; }

    std::vector<core::PageKey> keys(const std::vector<std::int32_t>& tokens) const {
        return core::pageKeys(core::PageKey{1, 2}, tokens, kPage);
    }

    // Rows written and checked: every pool, every row the admission says the request has.
    void compute(const std::vector<std::int32_t>& tokens, const Admission& a) {
        visit(tokens, a, /*write=*/true);
    }
    std::size_t mismatches(const std::vector<std::int32_t>& tokens, const Admission& a) {
        return visit(tokens, a, /*write=*/false);
    }

    // Admits (after the copies in flight have finished when the device is full), waits, checks
    // every pool's reused rows, computes, inserts, releases.
    Admission serve(RequestId id, const std::vector<std::int32_t>& tokens) {
        auto r = ctl_->admit(id, keys(tokens), tokens.size());
        for (int i = 0; i < 100 && !r.isOk() && ctl_->inflightOps() > 0; ++i) {
            EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
            EXPECT_TRUE(ctl_->waitForProgress().isOk());
            EXPECT_TRUE(ctl_->step().isOk());
            r = ctl_->admit(id, keys(tokens), tokens.size());
        }
        EXPECT_TRUE(r.isOk()) << r.status().toString();
        if (!r.isOk()) return {};
        Admission a = *r;
        EXPECT_TRUE(ctl_->waitAllLayers(id).isOk());
        EXPECT_EQ(mismatches(tokens, a), 0u) << "request " << id;
        compute(tokens, a);
        EXPECT_TRUE(ctl_->insert(id).isOk());
        EXPECT_TRUE(ctl_->release(id).isOk());
        return a;
    }

    void settle() {
        ASSERT_TRUE(ctl_->drain().isOk());
        Status s = ctl_->checkInvariants();
        ASSERT_TRUE(s.isOk()) << s.toString();
    }

    void prefetchAndSettle(RequestId id, const std::vector<std::int32_t>& tokens) {
        ASSERT_TRUE(ctl_->prefetch(id, keys(tokens), tokens.size()).isOk());
        for (int i = 0; i < 100000 && !ctl_->prefetchSettled(id); ++i) {
            ASSERT_TRUE(ctl_->step().isOk());
            ASSERT_TRUE(ctl_->waitForProgress().isOk());
        }
        ASSERT_TRUE(ctl_->prefetchSettled(id));
    }

    std::uint32_t swaSpace() const { return swa_space_; }
    std::uint32_t mambaSpace() const { return mamba_space_; }
    std::size_t checkedRows() const { return checked_rows_; }

private:
    void add(const char* name, pools::PoolKind kind, std::uint32_t buffers, std::size_t row_bytes,
             std::uint32_t space, std::vector<std::uint32_t> layer_map,
             std::uint32_t tokens_per_row = 1) {
        Pool p;
        p.spec.name = name;
        p.spec.kind = kind;
        p.spec.num_layers = static_cast<std::uint32_t>(layer_map.size());
        p.spec.num_buffers = buffers;
        p.spec.row_bytes = row_bytes;
        p.spec.tokens_per_row = tokens_per_row;
        p.space = space;
        p.layer_map = std::move(layer_map);
        const bool state = kind == pools::PoolKind::kMamba;
        const std::size_t dev_units = state ? o_.state_slots : o_.device_pages * kPage;
        const std::size_t host_units = state ? 2 * o_.state_slots : o_.host_pages * kPage;
        p.dev = std::make_unique<pools::DevicePool>(
            std::move(pools::DevicePool::create(*backend_, p.spec, dev_units, kPage).value()));
        p.host = std::make_unique<pools::HostPool>(
            std::move(pools::HostPool::create(*backend_, p.spec, host_units, kPage,
                                              kernels::HostLayout::kPageFirst)
                          .value()));
        pools_.push_back(std::move(p));
    }

    // The bytes of one row: a function of the prefix it ends, the pool, model layer and buffer.
    static void pattern(std::uint64_t digest, std::size_t pool, std::uint32_t layer,
                        std::uint32_t buf, std::span<std::byte> out) {
        std::uint64_t s = mix(digest ^ mix(pool * 7919 + layer * 131 + buf));
        for (std::size_t i = 0; i < out.size(); ++i) {
            if (i % 8 == 0) s = mix(s);
            out[i] = static_cast<std::byte>(s >> (8 * (i % 8)));
        }
    }

    // Writes (or counts the mismatching rows of) what the request computes (or reuses).
    std::size_t visit(const std::vector<std::int32_t>& tokens, const Admission& a, bool write) {
        const auto d = testing::Harness::prefixDigests(tokens);
        const std::size_t n = tokens.size();
        const std::size_t reused = a.reusedTokens() / kPage;
        const std::size_t full = n / kPage;
        std::size_t bad = 0;
        std::vector<std::byte> want;
        auto row = [&](Pool& p, std::size_t pool, std::size_t slot, std::uint64_t digest) {
            for (std::uint32_t j = 0; j < p.spec.num_layers; ++j) {
                for (std::uint32_t b = 0; b < p.spec.num_buffers; ++b) {
                    want.resize(p.spec.row_bytes);
                    pattern(digest, pool, p.layer_map[j], b, want);
                    std::byte* dst = p.dev->row(b, j, slot);
                    if (write) {
                        std::memcpy(dst, want.data(), want.size());
                    } else {
                        ++checked_rows_;
                        bad += std::memcmp(dst, want.data(), want.size()) != 0;
                    }
                }
            }
        };
        for (std::size_t pool = 0; pool < pools_.size(); ++pool) {
            Pool& p = pools_[pool];
            const Admission::Space& sp = a.spaces[p.space];
            if (p.spec.kind == pools::PoolKind::kMamba) {
                // The working slot: the state at the end of the prefix (checked), then at the end
                // of the last full page (written).
                if (!write && reused > 0) row(p, pool, sp.state_page, d[reused * kPage - 1]);
                if (write && full > reused) row(p, pool, sp.state_page, d[full * kPage - 1]);
                // Where the tree's match ended without a state: the state there, kept too.
                if (write && sp.branch_state_page != kNoPage) {
                    row(p, pool, sp.branch_state_page, d[sp.branch_pages * kPage - 1]);
                }
                continue;
            }
            const std::uint32_t ratio = p.spec.tokens_per_row;
            const std::uint32_t rows = kPage / ratio;
            std::size_t first = 0, last = write ? (n + kPage - 1) / kPage : reused;
            if (!write && p.space == swa_space_ && p.space != 0) {
                first = reused > kWindowPages ? reused - kWindowPages : 0;
            } else if (write) {
                first = reused;
            }
            for (std::size_t page = first; page < last; ++page) {
                if (sp.pages[page] == kNoPage) {
                    ADD_FAILURE() << "pool " << p.spec.name << " has no page " << page;
                    ++bad;
                    continue;
                }
                for (std::uint32_t r = 0; r < rows; ++r) {
                    const std::size_t end_token = page * kPage + (r + 1) * ratio - 1;
                    if (end_token >= n) break;
                    row(p, pool, std::size_t{sp.pages[page]} * rows + r, d[end_token]);
                }
            }
        }
        return bad;
    }

    HybridOptions o_;
    comm::LocalDecisionGroup group_;
    std::unique_ptr<kernels::Backend> backend_;
    std::vector<Pool> pools_;
    std::uint32_t swa_space_ = 0, mamba_space_ = 0;
    std::size_t checked_rows_ = 0;
    std::unique_ptr<CacheController> ctl_;
};

// Pushes earlier prefixes out of the device (and, with enough of them, the host).
void flush(HybridHarness& h, std::uint64_t seed, int requests) {
    for (int i = 0; i < requests; ++i) {
        h.serve(800000 + seed * 100 + static_cast<RequestId>(i),
                tokensOf(seed * 1000 + static_cast<std::uint64_t>(i), kPage * 7 + 3));
        h.settle();
    }
}

TEST(Hybrid, DeviceHitReusesEveryPoolAndCopiesTheMambaState) {
    HybridHarness h({});
    auto a = tokensOf(1, kPage * 6 + 5);
    h.serve(1, a);
    h.settle();
    auto b = tokensOf(2, kPage * 9 + 1, std::vector<std::int32_t>(a.begin(), a.end() - 5));
    Admission ab = h.serve(2, b);
    EXPECT_EQ(ab.device_hit_tokens, kPage * 6u);
    // The working slot is the request's own, not the checkpoint it was copied from.
    EXPECT_NE(ab.spaces[h.mambaSpace()].state_page, kNoPage);
    h.settle();
    // The same prefix again: the checkpoint was not changed by request 2's compute.
    Admission ac =
        h.serve(3, tokensOf(3, kPage * 7, std::vector<std::int32_t>(a.begin(), a.end() - 5)));
    EXPECT_EQ(ac.device_hit_tokens, kPage * 6u);
    h.settle();
    EXPECT_GT(h.checkedRows(), 0u);
}

TEST(Hybrid, DeviceHostStorageHostDeviceRoundTripIsBitExactForEveryPool) {
    MemoryPageStore store;
    HybridOptions o;
    o.store = &store;
    o.jitter_us = 200;
    auto prompt = tokensOf(7, kPage * 8 + 5);
    {
        HybridHarness h(o);
        h.serve(1, prompt);
        h.settle();
        // kv and c4 (8 pages each), swa and swa_state (the 2-page window), mamba (1 state).
        EXPECT_EQ(store.size(), 8u + 8u + 2u + 2u + 1u);
        // Host: the prefix leaves the device, then comes back from the host copy.
        flush(h, 1, 4);
        auto m = h.ctl().match(h.keys(prompt));
        EXPECT_EQ(m.device_pages, 0u);
        EXPECT_EQ(m.host_pages, 8u);
        Admission back = h.serve(2, prompt);
        EXPECT_EQ(back.host_hit_tokens, kPage * 8u);
        h.settle();
    }
    // A new controller on the same storage: prefetch, then load from host.
    HybridHarness h2(o);
    h2.prefetchAndSettle(3, prompt);
    Admission s = h2.serve(3, prompt);
    EXPECT_EQ(s.storage_hit_tokens, kPage * 8u);
    EXPECT_EQ(s.host_hit_tokens, kPage * 8u);
    h2.settle();
}

TEST(Hybrid, APrefixWhoseWindowOrStateIsMissingIsNotAHit) {
    for (auto [swa, mamba] :
         {std::pair{true, false}, std::pair{false, true}, std::pair{true, true}}) {
        SCOPED_TRACE(fmt::format("swa {} mamba {}", swa, mamba));
        HybridOptions o;
        o.swa = swa;
        o.mamba = mamba;
        HybridHarness h(o);
        auto a = tokensOf(11, kPage * 8 + 1);
        h.serve(1, a);
        h.settle();
        // Shares 5 pages of a, then differs: the tree holds them, but the window ending at page
        // 5 ([3, 5)) and the state at its end were never kept (a kept [6, 8) and page 7).
        std::vector<std::int32_t> b(a.begin(), a.begin() + kPage * 5);
        b = tokensOf(12, kPage * 7 + 3, b);
        auto m = h.ctl().match(h.keys(b));
        EXPECT_EQ(m.device_pages, 5u);
        Admission ab = h.serve(2, b);
        EXPECT_EQ(ab.reusedTokens(), 0u);
        h.settle();
        // The whole of a's full pages: window [6, 8) and the state at page 7 are there.
        Admission ac = h.serve(
            3,
            tokensOf(13, kPage * 9, std::vector<std::int32_t>(a.begin(), a.begin() + kPage * 8)));
        EXPECT_EQ(ac.reusedTokens(), kPage * 8u);
        h.settle();
        // Request 2 computed b from scratch and kept its own window and state: b is a hit now.
        Admission ad = h.serve(4, b);
        EXPECT_EQ(ad.reusedTokens(), kPage * 7u);
        h.settle();
        // It also kept the window and the state where it branched off a (page 5): a third
        // prompt sharing those 5 pages hits them.
        std::vector<std::int32_t> c(a.begin(), a.begin() + kPage * 5);
        Admission ae = h.serve(5, tokensOf(14, kPage * 6 + 2, c));
        EXPECT_EQ(ae.reusedTokens(), kPage * 5u);
        h.settle();
    }
}

TEST(Hybrid, AllocationAcrossSpacesIsAllOrNothing) {
    HybridOptions o;
    o.state_slots = 2;
    HybridHarness h(o);
    const auto& ctl = h.ctl();
    // Two live requests hold both Mamba working slots; a third cannot be admitted, and nothing
    // of the other spaces stays allocated for it.
    std::vector<std::vector<std::int32_t>> prompts;
    for (int i = 0; i < 3; ++i) prompts.push_back(tokensOf(20 + i, kPage * 2 + 3));
    ASSERT_TRUE(h.ctl().admit(1, h.keys(prompts[0]), prompts[0].size()).isOk());
    ASSERT_TRUE(h.ctl().admit(2, h.keys(prompts[1]), prompts[1].size()).isOk());
    const std::size_t kv_free = ctl.deviceAllocator().freePages();
    auto r = h.ctl().admit(3, h.keys(prompts[2]), prompts[2].size());
    ASSERT_FALSE(r.isOk());
    EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
    EXPECT_NE(r.status().message().find("mamba"), std::string::npos) << r.status().toString();
    EXPECT_EQ(ctl.deviceAllocator().freePages(), kv_free);
    EXPECT_TRUE(ctl.checkInvariants().isOk()) << ctl.checkInvariants().toString();
    ASSERT_TRUE(h.ctl().release(1).isOk());
    ASSERT_TRUE(h.ctl().release(2).isOk());
    h.settle();
    EXPECT_EQ(ctl.deviceAllocator().freePages(), ctl.deviceAllocator().numPages());
}

TEST(Hybrid, FailedHostAllocationLeavesEverySpaceConsistent) {
    for (std::uint64_t fail : {1u, 2u, 3u}) {
        HybridOptions o;
        o.fail_host_allocation = fail;
        HybridHarness h(o);
        for (int i = 0; i < 4; ++i) {
            h.serve(static_cast<RequestId>(i + 1), tokensOf(30 + i, kPage * 5 + 2));
            h.settle();
        }
        EXPECT_EQ(h.ctl().stats().backup_alloc_failures, 1u);
    }
}

TEST(Hybrid, RandomTrafficWithEvictionKeepsEveryPoolExact) {
    for (auto policy : {WritePolicy::kWriteThrough, WritePolicy::kWriteBack}) {
        MemoryPageStore store;
        HybridOptions o;
        o.policy = policy;
        o.jitter_us = 100;
        o.device_pages = 20;
        o.host_pages = 30;
        o.store = &store;
        HybridHarness h(o);
        std::vector<std::vector<std::int32_t>> roots;
        for (int i = 0; i < 4; ++i) roots.push_back(tokensOf(40 + i, kPage * 3));
        std::uint64_t s = 99;
        std::size_t reused = 0;
        for (RequestId id = 1; id <= 80; ++id) {
            s = mix(s);
            auto base = roots[s % roots.size()];
            const std::size_t extra = kPage * (1 + (s >> 8) % 4) + (s >> 16) % kPage;
            auto prompt = tokensOf(s, base.size() + extra, base);
            if (id % 5 == 0) h.prefetchAndSettle(id, prompt);
            reused += h.serve(id, prompt).reusedTokens();
            ASSERT_TRUE(h.ctl().step().isOk());
            Status inv = h.ctl().checkInvariants();
            ASSERT_TRUE(inv.isOk()) << inv.toString();
        }
        h.settle();
        EXPECT_GT(reused, 0u);
    }
}

}  // namespace
}  // namespace strata::controller
