// Launcher of the CUDA page transfer kernel (transfer_cuda.cu). Plain types only, so that C++
// translation units can include it without CUDA headers. Private to kernels/.
#pragma once

#include <cstddef>
#include <cstdint>

namespace strata::kernels::detail {

// Everything the kernel needs, with device-accessible pointers. The pointer table and the page
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
    std::uint32_t layer_begin = 0;
    std::uint32_t layer_end = 0;
    bool device_to_host = true;
};

// Launches the transfer on `stream` (a cudaStream_t). Returns the cudaError_t of the launch.
int launchCopyPages(const CudaCopyParams& params, void* stream) noexcept;

}  // namespace strata::kernels::detail
