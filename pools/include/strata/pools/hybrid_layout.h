// HybridLayout: every pool of a hybrid model (SWA, Mamba, DeepSeek-V4-style compressed stacks) on
// one rank, with its role in a HostPoolGroup, where its indices come from, its hit policy and the
// model layers it has. Every preset, hybrid or not, has one (presetPools -> declaredLayout), as do
// the pools an engine declares. Thread-safety: values and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "strata/core/status.h"
#include "strata/pool_decl.h"
#include "strata/pools/pool_spec.h"

namespace strata::pools {

struct HybridPool {
    PoolSpec spec;  // shape on this rank; a kLogical anchor has no bytes (row_bytes 0)
    PoolRole role = PoolRole::kAnchor;
    std::string indices_from;  // sidecars: the entry whose indices they take ("kv" or "swa")
    // Sidecars: tokens of the source per row of this pool (spec.tokens_per_row); 1 otherwise.
    std::uint32_t ratio = 1;
    HitPolicy hit_policy = HitPolicy::kAllPages;
    std::uint32_t trailing_pages = 0;      // kTrailingPages: pages the prefix's end must hold
    std::uint32_t window_tokens = 0;       // kSwa: the sliding window
    std::vector<std::uint32_t> layer_map;  // model layer of each pool layer (ascending)
};

struct HybridLayout {
    std::string model;
    std::uint32_t model_layers = 0;  // after the --layers override
    std::uint32_t tp_size = 1;
    std::uint32_t page_size = 0;
    // The anchor first; a sidecar always follows the entry it derives from.
    std::vector<HybridPool> pools;

    const HybridPool* find(std::string_view name) const noexcept;
};

// The layout of pools an engine declares (pool_decl.h) for a model of model_layers layers on one
// rank of a TP group of tp_size, with pages of page_size tokens: each declaration checked on its
// own and against those before it (the first is the kv anchor; a sidecar follows the pool whose
// indices it takes). kInvalidArgument names the model, the pool and the field.
Result<HybridLayout> declaredLayout(std::string_view model, std::span<const PoolDecl> decls,
                                    std::uint32_t model_layers, std::uint32_t tp_size,
                                    std::uint32_t page_size);

// The layout's part of the cache's namespace (core::KeyNamespace::layout_signature): page size,
// TP size and every pool's name, kind and row shape (compression, dtype tag), plus ":cp" on each
// pool sharded across CP and the CP size when any is, so that a CP-per-rank declaration never
// shares pages with a replicated one. A layout without CP-sharded pools gives the signature it
// had before CP sharding (stored pages of earlier jobs keep their keys).
std::string layoutSignature(const HybridLayout& layout, std::uint32_t cp_size);

// The pools of preset `preset_name` as an engine would declare them (no device memory: Strata
// allocates), on one rank of a TP group of tp_size, over its first `layers` layers (0: all).
// kNotFound: unknown preset; kInvalidArgument as hybridLayout.
Result<std::vector<PoolDecl>> presetPools(std::string_view preset_name, std::uint32_t layers,
                                          std::uint32_t tp_size);

// The pools of `preset_name` on one rank of a TP group of tp_size, over its first `layers` layers
// (0: all), for pages of page_size tokens: declaredLayout(presetPools(...)). Every preset has one:
// a non-hybrid model gives its per-token pools (kv anchor, indexer sidecar). Sharding: GQA/SWA
// heads split across TP (each rank holds one head, replicated, when TP is a multiple of the head
// count); Mamba conv channels and state heads split; MLA, indexer, compressed and state rows
// replicated. kNotFound: unknown preset. kInvalidArgument names the problem: tp 0 or not dividing
// heads, layers above the model's, a pool left without layers by `layers`, a page size of 0 or one
// that a compression ratio does not divide.
Result<HybridLayout> hybridLayout(std::string_view preset_name, std::uint32_t layers,
                                  std::uint32_t tp_size, std::uint32_t page_size);

// The longest usable prefix, in pages: the largest u <= total_pages such that every pool can
// serve it. present[i][p] says whether layout.pools[i] holds what page p needs (for a kMamba pool:
// the state at the end of page p). kAllPages: pages [0, u) present. kTrailingPages N: pages
// [max(0, u - N), u) present. u = 0 is always usable. kInvalidArgument when present does not have
// one vector of total_pages entries per pool.
Result<std::size_t> usablePrefixPages(const HybridLayout& layout,
                                      std::span<const std::vector<bool>> present,
                                      std::size_t total_pages);

// What a pool (or a slot space of the controller) needs of a prefix to serve it.
struct HitRule {
    HitPolicy policy = HitPolicy::kAllPages;
    std::uint32_t trailing_pages = 0;  // kTrailingPages
};
// The same over one rule per presence vector (the one definition both forms use).
// kInvalidArgument when the sizes do not match.
Result<std::size_t> usablePrefixPages(std::span<const HitRule> rules,
                                      std::span<const std::vector<bool>> present,
                                      std::size_t total_pages);

}  // namespace strata::pools
