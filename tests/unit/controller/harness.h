// Test harness for the controller: a CPU back end (optionally with per-copy jitter), one small MHA
// pool, a one-rank decision group, and a deterministic KV pattern so every loaded byte is checked.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "strata/comm/decision_group.h"
#include "strata/controller/cache_controller.h"
#include "strata/core/hash.h"
#include "strata/core/page_key.h"

namespace strata::controller::testing {

inline std::uint64_t mix(std::uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

struct HarnessOptions {
    std::size_t device_tokens = 64 * 16;
    std::size_t host_tokens = 64 * 32;
    std::uint32_t page_size = 16;
    std::uint32_t layers = 3;
    std::size_t row_bytes = 40;
    WritePolicy policy = WritePolicy::kWriteThrough;
    EvictionPolicy eviction = EvictionPolicy::kLru;
    std::uint32_t jitter_us = 0;
    std::uint64_t seed = 1;
    bool deterministic = false;  // ControllerConfig::deterministic
    kernels::HostLayout layout = kernels::HostLayout::kPageFirst;
    io::PageStore* store = nullptr;   // storage tier (e.g. a testing::MemoryPageStore)
    io::PageStore* remote = nullptr;  // remote tier (e.g. a FakeRemote of remote_test.cpp)
    StorageConfig storage;
    comm::DecisionGroup* group = nullptr;  // the controller's group (null: a one-rank group)
};

class Harness {
public:
    explicit Harness(const HarnessOptions& o) : o_(o) {
        kernels::BackendOptions bo;
        bo.jitter_us = o.jitter_us;
        bo.jitter_seed = o.seed;
        backend_ = std::move(kernels::Backend::create(kernels::BackendKind::kCpu, bo)).value();
        spec_.name = "kv";
        spec_.kind = pools::PoolKind::kMha;
        spec_.num_layers = o.layers;
        spec_.num_buffers = 2;
        spec_.row_bytes = o.row_bytes;
        dev_ = std::make_unique<pools::DevicePool>(std::move(
            pools::DevicePool::create(*backend_, spec_, o.device_tokens, o.page_size).value()));
        host_ = std::make_unique<pools::HostPool>(std::move(
            pools::HostPool::create(*backend_, spec_, o.host_tokens, o.page_size, o.layout)
                .value()));
        ControllerConfig cc;
        cc.page_size = o.page_size;
        cc.write_policy = o.policy;
        cc.eviction_policy = o.eviction;
        cc.storage = o.storage;
        cc.deterministic = o.deterministic;
        ctl_ = std::move(CacheController::create(
                             cc, *backend_, {{dev_.get(), host_.get(), o.store, o.remote, 0, {}}},
                             o.group != nullptr ? *o.group : group_))
                   .value();
    }
    ~Harness() { ctl_.reset(); }

    CacheController& ctl() { return *ctl_; }
    const pools::HostPool& hostPool() const { return *host_; }
    std::uint32_t pageSize() const { return o_.page_size; }

    std::vector<core::PageKey> keys(const std::vector<std::int32_t>& tokens) const {
        return core::pageKeys(core::PageKey{1, 2}, tokens, o_.page_size);
    }

    // Byte pattern of token t's row: a function of the token prefix, the layer and the buffer.
    void expectedRow(std::uint64_t prefix, std::uint32_t layer, std::uint32_t buf,
                     std::byte* out) const {
        std::uint64_t s = mix(prefix ^ mix(layer * 131 + buf));
        for (std::size_t i = 0; i < o_.row_bytes; ++i) {
            if (i % 8 == 0) s = mix(s);
            out[i] = static_cast<std::byte>(s >> (8 * (i % 8)));
        }
    }

    static std::vector<std::uint64_t> prefixDigests(const std::vector<std::int32_t>& tokens) {
        std::vector<std::uint64_t> d(tokens.size());
        std::uint64_t h = 0;
        for (std::size_t t = 0; t < tokens.size(); ++t) {
            h = mix(h ^ static_cast<std::uint32_t>(tokens[t]));
            d[t] = h;
        }
        return d;
    }

    // Writes the pattern of tokens [from, to) into the request's device slots (the "compute").
    void compute(const std::vector<std::int32_t>& tokens, const Admission& a, std::size_t from) {
        auto d = prefixDigests(tokens);
        std::vector<std::byte> row(o_.row_bytes);
        for (std::size_t t = from; t < tokens.size(); ++t) {
            std::size_t slot = a.device_pages[t / o_.page_size] * o_.page_size + t % o_.page_size;
            for (std::uint32_t l = 0; l < o_.layers; ++l) {
                for (std::uint32_t b = 0; b < 2; ++b) {
                    expectedRow(d[t], l, b, row.data());
                    std::memcpy(dev_->row(b, l, slot), row.data(), o_.row_bytes);
                }
            }
        }
    }

    // Number of tokens in [0, to) whose device rows differ from the pattern.
    std::size_t mismatches(const std::vector<std::int32_t>& tokens, const Admission& a,
                           std::size_t to) const {
        auto d = prefixDigests(tokens);
        std::vector<std::byte> row(o_.row_bytes);
        std::size_t bad = 0;
        for (std::size_t t = 0; t < to; ++t) {
            std::size_t slot = a.device_pages[t / o_.page_size] * o_.page_size + t % o_.page_size;
            bool ok = true;
            for (std::uint32_t l = 0; l < o_.layers; ++l) {
                for (std::uint32_t b = 0; b < 2; ++b) {
                    expectedRow(d[t], l, b, row.data());
                    ok = ok && std::memcmp(dev_->row(b, l, slot), row.data(), o_.row_bytes) == 0;
                }
            }
            bad += !ok;
        }
        return bad;
    }

    // Admits, waits for loads, checks reused bytes, computes, inserts and releases one request.
    // Returns the admission (empty device_pages when the device was full).
    // Starts a prefetch for the prompt and steps until the policy lets it be admitted.
    void prefetchAndSettle(RequestId id, const std::vector<std::int32_t>& tokens) {
        auto k = keys(tokens);
        ASSERT_TRUE(ctl_->prefetch(id, k, tokens.size()).isOk());
        for (int i = 0; i < 100000 && !ctl_->prefetchSettled(id); ++i) {
            ASSERT_TRUE(ctl_->step().isOk());
            ASSERT_TRUE(ctl_->waitForProgress().isOk());
        }
        ASSERT_TRUE(ctl_->prefetchSettled(id));
    }

    Admission serve(RequestId id, const std::vector<std::int32_t>& tokens, bool release = true,
                    std::uint32_t priority = 0) {
        auto keys_v = keys(tokens);
        auto r = ctl_->admit(id, keys_v, tokens.size(), priority);
        if (!r.isOk()) {
            EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status().toString();
            return {};
        }
        Admission a = *r;
        EXPECT_TRUE(ctl_->waitAllLayers(id).isOk());
        EXPECT_EQ(mismatches(tokens, a, a.reusedTokens()), 0u) << "request " << id;
        compute(tokens, a, a.reusedTokens());
        EXPECT_TRUE(ctl_->insert(id).isOk());
        if (release) {
            EXPECT_TRUE(ctl_->release(id).isOk());
        }
        return a;
    }

    void expectAllUnlocked() const {
        ctl_->tree().forEach([](const Node& n) {
            EXPECT_EQ(n.device_locks, 0) << "node " << n.id;
            EXPECT_EQ(n.host_locks, 0) << "node " << n.id;
            EXPECT_EQ(n.backup_op, 0u) << "node " << n.id;
            EXPECT_EQ(n.load_op, 0u) << "node " << n.id;
        });
    }

private:
    HarnessOptions o_;
    comm::LocalDecisionGroup group_;
    std::unique_ptr<kernels::Backend> backend_;
    pools::PoolSpec spec_;
    std::unique_ptr<pools::DevicePool> dev_;
    std::unique_ptr<pools::HostPool> host_;
    std::unique_ptr<CacheController> ctl_;
};

inline std::vector<std::int32_t> tokensOf(std::uint64_t seed, std::size_t n,
                                          std::vector<std::int32_t> prefix = {}) {
    std::uint64_t s = seed;
    while (prefix.size() < n) {
        s = mix(s);
        prefix.push_back(static_cast<std::int32_t>(s % 50000));
    }
    return prefix;
}

}  // namespace strata::controller::testing
