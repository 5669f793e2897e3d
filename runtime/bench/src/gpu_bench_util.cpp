#include "gpu_bench_util.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>

namespace strata::bench::gpu {

Status check(int err, const char* what) {
    if (err == cudaSuccess) return Status::ok();
    auto e = static_cast<cudaError_t>(err);
    return STRATA_ERROR(StatusCode::kInternal, "{}: {} ({})", what, cudaGetErrorString(e),
                        cudaGetErrorName(e));
}

std::string deviceName(int device) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) return "cuda";
    return prop.name;
}

int smCount(int device) {
    int count = 0;
    cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device);
    return count;
}

void fillRandom(std::byte* data, std::size_t n, std::uint64_t seed) {
    std::uint64_t state = seed;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        std::memcpy(data + i, &z, 8);
    }
    for (; i < n; ++i) data[i] = std::byte{0xA5};
}

namespace {

struct EventPair {
    cudaEvent_t start = nullptr;
    cudaEvent_t stop = nullptr;
    EventPair() {
        cudaEventCreate(&start);
        cudaEventCreate(&stop);
    }
    ~EventPair() {
        cudaEventDestroy(start);
        cudaEventDestroy(stop);
    }
    EventPair(const EventPair&) = delete;
    EventPair& operator=(const EventPair&) = delete;
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
}

}  // namespace

Result<double> medianMs(void* stream, int warmup, int rounds, const std::function<Status()>& work) {
    auto s = static_cast<cudaStream_t>(stream);
    EventPair ev;
    std::vector<double> times;
    for (int r = 0; r < warmup + rounds; ++r) {
        STRATA_RETURN_IF_ERROR(check(cudaEventRecord(ev.start, s), "cudaEventRecord"));
        STRATA_RETURN_IF_ERROR(work());
        STRATA_RETURN_IF_ERROR(check(cudaEventRecord(ev.stop, s), "cudaEventRecord"));
        STRATA_RETURN_IF_ERROR(check(cudaEventSynchronize(ev.stop), "cudaEventSynchronize"));
        float ms = 0;
        STRATA_RETURN_IF_ERROR(
            check(cudaEventElapsedTime(&ms, ev.start, ev.stop), "cudaEventElapsedTime"));
        if (r >= warmup) times.push_back(ms);
    }
    return median(times);
}

Result<double> medianMsTwoStreams(void* first, void* second, int warmup, int rounds,
                                  const std::function<Status()>& work) {
    auto a = static_cast<cudaStream_t>(first);
    auto b = static_cast<cudaStream_t>(second);
    EventPair ev;
    cudaEvent_t b_done = nullptr;
    STRATA_RETURN_IF_ERROR(
        check(cudaEventCreateWithFlags(&b_done, cudaEventDisableTiming), "cudaEventCreate"));
    std::vector<double> times;
    Status status;
    for (int r = 0; r < warmup + rounds && status.isOk(); ++r) {
        status = check(cudaEventRecord(ev.start, a), "cudaEventRecord");
        if (status.isOk())
            status = check(cudaStreamWaitEvent(b, ev.start, 0), "cudaStreamWaitEvent");
        if (status.isOk()) status = work();
        if (status.isOk()) status = check(cudaEventRecord(b_done, b), "cudaEventRecord");
        if (status.isOk()) status = check(cudaStreamWaitEvent(a, b_done, 0), "cudaStreamWaitEvent");
        if (status.isOk()) status = check(cudaEventRecord(ev.stop, a), "cudaEventRecord");
        if (status.isOk()) status = check(cudaEventSynchronize(ev.stop), "cudaEventSynchronize");
        float ms = 0;
        if (status.isOk()) {
            status = check(cudaEventElapsedTime(&ms, ev.start, ev.stop), "cudaEventElapsedTime");
        }
        if (status.isOk() && r >= warmup) times.push_back(ms);
    }
    cudaEventDestroy(b_done);
    STRATA_RETURN_IF_ERROR(status);
    return median(times);
}

std::vector<std::byte*> devicePlanes(std::byte* dev, const kernels::PoolGeometry& g,
                                     std::size_t cap_pages) {
    const std::size_t plane_bytes = cap_pages * g.page_size * g.row_bytes;
    std::vector<std::byte*> planes;
    for (std::uint32_t i = 0; i < g.num_buffers * g.num_layers; ++i) {
        planes.push_back(dev + i * plane_bytes);
    }
    return planes;
}

kernels::CopyJob shuffledLoadJob(const kernels::PoolGeometry& g,
                                 const std::vector<std::byte*>& planes, std::byte* host,
                                 std::size_t cap_pages, std::size_t pages, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<std::uint32_t> dv(cap_pages), hv(cap_pages);
    std::iota(dv.begin(), dv.end(), 0u);
    std::iota(hv.begin(), hv.end(), 0u);
    std::shuffle(dv.begin(), dv.end(), rng);
    std::shuffle(hv.begin(), hv.end(), rng);
    kernels::CopyJob job;
    job.geometry = g;
    job.device = {planes.data(), cap_pages * g.page_size};
    job.host = {host, kernels::HostLayout::kLayerFirst, cap_pages * g.page_size};
    for (std::size_t i = 0; i < pages; ++i) job.pages.push_back({dv[i], hv[i]});
    job.layer_begin = 0;
    job.layer_end = g.num_layers;
    job.direction = kernels::Direction::kHostToDevice;
    return job;
}

}  // namespace strata::bench::gpu
