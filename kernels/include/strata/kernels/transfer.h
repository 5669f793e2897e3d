// Page transfers between a device pool (layer-first, indexed by token slot) and a host pool
// (layer_first, page_first or page_first_direct), one layer or a range of layers, both directions.
// copyPagesCpu is the reference (the test oracle and the CPU back end); the CUDA kernels in
// transfer_cuda.cu must produce identical bytes. Thread-safety: pure functions over caller memory;
// concurrent calls must not write the same bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "strata/core/enum_names.h"
#include "strata/core/status.h"

namespace strata::kernels {

enum class HostLayout : std::uint8_t {
    kLayerFirst,       // [buffer][layer][token][row]
    kPageFirst,        // [token][buffer][layer][row]: a page (page_size tokens) is one blob
    kPageFirstDirect,  // [page][buffer][layer][token_in_page][row]: one blob, (page, layer) blocks
};
inline constexpr core::EnumNames<HostLayout, 3> kHostLayoutNames{
    "host layout",
    {{{HostLayout::kLayerFirst, "layer_first"},
      {HostLayout::kPageFirst, "page_first"},
      {HostLayout::kPageFirstDirect, "page_first_direct"}}}};
constexpr const auto& enumNames(HostLayout) noexcept { return kHostLayoutNames; }
constexpr std::string_view hostLayoutName(HostLayout layout) noexcept {
    return core::enumName(layout);
}
// Parses "layer_first" | "page_first" | "page_first_direct"; kInvalidArgument names the value and
// the allowed ones.
inline Result<HostLayout> parseHostLayout(std::string_view name) {
    return core::parseEnum<HostLayout>(name);
}

enum class Direction : std::uint8_t { kDeviceToHost, kHostToDevice };

// Shape of one pool: every token has, for each layer, `num_buffers` rows (K and V: 2; MLA: 1)
// of row_bytes bytes each. row_bytes may be any positive number (656 is legal).
struct PoolGeometry {
    std::uint32_t num_layers = 0;
    std::uint32_t num_buffers = 0;
    std::size_t row_bytes = 0;
    std::uint32_t page_size = 0;  // tokens per page

    std::size_t bytesPerToken() const noexcept { return row_bytes * num_buffers * num_layers; }
    std::size_t bytesPerPage() const noexcept { return bytesPerToken() * page_size; }
    // Validates positive fields; kInvalidArgument names the bad one.
    Status validate() const;
};

// Device side: layer-first arrays, one per (buffer, layer), listed at layer_ptrs[b * L + l].
// The row of token slot s is layer_ptrs[b * L + l] + s * rowStride(row_bytes): packed rows
// (row_stride 0 or row_bytes, a page of one plane is one contiguous chunk) or rows row_stride
// bytes apart (K and V interleaved per token in one tensor, rows padded to an alignment; the bytes
// between rows are never touched). The table itself lives in host memory (the CUDA path uploads
// its own copy).
struct DeviceView {
    std::byte* const* layer_ptrs = nullptr;  // num_buffers * num_layers entries
    std::size_t capacity_tokens = 0;
    std::size_t row_stride = 0;  // bytes between consecutive slots; 0: row_bytes (packed)

    std::size_t rowStride(std::size_t row_bytes) const noexcept {
        return row_stride == 0 ? row_bytes : row_stride;
    }
};

// Host side: one allocation in the given layout holding capacity_tokens tokens.
struct HostView {
    std::byte* base = nullptr;
    HostLayout layout = HostLayout::kLayerFirst;
    std::size_t capacity_tokens = 0;
};

// One page moved: device slots [device_page * P, +P) <-> host slots [host_page * P, +P).
struct PageCopy {
    std::uint32_t device_page = 0;
    std::uint32_t host_page = 0;
    friend bool operator==(const PageCopy&, const PageCopy&) = default;
};

// One page copied inside a device pool (Stream::enqueueDeviceCopy).
struct DevicePageMove {
    std::uint32_t src_page = 0;
    std::uint32_t dst_page = 0;
    friend bool operator==(const DevicePageMove&, const DevicePageMove&) = default;
};

// Byte offset, inside the host allocation, of the row (buffer, layer, token slot).
std::size_t hostRowOffset(const PoolGeometry& g, const HostView& host, std::uint32_t buffer,
                          std::uint32_t layer, std::size_t token) noexcept;

// Bytes of the host allocation: capacity_tokens * bytesPerToken().
std::size_t hostBytes(const PoolGeometry& g, std::size_t capacity_tokens) noexcept;

// Checks that every page index lies inside both pools, the layer range is valid and the device
// row stride is 0 or at least row_bytes.
Status validateCopy(const PoolGeometry& g, const DeviceView& dev, const HostView& host,
                    std::span<const PageCopy> pages, std::uint32_t layer_begin,
                    std::uint32_t layer_end);

// Reference copy of `pages` for layers [layer_begin, layer_end) in one direction. Both sides
// must be host-addressable (CPU back end). Preconditions as validateCopy (not re-checked).
void copyPagesCpu(const PoolGeometry& g, const DeviceView& dev, const HostView& host,
                  std::span<const PageCopy> pages, std::uint32_t layer_begin,
                  std::uint32_t layer_end, Direction dir) noexcept;

// Checks a copy inside one device pool (Stream::enqueueDeviceCopy): a valid geometry, a non-empty
// layer range inside the pool, a row stride of 0 or at least row_bytes, every src and dst page
// inside the pool (capacity_tokens / page_size pages), no page both a source and a destination of
// the job, and no destination twice. kInvalidArgument names the problem.
Status validateDeviceCopy(const PoolGeometry& g, const DeviceView& dev,
                          std::span<const DevicePageMove> moves, std::uint32_t layer_begin,
                          std::uint32_t layer_end);

// Reference copy inside one device pool: for each buffer, layer in [layer_begin, layer_end) and
// move, the page_size rows of src_page go to the same offsets of dst_page. The device memory must
// be host-addressable (CPU back end). Preconditions as validateDeviceCopy (not re-checked).
void copyDevicePagesCpu(const PoolGeometry& g, const DeviceView& dev,
                        std::span<const DevicePageMove> moves, std::uint32_t layer_begin,
                        std::uint32_t layer_end) noexcept;

}  // namespace strata::kernels
