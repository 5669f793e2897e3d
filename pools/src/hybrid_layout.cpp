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
    Builder(const ModelPreset& preset, std::uint32_t layers) : preset_(preset), layers_(layers) {}

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

    Result<PoolDecl> pool(std::string name, PoolType type, std::string_view layer_kinds,
                          std::uint32_t buffers, std::size_t row_bytes, bool sharded) {
        PoolDecl d;
        STRATA_ASSIGN_OR_RETURN(d.layers, layersOf(name, layer_kinds));
        d.name = std::move(name);
        d.type = type;
        d.buffers = buffers;
        d.row_bytes = row_bytes;
        d.tp = sharded ? TpSharding::kPerRank : TpSharding::kReplicated;
        d.dtype.clear();  // the preset's own: not part of the namespace (keys of earlier jobs)
        return d;
    }

private:
    const ModelPreset& preset_;
    std::uint32_t layers_;
};

// The pool of `decls` named `name`, or null.
const PoolDecl* findDecl(std::span<const PoolDecl> decls, std::string_view name) {
    for (const PoolDecl& d : decls) {
        if (d.name == name) return &d;
    }
    return nullptr;
}

// The internal kind of a declared pool (its name is part of the cache's namespace).
PoolKind kindOf(const PoolDecl& d, const PoolDecl* source) {
    switch (d.type) {
        case PoolType::kKv:
            if (d.row_bytes == 0) return PoolKind::kLogical;
            return d.buffers == 2 ? PoolKind::kMha : PoolKind::kMla;
        case PoolType::kSidecar:
            if (source != nullptr && source->type == PoolType::kWindow) {
                return PoolKind::kCompressedState;
            }
            return d.tokens_per_row > 1 ? PoolKind::kCompressed : PoolKind::kIndexer;
        case PoolType::kWindow:
            return PoolKind::kSwa;
        case PoolType::kState:
            return PoolKind::kMamba;
    }
    return PoolKind::kMha;
}

// Checks what a declaration says on its own and against the pools before it; kInvalidArgument
// names the model, the pool and the field.
Status checkDecl(std::string_view model, std::span<const PoolDecl> before, const PoolDecl& d,
                 std::uint32_t model_layers) {
    auto bad = [&](std::string what) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "model '{}', pool '{}': {}", model,
                            d.name, what);
    };
    if (d.name.empty()) return bad("a pool needs a name");
    if (findDecl(before, d.name) != nullptr) return bad("the name is declared twice");
    if (before.empty() && d.type != PoolType::kKv) {
        return bad("the first pool must be a kv pool (the anchor whose slots sidecars use)");
    }
    if (!before.empty() && d.type == PoolType::kKv) {
        return bad(fmt::format("only the first pool is a kv pool ('{}' is)", before.front().name));
    }
    if (d.layers.empty()) return bad("it has no layers");
    for (std::size_t i = 0; i < d.layers.size(); ++i) {
        if (d.layers[i] >= model_layers) {
            return bad(fmt::format("layer {} is outside the model's {} layers", d.layers[i],
                                   model_layers));
        }
        if (i > 0 && d.layers[i] <= d.layers[i - 1]) {
            return bad("its layers must be ascending, each once");
        }
    }
    if (d.row_bytes == 0 && !(d.type == PoolType::kKv)) return bad("row_bytes is 0");
    if (d.row_bytes != 0 && (d.buffers == 0 || d.buffers > 2)) {
        return bad(fmt::format("buffers is {} (1, or 2 for separate K and V)", d.buffers));
    }
    if (d.type == PoolType::kSidecar) {
        const PoolDecl* source = findDecl(before, d.indices_of);
        if (source == nullptr) {
            return bad(
                fmt::format("it takes its indices from '{}', which is not declared before "
                            "it",
                            d.indices_of));
        }
        if (source->type != PoolType::kKv && source->type != PoolType::kWindow) {
            return bad(
                fmt::format("it takes its indices from '{}', which is neither the kv pool "
                            "nor a window pool",
                            d.indices_of));
        }
        if (source->type == PoolType::kWindow && d.tokens_per_row != 1) {
            return bad("a sidecar of a window pool has one row per token (tokens_per_row 1)");
        }
    } else if (!d.indices_of.empty()) {
        return bad("indices_of is for sidecars only");
    }
    if (d.type == PoolType::kWindow && d.window_tokens == 0) return bad("window_tokens is 0");
    if (d.type != PoolType::kSidecar && d.tokens_per_row != 1) {
        return bad("tokens_per_row is for sidecars only");
    }
    if (d.type != PoolType::kState && d.conv_state_bytes != 0) {
        return bad("conv_state_bytes is for state pools only");
    }
    return Status::ok();
}

}  // namespace

const HybridPool* HybridLayout::find(std::string_view name) const noexcept {
    for (const HybridPool& p : pools) {
        if (p.spec.name == name) return &p;
    }
    return nullptr;
}

Result<HybridLayout> declaredLayout(std::string_view model, std::span<const PoolDecl> decls,
                                    std::uint32_t model_layers, std::uint32_t tp_size,
                                    std::uint32_t page_size) {
    if (tp_size == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "tp size is 0 for model '{}'", model);
    }
    if (page_size == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "page size is 0 for model '{}'", model);
    }
    if (decls.empty()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "model '{}' declares no pool", model);
    }
    HybridLayout out;
    out.model = std::string(model);
    out.model_layers = model_layers;
    out.tp_size = tp_size;
    out.page_size = page_size;
    for (std::size_t i = 0; i < decls.size(); ++i) {
        const PoolDecl& d = decls[i];
        STRATA_RETURN_IF_ERROR(checkDecl(model, decls.first(i), d, model_layers));
        const PoolDecl* source =
            d.type == PoolType::kSidecar ? findDecl(decls.first(i), d.indices_of) : nullptr;
        HybridPool p;
        p.layer_map = d.layers;
        p.spec.name = d.name;
        p.spec.kind = kindOf(d, source);
        p.spec.num_layers = static_cast<std::uint32_t>(d.layers.size());
        p.spec.num_buffers = p.spec.kind == PoolKind::kLogical ? 0 : d.buffers;
        p.spec.row_bytes = d.row_bytes;
        p.spec.sharded_across_tp =
            p.spec.kind != PoolKind::kLogical && d.tp == TpSharding::kPerRank;
        p.spec.sharded_across_cp =
            p.spec.kind != PoolKind::kLogical && d.cp == CpSharding::kPerRank;
        p.spec.tokens_per_row = d.tokens_per_row;
        p.spec.conv_state_bytes = d.conv_state_bytes;
        p.spec.dtype = d.dtype;
        const auto window_pages = [&](std::uint32_t tokens) {
            return (tokens + page_size - 1) / page_size;
        };
        switch (d.type) {
            case PoolType::kKv:
                break;
            case PoolType::kSidecar:
                p.role = PoolRole::kSidecar;
                p.indices_from = d.indices_of;
                p.ratio = d.tokens_per_row;
                if (source->type == PoolType::kWindow) {
                    p.hit_policy = HitPolicy::kTrailingPages;
                    p.trailing_pages = window_pages(source->window_tokens);
                }
                break;
            case PoolType::kWindow:
                p.role = PoolRole::kIndependent;
                p.hit_policy = HitPolicy::kTrailingPages;
                p.window_tokens = d.window_tokens;
                p.trailing_pages = window_pages(d.window_tokens);
                break;
            case PoolType::kState:
                p.role = PoolRole::kIndependent;
                p.hit_policy = HitPolicy::kTrailingPages;
                p.trailing_pages = 1;
                break;
        }
        if (p.spec.kind != PoolKind::kLogical) {
            Status s = p.spec.validate(page_size);
            if (!s.isOk()) return s.withContext(fmt::format("model '{}'", model));
        }
        out.pools.push_back(std::move(p));
    }
    return out;
}

std::string layoutSignature(const HybridLayout& layout, std::uint32_t cp_size) {
    std::string out = fmt::format("page={};tp={}", layout.page_size, layout.tp_size);
    bool per_cp_rank = false;
    for (const HybridPool& p : layout.pools) {
        const PoolSpec& s = p.spec;
        out +=
            fmt::format(";{}:{}:{}x{}", s.name, poolKindName(s.kind), s.num_buffers, s.row_bytes);
        if (s.tokens_per_row > 1) out += fmt::format("/{}", s.tokens_per_row);
        if (!s.dtype.empty()) out += fmt::format(":{}", s.dtype);
        if (s.sharded_across_cp) out += ":cp";
        per_cp_rank = per_cp_rank || s.sharded_across_cp;
    }
    // A CP rank's share of a page depends on how many ranks share it.
    if (per_cp_rank) out += fmt::format(";cp={}", cp_size);
    return out;
}

Result<std::vector<PoolDecl>> presetPools(std::string_view preset_name, std::uint32_t layers,
                                          std::uint32_t tp_size) {
    STRATA_ASSIGN_OR_RETURN(const ModelPreset* preset, findModelPreset(preset_name));
    const ModelPreset& m = *preset;
    if (tp_size == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "tp size is 0 for model '{}'", m.name);
    }
    if (layers > m.num_layers) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "layers {} exceed the {} layers of model '{}'", layers, m.num_layers,
                            m.name);
    }
    Builder b(m, layers == 0 ? m.num_layers : layers);
    std::vector<PoolDecl> out;
    auto add = [&](Result<PoolDecl> d) -> Status {
        if (!d.isOk()) return d.status();
        out.push_back(std::move(d).value());
        return Status::ok();
    };

    // The anchor: the full-attention KV, or a logical slot space over every layer.
    if (m.logical_anchor) {
        STRATA_RETURN_IF_ERROR(add(b.pool("kv", PoolType::kKv, "", 0, 0, false)));
    } else if (m.kind == PoolKind::kMha) {
        STRATA_ASSIGN_OR_RETURN(std::uint32_t heads,
                                headsPerRank(m, m.kv_heads, tp_size, "kv heads"));
        STRATA_RETURN_IF_ERROR(add(b.pool("kv", PoolType::kKv, "F", 2,
                                          std::size_t{heads} * m.head_dim * m.dtype_bytes, true)));
    } else {
        STRATA_RETURN_IF_ERROR(add(b.pool("kv", PoolType::kKv, "F", 1, m.mla_row_bytes, false)));
    }
    if (m.indexer_row_bytes > 0) {
        STRATA_ASSIGN_OR_RETURN(PoolDecl indexer, b.pool("indexer", PoolType::kSidecar, "F", 1,
                                                         m.indexer_row_bytes, false));
        indexer.indices_of = "kv";
        out.push_back(std::move(indexer));
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
        STRATA_ASSIGN_OR_RETURN(
            PoolDecl swa, b.pool("swa", PoolType::kWindow, m.logical_anchor ? "" : "S", buffers,
                                 row_bytes, sharded));
        swa.window_tokens = m.window_tokens;
        out.push_back(std::move(swa));
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
        STRATA_ASSIGN_OR_RETURN(PoolDecl mamba,
                                b.pool("mamba", PoolType::kState, "M", 1, conv + temporal, true));
        mamba.conv_state_bytes = conv;
        out.push_back(std::move(mamba));
    }
    // Compressed rows derive from the anchor's slots (row = kv slot / ratio); the compressors'
    // states derive from the SWA window's slots. As in the closest system, the 128-ratio
    // compressor keeps no state pool.
    auto sidecar = [&](std::string name, std::string_view layer_kinds, std::size_t row_bytes,
                       std::uint32_t ratio, std::string from) -> Status {
        STRATA_ASSIGN_OR_RETURN(PoolDecl d, b.pool(std::move(name), PoolType::kSidecar, layer_kinds,
                                                   1, row_bytes, false));
        d.tokens_per_row = ratio;
        d.indices_of = std::move(from);
        out.push_back(std::move(d));
        return Status::ok();
    };
    if (hasKind(m, 'C')) {
        STRATA_RETURN_IF_ERROR(sidecar("c4", "C", m.compressed_row_bytes, 4, "kv"));
        if (m.compressed_indexer_row_bytes > 0) {
            STRATA_RETURN_IF_ERROR(
                sidecar("c4_indexer", "C", m.compressed_indexer_row_bytes, 4, "kv"));
        }
    }
    if (hasKind(m, 'H')) {
        STRATA_RETURN_IF_ERROR(sidecar("c128", "H", m.compressed_row_bytes, 128, "kv"));
    }
    if (hasKind(m, 'C') && m.compressed_state_row_bytes > 0) {
        STRATA_RETURN_IF_ERROR(sidecar("c4_state", "C", m.compressed_state_row_bytes, 1, "swa"));
    }
    if (hasKind(m, 'C') && m.compressed_indexer_state_row_bytes > 0) {
        STRATA_RETURN_IF_ERROR(
            sidecar("c4_indexer_state", "C", m.compressed_indexer_state_row_bytes, 1, "swa"));
    }
    return out;
}

Result<HybridLayout> hybridLayout(std::string_view preset_name, std::uint32_t layers,
                                  std::uint32_t tp_size, std::uint32_t page_size) {
    STRATA_ASSIGN_OR_RETURN(const ModelPreset* preset, findModelPreset(preset_name));
    if (page_size == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "page size is 0 for model '{}'",
                            preset->name);
    }
    STRATA_ASSIGN_OR_RETURN(std::vector<PoolDecl> decls, presetPools(preset_name, layers, tp_size));
    return declaredLayout(preset->name, decls, layers == 0 ? preset->num_layers : layers, tp_size,
                          page_size);
}

Result<std::size_t> usablePrefixPages(const HybridLayout& layout,
                                      std::span<const std::vector<bool>> present,
                                      std::size_t total_pages) {
    if (present.size() != layout.pools.size()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "usable prefix of model '{}': {} presence vectors for {} pools",
                            layout.model, present.size(), layout.pools.size());
    }
    std::vector<HitRule> rules;
    for (std::size_t i = 0; i < present.size(); ++i) {
        if (present[i].size() != total_pages) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "usable prefix of model '{}': pool '{}' has {} presence entries "
                                "for {} pages",
                                layout.model, layout.pools[i].spec.name, present[i].size(),
                                total_pages);
        }
        rules.push_back({layout.pools[i].hit_policy, layout.pools[i].trailing_pages});
    }
    return usablePrefixPages(rules, present, total_pages);
}

Result<std::size_t> usablePrefixPages(std::span<const HitRule> rules,
                                      std::span<const std::vector<bool>> present,
                                      std::size_t total_pages) {
    if (present.size() != rules.size()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "usable prefix: {} presence vectors for {} rules", present.size(),
                            rules.size());
    }
    std::size_t limit = total_pages;
    for (std::size_t i = 0; i < present.size(); ++i) {
        if (present[i].size() != total_pages) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "usable prefix: presence vector {} has {} entries for {} pages", i,
                                present[i].size(), total_pages);
        }
        if (rules[i].policy == HitPolicy::kAllPages) {
            const auto first_missing = std::find(present[i].begin(), present[i].end(), false);
            limit = std::min<std::size_t>(limit, first_missing - present[i].begin());
        }
    }
    // The longest prefix within the all-pages limit whose trailing pages every other pool holds.
    for (std::size_t u = limit; u > 0; --u) {
        bool ok = true;
        for (std::size_t i = 0; i < present.size() && ok; ++i) {
            if (rules[i].policy != HitPolicy::kTrailingPages) continue;
            const std::size_t from = u > rules[i].trailing_pages ? u - rules[i].trailing_pages : 0;
            for (std::size_t q = from; q < u && ok; ++q) ok = present[i][q];
        }
        if (ok) return u;
    }
    return std::size_t{0};
}

}  // namespace strata::pools
