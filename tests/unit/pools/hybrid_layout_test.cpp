#include "strata/pools/hybrid_layout.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

namespace strata::pools {
namespace {

HybridLayout layoutOf(std::string_view model, std::uint32_t layers, std::uint32_t tp,
                      std::uint32_t page) {
    auto r = hybridLayout(model, layers, tp, page);
    EXPECT_TRUE(r.isOk()) << r.status().toString();
    return r.isOk() ? *r : HybridLayout{};
}

std::vector<std::string> names(const HybridLayout& l) {
    std::vector<std::string> out;
    for (const HybridPool& p : l.pools) out.push_back(p.spec.name);
    return out;
}

std::vector<std::uint32_t> every(std::uint32_t first, std::uint32_t step, std::uint32_t end) {
    std::vector<std::uint32_t> out;
    for (std::uint32_t l = first; l < end; l += step) out.push_back(l);
    return out;
}

TEST(HybridLayout, NamesOfKindsRolesAndPolicies) {
    EXPECT_EQ(poolKindName(PoolKind::kSwa), "swa");
    EXPECT_EQ(poolKindName(PoolKind::kMamba), "mamba");
    EXPECT_EQ(poolKindName(PoolKind::kCompressed), "compressed");
    EXPECT_EQ(poolKindName(PoolKind::kCompressedState), "compressed_state");
    EXPECT_EQ(poolKindName(PoolKind::kLogical), "logical");
    EXPECT_EQ(poolRoleName(PoolRole::kAnchor), "anchor");
    EXPECT_EQ(poolRoleName(PoolRole::kSidecar), "sidecar");
    EXPECT_EQ(poolRoleName(PoolRole::kIndependent), "independent");
    EXPECT_EQ(hitPolicyName(HitPolicy::kAllPages), "all_pages");
    EXPECT_EQ(hitPolicyName(HitPolicy::kTrailingPages), "trailing_pages");
}

TEST(HybridLayout, HybridPresetsAreListedWithPoolsOfTheirOwnIndices) {
    std::set<std::string> listed;
    for (const ModelPreset& p : modelPresets()) listed.insert(p.name);
    const std::vector<std::pair<std::string, std::string>> hybrid = {
        {"qwen3-next", "mamba"}, {"gpt-oss", "swa"}, {"deepseek-v4", "c128"}};
    for (const auto& [model, pool] : hybrid) {
        EXPECT_EQ(listed.count(model), 1u) << model;
        auto preset = findModelPreset(model);
        ASSERT_TRUE(preset.isOk());
        EXPECT_TRUE((*preset)->isHybrid()) << model;
        EXPECT_NE(layoutOf(model, 0, 1, 128).find(pool), nullptr) << model;
    }
    // Per-token models: the kv anchor and sidecars on its indices, every page needed.
    for (const char* model : {"llama3-8b", "deepseek-v3.2"}) {
        auto preset = findModelPreset(model);
        ASSERT_TRUE(preset.isOk());
        EXPECT_FALSE((*preset)->isHybrid()) << model;
        const HybridLayout l = layoutOf(model, 0, 1, 64);
        ASSERT_FALSE(l.pools.empty()) << model;
        EXPECT_EQ(l.pools[0].role, PoolRole::kAnchor) << model;
        for (std::size_t i = 1; i < l.pools.size(); ++i) {
            EXPECT_EQ(l.pools[i].role, PoolRole::kSidecar) << model;
            EXPECT_EQ(l.pools[i].indices_from, "kv") << model;
        }
        for (const HybridPool& p : l.pools) {
            EXPECT_EQ(p.hit_policy, HitPolicy::kAllPages) << model << " " << p.spec.name;
        }
    }
}

TEST(HybridLayout, PerTokenModelsGiveTheirPerTokenPools) {
    HybridLayout v32 = layoutOf("deepseek-v3.2", 0, 4, 64);
    ASSERT_EQ(names(v32), (std::vector<std::string>{"kv", "indexer"}));
    EXPECT_EQ(v32.pools[0].role, PoolRole::kAnchor);
    EXPECT_EQ(v32.pools[0].spec.row_bytes, 656u);
    EXPECT_EQ(v32.pools[0].layer_map, every(0, 1, 61));
    EXPECT_EQ(v32.pools[1].role, PoolRole::kSidecar);
    EXPECT_EQ(v32.pools[1].indices_from, "kv");
    EXPECT_EQ(v32.pools[1].spec.row_bytes, 132u);
    EXPECT_EQ(v32.pools[1].hit_policy, HitPolicy::kAllPages);
    EXPECT_EQ(v32.pools[1].spec.num_layers, v32.pools[0].spec.num_layers);
    HybridLayout llama = layoutOf("llama3-8b", 4, 2, 64);
    ASSERT_EQ(names(llama), (std::vector<std::string>{"kv"}));
    EXPECT_EQ(llama.pools[0].spec.row_bytes, 4u * 128 * 2);
}

TEST(HybridLayout, GptOssAlternatesFullAndSlidingWindowLayers) {
    HybridLayout l = layoutOf("gpt-oss", 0, 1, 64);
    ASSERT_EQ(names(l), (std::vector<std::string>{"kv", "swa"}));
    const HybridPool& kv = l.pools[0];
    const HybridPool& swa = l.pools[1];
    EXPECT_EQ(kv.spec.kind, PoolKind::kMha);
    EXPECT_EQ(kv.role, PoolRole::kAnchor);
    EXPECT_EQ(kv.layer_map, every(1, 2, 36));
    EXPECT_EQ(kv.spec.num_layers, 18u);
    EXPECT_EQ(kv.spec.num_buffers, 2u);
    EXPECT_EQ(kv.spec.row_bytes, 8u * 64 * 2);
    EXPECT_TRUE(kv.spec.sharded_across_tp);
    EXPECT_EQ(swa.spec.kind, PoolKind::kSwa);
    EXPECT_EQ(swa.role, PoolRole::kIndependent);
    EXPECT_EQ(swa.layer_map, every(0, 2, 36));
    EXPECT_EQ(swa.spec.row_bytes, 8u * 64 * 2);
    EXPECT_EQ(swa.hit_policy, HitPolicy::kTrailingPages);
    EXPECT_EQ(swa.window_tokens, 128u);
    EXPECT_EQ(swa.trailing_pages, 2u);  // 128 tokens in pages of 64
    EXPECT_EQ(layoutOf("gpt-oss", 0, 1, 16).pools[1].trailing_pages, 8u);
    EXPECT_EQ(layoutOf("gpt-oss", 0, 1, 256).pools[1].trailing_pages, 1u);
    // GQA heads split across TP, then one (replicated) head per rank past the head count.
    EXPECT_EQ(layoutOf("gpt-oss", 0, 8, 64).pools[1].spec.row_bytes, 64u * 2);
    EXPECT_EQ(layoutOf("gpt-oss", 0, 16, 64).pools[0].spec.row_bytes, 64u * 2);
    EXPECT_FALSE(hybridLayout("gpt-oss", 0, 3, 64).isOk());
    // Scaled down: the first 4 layers are sliding, full, sliding, full.
    HybridLayout small = layoutOf("gpt-oss", 4, 1, 64);
    EXPECT_EQ(small.pools[0].layer_map, (std::vector<std::uint32_t>{1, 3}));
    EXPECT_EQ(small.pools[1].layer_map, (std::vector<std::uint32_t>{0, 2}));
    auto one = hybridLayout("gpt-oss", 1, 1, 64);  // layer 0 only: no full-attention layer
    ASSERT_FALSE(one.isOk());
    EXPECT_NE(one.status().message().find("pool 'kv'"), std::string::npos)
        << one.status().message();
}

TEST(HybridLayout, Qwen3NextHasMambaStateBetweenFullAttentionLayers) {
    HybridLayout l = layoutOf("qwen3-next", 0, 1, 64);
    ASSERT_EQ(names(l), (std::vector<std::string>{"kv", "mamba"}));
    const HybridPool& kv = l.pools[0];
    const HybridPool& mamba = l.pools[1];
    EXPECT_EQ(kv.layer_map, every(3, 4, 48));
    EXPECT_EQ(kv.spec.row_bytes, 2u * 256 * 2);
    EXPECT_EQ(mamba.spec.kind, PoolKind::kMamba);
    EXPECT_EQ(mamba.role, PoolRole::kIndependent);
    EXPECT_EQ(mamba.spec.num_layers, 36u);
    EXPECT_EQ(mamba.layer_map.front(), 0u);
    EXPECT_EQ(mamba.layer_map[3], 4u);  // 0, 1, 2, 4, ...
    const std::size_t conv = 8192u * 3 * 2;
    const std::size_t temporal = 32u * 128 * 128 * 4;
    EXPECT_EQ(mamba.spec.row_bytes, conv + temporal);
    EXPECT_EQ(mamba.spec.conv_state_bytes, conv);
    EXPECT_TRUE(mamba.spec.sharded_across_tp);
    EXPECT_EQ(mamba.hit_policy, HitPolicy::kTrailingPages);
    EXPECT_EQ(mamba.trailing_pages, 1u);
    EXPECT_EQ(mamba.spec.geometry(64).page_size, 1u);  // one state slot per page
    HybridLayout tp4 = layoutOf("qwen3-next", 0, 4, 64);
    EXPECT_EQ(tp4.pools[0].spec.row_bytes, 256u * 2);  // 2 kv heads: one per rank at TP 4
    EXPECT_EQ(tp4.pools[1].spec.row_bytes, (conv + temporal) / 4);
    EXPECT_EQ(tp4.pools[1].spec.conv_state_bytes, conv / 4);
    auto tp32 = hybridLayout("qwen3-next", 0, 32, 64);  // 16 key heads cannot be split 32 ways
    ASSERT_FALSE(tp32.isOk());
    EXPECT_NE(tp32.status().message().find("state key heads"), std::string::npos)
        << tp32.status().message();
}

TEST(HybridLayout, DeepSeekV4HasCompressedPoolsOnALogicalAnchor) {
    HybridLayout l = layoutOf("deepseek-v4", 0, 8, 128);
    ASSERT_EQ(names(l), (std::vector<std::string>{"kv", "swa", "c4", "c4_indexer", "c128",
                                                  "c4_state", "c4_indexer_state"}));
    const HybridPool& kv = *l.find("kv");
    EXPECT_EQ(kv.spec.kind, PoolKind::kLogical);
    EXPECT_EQ(kv.role, PoolRole::kAnchor);
    EXPECT_EQ(kv.spec.bytesPerRow(), 0u);
    const HybridPool& swa = *l.find("swa");
    EXPECT_EQ(swa.role, PoolRole::kIndependent);
    EXPECT_EQ(swa.spec.num_layers, 61u);
    EXPECT_EQ(swa.spec.row_bytes, 656u);
    EXPECT_FALSE(swa.spec.sharded_across_tp);
    EXPECT_EQ(swa.trailing_pages, 1u);
    const HybridPool& c4 = *l.find("c4");
    EXPECT_EQ(c4.role, PoolRole::kSidecar);
    EXPECT_EQ(c4.indices_from, "kv");
    EXPECT_EQ(c4.ratio, 4u);
    EXPECT_EQ(c4.layer_map, every(0, 2, 61));
    EXPECT_EQ(c4.spec.geometry(128).page_size, 32u);  // rows per page
    EXPECT_EQ(l.find("c4_indexer")->spec.row_bytes, 132u);
    const HybridPool& c128 = *l.find("c128");
    EXPECT_EQ(c128.ratio, 128u);
    EXPECT_EQ(c128.layer_map, every(1, 2, 61));
    EXPECT_EQ(c128.spec.geometry(128).page_size, 1u);
    EXPECT_EQ(c128.hit_policy, HitPolicy::kAllPages);
    for (const char* state : {"c4_state", "c4_indexer_state"}) {
        const HybridPool& s = *l.find(state);
        EXPECT_EQ(s.spec.kind, PoolKind::kCompressedState) << state;
        EXPECT_EQ(s.indices_from, "swa") << state;
        EXPECT_EQ(s.hit_policy, HitPolicy::kTrailingPages) << state;
        EXPECT_EQ(s.trailing_pages, swa.trailing_pages) << state;
    }
    auto page64 = hybridLayout("deepseek-v4", 0, 1, 64);
    ASSERT_FALSE(page64.isOk());
    EXPECT_EQ(page64.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(page64.status().message().find("compression ratio 128 does not divide the page "
                                             "size 64"),
              std::string::npos)
        << page64.status().message();
    auto one_layer = hybridLayout("deepseek-v4", 1, 1, 128);
    ASSERT_FALSE(one_layer.isOk());
    EXPECT_NE(one_layer.status().message().find("c128"), std::string::npos);
    EXPECT_TRUE(hybridLayout("deepseek-v4", 2, 1, 256).isOk());
}

TEST(HybridLayout, SidecarsFollowTheirSourceAndBadArgumentsAreNamed) {
    for (const ModelPreset& preset : modelPresets()) {
        const std::uint32_t page = 128;
        HybridLayout l = layoutOf(preset.name, 0, 1, page);
        ASSERT_FALSE(l.pools.empty()) << preset.name;
        EXPECT_EQ(l.pools[0].role, PoolRole::kAnchor) << preset.name;
        std::set<std::string> seen;
        for (const HybridPool& p : l.pools) {
            if (p.role == PoolRole::kSidecar) {
                EXPECT_EQ(seen.count(p.indices_from), 1u) << preset.name << " " << p.spec.name;
            }
            EXPECT_EQ(p.layer_map.size(), p.spec.num_layers) << p.spec.name;
            seen.insert(p.spec.name);
        }
    }
    EXPECT_EQ(hybridLayout("nope", 0, 1, 64).status().code(), StatusCode::kNotFound);
    EXPECT_EQ(hybridLayout("gpt-oss", 0, 0, 64).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(hybridLayout("gpt-oss", 0, 1, 0).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(hybridLayout("gpt-oss", 37, 1, 64).status().code(), StatusCode::kInvalidArgument);
}

// A set of declared pools: a K/V pool per TP rank and a sidecar whose CP sharding is `cp`.
std::vector<PoolDecl> cpDecls(CpSharding cp) {
    PoolDecl kv;
    kv.name = "kv";
    kv.layers = {0, 1};
    kv.buffers = 2;
    kv.row_bytes = 64;
    PoolDecl side;
    side.name = "side";
    side.type = PoolType::kSidecar;
    side.indices_of = "kv";
    side.layers = {1};
    side.row_bytes = 32;
    side.tp = TpSharding::kReplicated;
    side.cp = cp;
    return {kv, side};
}

TEST(HybridLayout, PoolsPerCpRankAreDeclarableAndChangeTheSignature) {
    const auto replicated = declaredLayout("m", cpDecls(CpSharding::kReplicated), 2, 2, 16);
    const auto per_rank = declaredLayout("m", cpDecls(CpSharding::kPerRank), 2, 2, 16);
    ASSERT_TRUE(replicated.isOk()) << replicated.status().toString();
    ASSERT_TRUE(per_rank.isOk()) << per_rank.status().toString();
    EXPECT_FALSE(replicated->pools[1].spec.sharded_across_cp);
    EXPECT_TRUE(per_rank->pools[1].spec.sharded_across_cp);
    EXPECT_FALSE(per_rank->pools[1].spec.sharded_across_tp);
    EXPECT_FALSE(per_rank->pools[0].spec.sharded_across_cp);
    EXPECT_TRUE(per_rank->pools[0].spec.sharded_across_tp);

    // Replicated across CP: the signature is the same whatever the CP size, and names no CP.
    const std::string rep2 = layoutSignature(*replicated, 2);
    EXPECT_EQ(rep2, layoutSignature(*replicated, 4));
    EXPECT_EQ(rep2.find("cp"), std::string::npos) << rep2;
    // ... and is the signature of before CP sharding (stored pages of earlier jobs keep their
    // keys).
    EXPECT_EQ(rep2, "page=16;tp=2;kv:mha:2x64:bf16;side:indexer:1x32:bf16");
    // Per CP rank: it differs from the replicated declaration's, and with the CP size.
    const std::string per2 = layoutSignature(*per_rank, 2);
    EXPECT_NE(per2, rep2);
    EXPECT_NE(per2, layoutSignature(*per_rank, 4));
    // The other fields still count: a different row shape gives a different signature.
    auto wider = cpDecls(CpSharding::kPerRank);
    wider[1].row_bytes = 48;
    const auto wider_layout = declaredLayout("m", wider, 2, 2, 16);
    ASSERT_TRUE(wider_layout.isOk());
    EXPECT_NE(layoutSignature(*wider_layout, 2), per2);
    // A logical anchor has no bytes to shard.
    auto logical = cpDecls(CpSharding::kPerRank);
    logical[0].row_bytes = 0;
    logical[0].cp = CpSharding::kPerRank;
    const auto logical_layout = declaredLayout("m", logical, 2, 2, 16);
    ASSERT_TRUE(logical_layout.isOk()) << logical_layout.status().toString();
    EXPECT_FALSE(logical_layout->pools[0].spec.sharded_across_cp);
}

TEST(HybridLayout, PresetSignaturesNameNoCpSharding) {
    for (const ModelPreset& preset : modelPresets()) {
        const HybridLayout l = layoutOf(preset.name, 0, 1, 128);
        for (const HybridPool& p : l.pools) EXPECT_FALSE(p.spec.sharded_across_cp) << p.spec.name;
        EXPECT_EQ(layoutSignature(l, 1), layoutSignature(l, 2)) << preset.name;
    }
}

TEST(UsablePrefix, EveryPoolMustServeThePrefix) {
    HybridLayout l = layoutOf("gpt-oss", 4, 1, 64);  // kv: all pages; swa: trailing 2 pages
    const std::size_t n = 6;
    std::vector<std::vector<bool>> present = {std::vector<bool>(n, true),
                                              std::vector<bool>(n, true)};
    EXPECT_EQ(*usablePrefixPages(l, present, n), 6u);
    present[0][4] = false;  // kv missing page 4: at most 4 pages
    EXPECT_EQ(*usablePrefixPages(l, present, n), 4u);
    present[1] = {false, false, false, false, false, true};  // swa kept only page 5
    EXPECT_EQ(*usablePrefixPages(l, present, n), 0u);
    present[1] = {false, false, true, true, false, false};  // the window ending at page 4
    EXPECT_EQ(*usablePrefixPages(l, present, n), 4u);
    present[1] = {false, true, true, false, false, false};  // window ending at page 3 only
    EXPECT_EQ(*usablePrefixPages(l, present, n), 3u);
    present[1] = {true, false, false, false, false, false};  // a 1-page prefix needs page 0 only
    EXPECT_EQ(*usablePrefixPages(l, present, n), 1u);

    HybridLayout q = layoutOf("qwen3-next", 4, 1, 64);  // mamba: state at a node boundary
    std::vector<std::vector<bool>> qp = {std::vector<bool>(n, true),
                                         {false, true, false, false, true, false}};
    EXPECT_EQ(*usablePrefixPages(q, qp, n), 5u);  // state after page 4
    qp[0][3] = false;
    EXPECT_EQ(*usablePrefixPages(q, qp, n), 2u);  // kv stops at 3; state after page 1
    EXPECT_FALSE(usablePrefixPages(q, std::span(qp).first(1), n).isOk());
    qp[1].pop_back();
    EXPECT_FALSE(usablePrefixPages(q, qp, n).isOk());
}

}  // namespace
}  // namespace strata::pools
