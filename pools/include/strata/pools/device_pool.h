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
    // Allocates capacity_tokens (rounded down to whole pages) for every (buffer, layer).
    // kInvalidArgument for a zero capacity or bad spec; kResourceExhausted on OOM.
    static Result<DevicePool> create(kernels::Backend& backend, const PoolSpec& spec,
                                     std::size_t capacity_tokens, std::uint32_t page_size);
    // Adopts worker-owned arrays: layer_ptrs[b * L + l] each hold capacity_tokens rows.
    static Result<DevicePool> adopt(kernels::BackendKind kind, const PoolSpec& spec,
                                    std::span<std::byte* const> layer_ptrs,
                                    std::size_t capacity_tokens, std::uint32_t page_size);

    DevicePool(DevicePool&&) noexcept = default;
    DevicePool& operator=(DevicePool&&) noexcept = default;

    const PoolSpec& spec() const noexcept { return spec_; }
    kernels::PoolGeometry geometry() const noexcept { return spec_.geometry(page_size_); }
    kernels::DeviceView view() const noexcept { return {layer_ptrs_.data(), capacity_tokens_}; }
    std::size_t capacityTokens() const noexcept { return capacity_tokens_; }
    std::size_t numPages() const noexcept { return capacity_tokens_ / page_size_; }
    std::uint32_t pageSize() const noexcept { return page_size_; }
    kernels::BackendKind backendKind() const noexcept { return kind_; }
    // Device address of the row (buffer, layer, slot). Host-addressable only on the CPU back end.
    std::byte* row(std::uint32_t buffer, std::uint32_t layer, std::size_t slot) const noexcept {
        return layer_ptrs_[buffer * spec_.num_layers + layer] + slot * spec_.row_bytes;
    }
    std::size_t sizeBytes() const noexcept { return capacity_tokens_ * spec_.bytesPerToken(); }

private:
    DevicePool() = default;
    PoolSpec spec_;
    kernels::BackendKind kind_ = kernels::BackendKind::kCpu;
    std::size_t capacity_tokens_ = 0;
    std::uint32_t page_size_ = 0;
    std::vector<kernels::Memory> owned_;  // empty when adopted
    std::vector<std::byte*> layer_ptrs_;  // points into owned_ or worker memory
};

}  // namespace strata::pools
