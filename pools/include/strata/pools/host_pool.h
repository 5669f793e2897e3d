// HostPool: one pool's host tier on one rank: pinned memory (CUDA) or page-aligned memory (CPU) in
// one of three layouts. Sized in tokens (whole pages), by ratio to the device pool or by bytes.
// Owns its bytes, or adopts memory it does not own (a segment of the node's shared window: the
// node-wide host tier). Thread-safety: immutable after creation; the bytes are written by streams
// and I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "strata/core/status.h"
#include "strata/kernels/backend.h"
#include "strata/kernels/transfer.h"
#include "strata/pools/pool_spec.h"

namespace strata::pools {

// How a host pool's capacity is chosen: exactly one of tokens, ratio or bytes is non-zero.
struct HostPoolSizing {
    std::size_t tokens = 0;
    double ratio = 0.0;     // host tokens = ratio * device tokens
    std::size_t bytes = 0;  // host tokens = bytes / bytes per token (all pools of the rank)
};

// Host capacity in tokens, rounded down to whole pages (at least one page). kInvalidArgument names
// the field when the sizing is empty, ambiguous, negative or yields less than one page.
Result<std::size_t> hostCapacityTokens(const HostPoolSizing& sizing, std::size_t device_tokens,
                                       std::size_t bytes_per_token, std::uint32_t page_size);

class HostPool {
public:
    // capacity_tokens is in the pool's index units, as for DevicePool::create (tokens of the slot
    // space; request slots for kMamba), rounded down to whole pages. kInvalidArgument for zero
    // capacity or a bad spec; kResourceExhausted when the memory cannot be allocated.
    static Result<HostPool> create(kernels::Backend& backend, const PoolSpec& spec,
                                   std::size_t capacity_tokens, std::uint32_t page_size,
                                   kernels::HostLayout layout);

    // The bytes create() allocates for these arguments (capacity rounded down to whole pages),
    // 0 for a bad spec or less than one page.
    static std::size_t bytesFor(const PoolSpec& spec, std::size_t capacity_tokens,
                                std::uint32_t page_size) noexcept;
    // A host pool over `memory` (size_bytes of it), which it does not own: the memory must
    // outlive the pool and be pinned by the caller where DMA reaches it (the node-wide host tier:
    // a NodeWindow segment registered with Backend::registerHost). The memory is not cleared.
    // kInvalidArgument as create(), or when size_bytes is below bytesFor() or memory is null.
    static Result<HostPool> adopt(const PoolSpec& spec, std::size_t capacity_tokens,
                                  std::uint32_t page_size, kernels::HostLayout layout,
                                  std::byte* memory, std::size_t size_bytes);

    HostPool(HostPool&&) noexcept = default;
    HostPool& operator=(HostPool&&) noexcept = default;

    const PoolSpec& spec() const noexcept { return spec_; }
    kernels::PoolGeometry geometry() const noexcept { return spec_.geometry(page_size_); }
    // The kernels' view: capacity in rows, pages of geometry().page_size rows.
    kernels::HostView view() const noexcept { return {memory_.data(), layout_, capacity_rows_}; }
    kernels::HostLayout layout() const noexcept { return layout_; }
    std::size_t capacityTokens() const noexcept { return capacity_tokens_; }  // index units
    std::size_t capacityRows() const noexcept { return capacity_rows_; }
    std::size_t numPages() const noexcept {
        return capacity_tokens_ / spec_.unitsPerPage(page_size_);
    }
    std::uint32_t pageSize() const noexcept { return page_size_; }
    std::byte* data() const noexcept { return memory_.data(); }
    std::size_t sizeBytes() const noexcept { return memory_.size(); }
    // False for a pool over adopted memory.
    bool ownsMemory() const noexcept { return owns_; }
    // For page_first and page_first_direct: the contiguous blob of one page (bytesPerPage bytes).
    // Empty span for layer_first, whose pages are not contiguous.
    std::span<std::byte> pageBlob(std::uint32_t page) const noexcept;

private:
    HostPool() = default;
    PoolSpec spec_;
    kernels::HostLayout layout_ = kernels::HostLayout::kLayerFirst;
    std::size_t capacity_tokens_ = 0;
    std::size_t capacity_rows_ = 0;
    std::uint32_t page_size_ = 0;
    kernels::Memory memory_;  // without a free function when adopted
    bool owns_ = true;
};

// The checksum of one page: core::checksum64 (XXH3-64) of each of its num_buffers * num_layers
// blocks of page_size * row_bytes bytes, folded in order with core::foldDigest starting from 0. The
// blocks are the page's bytes in file order: for a contiguous page (page_first, page_first_direct,
// a staging copy of a stored page) its bytes in memory order; for layer_first the (buffer, layer)
// planes in plane order. The one page checksum: HDF5 segments store it (sealed with the segment
// header, io/), and pages pulled from a peer are verified against it, so it never changes.
// `page` points at one contiguous page of `geometry` (bytesPerPage bytes).
std::uint64_t pageBytesChecksum(const kernels::PoolGeometry& geometry,
                                const std::byte* page) noexcept;
// pageBytesChecksum of host page `page` of `pool`, read where the pool's layout keeps it.
std::uint64_t pageChecksum(const HostPool& pool, std::uint32_t page) noexcept;

}  // namespace strata::pools
