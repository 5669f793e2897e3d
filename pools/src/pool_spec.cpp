#include "strata/pools/pool_spec.h"

#include <fmt/format.h>

namespace strata::pools {

Status PoolSpec::validate(std::uint32_t page_size) const {
    if (kind == PoolKind::kLogical) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "pool '{}' is logical: it owns no bytes, so it has no device or host "
                            "pool (only a slot allocator in a HostPoolGroup)",
                            name);
    }
    if (page_size == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "pool '{}': page size is 0", name);
    }
    if (tokens_per_row == 0 || (kind != PoolKind::kCompressed && tokens_per_row != 1)) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "pool '{}' (kind {}): tokens_per_row {} is invalid (1, or the "
                            "compression ratio of a compressed pool)",
                            name, poolKindName(kind), tokens_per_row);
    }
    if (kind == PoolKind::kCompressed && page_size % tokens_per_row != 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "pool '{}': compression ratio {} does not divide the page size {} "
                            "(use a page size that is a multiple of {})",
                            name, tokens_per_row, page_size, tokens_per_row);
    }
    if (kind == PoolKind::kMamba && conv_state_bytes > row_bytes) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "pool '{}': conv state of {} bytes exceeds the row of {} bytes", name,
                            conv_state_bytes, row_bytes);
    }
    Status s = geometry(page_size).validate();
    if (!s.isOk()) return s.withContext(fmt::format("pool '{}'", name));
    return Status::ok();
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
        {.name = "qwen3-next",
         .description =
             "Qwen3-Next-80B-A3B (public config): 48 layers, full attention every 4th (GQA 2 KV "
             "heads x 256, bf16), Gated DeltaNet state in the others: conv 8192 ch x 3 bf16 + "
             "temporal 32 heads x 128 x 128 (fp32: assumed state dtype); pools kv + mamba",
         .num_layers = 48,
         .kind = PoolKind::kMha,
         .kv_heads = 2,
         .head_dim = 256,
         .dtype_bytes = 2,
         .layer_pattern = "MMMF",
         // conv channels = 2 x 16 key heads x 128 + 32 value heads x 128; kernel 4.
         .conv_channels = 2 * 16 * 128 + 32 * 128,
         .conv_width = 4 - 1,
         .conv_dtype_bytes = 2,
         .state_key_heads = 16,
         .state_value_heads = 32,
         .state_key_dim = 128,
         .state_value_dim = 128,
         .state_dtype_bytes = 4},
        {.name = "gpt-oss",
         .description = "gpt-oss-120b (public config): 36 layers alternating sliding-window "
                        "(128 tokens) and full attention, GQA 8 KV heads x 64, bf16; pools kv + "
                        "swa (own indices, trailing window)",
         .num_layers = 36,
         .kind = PoolKind::kMha,
         .kv_heads = 8,
         .head_dim = 64,
         .dtype_bytes = 2,
         .layer_pattern = "SF",
         .window_tokens = 128},
        {.name = "deepseek-v4",
         .description = "DeepSeek-V4-style compressed stack (shapes assumed, not from a public "
                        "config): 61 layers alternating compress-by-4 (+ indexer) and "
                        "compress-by-128, 128-token window on every layer, 656-byte rows; pools "
                        "kv (logical anchor) + swa + c4 + c4_indexer + c128 + c4 states",
         .num_layers = 61,
         .kind = PoolKind::kMla,
         .dtype_bytes = 1,
         .layer_pattern = "CH",
         .window_tokens = 128,
         .logical_anchor = true,
         .swa_row_bytes = 656,
         .compressed_row_bytes = 656,
         .compressed_indexer_row_bytes = 128 + 4,
         .compressed_state_row_bytes = 512 * 2,
         .compressed_indexer_state_row_bytes = 128 * 2},
    };
    return presets;
}

Result<const ModelPreset*> findModelPreset(std::string_view name) {
    std::string known;
    for (const ModelPreset& p : modelPresets()) {
        if (p.name == name) return &p;
        known += known.empty() ? p.name : ", " + p.name;
    }
    return STRATA_ERROR(StatusCode::kNotFound, "unknown model preset '{}' (known: {})", name,
                        known);
}

}  // namespace strata::pools
