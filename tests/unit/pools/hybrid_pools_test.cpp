#include <gtest/gtest.h>

#include <string>

#include "strata/pools/device_pool.h"
#include "strata/pools/host_pool.h"
#include "strata/pools/hybrid_layout.h"

namespace strata::pools {
namespace {

std::unique_ptr<kernels::Backend> cpu() {
    return std::move(kernels::Backend::create(kernels::BackendKind::kCpu, {})).value();
}

PoolSpec specOf(std::string_view model, std::uint32_t layers, std::uint32_t tp, std::uint32_t page,
                std::string_view pool) {
    auto l = hybridLayout(model, layers, tp, page);
    EXPECT_TRUE(l.isOk()) << l.status().toString();
    const HybridPool* p = l->find(pool);
    EXPECT_NE(p, nullptr) << pool;
    return p != nullptr ? p->spec : PoolSpec{};
}

TEST(HybridPools, MambaPoolHasOneRowPerRequestSlot) {
    auto backend = cpu();
    const PoolSpec spec = specOf("qwen3-next", 4, 4, 64, "mamba");  // 3 linear layers
    ASSERT_EQ(spec.num_layers, 3u);
    const std::size_t row = 2048u * 3 * 2 + 8u * 128 * 128 * 4;
    ASSERT_EQ(spec.row_bytes, row);
    auto dev = DevicePool::create(*backend, spec, 10, 64);  // 10 request slots
    ASSERT_TRUE(dev.isOk()) << dev.status().toString();
    EXPECT_EQ(dev->capacityRows(), 10u);
    EXPECT_EQ(dev->numPages(), 10u);
    EXPECT_EQ(dev->geometry().page_size, 1u);
    EXPECT_EQ(dev->sizeBytes(), 10u * row * 3);
    EXPECT_EQ(dev->view().capacity_tokens, 10u);
    EXPECT_EQ(dev->row(0, 2, 9), dev->view().layer_ptrs[2] + 9 * row);
    auto host = HostPool::create(*backend, spec, 6, 64, kernels::HostLayout::kPageFirst);
    ASSERT_TRUE(host.isOk()) << host.status().toString();
    EXPECT_EQ(host->numPages(), 6u);
    EXPECT_EQ(host->sizeBytes(), 6u * row * 3);
    EXPECT_EQ(host->pageBlob(5).size(), row * 3);  // one slot: every layer's state
    EXPECT_EQ(host->pageBlob(5).data(), host->data() + 5 * row * 3);
    EXPECT_FALSE(DevicePool::create(*backend, spec, 0, 64).isOk());
}

TEST(HybridPools, CompressedPoolsHoldOneRowPerRatioTokens) {
    auto backend = cpu();
    for (std::uint32_t ratio : {4u, 128u}) {
        SCOPED_TRACE(ratio);
        const PoolSpec spec =
            specOf("deepseek-v4", 4, 1, 256, ratio == 4 ? "c4" : "c128");  // 2 layers each
        ASSERT_EQ(spec.tokens_per_row, ratio);
        ASSERT_EQ(spec.row_bytes, 656u);
        auto dev = DevicePool::create(*backend, spec, 1000, 256);  // 3 pages of 256 tokens
        ASSERT_TRUE(dev.isOk()) << dev.status().toString();
        EXPECT_EQ(dev->capacityTokens(), 768u);
        EXPECT_EQ(dev->numPages(), 3u);
        EXPECT_EQ(dev->capacityRows(), 768u / ratio);
        EXPECT_EQ(dev->geometry().page_size, 256u / ratio);
        EXPECT_EQ(dev->sizeBytes(), 768u / ratio * 656 * 2);
        // The row of a compressed group is found through the KV slot of its first token.
        EXPECT_EQ(dev->rowOfSlot(512), 512u / ratio);
        EXPECT_EQ(dev->rowOfSlot(512 + ratio - 1), 512u / ratio);
        EXPECT_EQ(dev->row(0, 1, dev->rowOfSlot(512)),
                  dev->view().layer_ptrs[1] + 512 / ratio * 656);
        auto host = HostPool::create(*backend, spec, 512, 256, kernels::HostLayout::kLayerFirst);
        ASSERT_TRUE(host.isOk()) << host.status().toString();
        EXPECT_EQ(host->capacityRows(), 512u / ratio);
        EXPECT_EQ(host->sizeBytes(), 512u / ratio * 656 * 2);
    }
    PoolSpec bad = specOf("deepseek-v4", 4, 1, 256, "c128");
    auto r = DevicePool::create(*backend, bad, 1024, 64);
    ASSERT_FALSE(r.isOk());
    EXPECT_NE(r.status().message().find("compression ratio 128 does not divide the page size 64"),
              std::string::npos)
        << r.status().message();
    EXPECT_FALSE(HostPool::create(*backend, bad, 1024, 64, kernels::HostLayout::kPageFirst).isOk());
}

TEST(HybridPools, LogicalAnchorHasNoPoolAndStatePoolsArePerToken) {
    auto backend = cpu();
    const PoolSpec logical = specOf("deepseek-v4", 4, 1, 128, "kv");
    auto r = DevicePool::create(*backend, logical, 1024, 128);
    ASSERT_FALSE(r.isOk());
    EXPECT_NE(r.status().message().find("logical"), std::string::npos) << r.status().message();
    const PoolSpec state = specOf("deepseek-v4", 4, 1, 128, "c4_state");
    auto dev = DevicePool::create(*backend, state, 256, 128);
    ASSERT_TRUE(dev.isOk()) << dev.status().toString();
    EXPECT_EQ(dev->capacityRows(), 256u);
    EXPECT_EQ(dev->geometry().page_size, 128u);
}

TEST(HybridPools, RowsOf656BytesAreAddressedWithoutPadding) {
    auto backend = cpu();
    for (const auto& [model, pool] :
         {std::pair<const char*, const char*>{"deepseek-v3.2", "kv"}, {"deepseek-v4", "swa"}}) {
        SCOPED_TRACE(model);
        const PoolSpec spec = specOf(model, 4, 2, 128, pool);
        ASSERT_EQ(spec.row_bytes, 656u);
        auto dev = DevicePool::create(*backend, spec, 256, 128);
        ASSERT_TRUE(dev.isOk()) << dev.status().toString();
        EXPECT_EQ(dev->row(0, 3, 255) - dev->row(0, 3, 0), 255 * 656);
        auto host = HostPool::create(*backend, spec, 256, 128, kernels::HostLayout::kPageFirst);
        ASSERT_TRUE(host.isOk());
        EXPECT_EQ(host->pageBlob(1).size(), 128u * 656 * spec.num_layers);
        EXPECT_EQ(host->sizeBytes(), 256u * 656 * spec.num_layers);
    }
}

}  // namespace
}  // namespace strata::pools
