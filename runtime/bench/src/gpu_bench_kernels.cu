// The synthetic per-layer compute kernel of the overlap bench: reads a layer's KV and does a
// tunable amount of arithmetic on it, so that its duration can be matched to the load's.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "gpu_bench_kernels.h"

namespace strata::bench::gpu {
namespace {

__global__ void __launch_bounds__(256)
    layerComputeKernel(const uint4* data, std::size_t count, int iters, float* out) {
    float acc = 0.0f;
    const std::size_t stride = std::size_t{gridDim.x} * blockDim.x;
    for (std::size_t i = std::size_t{blockIdx.x} * blockDim.x + threadIdx.x; i < count;
         i += stride) {
        const uint4 v = data[i];
        float x = __uint_as_float((v.x & 0x007FFFFFu) | 0x3F800000u);
        const float y = __uint_as_float((v.y & 0x007FFFFFu) | 0x3F800000u);
        for (int k = 0; k < iters; ++k) x = fmaf(x, y, -0.5f * x);
        acc += x;
    }
    if (acc == 12345.678f) *out = acc;  // keeps the work; practically never written
}

}  // namespace

int launchLayerCompute(const std::byte* data, std::size_t bytes, int iters, int blocks, float* out,
                       void* stream) {
    layerComputeKernel<<<blocks, 256, 0, static_cast<cudaStream_t>(stream)>>>(
        reinterpret_cast<const uint4*>(data), bytes / 16, iters, out);
    return static_cast<int>(cudaGetLastError());
}

}  // namespace strata::bench::gpu
