// CUDA page transfer: one warp per (page, buffer, layer) chunk. On the device side a chunk is
// page_size * row_bytes contiguous bytes; on the host side it is contiguous for layer_first and
// page_first_direct and page_size rows bytesPerToken apart for page_first. A few blocks only, so
// that transfers leave the SMs to the model's kernels. Must match copyPagesCpu byte for byte.
#include <cuda_runtime.h>

#include <cstdint>

#include "transfer_cuda.h"

namespace strata::kernels::detail {
namespace {

constexpr int kThreadsPerBlock = 512;
constexpr int kMaxBlocks = 8;
constexpr int kWarpSize = 32;

// Layout ids, as HostLayout's enumerators.
constexpr std::uint32_t kLayerFirst = 0;
constexpr std::uint32_t kPageFirst = 1;

template <typename T>
__device__ __forceinline__ void warpCopyAs(std::byte* dst, const std::byte* src, std::uint64_t n,
                                           unsigned lane) {
    T* d = reinterpret_cast<T*>(dst);
    const T* s = reinterpret_cast<const T*>(src);
    const std::uint64_t count = n / sizeof(T);
    for (std::uint64_t i = lane; i < count; i += kWarpSize) d[i] = s[i];
}

// Copies n bytes with the widest access that dst, src and n are all aligned to.
__device__ __forceinline__ void warpCopy(std::byte* dst, const std::byte* src, std::uint64_t n,
                                         unsigned lane) {
    const std::uint64_t bits =
        reinterpret_cast<std::uintptr_t>(dst) | reinterpret_cast<std::uintptr_t>(src) | n;
    if ((bits & 15u) == 0) {
        warpCopyAs<uint4>(dst, src, n, lane);
    } else if ((bits & 7u) == 0) {
        warpCopyAs<std::uint64_t>(dst, src, n, lane);
    } else if ((bits & 3u) == 0) {
        warpCopyAs<std::uint32_t>(dst, src, n, lane);
    } else {
        warpCopyAs<unsigned char>(dst, src, n, lane);
    }
}

__global__ void __launch_bounds__(kThreadsPerBlock) copyPagesKernel(CudaCopyParams p) {
    const unsigned lane = threadIdx.x % kWarpSize;
    const std::uint64_t warp = (std::uint64_t{blockIdx.x} * blockDim.x + threadIdx.x) / kWarpSize;
    const std::uint64_t num_warps = std::uint64_t{gridDim.x} * blockDim.x / kWarpSize;

    const std::uint32_t layers = p.layer_end - p.layer_begin;
    const std::uint64_t chunks_per_page = std::uint64_t{p.num_buffers} * layers;
    const std::uint64_t num_chunks = chunks_per_page * p.num_pages;
    const std::uint64_t chunk_bytes = std::uint64_t{p.page_size} * p.row_bytes;
    const std::uint64_t token_bytes = p.row_bytes * p.num_buffers * p.num_layers;

    for (std::uint64_t c = warp; c < num_chunks; c += num_warps) {
        const std::uint64_t i = c / chunks_per_page;
        const std::uint64_t rem = c % chunks_per_page;
        const std::uint32_t b = static_cast<std::uint32_t>(rem / layers);
        const std::uint32_t l = p.layer_begin + static_cast<std::uint32_t>(rem % layers);
        const std::uint64_t plane = std::uint64_t{b} * p.num_layers + l;
        const std::uint64_t device_page = p.pages[2 * i];
        const std::uint64_t host_page = p.pages[2 * i + 1];

        std::byte* device = p.layer_ptrs[plane] + device_page * chunk_bytes;
        const std::uint64_t first_token = host_page * p.page_size;
        if (p.host_layout == kPageFirst) {
            std::byte* host = p.host_base + first_token * token_bytes + plane * p.row_bytes;
            for (std::uint32_t t = 0; t < p.page_size; ++t) {
                std::byte* h = host + t * token_bytes;
                std::byte* d = device + t * p.row_bytes;
                if (p.device_to_host) {
                    warpCopy(h, d, p.row_bytes, lane);
                } else {
                    warpCopy(d, h, p.row_bytes, lane);
                }
            }
            continue;
        }
        std::byte* host;
        if (p.host_layout == kLayerFirst) {
            host = p.host_base + (plane * p.host_capacity_tokens + first_token) * p.row_bytes;
        } else {  // page_first_direct
            host = p.host_base + host_page * token_bytes * p.page_size + plane * chunk_bytes;
        }
        if (p.device_to_host) {
            warpCopy(host, device, chunk_bytes, lane);
        } else {
            warpCopy(device, host, chunk_bytes, lane);
        }
    }
}

}  // namespace

int launchCopyPages(const CudaCopyParams& params, void* stream) noexcept {
    const std::uint64_t chunks = std::uint64_t{params.num_pages} * params.num_buffers *
                                 (params.layer_end - params.layer_begin);
    if (chunks == 0) return cudaSuccess;
    constexpr std::uint64_t kWarpsPerBlock = kThreadsPerBlock / kWarpSize;
    std::uint64_t blocks = (chunks + kWarpsPerBlock - 1) / kWarpsPerBlock;
    if (blocks > kMaxBlocks) blocks = kMaxBlocks;
    copyPagesKernel<<<static_cast<unsigned>(blocks), kThreadsPerBlock, 0,
                      static_cast<cudaStream_t>(stream)>>>(params);
    return static_cast<int>(cudaGetLastError());
}

}  // namespace strata::kernels::detail
