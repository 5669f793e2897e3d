// DevicePool: the layer-first KV arrays of one pool on one rank, indexed by token slot, in GPU
// memory (CUDA back end) or host memory standing in for it (CPU back end); or adopted from the
// model worker as raw per-layer pointers. Owns its memory unless adopted (then the worker's memory
// must outlive the pool). Thread-safety: immutable after creation; the bytes are written by
// streams.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "strata/core/status.h"
#include "strata/kernels/backend.h"
#include "strata/kernels/transfer.h"
#include "strata/pools/pool_spec.h"

namespace strata::pools {

class DevicePool {
public:
    // Allocates capacity_tokens (rounded down to whole pages) for every (buffer, layer). The
    // capacity is in the pool's index units: tokens of its slot space (a kCompressed pool holds
    // one row per tokens_per_row of them), or request slots for kMamba (one row each).
    // kInvalidArgument for a zero capacity or bad spec (kLogical, a compression ratio that does
    // not divide page_size); kResourceExhausted on OOM.
    static Result<DevicePool> create(kernels::Backend& backend, const PoolSpec& spec,
                                     std::size_t capacity_tokens, std::uint32_t page_size);
    // Adopts worker-owned arrays: layer_ptrs[b * L + l] each hold the rows of capacity_tokens,
    // row_stride bytes apart (0: row_bytes, packed; else at least row_bytes: the bytes between
    // rows, e.g. the other buffer of K and V interleaved per token or an alignment's padding,
    // are never read or written through this pool). kInvalidArgument names a stride below the
    // row.
    static Result<DevicePool> adopt(kernels::BackendKind kind, const PoolSpec& spec,
                                    std::span<std::byte* const> layer_ptrs,
                                    std::size_t capacity_tokens, std::uint32_t page_size,
                                    std::size_t row_stride = 0);

    DevicePool(DevicePool&&) noexcept = default;
    DevicePool& operator=(DevicePool&&) noexcept = default;

    const PoolSpec& spec() const noexcept { return spec_; }
    kernels::PoolGeometry geometry() const noexcept { return spec_.geometry(page_size_); }
    // The kernels' view: capacity in rows, pages of geometry().page_size rows.
    kernels::DeviceView view() const noexcept {
        return {layer_ptrs_.data(), capacity_rows_, row_stride_};
    }
    std::size_t capacityTokens() const noexcept { return capacity_tokens_; }  // index units
    std::size_t capacityRows() const noexcept { return capacity_rows_; }
    std::size_t numPages() const noexcept {
        return capacity_tokens_ / spec_.unitsPerPage(page_size_);
    }
    std::uint32_t pageSize() const noexcept { return page_size_; }
    kernels::BackendKind backendKind() const noexcept { return kind_; }
    // Bytes between consecutive rows of one (buffer, layer): row_bytes unless adopted with a
    // larger stride.
    std::size_t rowStride() const noexcept { return row_stride_; }
    // Device address of row `row` of (buffer, layer): the token slot of per-token pools, the
    // request slot of kMamba. Host-addressable only on the CPU back end.
    std::byte* row(std::uint32_t buffer, std::uint32_t layer, std::size_t row) const noexcept {
        return layer_ptrs_[buffer * spec_.num_layers + layer] + row * row_stride_;
    }
    // The row holding token slot `slot` of the slot space: slot / tokens_per_row (a compressed
    // row is indexed through the slot of the first token it covers).
    std::size_t rowOfSlot(std::size_t slot) const noexcept { return slot / spec_.tokens_per_row; }
    std::size_t sizeBytes() const noexcept { return capacity_rows_ * spec_.bytesPerRow(); }

private:
    DevicePool() = default;
    PoolSpec spec_;
    kernels::BackendKind kind_ = kernels::BackendKind::kCpu;
    std::size_t capacity_tokens_ = 0;
    std::size_t capacity_rows_ = 0;
    std::size_t row_stride_ = 0;  // bytes between rows: row_bytes (packed) or the adopted stride
    std::uint32_t page_size_ = 0;
    std::vector<kernels::Memory> owned_;  // empty when adopted
    std::vector<std::byte*> layer_ptrs_;  // points into owned_ or worker memory
};

}  // namespace strata::pools
