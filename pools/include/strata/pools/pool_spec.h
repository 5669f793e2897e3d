// PoolSpec and model presets: the shape of every pool of a real model (layers, buffers, row bytes),
// after TP sharding. Thread-safety: values and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "strata/core/enum_names.h"
#include "strata/core/status.h"
#include "strata/kernels/transfer.h"

namespace strata::pools {

enum class PoolKind : std::uint8_t {
    kMha,  // K and V per layer (MHA/GQA); heads sharded across TP
    kMla,  // one latent row per token per layer; replicated across TP
    // NSA/DSA indexer: per-token index-K rows plus their scales, replicated across TP. A sidecar
    // of the main KV pool: it uses the KV pool's slot index (same page indices in every tier).
    kIndexer,
    // Sliding-window KV (K and V like kMha): only the trailing window of a prefix is kept and
    // stored. Its own slot indices (an independent entry of a HostPoolGroup).
    kSwa,
    // Linear-attention / Mamba state: one row per request slot, not per token (conv state then
    // temporal state in one row). Sharded across TP.
    kMamba,
    // Compressed KV (DeepSeek-V4 style): one row per tokens_per_row tokens (4 or 128), indexed
    // through the KV slot of the first token it covers (row = kv slot / tokens_per_row).
    kCompressed,
    // A compressor's state (its not-yet-compressed input): per-token rows in the slot space of the
    // pool it derives from (SWA in DeepSeek-V4), kept for the trailing pages only.
    kCompressedState,
    // A slot space with no bytes: the anchor whose indices the compressed pools use.
    kLogical,
};
inline constexpr core::EnumNames<PoolKind, 8> kPoolKindNames{
    "pool kind",
    {{{PoolKind::kMha, "mha"},
      {PoolKind::kMla, "mla"},
      {PoolKind::kIndexer, "indexer"},
      {PoolKind::kSwa, "swa"},
      {PoolKind::kMamba, "mamba"},
      {PoolKind::kCompressed, "compressed"},
      {PoolKind::kCompressedState, "compressed_state"},
      {PoolKind::kLogical, "logical"}}}};
constexpr const auto& enumNames(PoolKind) noexcept { return kPoolKindNames; }
constexpr std::string_view poolKindName(PoolKind kind) noexcept { return core::enumName(kind); }

// The role of a pool in a HostPoolGroup (see host_pool_group.h).
enum class PoolRole : std::uint8_t {
    kAnchor,       // allocates the host slots of a prefix (may be logical: no bytes)
    kSidecar,      // takes its indices from another entry (KV or SWA), with a ratio if compressed
    kIndependent,  // allocates its own slots (SWA window, Mamba state)
};
inline constexpr core::EnumNames<PoolRole, 3> kPoolRoleNames{
    "pool role",
    {{{PoolRole::kAnchor, "anchor"},
      {PoolRole::kSidecar, "sidecar"},
      {PoolRole::kIndependent, "independent"}}}};
constexpr const auto& enumNames(PoolRole) noexcept { return kPoolRoleNames; }
constexpr std::string_view poolRoleName(PoolRole role) noexcept { return core::enumName(role); }

// Which pages of a prefix a pool must hold for the prefix to be usable.
enum class HitPolicy : std::uint8_t {
    kAllPages,       // every page of the prefix (KV, indexer, compressed)
    kTrailingPages,  // only the last N pages (SWA window; Mamba state at a node boundary: N = 1)
};
inline constexpr core::EnumNames<HitPolicy, 2> kHitPolicyNames{
    "hit policy",
    {{{HitPolicy::kAllPages, "all_pages"}, {HitPolicy::kTrailingPages, "trailing_pages"}}}};
constexpr const auto& enumNames(HitPolicy) noexcept { return kHitPolicyNames; }
constexpr std::string_view hitPolicyName(HitPolicy policy) noexcept {
    return core::enumName(policy);
}

struct PoolSpec {
    std::string name;  // "kv"
    PoolKind kind = PoolKind::kMha;
    std::uint32_t num_layers = 0;
    std::uint32_t num_buffers = 0;   // 2 for MHA (K, V), 1 for MLA
    std::size_t row_bytes = 0;       // per row (token, or slot), per layer, per buffer, this rank
    bool sharded_across_tp = false;  // page keys get a per-TP-rank suffix when true
    bool sharded_across_cp = false;  // page keys get a per-CP-rank suffix when true
    // kCompressed: tokens per row (4, 128); it must divide the page size. 1 for every other kind.
    std::uint32_t tokens_per_row = 1;
    // kMamba: bytes of the conv state at the start of each row; the temporal state follows.
    std::size_t conv_state_bytes = 0;
    // The engine's dtype tag (PoolDecl::dtype), part of the cache's namespace; empty for presets.
    std::string dtype = {};

    // Index units per page: page_size tokens, or one request slot for kMamba.
    std::uint32_t unitsPerPage(std::uint32_t page_size) const noexcept {
        return kind == PoolKind::kMamba ? 1 : page_size;
    }
    // Rows per page: page_size / tokens_per_row (0 when it does not divide), 1 for kMamba.
    std::uint32_t rowsPerPage(std::uint32_t page_size) const noexcept {
        if (kind == PoolKind::kMamba) return 1;
        const std::uint32_t r = tokens_per_row == 0 ? 1 : tokens_per_row;
        return page_size % r == 0 ? page_size / r : 0;
    }
    // The kernels' geometry: its page_size is rows per page (page p holds rows [p*R, (p+1)*R)),
    // so a compressed pool shares the page indices of the pool it derives from.
    kernels::PoolGeometry geometry(std::uint32_t page_size) const noexcept {
        return {num_layers, num_buffers, row_bytes, rowsPerPage(page_size)};
    }
    // Bytes of one row over all layers and buffers; per token for per-token pools.
    std::size_t bytesPerRow() const noexcept { return row_bytes * num_buffers * num_layers; }
    std::size_t bytesPerToken() const noexcept { return bytesPerRow(); }
    // Checks that this spec can back a pool of page_size tokens: positive shape (kLogical has no
    // bytes and is refused), tokens_per_row dividing the page. kInvalidArgument names the field.
    Status validate(std::uint32_t page_size) const;
};

struct ModelPreset {
    std::string name;         // "llama3-8b"
    std::string description;  // one line, for --list-models
    std::uint32_t num_layers = 0;
    // Full-model shape, before TP sharding.
    PoolKind kind = PoolKind::kMha;
    std::uint32_t kv_heads = 0;     // MHA/GQA
    std::uint32_t head_dim = 0;     // MHA/GQA
    std::size_t mla_row_bytes = 0;  // MLA (e.g. 576 * 2 = 1152)
    std::uint32_t dtype_bytes = 2;
    // NSA/DSA indexer rows per token per layer (index-K values + scales); 0 = no indexer pool.
    std::size_t indexer_row_bytes = 0;

    // Hybrid models (hybrid_layout.h). The kind of each layer, a pattern repeated over the layers;
    // empty means every layer is 'F'. 'F': full attention (pool "kv"); 'S': sliding window
    // ("swa"); 'M': linear attention / Mamba state ("mamba"); 'C': DeepSeek-V4 layer compressed
    // by 4 with an indexer ("c4", "c4_indexer"); 'H': DeepSeek-V4 layer compressed by 128.
    std::string layer_pattern = {};
    std::uint32_t window_tokens = 0;  // 'S' layers (and every DeepSeek-V4 layer)
    // Mamba / Gated DeltaNet state per layer, full model: conv channels x (kernel - 1) values,
    // and heads x key dim x value dim temporal values; heads and channels split across TP.
    std::uint32_t conv_channels = 0;
    std::uint32_t conv_width = 0;  // kernel - 1
    std::uint32_t conv_dtype_bytes = 2;
    std::uint32_t state_key_heads = 0;  // TP must divide it (and the value heads)
    std::uint32_t state_value_heads = 0;
    std::uint32_t state_key_dim = 0;
    std::uint32_t state_value_dim = 0;
    std::uint32_t state_dtype_bytes = 4;
    // DeepSeek-V4 style: a logical anchor, SWA rows, compressed rows and compressor state rows.
    bool logical_anchor = false;
    std::size_t swa_row_bytes = 0;         // replicated row (MLA-like) when non-zero
    std::size_t compressed_row_bytes = 0;  // c4 and c128 rows
    std::size_t compressed_indexer_row_bytes = 0;
    std::size_t compressed_state_row_bytes = 0;          // c4_state, per token of the window
    std::size_t compressed_indexer_state_row_bytes = 0;  // c4_indexer_state

    // True when the model has pools other than per-token pools on the KV slots (kv, indexer):
    // pools with slot indices of their own (SWA, Mamba state) or a logical anchor.
    bool isHybrid() const noexcept {
        return layer_pattern.find_first_not_of('F') != std::string::npos || logical_anchor;
    }
};

// All built-in presets, in a stable order.
const std::vector<ModelPreset>& modelPresets();
// The preset named `name`; kNotFound lists the known ones.
Result<const ModelPreset*> findModelPreset(std::string_view name);

}  // namespace strata::pools
