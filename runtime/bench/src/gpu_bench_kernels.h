// The synthetic per-layer compute kernel of the overlap bench (gpu_bench_kernels.cu). Plain
// types only, so that C++ files include it without CUDA headers. Built only with CUDA.
#pragma once

#include <cstddef>

namespace strata::bench::gpu {

// Queues the synthetic compute of one layer on `stream`: `blocks` x 256 threads read `bytes` of
// `data` (16-byte aligned) and do `iters` fused multiply-adds per 16 bytes, writing one float to
// `out`.
int launchLayerCompute(const std::byte* data, std::size_t bytes, int iters, int blocks, float* out,
                       void* stream);

}  // namespace strata::bench::gpu
