#include "strata/pools/hybrid_layout.h"

#include <fmt/format.h>

#include <algorithm>

namespace strata::pools {
namespace {

char layerKind(const ModelPreset& preset, std::uint32_t layer) {
    const std::string& p = preset.layer_pattern;
    return p.empty() ? 'F' : p[layer % p.size()];
}

bool hasKind(const ModelPreset& preset, char kind) {
    return preset.layer_pattern.find(kind) != std::string::npos;
}

// Heads on one rank: split when TP divides them; one head per rank (replicated TP / heads times)
// when TP is a multiple of the head count, as inference engines do for GQA.
Result<std::uint32_t> headsPerRank(const ModelPreset& preset, std::uint32_t heads, std::uint32_t tp,
                                   std::string_view what) {
    if (heads % tp == 0) return heads / tp;
    if (tp % heads == 0) return 1u;
    return STRATA_ERROR(StatusCode::kInvalidArgument,
                        "tp size {} neither divides the {} {} of model '{}' nor is a multiple of "
                        "them",
                        tp, heads, what, preset.name);
}

Result<std::uint32_t> splitExactly(const ModelPreset& preset, std::uint32_t count, std::uint32_t tp,
                                   std::string_view what) {
    if (count % tp != 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "tp size {} does not divide the {} {} of model '{}' (state sharded "
                            "across TP)",
                            tp, count, what, preset.name);
    }
    return count / tp;
}

class Builder {
public:
    Builder(const ModelPreset& preset, std::uint32_t layers, std::uint32_t page_size)
        : preset_(preset), layers_(layers), page_size_(page_size) {}

    // Model layers among the first layers_ whose kind is in `kinds` (all layers when empty).
    Result<std::vector<std::uint32_t>> layersOf(std::string_view pool, std::string_view kinds) {
        std::vector<std::uint32_t> out;
        for (std::uint32_t l = 0; l < layers_; ++l) {
            if (kinds.empty() || kinds.find(layerKind(preset_, l)) != std::string_view::npos) {
                out.push_back(l);
            }
        }
        if (out.empty()) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "pool '{}' of model '{}' has no layer among the first {} (layer "
                                "pattern '{}'): use more layers",
                                pool, preset_.name, layers_, preset_.layer_pattern);
        }
        return out;
    }

    Result<HybridPool> pool(std::string name, PoolKind kind, std::string_view layer_kinds,
                            std::uint32_t buffers, std::size_t row_bytes, bool sharded) {
        HybridPool p;
        STRATA_ASSIGN_OR_RETURN(p.layer_map, layersOf(name, layer_kinds));
        p.spec.name = std::move(name);
        p.spec.kind = kind;
        p.spec.num_layers = static_cast<std::uint32_t>(p.layer_map.size());
        p.spec.num_buffers = buffers;
        p.spec.row_bytes = row_bytes;
        p.spec.sharded_across_tp = sharded;
        return p;
    }

    std::uint32_t windowPages() const {
        return (preset_.window_tokens + page_size_ - 1) / page_size_;
    }

private:
    const ModelPreset& preset_;
    std::uint32_t layers_;
    std::uint32_t page_size_;
};

}  // namespace

const HybridPool* HybridLayout::find(std::string_view name) const noexcept {
    for (const HybridPool& p : pools) {
        if (p.spec.name == name) return &p;
    }
    return nullptr;
}

std::vector<std::string> hybridOnlyPoolNames(const ModelPreset& preset) {
    std::vector<std::string> out;
    if (preset.logical_anchor) out.emplace_back("kv (logical anchor)");
    if (hasKind(preset, 'S') || preset.logical_anchor) out.emplace_back("swa");
    if (hasKind(preset, 'M')) out.emplace_back("mamba");
    if (hasKind(preset, 'C')) {
        out.emplace_back("c4");
        if (preset.compressed_indexer_row_bytes > 0) out.emplace_back("c4_indexer");
    }
    if (hasKind(preset, 'H')) out.emplace_back("c128");
    if (hasKind(preset, 'C') && preset.compressed_state_row_bytes > 0) {
        out.emplace_back("c4_state");
    }
    if (hasKind(preset, 'C') && preset.compressed_indexer_state_row_bytes > 0) {
        out.emplace_back("c4_indexer_state");
    }
    return out;
}

Result<HybridLayout> hybridLayout(std::string_view preset_name, std::uint32_t layers,
                                  std::uint32_t tp_size, std::uint32_t page_size) {
    STRATA_ASSIGN_OR_RETURN(const ModelPreset* preset, findModelPreset(preset_name));
    const ModelPreset& m = *preset;
    if (tp_size == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "tp size is 0 for model '{}'", m.name);
    }
    if (page_size == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "page size is 0 for model '{}'", m.name);
    }
    if (layers > m.num_layers) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "layers {} exceed the {} layers of model '{}'", layers, m.num_layers,
                            m.name);
    }
    HybridLayout out;
    out.model = m.name;
    out.model_layers = layers == 0 ? m.num_layers : layers;
    out.tp_size = tp_size;
    out.page_size = page_size;
    Builder b(m, out.model_layers, page_size);

    // The anchor: the full-attention KV, or a logical slot space over every layer.
    if (m.logical_anchor) {
        STRATA_ASSIGN_OR_RETURN(HybridPool kv, b.pool("kv", PoolKind::kLogical, "", 0, 0, false));
        out.pools.push_back(std::move(kv));
    } else if (m.kind == PoolKind::kMha) {
        STRATA_ASSIGN_OR_RETURN(std::uint32_t heads,
                                headsPerRank(m, m.kv_heads, tp_size, "kv heads"));
        STRATA_ASSIGN_OR_RETURN(HybridPool kv,
                                b.pool("kv", PoolKind::kMha, "F", 2,
                                       std::size_t{heads} * m.head_dim * m.dtype_bytes, true));
        out.pools.push_back(std::move(kv));
    } else {
        STRATA_ASSIGN_OR_RETURN(HybridPool kv,
                                b.pool("kv", m.kind, "F", 1, m.mla_row_bytes, false));
        out.pools.push_back(std::move(kv));
    }
    if (m.indexer_row_bytes > 0) {
        STRATA_ASSIGN_OR_RETURN(HybridPool indexer, b.pool("indexer", PoolKind::kIndexer, "F", 1,
                                                           m.indexer_row_bytes, false));
        indexer.role = PoolRole::kSidecar;
        indexer.indices_from = "kv";
        out.pools.push_back(std::move(indexer));
    }
    // Sliding window: its own slots, only the trailing window. DeepSeek-V4 has it on every layer.
    if (hasKind(m, 'S') || m.logical_anchor) {
        std::uint32_t buffers = 1;
        std::size_t row_bytes = m.swa_row_bytes;  // replicated MLA-like rows when set
        bool sharded = false;
        if (row_bytes == 0) {
            STRATA_ASSIGN_OR_RETURN(std::uint32_t heads,
                                    headsPerRank(m, m.kv_heads, tp_size, "kv heads"));
            buffers = 2;
            row_bytes = std::size_t{heads} * m.head_dim * m.dtype_bytes;
            sharded = true;
        }
        STRATA_ASSIGN_OR_RETURN(HybridPool swa_pool,
                                b.pool("swa", PoolKind::kSwa, m.logical_anchor ? "" : "S", buffers,
                                       row_bytes, sharded));
        HybridPool* swa = &swa_pool;
        swa->role = PoolRole::kIndependent;
        swa->hit_policy = HitPolicy::kTrailingPages;
        swa->window_tokens = m.window_tokens;
        swa->trailing_pages = b.windowPages();
        out.pools.push_back(std::move(swa_pool));
    }
    // Linear attention state: one slot per request, conv channels and heads split across TP.
    if (hasKind(m, 'M')) {
        STRATA_ASSIGN_OR_RETURN(std::uint32_t channels,
                                splitExactly(m, m.conv_channels, tp_size, "conv channels"));
        STRATA_RETURN_IF_ERROR(
            splitExactly(m, m.state_key_heads, tp_size, "state key heads").status());
        STRATA_ASSIGN_OR_RETURN(std::uint32_t v_heads,
                                splitExactly(m, m.state_value_heads, tp_size, "state value heads"));
        const std::size_t conv = std::size_t{channels} * m.conv_width * m.conv_dtype_bytes;
        const std::size_t temporal =
            std::size_t{v_heads} * m.state_key_dim * m.state_value_dim * m.state_dtype_bytes;
        STRATA_ASSIGN_OR_RETURN(HybridPool mamba,
                                b.pool("mamba", PoolKind::kMamba, "M", 1, conv + temporal, true));
        mamba.spec.conv_state_bytes = conv;
        mamba.role = PoolRole::kIndependent;
        mamba.hit_policy = HitPolicy::kTrailingPages;
        mamba.trailing_pages = 1;
        out.pools.push_back(std::move(mamba));
    }
    // Compressed rows derive from the anchor's slots (row = kv slot / ratio); the compressors'
    // states derive from the SWA window's slots. As in the closest system, the 128-ratio
    // compressor keeps no state pool.
    auto compressed = [&](std::string name, PoolKind kind, std::string_view layer_kinds,
                          std::size_t row_bytes, std::uint32_t ratio, std::string from) -> Status {
        STRATA_ASSIGN_OR_RETURN(HybridPool p,
                                b.pool(std::move(name), kind, layer_kinds, 1, row_bytes, false));
        p.spec.tokens_per_row = ratio;
        p.ratio = ratio;
        p.role = PoolRole::kSidecar;
        p.indices_from = std::move(from);
        if (p.indices_from == "swa") {
            p.hit_policy = HitPolicy::kTrailingPages;
            p.trailing_pages = b.windowPages();
        }
        STRATA_RETURN_IF_ERROR(p.spec.validate(page_size));
        out.pools.push_back(std::move(p));
        return Status::ok();
    };
    if (hasKind(m, 'C')) {
        STRATA_RETURN_IF_ERROR(
            compressed("c4", PoolKind::kCompressed, "C", m.compressed_row_bytes, 4, "kv"));
        if (m.compressed_indexer_row_bytes > 0) {
            STRATA_RETURN_IF_ERROR(compressed("c4_indexer", PoolKind::kCompressed, "C",
                                              m.compressed_indexer_row_bytes, 4, "kv"));
        }
    }
    if (hasKind(m, 'H')) {
        STRATA_RETURN_IF_ERROR(
            compressed("c128", PoolKind::kCompressed, "H", m.compressed_row_bytes, 128, "kv"));
    }
    if (hasKind(m, 'C') && m.compressed_state_row_bytes > 0) {
        STRATA_RETURN_IF_ERROR(compressed("c4_state", PoolKind::kCompressedState, "C",
                                          m.compressed_state_row_bytes, 1, "swa"));
    }
    if (hasKind(m, 'C') && m.compressed_indexer_state_row_bytes > 0) {
        STRATA_RETURN_IF_ERROR(compressed("c4_indexer_state", PoolKind::kCompressedState, "C",
                                          m.compressed_indexer_state_row_bytes, 1, "swa"));
    }
    for (const HybridPool& p : out.pools) {
        if (p.spec.kind != PoolKind::kLogical) {
            Status s = p.spec.validate(page_size);
            if (!s.isOk()) return s.withContext(fmt::format("model '{}'", m.name));
        }
    }
    return out;
}

Result<std::size_t> usablePrefixPages(const HybridLayout& layout,
                                      std::span<const std::vector<bool>> present,
                                      std::size_t total_pages) {
    if (present.size() != layout.pools.size()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "usable prefix of model '{}': {} presence vectors for {} pools",
                            layout.model, present.size(), layout.pools.size());
    }
    std::size_t limit = total_pages;
    for (std::size_t i = 0; i < present.size(); ++i) {
        if (present[i].size() != total_pages) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "usable prefix of model '{}': pool '{}' has {} presence entries "
                                "for {} pages",
                                layout.model, layout.pools[i].spec.name, present[i].size(),
                                total_pages);
        }
        if (layout.pools[i].hit_policy == HitPolicy::kAllPages) {
            const auto first_missing = std::find(present[i].begin(), present[i].end(), false);
            limit = std::min<std::size_t>(limit, first_missing - present[i].begin());
        }
    }
    // The longest prefix within the all-pages limit whose trailing pages every other pool holds.
    for (std::size_t u = limit; u > 0; --u) {
        bool ok = true;
        for (std::size_t i = 0; i < present.size() && ok; ++i) {
            const HybridPool& p = layout.pools[i];
            if (p.hit_policy != HitPolicy::kTrailingPages) continue;
            const std::size_t from = u > p.trailing_pages ? u - p.trailing_pages : 0;
            for (std::size_t q = from; q < u && ok; ++q) ok = present[i][q];
        }
        if (ok) return u;
    }
    return std::size_t{0};
}

}  // namespace strata::pools
