// CUDA page transfer kernels. The work of a job is cut into units: a unit is a piece of one chunk
// (one page of one (buffer, layer)), either a byte range of it (layer_first and
// page_first_direct over packed device rows, where a chunk is contiguous on both sides) or a group
// of its rows (page_first, where a chunk's rows lie bytesPerToken apart on the host, or device
// rows a stride apart). Units are spread over a persistent
// grid of a few CTAs, so that transfers leave the SMs to the model's kernels.
//
// Two kernels: the warp kernel (one warp per unit, four or eight independent 16/8/4/1-byte loads
// in flight per lane before their stores; any row size) and the bulk kernel (one pipeline per warp:
// its lane 0 moves units with bulk async copies, cp.async.bulk, global -> shared -> global through
// a ring of shared-memory stages completing on mbarriers; 16-byte rows only). Both must match
// copyPagesCpu byte for byte.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "transfer_cuda.h"

namespace strata::kernels::detail {
namespace {

constexpr int kWarpSize = 32;
constexpr std::uint32_t kPageFirst = 1;  // HostLayout::kPageFirst as an integer
constexpr std::uint32_t kMaxBulkPipes = 8;
constexpr std::uint32_t kMaxBulkStages = 8;
constexpr std::uint64_t kWarpUnitBytes = 8192;

// One unit resolved to addresses: `rows` pieces of `bytes` bytes, the device side `dev_stride`
// apart and the host side `host_stride` apart.
struct Unit {
    std::byte* dev;
    std::byte* host;
    std::uint64_t bytes;
    std::uint32_t rows;
    std::uint64_t host_stride;
    std::uint64_t dev_stride;
};

__device__ __forceinline__ Unit decodeUnit(const CudaCopyParams& p, const CudaKernelPlan& plan,
                                           std::uint64_t u) {
    const std::uint32_t layers = p.layer_end - p.layer_begin;
    const std::uint64_t chunks_per_page = std::uint64_t{p.num_buffers} * layers;
    const std::uint64_t c = u / plan.units_per_chunk;
    const std::uint64_t s = u - c * plan.units_per_chunk;
    const std::uint64_t i = c / chunks_per_page;
    const std::uint64_t rem = c - i * chunks_per_page;
    const std::uint32_t b = static_cast<std::uint32_t>(rem / layers);
    const std::uint32_t l =
        p.layer_begin + static_cast<std::uint32_t>(rem - std::uint64_t{b} * layers);
    const std::uint64_t plane = std::uint64_t{b} * p.num_layers + l;
    const std::uint64_t device_page = p.pages[2 * i];
    const std::uint64_t host_page = p.pages[2 * i + 1];
    const std::uint64_t chunk_bytes = std::uint64_t{p.page_size} * p.row_bytes;
    const std::uint64_t token_bytes = p.row_bytes * p.num_buffers * p.num_layers;
    const std::uint64_t first_token = host_page * p.page_size;

    Unit unit;
    unit.dev = p.layer_ptrs[plane] + device_page * p.page_size * p.dev_stride;
    unit.dev_stride = p.dev_stride;
    if (p.host_layout == kPageFirst) {
        const std::uint64_t t0 = s * plan.unit_rows;
        const std::uint64_t left = p.page_size - t0;
        unit.rows = static_cast<std::uint32_t>(left < plan.unit_rows ? left : plan.unit_rows);
        unit.bytes = p.row_bytes;
        unit.host_stride = token_bytes;
        unit.dev += t0 * p.dev_stride;
        unit.host = p.host_base + (first_token + t0) * token_bytes + plane * p.row_bytes;
        return unit;
    }
    if (p.host_layout == 0) {  // layer_first
        unit.host = p.host_base + (plane * p.host_capacity_tokens + first_token) * p.row_bytes;
    } else {  // page_first_direct
        unit.host = p.host_base + host_page * token_bytes * p.page_size + plane * chunk_bytes;
    }
    if (plan.row_units) {  // strided device rows: the host chunk's rows are row_bytes apart
        const std::uint64_t t0 = s * plan.unit_rows;
        const std::uint64_t left = p.page_size - t0;
        unit.rows = static_cast<std::uint32_t>(left < plan.unit_rows ? left : plan.unit_rows);
        unit.bytes = p.row_bytes;
        unit.host_stride = p.row_bytes;
        unit.dev += t0 * p.dev_stride;
        unit.host += t0 * p.row_bytes;
        return unit;
    }
    const std::uint64_t offset = s * plan.unit_bytes;
    const std::uint64_t left = chunk_bytes - offset;
    unit.bytes = left < plan.unit_bytes ? left : plan.unit_bytes;
    unit.rows = 1;
    unit.host_stride = 0;
    unit.dev += offset;
    unit.host += offset;
    return unit;
}

// Copies `rows` pieces of `count` elements of T: the warp's lanes walk the flattened index with
// kUnroll independent loads in flight before their stores.
template <typename T, bool kOneRow, int kUnroll>
__device__ __forceinline__ void warpCopyRows(std::byte* dst, std::uint64_t dst_stride,
                                             const std::byte* src, std::uint64_t src_stride,
                                             std::uint32_t rows, std::uint32_t count,
                                             unsigned lane) {
    const std::uint32_t total = kOneRow ? count : rows * count;
    for (std::uint32_t base = 0; base < total; base += kWarpSize * kUnroll) {
        T v[kUnroll];
#pragma unroll
        for (int j = 0; j < kUnroll; ++j) {
            const std::uint32_t k = base + j * kWarpSize + lane;
            if (k < total) {
                const std::uint32_t r = kOneRow ? 0 : k / count;
                const std::uint32_t e = kOneRow ? k : k - r * count;
                v[j] = *reinterpret_cast<const T*>(src + r * src_stride +
                                                   std::uint64_t{e} * sizeof(T));
            }
        }
#pragma unroll
        for (int j = 0; j < kUnroll; ++j) {
            const std::uint32_t k = base + j * kWarpSize + lane;
            if (k < total) {
                const std::uint32_t r = kOneRow ? 0 : k / count;
                const std::uint32_t e = kOneRow ? k : k - r * count;
                *reinterpret_cast<T*>(dst + r * dst_stride + std::uint64_t{e} * sizeof(T)) = v[j];
            }
        }
    }
}

template <typename T, int kUnroll>
__device__ __forceinline__ void warpCopyAs(std::byte* dst, std::uint64_t dst_stride,
                                           const std::byte* src, std::uint64_t src_stride,
                                           std::uint32_t rows, std::uint64_t bytes, unsigned lane) {
    const auto count = static_cast<std::uint32_t>(bytes / sizeof(T));
    if (rows == 1) {
        warpCopyRows<T, true, kUnroll>(dst, dst_stride, src, src_stride, rows, count, lane);
    } else {
        warpCopyRows<T, false, kUnroll>(dst, dst_stride, src, src_stride, rows, count, lane);
    }
}

// Copies a unit with the widest access that every address, stride and size is aligned to.
template <int kUnroll>
__device__ __forceinline__ void warpCopy(std::byte* dst, std::uint64_t dst_stride,
                                         const std::byte* src, std::uint64_t src_stride,
                                         std::uint32_t rows, std::uint64_t bytes, unsigned lane) {
    std::uint64_t bits =
        reinterpret_cast<std::uintptr_t>(dst) | reinterpret_cast<std::uintptr_t>(src) | bytes;
    if (rows > 1) bits |= dst_stride | src_stride;
    if ((bits & 15u) == 0) {
        warpCopyAs<uint4, kUnroll>(dst, dst_stride, src, src_stride, rows, bytes, lane);
    } else if ((bits & 7u) == 0) {
        warpCopyAs<std::uint64_t, kUnroll>(dst, dst_stride, src, src_stride, rows, bytes, lane);
    } else if ((bits & 3u) == 0) {
        warpCopyAs<std::uint32_t, kUnroll>(dst, dst_stride, src, src_stride, rows, bytes, lane);
    } else {
        warpCopyAs<unsigned char, kUnroll>(dst, dst_stride, src, src_stride, rows, bytes, lane);
    }
}

template <int kUnroll>
__global__ void __launch_bounds__(1024) warpCopyKernel(CudaCopyParams p, CudaKernelPlan plan) {
    const unsigned lane = threadIdx.x % kWarpSize;
    const std::uint64_t warp = (std::uint64_t{blockIdx.x} * blockDim.x + threadIdx.x) / kWarpSize;
    const std::uint64_t num_warps = std::uint64_t{gridDim.x} * blockDim.x / kWarpSize;
    for (std::uint64_t u = warp; u < plan.num_units; u += num_warps) {
        const Unit unit = decodeUnit(p, plan, u);
        if (p.device_to_host) {
            warpCopy<kUnroll>(unit.host, unit.host_stride, unit.dev, unit.dev_stride, unit.rows,
                              unit.bytes, lane);
        } else {
            warpCopy<kUnroll>(unit.dev, unit.dev_stride, unit.host, unit.host_stride, unit.rows,
                              unit.bytes, lane);
        }
    }
}

// ---- bulk async copies (sm_90) ----

__device__ __forceinline__ std::uint32_t smemAddress(const void* p) {
    return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbarrierInit(std::uint32_t bar) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(bar) : "memory");
}

__device__ __forceinline__ void fenceBarrierInit() {
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}

__device__ __forceinline__ void mbarrierExpectTx(std::uint32_t bar, std::uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes)
                 : "memory");
}

__device__ __forceinline__ void mbarrierWait(std::uint32_t bar, std::uint32_t parity) {
    std::uint32_t done = 0;
    while (done == 0) {
        asm volatile(
            "{\n\t.reg .pred p;\n\t"
            "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\t"
            "selp.u32 %0, 1, 0, p;\n\t}"
            : "=r"(done)
            : "r"(bar), "r"(parity)
            : "memory");
    }
}

// Global (device or mapped host memory) -> shared, completing `bytes` on the mbarrier.
__device__ __forceinline__ void bulkLoad(std::uint32_t smem_dst, const std::byte* src,
                                         std::uint32_t bytes, std::uint32_t bar) {
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::
            "r"(smem_dst),
        "l"(src), "r"(bytes), "r"(bar)
        : "memory");
}

// Shared -> global, in the thread's current bulk group.
__device__ __forceinline__ void bulkStore(std::byte* dst, std::uint32_t smem_src,
                                          std::uint32_t bytes) {
    asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;" ::"l"(dst),
                 "r"(smem_src), "r"(bytes)
                 : "memory");
}

__device__ __forceinline__ void bulkCommit() {
    asm volatile("cp.async.bulk.commit_group;" ::: "memory");
}

// Waits until at most one bulk group still reads shared memory.
__device__ __forceinline__ void bulkWaitReadAllButOne() {
    asm volatile("cp.async.bulk.wait_group.read 1;" ::: "memory");
}

__device__ __forceinline__ void bulkWaitAll() {
    asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
}

__global__ void __launch_bounds__(kMaxBulkPipes* kWarpSize)
    bulkCopyKernel(CudaCopyParams p, CudaKernelPlan plan) {
    extern __shared__ __align__(128) std::byte stage_memory[];
    __shared__ __align__(8) std::uint64_t barriers[kMaxBulkPipes][kMaxBulkStages];

    const unsigned lane = threadIdx.x % kWarpSize;
    if (lane != 0)
        return;  // lane 0 of each warp drives one pipeline; the copy engine of the SM
                 // (TMA) moves the bytes
    const std::uint32_t pipe_in_block = threadIdx.x / kWarpSize;
    const std::uint64_t pipe = std::uint64_t{blockIdx.x} * (blockDim.x / kWarpSize) + pipe_in_block;
    const std::uint64_t num_pipes = std::uint64_t{gridDim.x} * (blockDim.x / kWarpSize);
    if (pipe >= plan.num_units) return;
    const std::uint64_t mine = (plan.num_units - pipe - 1) / num_pipes + 1;

    const std::uint32_t stages = plan.stages;
    std::byte* my_stages = stage_memory + std::uint64_t{pipe_in_block} * stages * plan.stage_bytes;
    for (std::uint32_t s = 0; s < stages; ++s)
        mbarrierInit(smemAddress(&barriers[pipe_in_block][s]));
    fenceBarrierInit();

    auto issueLoad = [&](std::uint64_t j) {
        const Unit unit = decodeUnit(p, plan, pipe + j * num_pipes);
        const std::uint32_t s = static_cast<std::uint32_t>(j % stages);
        const std::uint32_t bar = smemAddress(&barriers[pipe_in_block][s]);
        const std::uint32_t smem = smemAddress(my_stages + std::uint64_t{s} * plan.stage_bytes);
        const auto bytes = static_cast<std::uint32_t>(unit.bytes);
        mbarrierExpectTx(bar, bytes * unit.rows);
        for (std::uint32_t r = 0; r < unit.rows; ++r) {
            const std::byte* src = p.device_to_host ? unit.dev + r * unit.dev_stride
                                                    : unit.host + r * unit.host_stride;
            bulkLoad(smem + r * bytes, src, bytes, bar);
        }
    };

    const std::uint64_t prologue = mine < stages ? mine : stages;
    for (std::uint64_t j = 0; j < prologue; ++j) issueLoad(j);
    for (std::uint64_t j = 0; j < mine; ++j) {
        const std::uint32_t s = static_cast<std::uint32_t>(j % stages);
        mbarrierWait(smemAddress(&barriers[pipe_in_block][s]),
                     static_cast<std::uint32_t>((j / stages) & 1));
        const Unit unit = decodeUnit(p, plan, pipe + j * num_pipes);
        const std::uint32_t smem = smemAddress(my_stages + std::uint64_t{s} * plan.stage_bytes);
        const auto bytes = static_cast<std::uint32_t>(unit.bytes);
        for (std::uint32_t r = 0; r < unit.rows; ++r) {
            std::byte* dst = p.device_to_host ? unit.host + r * unit.host_stride
                                              : unit.dev + r * unit.dev_stride;
            bulkStore(dst, smem + r * bytes, bytes);
        }
        bulkCommit();
        // Refill the stage of unit j - 1 once its store (the group before this one) has read it.
        if (j >= 1 && j - 1 + stages < mine) {
            bulkWaitReadAllButOne();
            issueLoad(j - 1 + stages);
        }
    }
    bulkWaitAll();
}

std::uint64_t ceilDiv(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }

}  // namespace

bool bulkCopyPossible(const CudaCopyParams& p, bool bases_aligned16) noexcept {
    return bases_aligned16 && p.row_bytes % 16 == 0 && p.dev_stride % 16 == 0 &&
           p.row_bytes <= (std::uint64_t{1} << 14);
}

CudaKernelPlan planCopyKernel(const CudaCopyParams& p, bool bulk, const CudaKernelKnobs& knobs) {
    CudaKernelPlan plan;
    plan.bulk = bulk;
    const std::uint64_t chunk_bytes = std::uint64_t{p.page_size} * p.row_bytes;
    const std::uint64_t chunks =
        std::uint64_t{p.num_pages} * p.num_buffers * (p.layer_end - p.layer_begin);
    // Groups of rows unless a chunk is contiguous on both sides.
    plan.row_units = p.host_layout == kPageFirst || p.dev_stride != p.row_bytes;
    const std::uint64_t target =
        bulk ? std::max<std::uint64_t>(16, knobs.bulk_stage_bytes / 16 * 16) : kWarpUnitBytes;
    if (plan.row_units) {
        plan.unit_rows = static_cast<std::uint32_t>(
            std::clamp<std::uint64_t>(target / p.row_bytes, 1, p.page_size));
        plan.units_per_chunk = ceilDiv(p.page_size, plan.unit_rows);
        plan.unit_bytes = plan.unit_rows * p.row_bytes;
    } else {
        plan.unit_bytes = std::min(target, bulk ? ceilDiv(chunk_bytes, 16) * 16 : chunk_bytes);
        plan.units_per_chunk = ceilDiv(chunk_bytes, plan.unit_bytes);
        plan.unit_rows = 1;
    }
    plan.num_units = chunks * plan.units_per_chunk;
    const std::uint64_t max_blocks = std::max<std::uint32_t>(1, knobs.max_blocks);
    if (bulk) {
        plan.stage_bytes = static_cast<std::uint32_t>(plan.unit_bytes);
        // At least two stages per pipe within the shared-memory budget.
        const std::uint64_t pipes_fit =
            std::max<std::uint64_t>(1, knobs.bulk_smem_bytes / (2ull * plan.stage_bytes));
        const auto pipes = static_cast<std::uint32_t>(std::min<std::uint64_t>(
            std::clamp<std::uint32_t>(knobs.bulk_pipes, 1, kMaxBulkPipes), pipes_fit));
        plan.stages = static_cast<std::uint32_t>(std::clamp<std::uint64_t>(
            knobs.bulk_smem_bytes / (std::uint64_t{pipes} * plan.stage_bytes), 2, kMaxBulkStages));
        plan.threads = pipes * kWarpSize;
        plan.smem_bytes = pipes * plan.stages * plan.stage_bytes;
        plan.blocks = static_cast<std::uint32_t>(
            std::clamp<std::uint64_t>(ceilDiv(plan.num_units, pipes), 1, max_blocks));
    } else {
        plan.threads =
            std::clamp<std::uint32_t>(knobs.warp_threads / kWarpSize * kWarpSize, kWarpSize, 1024);
        plan.unroll = knobs.warp_unroll >= 8 ? 8 : 4;
        const std::uint64_t warps = plan.threads / kWarpSize;
        plan.blocks = static_cast<std::uint32_t>(
            std::clamp<std::uint64_t>(ceilDiv(plan.num_units, warps), 1, max_blocks));
    }
    return plan;
}

int launchCopyPages(const CudaCopyParams& params, const CudaKernelPlan& plan,
                    void* stream) noexcept {
    if (plan.num_units == 0) return cudaSuccess;
    auto s = static_cast<cudaStream_t>(stream);
    if (plan.bulk) {
        cudaError_t err = cudaFuncSetAttribute(
            bulkCopyKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, plan.smem_bytes);
        if (err != cudaSuccess) return static_cast<int>(err);
        bulkCopyKernel<<<plan.blocks, plan.threads, plan.smem_bytes, s>>>(params, plan);
    } else {
        if (plan.unroll >= 8) {
            warpCopyKernel<8><<<plan.blocks, plan.threads, 0, s>>>(params, plan);
        } else {
            warpCopyKernel<4><<<plan.blocks, plan.threads, 0, s>>>(params, plan);
        }
    }
    return static_cast<int>(cudaGetLastError());
}

}  // namespace strata::kernels::detail
