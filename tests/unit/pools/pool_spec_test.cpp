#include "strata/pools/pool_spec.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "strata/pools/hybrid_layout.h"

namespace strata::pools {
namespace {

// The pools the runtime creates for a preset (hybridLayout = declaredLayout(presetPools(...))).
Result<HybridLayout> layout(std::string_view model, std::uint32_t layers, std::uint32_t tp) {
    return hybridLayout(model, layers, tp, 16);
}

PoolSpec onlyPool(std::string_view model, std::uint32_t layers, std::uint32_t tp) {
    auto l = layout(model, layers, tp);
    EXPECT_TRUE(l.isOk()) << l.status().toString();
    if (!l.isOk()) return {};
    EXPECT_EQ(l->pools.size(), 1u);
    return l->pools.front().spec;
}

TEST(PoolSpec, KindNames) {
    EXPECT_EQ(poolKindName(PoolKind::kMha), "mha");
    EXPECT_EQ(poolKindName(PoolKind::kMla), "mla");
    EXPECT_EQ(poolKindName(PoolKind::kIndexer), "indexer");
}

TEST(ModelPresets, KnownModelsWithDescriptions) {
    std::set<std::string> names;
    for (const ModelPreset& p : modelPresets()) {
        names.insert(p.name);
        EXPECT_FALSE(p.description.empty()) << p.name;
        EXPECT_GT(p.num_layers, 0u) << p.name;
    }
    for (const char* name : {"llama3-8b", "qwen3-30b-a3b", "deepseek-v3", "deepseek-v3.2"}) {
        EXPECT_EQ(names.count(name), 1u) << name;
    }
    EXPECT_EQ(names.size(), modelPresets().size()) << "duplicate preset names";
}

TEST(ModelPresets, Llama3ShardsHeadsAcrossTp) {
    PoolSpec tp1 = onlyPool("llama3-8b", 0, 1);
    EXPECT_EQ(tp1.name, "kv");
    EXPECT_EQ(tp1.kind, PoolKind::kMha);
    EXPECT_EQ(tp1.num_layers, 32u);
    EXPECT_EQ(tp1.num_buffers, 2u);
    EXPECT_EQ(tp1.row_bytes, 8u * 128 * 2);
    EXPECT_TRUE(tp1.sharded_across_tp);
    EXPECT_EQ(tp1.bytesPerToken(), 2048u * 2 * 32);
    EXPECT_EQ(onlyPool("llama3-8b", 0, 2).row_bytes, 4u * 128 * 2);
    EXPECT_EQ(onlyPool("llama3-8b", 0, 8).row_bytes, 128u * 2);
    EXPECT_EQ(onlyPool("qwen3-30b-a3b", 0, 1).row_bytes, 4u * 128 * 2);
    EXPECT_EQ(onlyPool("qwen3-30b-a3b", 0, 1).num_layers, 48u);
}

TEST(ModelPresets, DeepSeekIsReplicatedMla) {
    for (std::uint32_t tp : {1u, 8u, 16u}) {
        PoolSpec v3 = onlyPool("deepseek-v3", 0, tp);
        EXPECT_EQ(v3.kind, PoolKind::kMla);
        EXPECT_EQ(v3.num_layers, 61u);
        EXPECT_EQ(v3.num_buffers, 1u);
        EXPECT_EQ(v3.row_bytes, 1152u);
        EXPECT_FALSE(v3.sharded_across_tp);
    }
}

TEST(ModelPresets, DeepSeekV32HasMla656RowsAndAnIndexerSidecar) {
    for (std::uint32_t tp : {1u, 4u}) {
        auto l = layout("deepseek-v3.2", 8, tp);
        ASSERT_TRUE(l.isOk()) << l.status().toString();
        ASSERT_EQ(l->pools.size(), 2u);
        EXPECT_EQ(l->pools[1].role, PoolRole::kSidecar);
        EXPECT_EQ(l->pools[1].indices_from, "kv");
        const PoolSpec& kv = l->pools[0].spec;
        const PoolSpec& indexer = l->pools[1].spec;
        EXPECT_EQ(kv.name, "kv");
        EXPECT_EQ(kv.kind, PoolKind::kMla);
        EXPECT_EQ(kv.row_bytes, 656u);
        EXPECT_EQ(kv.num_layers, 8u);
        EXPECT_EQ(kv.num_buffers, 1u);
        EXPECT_FALSE(kv.sharded_across_tp);
        EXPECT_EQ(indexer.name, "indexer");
        EXPECT_EQ(indexer.kind, PoolKind::kIndexer);
        EXPECT_EQ(indexer.row_bytes, 132u);  // 128 fp8 index-K values + one fp32 scale
        EXPECT_EQ(indexer.num_layers, 8u);
        EXPECT_EQ(indexer.num_buffers, 1u);
        EXPECT_FALSE(indexer.sharded_across_tp);
    }
}

TEST(ModelPresets, LayersOverride) {
    EXPECT_EQ(onlyPool("llama3-8b", 4, 1).num_layers, 4u);
    EXPECT_EQ(onlyPool("deepseek-v3", 61, 1).num_layers, 61u);
    auto r = layout("deepseek-v3", 62, 1);
    ASSERT_FALSE(r.isOk());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("62"), std::string::npos) << r.status().message();
}

TEST(ModelPresets, BadTpIsInvalid) {
    for (std::uint32_t tp : {0u, 3u, 12u}) {
        auto r = layout("llama3-8b", 0, tp);
        ASSERT_FALSE(r.isOk()) << tp;
        EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << tp;
        EXPECT_NE(r.status().message().find("tp size"), std::string::npos) << r.status().message();
    }
    // TP past the kv head count: each rank holds one head.
    EXPECT_EQ(onlyPool("llama3-8b", 0, 16).row_bytes, 128u * 2);
    EXPECT_EQ(onlyPool("qwen3-30b-a3b", 0, 8).row_bytes, 128u * 2);
}

TEST(ModelPresets, UnknownNameListsKnownOnes) {
    auto r = layout("llama2-7b", 0, 1);
    ASSERT_FALSE(r.isOk());
    EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
    EXPECT_NE(r.status().message().find("llama2-7b"), std::string::npos);
    EXPECT_NE(r.status().message().find("deepseek-v3.2"), std::string::npos);
    EXPECT_NE(r.status().message().find("llama3-8b"), std::string::npos);
}

}  // namespace
}  // namespace strata::pools
