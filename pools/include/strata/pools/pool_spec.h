// PoolSpec and model presets: the shape of every pool of a real model (layers, buffers, row bytes),
// after TP sharding. Thread-safety: values and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "strata/core/status.h"
#include "strata/kernels/transfer.h"

namespace strata::pools {

enum class PoolKind : std::uint8_t {
    kMha,  // K and V per layer (MHA/GQA); heads sharded across TP
    kMla,  // one latent row per token per layer; replicated across TP
    // NSA/DSA indexer: per-token index-K rows plus their scales, replicated across TP. A sidecar
    // of the main KV pool: it uses the KV pool's slot index (same page indices in every tier).
    kIndexer,
};
std::string_view poolKindName(PoolKind kind) noexcept;

struct PoolSpec {
    std::string name;  // "kv"
    PoolKind kind = PoolKind::kMha;
    std::uint32_t num_layers = 0;
    std::uint32_t num_buffers = 0;   // 2 for MHA (K, V), 1 for MLA
    std::size_t row_bytes = 0;       // per token, per layer, per buffer, on this rank
    bool sharded_across_tp = false;  // page keys get a per-TP-rank suffix when true

    kernels::PoolGeometry geometry(std::uint32_t page_size) const noexcept {
        return {num_layers, num_buffers, row_bytes, page_size};
    }
    std::size_t bytesPerToken() const noexcept { return row_bytes * num_buffers * num_layers; }
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
};

// All built-in presets, in a stable order.
const std::vector<ModelPreset>& modelPresets();

// The pools of `preset_name` on one rank of a TP group of tp_size, with layers overridden by
// `layers` when non-zero: the main KV pool ("kv") first, then its per-token sidecars ("indexer").
// kNotFound lists the known presets; kInvalidArgument when kv heads are not divisible by tp_size or
// layers exceed the model's.
Result<std::vector<PoolSpec>> poolsForModel(std::string_view preset_name, std::uint32_t layers,
                                            std::uint32_t tp_size);

}  // namespace strata::pools
