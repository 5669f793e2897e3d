// Bench `overlap`: a layer-by-layer load (kernels::enqueueLayerByLayer, one ready event per
// layer) beside a synthetic per-layer compute kernel on the worker's own stream that waits for
// layer L's event only, then reads layer L. The compute is calibrated to take as long as the load
// (the case where overlap matters most). Baseline `ideal`: max(load alone, compute alone);
// Strata: the total time of both together. Goal: total within 1.1x of ideal.
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gpu_bench_kernels.h"
#include "gpu_bench_util.h"
#include "registry.h"
#include "strata/kernels/backend.h"

namespace strata::bench {
namespace {

using kernels::CopyJob;
using kernels::PageCopy;
using kernels::PoolGeometry;

class OverlapBench final : public Bench {
public:
    void addOptions(CLI::App& app) override {
        app.add_option("--layers", layers_, "layers of the pool")->capture_default_str();
        app.add_option("--total-mib", total_mib_, "bytes loaded in all (MiB)")
            ->capture_default_str();
        app.add_option("--rounds", rounds_, "timed rounds (median)")->capture_default_str();
        app.add_option("--device", device_, "CUDA device")->capture_default_str();
        app.add_flag("--sweep", sweep_, "also measure other copy paths and CTA shapes");
    }
    Result<BenchReport> run(BenchContext& ctx) override;

private:
    int layers_ = 32;
    int total_mib_ = 512;
    int rounds_ = 5;
    int device_ = 0;
    bool sweep_ = false;
};

Result<BenchReport> OverlapBench::run(BenchContext& ctx) {
    (void)ctx;
    STRATA_RETURN_IF_ERROR(gpu::check(cudaSetDevice(device_), "cudaSetDevice"));
    kernels::BackendOptions options;
    options.device_index = device_;
    STRATA_ASSIGN_OR_RETURN(auto backend,
                            kernels::Backend::create(kernels::BackendKind::kCuda, options));
    STRATA_ASSIGN_OR_RETURN(auto copy, backend->createStream());
    cudaStream_t compute = nullptr;  // the worker's stream: default priority
    STRATA_RETURN_IF_ERROR(
        gpu::check(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking), "stream"));
    float* out = nullptr;
    STRATA_RETURN_IF_ERROR(gpu::check(cudaMalloc(&out, sizeof(float)), "cudaMalloc"));
    const int compute_blocks = 2 * gpu::smCount(device_);

    // --sweep: the same load on other paths and shapes, against the same calibrated compute.
    struct Variant {
        std::string name;
        std::unique_ptr<kernels::Backend> backend;
        std::unique_ptr<kernels::Stream> stream;
    };
    std::vector<Variant> variants;
    if (sweep_) {
        struct Shape {
            const char* name;
            kernels::CopyPath path;
            std::uint32_t blocks;
            std::uint32_t threads;
            std::uint32_t in_flight;
        };
        const Shape shapes[] = {
            {"kernel_warp_b8_t512", kernels::CopyPath::kKernelWarp, 8, 512, 4},
            {"kernel_warp_b8_t256", kernels::CopyPath::kKernelWarp, 8, 256, 4},
            {"kernel_warp_b4_t256_x8", kernels::CopyPath::kKernelWarp, 4, 256, 8},
            {"kernel_warp_b8_t128_x8", kernels::CopyPath::kKernelWarp, 8, 128, 8},
            {"kernel_warp_b4_t128_x8", kernels::CopyPath::kKernelWarp, 4, 128, 8},
            {"kernel_bulk_b8", kernels::CopyPath::kKernelBulk, 8, 0, 4},
            {"copy_engine", kernels::CopyPath::kCopyEngine, 0, 0, 4},
        };
        for (const Shape& shape : shapes) {
            kernels::BackendOptions o = options;
            o.tuning.path = shape.path;
            if (shape.blocks != 0) o.tuning.max_blocks = shape.blocks;
            if (shape.threads != 0) o.tuning.warp_threads = shape.threads;
            o.tuning.warp_loads_in_flight = shape.in_flight;
            STRATA_ASSIGN_OR_RETURN(auto b,
                                    kernels::Backend::create(kernels::BackendKind::kCuda, o));
            STRATA_ASSIGN_OR_RETURN(auto s, b->createStream());
            variants.push_back({shape.name, std::move(b), std::move(s)});
        }
    }

    BenchReport report("overlap", gpu::deviceName(device_));
    double worst = 10.0;
    for (std::size_t chunk_kib : {16, 64}) {
        const PoolGeometry g{static_cast<std::uint32_t>(layers_), 2, 1024,
                             static_cast<std::uint32_t>(chunk_kib)};
        const std::size_t pages =
            std::max<std::size_t>(1, (std::size_t(total_mib_) << 20) / g.bytesPerPage());
        const std::size_t cap_pages = 2 * pages;
        const std::size_t pool_bytes = cap_pages * g.bytesPerPage();
        STRATA_ASSIGN_OR_RETURN(kernels::Memory dev, backend->allocateDevice(pool_bytes));
        STRATA_ASSIGN_OR_RETURN(kernels::Memory host, backend->allocateHost(pool_bytes));
        gpu::fillRandom(host.data(), pool_bytes, 0x0E1A + chunk_kib);
        const std::size_t plane_bytes = cap_pages * g.page_size * g.row_bytes;
        const std::vector<std::byte*> planes = gpu::devicePlanes(dev.data(), g, cap_pages);
        // Seeded by the chunk size: identical page lists on every rank.
        CopyJob job = gpu::shuffledLoadJob(g, planes, host.data(), cap_pages, pages, chunk_kib);

        // Layer l's compute reads both of its planes (K and V).
        auto computeLayer = [&](std::uint32_t l, int iters) -> Status {
            for (std::uint32_t b = 0; b < g.num_buffers; ++b) {
                STRATA_RETURN_IF_ERROR(gpu::check(
                    gpu::launchLayerCompute(planes[b * g.num_layers + l], plane_bytes / 2, iters,
                                            compute_blocks, out, compute),
                    "compute kernel"));
            }
            return Status::ok();
        };
        auto loadOnly = [&]() -> Status {
            return kernels::enqueueLayerByLayer(*copy, job).status();
        };
        STRATA_ASSIGN_OR_RETURN(double load_ms,
                                gpu::medianMs(copy->nativeHandle(), 1, rounds_, loadOnly));
        auto computeOnly = [&](int iters) {
            return gpu::medianMs(compute, 1, rounds_, [&]() -> Status {
                for (std::uint32_t l = 0; l < g.num_layers; ++l) {
                    STRATA_RETURN_IF_ERROR(computeLayer(l, iters));
                }
                return Status::ok();
            });
        };
        // Calibrate: compute time is close to affine in iters.
        STRATA_ASSIGN_OR_RETURN(double c1, computeOnly(1));
        STRATA_ASSIGN_OR_RETURN(double c64, computeOnly(64));
        const double per_iter = std::max(1e-6, (c64 - c1) / 63.0);
        const int iters =
            std::clamp(static_cast<int>(std::lround(1 + (load_ms - c1) / per_iter)), 1, 1 << 20);
        STRATA_ASSIGN_OR_RETURN(double compute_ms, computeOnly(iters));

        auto together = [&](kernels::Stream& stream) {
            return gpu::medianMsTwoStreams(
                stream.nativeHandle(), compute, 1, rounds_, [&]() -> Status {
                    STRATA_ASSIGN_OR_RETURN(auto events, kernels::enqueueLayerByLayer(stream, job));
                    for (std::uint32_t l = 0; l < g.num_layers; ++l) {
                        STRATA_RETURN_IF_ERROR(events[l]->blockStream(compute));
                        STRATA_RETURN_IF_ERROR(computeLayer(l, iters));
                    }
                    return Status::ok();
                });
        };
        STRATA_ASSIGN_OR_RETURN(double total_ms, together(*copy));
        nlohmann::ordered_json swept;
        for (Variant& v : variants) {
            STRATA_ASSIGN_OR_RETURN(
                double v_load_ms, gpu::medianMs(v.stream->nativeHandle(), 1, rounds_, [&]() {
                    return kernels::enqueueLayerByLayer(*v.stream, job).status();
                }));
            STRATA_ASSIGN_OR_RETURN(double v_total_ms, together(*v.stream));
            swept[v.name] = {{"load_alone_ms", v_load_ms},
                             {"total_ms", v_total_ms},
                             {"x_ideal", v_total_ms / std::max(v_load_ms, compute_ms)},
                             {"x_default_ideal", v_total_ms / std::max(load_ms, compute_ms)}};
        }
        const double ideal = std::max(load_ms, compute_ms);
        BenchRow row;
        row.case_name = fmt::format("{}KiB_{}layers_layer_first", chunk_kib, g.num_layers);
        row.metric = "total_ms";
        row.unit = "ms";
        row.higher_is_better = false;
        row.strata = total_ms;
        row.baselines = {{"ideal", ideal}};
        row.extra["load_alone_ms"] = load_ms;
        row.extra["compute_alone_ms"] = compute_ms;
        row.extra["compute_iters"] = iters;
        row.extra["compute_blocks"] = compute_blocks;
        row.extra["bytes"] = pages * g.bytesPerPage();
        row.extra["load_gbps"] = pages * g.bytesPerPage() / (load_ms * 1e6);
        row.extra["load_path"] = std::string(kernels::copyPathName(copy->lastPlan().path));
        row.extra["load_sms"] = copy->lastPlan().blocks;
        row.extra["overlap_efficiency"] = ideal / total_ms;
        if (sweep_) row.extra["variants"] = swept;
        worst = std::min(worst, ideal / total_ms);
        report.addRow(std::move(row));
    }
    report.addNote(
        fmt::format("goal: overlap efficiency (ideal / total) >= 0.9, i.e. total within 1.1x of "
                    "max(load, compute): {} (worst {:.3f})",
                    worst >= 0.9 ? "MET" : "MISSED", worst));
    cudaFree(out);
    cudaStreamDestroy(compute);
    return report;
}

}  // namespace

std::unique_ptr<Bench> makeOverlapBench() { return std::make_unique<OverlapBench>(); }

}  // namespace strata::bench
