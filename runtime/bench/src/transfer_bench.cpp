// Bench `transfer`: scattered page copies between a device pool and a pinned host pool, for chunks
// (one page of one layer) of 4, 16, 64 and 256 KiB, both directions, every host layout. Beside
// Strata's copy (CopyPath::kAuto, at most --max-blocks SMs), in the same run:
// `contiguous_memcpy` (one cudaMemcpyAsync of the same number of bytes: the ceiling),
// `per_chunk_memcpy` (one cudaMemcpyAsync per chunk, cudaMemcpy2DAsync per chunk for page_first:
// the closest system's direct back end) and `memcpy_batch` (one cudaMemcpyBatchAsync, one entry
// per contiguous piece). Then the bidirectional rows: a backup (D2H) and a load (H2D) at once, on
// two streams, against `contiguous_bidirectional` (two contiguous copies at once). With --sweep,
// every path and CTA count is measured too (in `extra`), which is how the kAuto defaults were
// chosen. With --split, each one-direction row also measures a job split in two at once: a share
// of its pages on the copy engine (own stream) beside the rest on the warp kernel (8 CTAs), to see
// whether copy-engine traffic fills the gap the SM plateau leaves to the ceiling.
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "gpu_bench_util.h"
#include "registry.h"
#include "strata/kernels/backend.h"
#include "strata/kernels/transfer.h"

namespace strata::bench {
namespace {

using kernels::CopyJob;
using kernels::CopyPath;
using kernels::Direction;
using kernels::HostLayout;
using kernels::PageCopy;
using kernels::PoolGeometry;

constexpr std::size_t kRowBytes = 1024;
constexpr std::uint32_t kBuffers = 2;
constexpr std::uint32_t kLayers = 8;
constexpr HostLayout kLayouts[] = {HostLayout::kLayerFirst, HostLayout::kPageFirst,
                                   HostLayout::kPageFirstDirect};

double gbps(std::size_t bytes, double ms) { return ms > 0 ? bytes / (ms * 1e6) : 0.0; }

// One chunk size's pools: device planes and one pinned host allocation (viewed in each layout),
// both twice the transferred pages, so that pages land on random slots.
struct Pools {
    PoolGeometry g;
    std::size_t pages = 0;  // pages moved per job
    std::size_t capacity_pages = 0;
    kernels::Memory device;
    kernels::Memory host;
    std::vector<std::byte*> planes;
    std::vector<PageCopy> pairs;       // the job's pages
    std::vector<PageCopy> pairs_back;  // disjoint pages, for the concurrent opposite direction

    std::size_t bytes() const { return pages * g.bytesPerPage(); }
    kernels::DeviceView deviceView() const { return {planes.data(), capacity_pages * g.page_size}; }
    kernels::HostView hostView(HostLayout layout) const {
        return {host.data(), layout, capacity_pages * g.page_size};
    }
};

class TransferBench final : public Bench {
public:
    void addOptions(CLI::App& app) override {
        app.add_option("--total-mib", total_mib_, "bytes moved per copy job (MiB)")
            ->capture_default_str();
        app.add_option("--rounds", rounds_, "timed rounds per measurement (median)")
            ->capture_default_str();
        app.add_option("--device", device_, "CUDA device")->capture_default_str();
        app.add_option("--max-blocks", max_blocks_, "CTAs (SMs) Strata's kernels may use")
            ->capture_default_str();
        app.add_option("--chunks", chunks_kib_,
                       "chunk sizes (one page of one layer) in KiB, e.g. --chunks 128 for a "
                       "Llama-3-8B page of 64 tokens")
            ->capture_default_str()
            ->delimiter(',')
            ->check(CLI::PositiveNumber);
        app.add_flag("--sweep", sweep_, "also measure every copy path and CTA count");
        app.add_flag("--no-bidirectional", no_bidir_, "skip the bidirectional rows");
        app.add_flag("--split", split_,
                     "also measure copy-engine + warp-kernel splits of each one-direction job");
    }

    Result<BenchReport> run(BenchContext& ctx) override;

private:
    Result<Pools> makePools(std::size_t chunk_bytes);
    Result<double> strataMs(kernels::Backend& backend, kernels::Stream& stream, const Pools& p,
                            HostLayout layout, Direction dir, kernels::CopyPlan* plan);
    Result<double> perChunkMs(const Pools& p, HostLayout layout, Direction dir);
    Result<double> batchMs(const Pools& p, HostLayout layout, Direction dir);
    Result<double> contiguousMs(const Pools& p, Direction dir);

    std::vector<std::size_t> chunks_kib_ = {4, 16, 64, 256};
    int total_mib_ = 256;
    int rounds_ = 5;
    int device_ = 0;
    std::uint32_t max_blocks_ = 8;
    bool sweep_ = false;
    bool no_bidir_ = false;
    bool split_ = false;
    cudaStream_t stream_ = nullptr;   // baselines
    cudaStream_t stream2_ = nullptr;  // second stream of the bidirectional baseline
};

Result<Pools> TransferBench::makePools(std::size_t chunk_bytes) {
    Pools p;
    p.g = PoolGeometry{kLayers, kBuffers, kRowBytes,
                       static_cast<std::uint32_t>(chunk_bytes / kRowBytes)};
    const std::size_t total = std::size_t(total_mib_) << 20;
    p.pages = std::max<std::size_t>(1, total / p.g.bytesPerPage());
    p.capacity_pages = 2 * p.pages;
    const std::size_t pool_bytes = p.capacity_pages * p.g.bytesPerPage();
    void* d = nullptr;
    STRATA_RETURN_IF_ERROR(gpu::check(cudaMalloc(&d, pool_bytes), "cudaMalloc (device pool)"));
    p.device = kernels::Memory(static_cast<std::byte*>(d), pool_bytes,
                               [](std::byte* ptr, std::size_t) noexcept { cudaFree(ptr); });
    void* h = nullptr;
    STRATA_RETURN_IF_ERROR(
        gpu::check(cudaHostAlloc(&h, pool_bytes, cudaHostAllocPortable | cudaHostAllocMapped),
                   "cudaHostAlloc"));
    p.host = kernels::Memory(static_cast<std::byte*>(h), pool_bytes,
                             [](std::byte* ptr, std::size_t) noexcept { cudaFreeHost(ptr); });
    gpu::fillRandom(p.host.data(), pool_bytes, 0x5EED0000 + chunk_bytes);
    STRATA_RETURN_IF_ERROR(gpu::check(
        cudaMemcpy(p.device.data(), p.host.data(), pool_bytes, cudaMemcpyHostToDevice), "fill"));
    gpu::fillRandom(p.host.data(), pool_bytes, 0xF00D0000 + chunk_bytes);
    const std::size_t plane_bytes = p.capacity_pages * chunk_bytes;
    for (std::size_t i = 0; i < std::size_t{kBuffers} * kLayers; ++i) {
        p.planes.push_back(p.device.data() + i * plane_bytes);
    }
    std::mt19937_64 rng(chunk_bytes);
    std::vector<std::uint32_t> dv(p.capacity_pages), hv(p.capacity_pages);
    std::iota(dv.begin(), dv.end(), 0u);
    std::iota(hv.begin(), hv.end(), 0u);
    std::shuffle(dv.begin(), dv.end(), rng);
    std::shuffle(hv.begin(), hv.end(), rng);
    for (std::size_t i = 0; i < p.pages; ++i) p.pairs.push_back({dv[i], hv[i]});
    for (std::size_t i = p.pages; i < 2 * p.pages; ++i) p.pairs_back.push_back({dv[i], hv[i]});
    return p;
}

CopyJob makeJob(const Pools& p, HostLayout layout, Direction dir,
                const std::vector<PageCopy>& pairs) {
    CopyJob job;
    job.geometry = p.g;
    job.device = p.deviceView();
    job.host = p.hostView(layout);
    job.pages = pairs;
    job.layer_begin = 0;
    job.layer_end = p.g.num_layers;
    job.direction = dir;
    return job;
}

Result<double> TransferBench::strataMs(kernels::Backend& backend, kernels::Stream& stream,
                                       const Pools& p, HostLayout layout, Direction dir,
                                       kernels::CopyPlan* plan) {
    (void)backend;
    const CopyJob job = makeJob(p, layout, dir, p.pairs);
    auto ms = gpu::medianMs(stream.nativeHandle(), 1, rounds_,
                            [&]() -> Status { return stream.enqueueCopy(job); });
    if (plan != nullptr) *plan = stream.lastPlan();
    return ms;
}

// The host address of one contiguous piece, and the device one, for the baselines.
struct Piece {
    std::byte* host;
    std::byte* dev;
};

template <typename Fn>
void forEachChunk(const Pools& p, HostLayout layout, Fn&& fn) {
    const kernels::HostView hv = p.hostView(layout);
    const std::size_t chunk = std::size_t{p.g.page_size} * p.g.row_bytes;
    for (const PageCopy& pc : p.pairs) {
        for (std::uint32_t b = 0; b < p.g.num_buffers; ++b) {
            for (std::uint32_t l = 0; l < p.g.num_layers; ++l) {
                std::byte* dev = p.planes[b * p.g.num_layers + l] + pc.device_page * chunk;
                std::byte* host =
                    hv.base + kernels::hostRowOffset(p.g, hv, b, l,
                                                     std::size_t{pc.host_page} * p.g.page_size);
                fn(Piece{host, dev});
            }
        }
    }
}

Result<double> TransferBench::perChunkMs(const Pools& p, HostLayout layout, Direction dir) {
    const bool h2d = dir == Direction::kHostToDevice;
    const std::size_t chunk = std::size_t{p.g.page_size} * p.g.row_bytes;
    const std::size_t token_bytes = p.g.bytesPerToken();
    return gpu::medianMs(stream_, 1, rounds_, [&]() -> Status {
        cudaError_t err = cudaSuccess;
        forEachChunk(p, layout, [&](Piece piece) {
            if (err != cudaSuccess) return;
            if (layout == HostLayout::kPageFirst) {
                err = h2d ? cudaMemcpy2DAsync(piece.dev, p.g.row_bytes, piece.host, token_bytes,
                                              p.g.row_bytes, p.g.page_size, cudaMemcpyHostToDevice,
                                              stream_)
                          : cudaMemcpy2DAsync(piece.host, token_bytes, piece.dev, p.g.row_bytes,
                                              p.g.row_bytes, p.g.page_size, cudaMemcpyDeviceToHost,
                                              stream_);
            } else {
                err = h2d ? cudaMemcpyAsync(piece.dev, piece.host, chunk, cudaMemcpyHostToDevice,
                                            stream_)
                          : cudaMemcpyAsync(piece.host, piece.dev, chunk, cudaMemcpyDeviceToHost,
                                            stream_);
            }
        });
        return gpu::check(err, "cudaMemcpyAsync per chunk");
    });
}

Result<double> TransferBench::batchMs(const Pools& p, HostLayout layout, Direction dir) {
    const bool h2d = dir == Direction::kHostToDevice;
    const bool page_first = layout == HostLayout::kPageFirst;
    const std::size_t chunk = std::size_t{p.g.page_size} * p.g.row_bytes;
    const std::size_t token_bytes = p.g.bytesPerToken();
    std::vector<void*> dsts;
    std::vector<const void*> srcs;
    forEachChunk(p, layout, [&](Piece piece) {
        const std::uint32_t rows = page_first ? p.g.page_size : 1;
        for (std::uint32_t t = 0; t < rows; ++t) {
            std::byte* host = piece.host + t * token_bytes;
            std::byte* dev = piece.dev + t * p.g.row_bytes;
            dsts.push_back(h2d ? dev : host);
            srcs.push_back(h2d ? host : dev);
        }
    });
    std::vector<std::size_t> sizes(dsts.size(), page_first ? p.g.row_bytes : chunk);
    cudaMemcpyAttributes attrs{};
    attrs.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
    attrs.flags = cudaMemcpyFlagPreferOverlapWithCompute;
    std::size_t index = 0;
    return gpu::medianMs(stream_, 1, rounds_, [&]() -> Status {
        constexpr std::size_t kMax = 65536;
        for (std::size_t first = 0; first < dsts.size(); first += kMax) {
            const std::size_t n = std::min(kMax, dsts.size() - first);
            STRATA_RETURN_IF_ERROR(gpu::check(
                cudaMemcpyBatchAsync(dsts.data() + first, srcs.data() + first, sizes.data() + first,
                                     n, &attrs, &index, 1, stream_),
                "cudaMemcpyBatchAsync"));
        }
        return Status::ok();
    });
}

Result<double> TransferBench::contiguousMs(const Pools& p, Direction dir) {
    const std::size_t bytes = p.bytes();
    return gpu::medianMs(stream_, 1, rounds_, [&]() -> Status {
        return gpu::check(dir == Direction::kHostToDevice
                              ? cudaMemcpyAsync(p.device.data(), p.host.data(), bytes,
                                                cudaMemcpyHostToDevice, stream_)
                              : cudaMemcpyAsync(p.host.data(), p.device.data(), bytes,
                                                cudaMemcpyDeviceToHost, stream_),
                          "cudaMemcpyAsync (contiguous)");
    });
}

Result<BenchReport> TransferBench::run(BenchContext& ctx) {
    (void)ctx;
    STRATA_RETURN_IF_ERROR(gpu::check(cudaSetDevice(device_), "cudaSetDevice"));
    STRATA_RETURN_IF_ERROR(
        gpu::check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream"));
    STRATA_RETURN_IF_ERROR(
        gpu::check(cudaStreamCreateWithFlags(&stream2_, cudaStreamNonBlocking), "stream"));
    kernels::BackendOptions options;
    options.device_index = device_;
    options.tuning.max_blocks = max_blocks_;
    STRATA_ASSIGN_OR_RETURN(auto backend,
                            kernels::Backend::create(kernels::BackendKind::kCuda, options));
    STRATA_ASSIGN_OR_RETURN(auto stream, backend->createStream());
    STRATA_ASSIGN_OR_RETURN(auto stream_back, backend->createStream());

    // Sweep back ends: each forced path at 2, 4 and 8 CTAs.
    struct Variant {
        std::string name;
        std::unique_ptr<kernels::Backend> backend;
        std::unique_ptr<kernels::Stream> stream;
    };
    std::vector<Variant> variants;
    if (sweep_) {
        struct Shape {
            CopyPath path;
            std::uint32_t blocks;
            std::uint32_t threads;
            std::uint32_t in_flight;
        };
        const Shape shapes[] = {
            {CopyPath::kKernelWarp, 8, 256, 8},  {CopyPath::kKernelWarp, 4, 256, 8},
            {CopyPath::kKernelWarp, 16, 256, 8}, {CopyPath::kKernelWarp, 8, 512, 4},
            {CopyPath::kKernelBulk, 8, 0, 0},    {CopyPath::kCopyEngine, 0, 0, 0},
            {CopyPath::kStaged, 8, 256, 8},
        };
        for (const Shape& shape : shapes) {
            kernels::BackendOptions o = options;
            o.tuning.path = shape.path;
            o.tuning.max_blocks = shape.blocks;
            if (shape.threads != 0) o.tuning.warp_threads = shape.threads;
            if (shape.in_flight != 0) o.tuning.warp_loads_in_flight = shape.in_flight;
            STRATA_ASSIGN_OR_RETURN(auto b,
                                    kernels::Backend::create(kernels::BackendKind::kCuda, o));
            STRATA_ASSIGN_OR_RETURN(auto s, b->createStream());
            std::string name;
            if (shape.path == CopyPath::kCopyEngine || shape.path == CopyPath::kStaged) {
                name = std::string(kernels::copyPathName(shape.path));
            } else {
                name = fmt::format("{}_b{}", kernels::copyPathName(shape.path), shape.blocks);
                if (shape.threads != 0) name += fmt::format("_t{}", shape.threads);
                if (shape.in_flight == 8) name += "_x8";  // loads in flight per lane
            }
            variants.push_back({name, std::move(b), std::move(s)});
        }
    }
    // --split: the warp kernel on 8 CTAs and the copy engine, each on a stream of its own.
    std::vector<Variant> halves;
    if (split_) {
        for (CopyPath path : {CopyPath::kKernelWarp, CopyPath::kCopyEngine}) {
            kernels::BackendOptions o = options;
            o.tuning.path = path;
            o.tuning.max_blocks = 8;
            STRATA_ASSIGN_OR_RETURN(auto b,
                                    kernels::Backend::create(kernels::BackendKind::kCuda, o));
            STRATA_ASSIGN_OR_RETURN(auto st, b->createStream());
            halves.push_back(
                {std::string(kernels::copyPathName(path)), std::move(b), std::move(st)});
        }
    }
    auto variant = [&](std::string_view name) -> Variant* {
        for (Variant& v : variants) {
            if (v.name == name) return &v;
        }
        return nullptr;
    };

    BenchReport report("transfer", gpu::deviceName(device_));
    int met = 0;
    int rows = 0;
    double worst_ratio = 10.0;
    std::uint32_t most_sms = 0;
    for (std::size_t chunk_kib : chunks_kib_) {
        STRATA_ASSIGN_OR_RETURN(Pools p, makePools(chunk_kib << 10));
        for (Direction dir : {Direction::kHostToDevice, Direction::kDeviceToHost}) {
            STRATA_ASSIGN_OR_RETURN(double ceiling_ms, contiguousMs(p, dir));
            for (HostLayout layout : kLayouts) {
                kernels::CopyPlan plan;
                STRATA_ASSIGN_OR_RETURN(double strata_ms,
                                        strataMs(*backend, *stream, p, layout, dir, &plan));
                STRATA_ASSIGN_OR_RETURN(double chunk_ms, perChunkMs(p, layout, dir));
                STRATA_ASSIGN_OR_RETURN(double batch_ms, batchMs(p, layout, dir));
                const std::size_t bytes = p.bytes();
                BenchRow row;
                row.case_name = fmt::format("{}KiB_{}_{}", chunk_kib,
                                            dir == Direction::kHostToDevice ? "h2d" : "d2h",
                                            kernels::hostLayoutName(layout));
                row.metric = "bandwidth";
                row.unit = "GB/s";
                row.higher_is_better = true;
                row.strata = gbps(bytes, strata_ms);
                row.baselines = {{"contiguous_memcpy", gbps(bytes, ceiling_ms)},
                                 {"per_chunk_memcpy", gbps(bytes, chunk_ms)},
                                 {"memcpy_batch", gbps(bytes, batch_ms)}};
                const double ratio = ceiling_ms / strata_ms;
                row.extra["chunk_bytes"] = chunk_kib << 10;
                row.extra["bytes"] = bytes;
                row.extra["pages"] = p.pages;
                row.extra["layers"] = kLayers;
                row.extra["buffers"] = kBuffers;
                row.extra["row_bytes"] = kRowBytes;
                row.extra["strata_path"] = std::string(kernels::copyPathName(plan.path));
                row.extra["strata_sms"] = plan.blocks;
                row.extra["x_ceiling"] = ratio;
                if (sweep_) {
                    nlohmann::ordered_json v;
                    for (Variant& var : variants) {
                        kernels::CopyPlan vp;
                        STRATA_ASSIGN_OR_RETURN(
                            double ms, strataMs(*var.backend, *var.stream, p, layout, dir, &vp));
                        v[var.name] = gbps(bytes, ms);
                    }
                    row.extra["variants_gbps"] = v;
                }
                if (split_) {
                    nlohmann::ordered_json v;
                    for (int pct : {3, 6, 10, 15, 25}) {
                        const std::size_t n_ce = p.pairs.size() * pct / 100;
                        const std::vector<PageCopy> ce(p.pairs.begin(), p.pairs.begin() + n_ce);
                        const std::vector<PageCopy> sm(p.pairs.begin() + n_ce, p.pairs.end());
                        const CopyJob kjob = makeJob(p, layout, dir, sm);
                        const CopyJob cjob = makeJob(p, layout, dir, ce);
                        STRATA_ASSIGN_OR_RETURN(
                            double ms,
                            gpu::medianMsTwoStreams(
                                halves[0].stream->nativeHandle(), halves[1].stream->nativeHandle(),
                                1, rounds_, [&]() -> Status {
                                    STRATA_RETURN_IF_ERROR(halves[0].stream->enqueueCopy(kjob));
                                    return halves[1].stream->enqueueCopy(cjob);
                                }));
                        v[fmt::format("ce{:02d}_kernel_warp_b8", pct)] = gbps(bytes, ms);
                    }
                    row.extra["split_gbps"] = v;
                }
                ++rows;
                met += ratio >= 0.95 && plan.blocks <= 8;
                worst_ratio = std::min(worst_ratio, ratio);
                most_sms = std::max(most_sms, plan.blocks);
                report.addRow(std::move(row));
            }
        }
        if (no_bidir_) continue;
        // A backup and a load at once (layer_first and page_first_direct).
        for (HostLayout layout : {HostLayout::kLayerFirst, HostLayout::kPageFirstDirect}) {
            const std::size_t bytes = p.bytes();
            STRATA_ASSIGN_OR_RETURN(
                double ceiling_ms,
                gpu::medianMsTwoStreams(stream_, stream2_, 1, rounds_, [&]() -> Status {
                    STRATA_RETURN_IF_ERROR(
                        gpu::check(cudaMemcpyAsync(p.device.data(), p.host.data(), bytes,
                                                   cudaMemcpyHostToDevice, stream_),
                                   "cudaMemcpyAsync"));
                    return gpu::check(
                        cudaMemcpyAsync(p.host.data() + bytes, p.device.data() + bytes, bytes,
                                        cudaMemcpyDeviceToHost, stream2_),
                        "cudaMemcpyAsync");
                }));
            const CopyJob load = makeJob(p, layout, Direction::kHostToDevice, p.pairs);
            const CopyJob backup = makeJob(p, layout, Direction::kDeviceToHost, p.pairs_back);
            std::uint32_t sms = 0;
            STRATA_ASSIGN_OR_RETURN(
                double strata_ms, gpu::medianMsTwoStreams(
                                      stream->nativeHandle(), stream_back->nativeHandle(), 1,
                                      rounds_, [&]() -> Status {
                                          STRATA_RETURN_IF_ERROR(stream->enqueueCopy(load));
                                          STRATA_RETURN_IF_ERROR(stream_back->enqueueCopy(backup));
                                          sms = stream->lastPlan().blocks +
                                                stream_back->lastPlan().blocks;
                                          return Status::ok();
                                      }));
            nlohmann::ordered_json combos;
            if (sweep_) {
                // Load and backup paths: warp kernel (8 or 4 CTAs), copy engine, staged.
                const char* const names[] = {"kernel_warp_b8_t256_x8", "kernel_warp_b4_t256_x8",
                                             "copy_engine", "staged"};
                for (const char* load_name : names) {
                    for (const char* backup_name : names) {
                        Variant* lv = variant(load_name);
                        Variant* bv = variant(backup_name);
                        STRATA_ASSIGN_OR_RETURN(auto back_stream, bv->backend->createStream());
                        STRATA_ASSIGN_OR_RETURN(
                            double ms,
                            gpu::medianMsTwoStreams(
                                lv->stream->nativeHandle(), back_stream->nativeHandle(), 1, rounds_,
                                [&]() -> Status {
                                    STRATA_RETURN_IF_ERROR(lv->stream->enqueueCopy(load));
                                    return back_stream->enqueueCopy(backup);
                                }));
                        combos[fmt::format("load_{}_backup_{}", lv->name, bv->name)] =
                            gbps(2 * bytes, ms);
                    }
                }
            }
            BenchRow row;
            row.case_name =
                fmt::format("{}KiB_bidirectional_{}", chunk_kib, kernels::hostLayoutName(layout));
            row.metric = "bandwidth";
            row.unit = "GB/s";
            row.higher_is_better = true;
            row.strata = gbps(2 * bytes, strata_ms);
            row.baselines = {{"contiguous_bidirectional", gbps(2 * bytes, ceiling_ms)}};
            row.extra["bytes_each_direction"] = bytes;
            row.extra["strata_sms"] = sms;
            row.extra["load_path"] = std::string(kernels::copyPathName(stream->lastPlan().path));
            row.extra["backup_path"] =
                std::string(kernels::copyPathName(stream_back->lastPlan().path));
            row.extra["x_ceiling"] = ceiling_ms / strata_ms;
            if (sweep_) row.extra["variants_gbps"] = combos;
            report.addRow(std::move(row));
        }
    }
    report.addNote(fmt::format(
        "goal: strata >= 0.95x contiguous_memcpy with <= 8 SMs in every one-direction row: {} "
        "({} of {} rows; worst {:.3f}x; most SMs {})",
        met == rows ? "MET" : "MISSED", met, rows, worst_ratio, most_sms));
    if (!no_bidir_) {
        double worst_bidir = 10.0;
        for (const BenchRow& r : report.rows()) {
            if (r.case_name.find("bidirectional") != std::string::npos) {
                worst_bidir = std::min(worst_bidir, r.extra["x_ceiling"].get<double>());
            }
        }
        report.addNote(fmt::format(
            "goal: backup + load at once >= 0.9x contiguous_bidirectional: {} (worst {:.3f}x)",
            worst_bidir >= 0.9 ? "MET" : "MISSED", worst_bidir));
    }
    cudaStreamDestroy(stream_);
    cudaStreamDestroy(stream2_);
    return report;
}

}  // namespace

std::unique_ptr<Bench> makeTransferBench() { return std::make_unique<TransferBench>(); }

}  // namespace strata::bench
