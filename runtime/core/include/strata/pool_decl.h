// PoolDecl: what an inference engine says about one of its KV pools, so that Strata caches the
// engine's own buffers, whatever their shape: the kind of pool, its layers, the bytes of a row, the
// page size of the cache, how the pool is sharded, and where its device memory is (the engine's
// tensor, or "allocate it for me"). Model presets (pools/) are a helper that produces these.
// Public header, installed: no dependency but the standard library.
// Thread-safety: values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace strata {

enum class PoolType : std::uint8_t {
    // Per-token rows, every page of a prefix needed (full attention K/V, MLA latents). The first
    // pool of a set is a kKv pool: the anchor whose slot indices sidecars use. A kKv pool of
    // row_bytes 0 is a logical anchor: a slot space with no bytes of its own (DeepSeek-V4).
    kKv,
    // Rows in the slot indices of another pool (`indices_of`): an indexer (one row per token), a
    // compressed pool (one row per tokens_per_row tokens of its source), or a compressor's state
    // (a sidecar of a kWindow pool: only the window's pages are kept).
    kSidecar,
    // Sliding-window K/V of window_tokens: its own slots; only the trailing window of a prefix is
    // kept and needed.
    kWindow,
    // One row per request (Mamba / linear-attention conv and temporal state), not per token: its
    // own slots; a prefix needs the state at its end.
    kState,
};

// How a pool is split over the tensor-parallel ranks.
enum class TpSharding : std::uint8_t {
    kPerRank,     // each TP rank holds its own shard (heads): page keys carry the TP rank
    kReplicated,  // every TP rank holds the same rows (MLA latents, indexer): one copy stored
};

// How a pool is split over the context-parallel ranks.
enum class CpSharding : std::uint8_t {
    kReplicated,  // every CP rank holds the same rows of a page it uses: one copy stored
    // Each CP rank holds its own bytes of every page (its share of the tokens' rows, or rows of
    // its own): page keys carry the CP rank (and the TP rank too when tp is kPerRank), every CP
    // rank stores and reads back its own copy, and the cache's namespace differs from that of the
    // same pool declared kReplicated.
    kPerRank,
};

// Where a pool's device rows live. The row of slot s of (buffer b, layer l) starts at
// base + b * buffer_stride + l * layer_stride + s * slot_stride, or at
// layer_ptrs[b * layers + l] + s * slot_stride when layer_ptrs is given (a tensor per layer).
// A slot stride above row_bytes is supported (K and V interleaved per token in one tensor
// (rows, 2, heads, dim): buffer_stride = row_bytes, slot_stride = 2 * row_bytes; padded rows): the
// bytes between rows are never written. No two rows may overlap: the axes, from the smallest
// stride up, each step at least over the bytes the smaller ones span (kInvalidArgument names the
// axis).
// The memory must outlive the Cache. base and layer_ptrs both empty: Strata allocates the pool
// (CacheConfig's device_tokens, or state slots for kState) and the engine reads its address from
// the Cache.
struct DeviceMemory {
    void* base = nullptr;
    std::vector<void*> layer_ptrs;
    std::size_t rows = 0;           // rows the memory holds (token slots; request slots: kState)
    std::size_t slot_stride = 0;    // bytes between consecutive rows (>= row_bytes); 0: row_bytes
    std::size_t layer_stride = 0;   // bytes between layers; 0: rows * slot_stride
    std::size_t buffer_stride = 0;  // bytes between buffers (K to V); 0: layers * layer_stride
};

struct PoolDecl {
    std::string name;  // unique in the set: "kv", "indexer", "swa", "mamba", ...
    PoolType type = PoolType::kKv;
    std::string indices_of;            // kSidecar: the pool whose slot indices it uses
    std::uint32_t tokens_per_row = 1;  // kSidecar: tokens per row (4, 128: compressed); divides
                                       // the page size
    std::uint32_t window_tokens = 0;   // kWindow, and sidecars of one: the window kept
    // The model layers the pool has, ascending (its layer i is model layer layers[i]).
    std::vector<std::uint32_t> layers;
    std::uint32_t buffers = 1;         // 2 for separate K and V, 1 for a single row (MLA, state)
    std::size_t row_bytes = 0;         // one row of one buffer of one layer on this rank
    std::size_t conv_state_bytes = 0;  // kState: the conv state at the start of each row
    std::string dtype = "bf16";        // a tag, part of the cache's namespace (dtypes never mix)
    TpSharding tp = TpSharding::kPerRank;
    CpSharding cp = CpSharding::kReplicated;
    DeviceMemory memory;
};

}  // namespace strata
