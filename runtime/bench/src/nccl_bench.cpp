// Bench `nccl` (run under mpirun, one rank per GPU): loading the same pages of a replicated pool
// onto every GPU of the group. Strata: comm::nccl::StripedLoader (each rank loads a stripe over its
// own PCIe link, an NCCL all-gather completes the pages, a device-side scatter places them), timed
// from a barrier to the last rank's completion. Baseline `single_gpu`: rank 0 loading all the
// pages alone with the ordinary copy path while the other ranks idle. Bandwidth counts the pages'
// bytes once (what every GPU receives). Every loaded byte is checked against the host pool.
#include <cuda_runtime.h>
#include <fmt/format.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "gpu_bench_util.h"
#include "registry.h"
#include "strata/comm/mpi_comm.h"
#include "strata/comm/mpi_context.h"
#include "strata/comm/nccl/striped_loader.h"
#include "strata/kernels/backend.h"

namespace strata::bench {
namespace {

using kernels::CopyJob;
using kernels::Direction;
using kernels::HostLayout;
using kernels::PoolGeometry;
using Clock = std::chrono::steady_clock;

class NcclBench final : public Bench {
public:
    void addOptions(CLI::App& app) override {
        app.add_option("--total-mib", total_mib_, "bytes loaded per job (MiB)")
            ->capture_default_str();
        app.add_option("--staging-mib", staging_mib_, "device staging of the striped loader (MiB)")
            ->capture_default_str();
        app.add_option("--rounds", rounds_, "timed rounds (median)")->capture_default_str();
    }
    Result<BenchReport> run(BenchContext& ctx) override;

private:
    int total_mib_ = 1024;
    int staging_mib_ = 256;
    int rounds_ = 5;
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

Result<BenchReport> NcclBench::run(BenchContext& ctx) {
    STRATA_ASSIGN_OR_RETURN(comm::MpiContext mpi, comm::MpiContext::create());
    const int rank = mpi.worldRank();
    const int nranks = mpi.worldSize();
    ctx.reporter = rank == 0;
    MPI_Comm node = MPI_COMM_NULL;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    int local_rank = 0;
    MPI_Comm_rank(node, &local_rank);
    MPI_Comm_free(&node);
    const int devices = kernels::Backend::cudaDeviceCount();
    if (devices < 1) return STRATA_ERROR(StatusCode::kUnavailable, "no CUDA device visible");
    const int device = local_rank % devices;
    STRATA_RETURN_IF_ERROR(gpu::check(cudaSetDevice(device), "cudaSetDevice"));
    kernels::BackendOptions options;
    options.device_index = device;
    STRATA_ASSIGN_OR_RETURN(auto backend,
                            kernels::Backend::create(kernels::BackendKind::kCuda, options));
    STRATA_ASSIGN_OR_RETURN(auto stream, backend->createStream());

    STRATA_ASSIGN_OR_RETURN(auto loader,
                            comm::nccl::StripedLoader::create(*backend, comm::MpiComm::world(),
                                                              std::size_t(staging_mib_) << 20));

    BenchReport report("nccl", fmt::format("{} x{}", gpu::deviceName(device), nranks));
    double worst = 10.0;
    std::uint64_t mismatched_pages = 0;
    for (std::size_t chunk_kib : {16, 64, 256}) {
        const PoolGeometry g{16, 2, 1024, static_cast<std::uint32_t>(chunk_kib)};
        const std::size_t pages =
            std::max<std::size_t>(1, (std::size_t(total_mib_) << 20) / g.bytesPerPage());
        const std::size_t cap_pages = 2 * pages;
        const std::size_t pool_bytes = cap_pages * g.bytesPerPage();
        STRATA_ASSIGN_OR_RETURN(kernels::Memory dev, backend->allocateDevice(pool_bytes));
        STRATA_ASSIGN_OR_RETURN(kernels::Memory host, backend->allocateHost(pool_bytes));
        STRATA_ASSIGN_OR_RETURN(kernels::Memory check, backend->allocateHost(pool_bytes));
        gpu::fillRandom(host.data(), pool_bytes, 0xCC00 + chunk_kib);  // identical on every rank
        const std::vector<std::byte*> planes = gpu::devicePlanes(dev.data(), g, cap_pages);
        // Seeded by the chunk size: identical page lists on every rank.
        CopyJob job = gpu::shuffledLoadJob(g, planes, host.data(), cap_pages, pages, chunk_kib);
        const std::size_t bytes = pages * g.bytesPerPage();

        auto timeIt = [&](bool striped, bool participate) -> Result<double> {
            std::vector<double> times;
            for (int r = 0; r < rounds_ + 1; ++r) {
                STRATA_RETURN_IF_ERROR(gpu::check(cudaDeviceSynchronize(), "sync"));
                MPI_Barrier(MPI_COMM_WORLD);
                const auto t0 = Clock::now();
                if (striped) {
                    STRATA_ASSIGN_OR_RETURN(kernels::EventPtr done, loader->load(job));
                    STRATA_RETURN_IF_ERROR(done->wait());
                } else if (participate) {
                    STRATA_RETURN_IF_ERROR(stream->enqueueCopy(job));
                    STRATA_RETURN_IF_ERROR(stream->synchronize());
                }
                double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
                double slowest = 0;
                MPI_Allreduce(&ms, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
                if (r > 0) times.push_back(slowest);
            }
            return median(times);
        };
        // Verification: zero the pool, load striped, read the pages back and compare.
        STRATA_RETURN_IF_ERROR(gpu::check(cudaMemset(dev.data(), 0, pool_bytes), "cudaMemset"));
        STRATA_ASSIGN_OR_RETURN(kernels::EventPtr done, loader->load(job));
        STRATA_RETURN_IF_ERROR(done->wait());
        CopyJob back = job;
        back.host = {check.data(), HostLayout::kLayerFirst, cap_pages * g.page_size};
        back.direction = Direction::kDeviceToHost;
        STRATA_RETURN_IF_ERROR(stream->enqueueCopy(back));
        STRATA_RETURN_IF_ERROR(stream->synchronize());
        std::uint64_t bad = 0;
        for (const kernels::PageCopy& pc : job.pages) {
            for (std::uint32_t p = 0; p < g.num_buffers * g.num_layers; ++p) {
                const std::size_t off =
                    (p * cap_pages * g.page_size + std::size_t{pc.host_page} * g.page_size) *
                    g.row_bytes;
                if (std::memcmp(host.data() + off, check.data() + off,
                                std::size_t{g.page_size} * g.row_bytes) != 0) {
                    ++bad;
                    break;
                }
            }
        }
        std::uint64_t bad_all = 0;
        MPI_Allreduce(&bad, &bad_all, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
        mismatched_pages += bad_all;

        STRATA_ASSIGN_OR_RETURN(double single_ms, timeIt(false, rank == 0));
        STRATA_ASSIGN_OR_RETURN(double striped_ms, timeIt(true, true));
        BenchRow row;
        row.case_name = fmt::format("{}KiB_np{}_layer_first", chunk_kib, nranks);
        row.metric = "bandwidth_per_gpu";
        row.unit = "GB/s";
        row.higher_is_better = true;
        row.strata = bytes / (striped_ms * 1e6);
        row.baselines = {{"single_gpu", bytes / (single_ms * 1e6)}};
        row.extra["ranks"] = nranks;
        row.extra["bytes"] = bytes;
        row.extra["pages"] = pages;
        row.extra["batch_pages_per_rank"] = loader->batchPagesPerRank(job);
        row.extra["single_gpu_path"] = std::string(kernels::copyPathName(stream->lastPlan().path));
        row.extra["mismatched_pages"] = bad_all;
        row.extra["speedup"] = single_ms / striped_ms;
        worst = std::min(worst, single_ms / striped_ms);
        report.addRow(std::move(row));
    }
    report.addNote(
        fmt::format("goal: striped load on 2 GPUs >= 1.7x single_gpu: {} (worst {:.2f}x, "
                    "{} ranks)",
                    nranks != 2 ? "n/a" : (worst >= 1.7 ? "MET" : "MISSED"), worst, nranks));
    report.addNote(fmt::format("pages verified on every rank: {} mismatched", mismatched_pages));
    if (mismatched_pages != 0) {
        return STRATA_ERROR(StatusCode::kInternal, "{} pages loaded wrong", mismatched_pages);
    }
    return report;
}

}  // namespace

std::unique_ptr<Bench> makeNcclBench() { return std::make_unique<NcclBench>(); }

}  // namespace strata::bench
