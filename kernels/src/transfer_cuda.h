// Launcher of the CUDA page transfer kernels (transfer_cuda.cu). Plain types only, so that C++
// translation units can include it without CUDA headers. Private to kernels/.
#pragma once

#include <cstddef>
#include <cstdint>

namespace strata::kernels::detail {

// Everything the kernels need, with device-accessible pointers. The pointer table and the page
// list live in device memory that stays valid until the kernel completes.
struct CudaCopyParams {
    std::byte* const* layer_ptrs = nullptr;  // device copy of DeviceView::layer_ptrs
    const std::uint32_t* pages = nullptr;    // device array of (device_page, host_page) pairs
    std::uint32_t num_pages = 0;
    std::byte* host_base = nullptr;  // device-accessible address of the host pool
    std::uint64_t host_capacity_tokens = 0;
    std::uint32_t host_layout = 0;  // HostLayout as an integer
    std::uint32_t num_layers = 0;
    std::uint32_t num_buffers = 0;
    std::uint32_t page_size = 0;
    std::uint64_t row_bytes = 0;
    std::uint64_t dev_stride = 0;  // bytes between device rows (row_bytes when packed)
    std::uint32_t layer_begin = 0;
    std::uint32_t layer_end = 0;
    bool device_to_host = true;
};

// Which kernel, and on how many CTAs. Filled by planCopyKernel.
struct CudaKernelPlan {
    bool bulk = false;             // bulk async copies through shared memory (else warp copies)
    std::uint32_t blocks = 0;      // CTAs (at most one per SM)
    std::uint32_t threads = 0;     // per CTA
    std::uint32_t smem_bytes = 0;  // dynamic shared memory (bulk)
    // The unit of work: a piece of one chunk. Contiguous on both sides (layer_first and
    // page_first_direct, packed device rows): `unit_bytes` bytes of the chunk (the last piece may
    // be shorter). Else (page_first, or strided device rows): `unit_rows` rows of one chunk.
    std::uint64_t unit_bytes = 0;
    std::uint32_t unit_rows = 0;
    bool row_units = false;  // units are groups of rows (page_first or strided device rows)
    std::uint64_t units_per_chunk = 0;
    std::uint64_t num_units = 0;
    std::uint32_t stages = 0;  // bulk: shared-memory stages per pipe (one pipe per warp)
    std::uint32_t stage_bytes = 0;
    std::uint32_t unroll = 4;  // warp kernel: loads in flight per lane (4 or 8)
};

// True when the bulk kernel can run this copy: 16-byte rows, device row stride and aligned bases.
bool bulkCopyPossible(const CudaCopyParams& params, bool bases_aligned16) noexcept;

// Launch shape knobs (from CopyTuning).
struct CudaKernelKnobs {
    std::uint32_t max_blocks = 8;
    std::uint32_t warp_threads = 1024;  // threads per CTA of the warp kernel
    std::uint32_t warp_unroll = 4;      // loads in flight per lane of the warp kernel (4 or 8)
    std::uint32_t bulk_pipes = 4;       // warps per CTA of the bulk kernel, one pipeline each
    std::uint32_t bulk_stage_bytes = 16384;
    std::uint32_t bulk_smem_bytes = 192 * 1024;  // shared memory per CTA of the bulk kernel
};

// Plans the kernel: bulk or warp, at most knobs.max_blocks CTAs.
CudaKernelPlan planCopyKernel(const CudaCopyParams& params, bool bulk,
                              const CudaKernelKnobs& knobs);

// Launches the planned transfer on `stream` (a cudaStream_t). Returns the cudaError_t of the
// launch.
int launchCopyPages(const CudaCopyParams& params, const CudaKernelPlan& plan,
                    void* stream) noexcept;

}  // namespace strata::kernels::detail
