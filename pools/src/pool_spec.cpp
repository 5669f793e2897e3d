#include "strata/pools/pool_spec.h"

#include <fmt/format.h>

namespace strata::pools {

std::string_view poolKindName(PoolKind kind) noexcept {
    switch (kind) {
        case PoolKind::kMha:
            return "mha";
        case PoolKind::kMla:
            return "mla";
        case PoolKind::kIndexer:
            return "indexer";
    }
    return "unknown";
}

const std::vector<ModelPreset>& modelPresets() {
    static const std::vector<ModelPreset> presets = {
        {.name = "llama3-8b",
         .description = "Llama-3-8B: GQA, 32 layers, 8 KV heads x 128, bf16",
         .num_layers = 32,
         .kind = PoolKind::kMha,
         .kv_heads = 8,
         .head_dim = 128,
         .dtype_bytes = 2},
        {.name = "qwen3-30b-a3b",
         .description = "Qwen3-30B-A3B: GQA, 48 layers, 4 KV heads x 128, bf16",
         .num_layers = 48,
         .kind = PoolKind::kMha,
         .kv_heads = 4,
         .head_dim = 128,
         .dtype_bytes = 2},
        {.name = "deepseek-v3",
         .description = "DeepSeek-V3: MLA, 61 layers, 576 bf16 values (1152 bytes) per row",
         .num_layers = 61,
         .kind = PoolKind::kMla,
         .mla_row_bytes = 576 * 2,
         .dtype_bytes = 2},
        {.name = "deepseek-v3.2",
         .description = "DeepSeek-V3.2: MLA, 61 layers, 656-byte FP8-scaled rows (512 fp8 + 4 "
                        "fp32 scales + 64 bf16 rope), plus the DSA indexer pool: 132-byte rows "
                        "(128 fp8 index-K values + one fp32 scale)",
         .num_layers = 61,
         .kind = PoolKind::kMla,
         .mla_row_bytes = 656,
         .dtype_bytes = 1,
         .indexer_row_bytes = 128 + 4},
    };
    return presets;
}

Result<std::vector<PoolSpec>> poolsForModel(std::string_view preset_name, std::uint32_t layers,
                                            std::uint32_t tp_size) {
    const ModelPreset* preset = nullptr;
    std::string known;
    for (const ModelPreset& p : modelPresets()) {
        if (p.name == preset_name) preset = &p;
        known += known.empty() ? p.name : ", " + p.name;
    }
    if (preset == nullptr) {
        return STRATA_ERROR(StatusCode::kNotFound, "unknown model preset '{}' (known: {})",
                            preset_name, known);
    }
    if (tp_size == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "tp size is 0 for model '{}'",
                            preset->name);
    }
    if (layers > preset->num_layers) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "layers {} exceed the {} layers of model '{}'", layers,
                            preset->num_layers, preset->name);
    }
    PoolSpec kv;
    kv.name = "kv";
    kv.kind = preset->kind;
    kv.num_layers = layers == 0 ? preset->num_layers : layers;
    if (preset->kind == PoolKind::kMha) {
        if (preset->kv_heads % tp_size != 0) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "tp size {} does not divide the {} kv heads of model '{}'", tp_size,
                                preset->kv_heads, preset->name);
        }
        kv.num_buffers = 2;
        kv.row_bytes =
            std::size_t{preset->kv_heads / tp_size} * preset->head_dim * preset->dtype_bytes;
        kv.sharded_across_tp = true;
    } else {
        kv.num_buffers = 1;
        kv.row_bytes = preset->mla_row_bytes;
        kv.sharded_across_tp = false;  // the latent is replicated on every TP rank
    }
    std::vector<PoolSpec> out{kv};
    if (preset->indexer_row_bytes > 0) {
        PoolSpec indexer;
        indexer.name = "indexer";
        indexer.kind = PoolKind::kIndexer;
        indexer.num_layers = kv.num_layers;
        indexer.num_buffers = 1;
        indexer.row_bytes = preset->indexer_row_bytes;
        indexer.sharded_across_tp = false;  // one index-K head, replicated like the latent
        out.push_back(indexer);
    }
    return out;
}

}  // namespace strata::pools
