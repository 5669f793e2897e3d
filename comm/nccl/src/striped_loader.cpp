// StripedLoader over NCCL (built when NCCL is found; striped_loader_stub.cpp otherwise). Per
// batch of n * B pages (n ranks, B pages each): rank r loads pages [r * B, (r + 1) * B) of the
// batch with the ordinary copy kernel into its slice of a staging buffer laid out as layer_first
// over the loaded layers ([rank][buffer][layer][B pages]), an in-place ncclAllGather fills every
// rank's slice on every GPU, and a device-to-device copy job (the same kernel, the staging slice
// seen as a layer_first "host" pool) scatters each page into its pool slot. Loads run on one
// stream, exchange and scatter on another; two staging buffers alternate, guarded by events, so
// batch k + 1 loads while batch k is exchanged. The alternation carries over from one load() call
// to the next, so that per-layer calls pipeline like the batches of one call (layer L + 1 loads
// while layer L is exchanged).
#include "strata/comm/nccl/striped_loader.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "strata/core/log.h"
#include "strata/kernels/transfer.h"

namespace strata::comm::nccl {

using kernels::Backend;
using kernels::BackendKind;
using kernels::CopyJob;
using kernels::CopyPath;
using kernels::Direction;
using kernels::EventPtr;
using kernels::HostLayout;
using kernels::Memory;
using kernels::PageCopy;
using kernels::PoolGeometry;
using kernels::Stream;

static_assert(sizeof(ncclUniqueId) == sizeof(NcclUniqueIdBytes::bytes));

bool available() noexcept { return true; }

namespace {

Status ncclError(ncclResult_t r, const char* what) {
    core::logger("comm").error("{}: {}", what, ncclGetErrorString(r));
    return STRATA_ERROR(StatusCode::kInternal, "{}: {}", what, ncclGetErrorString(r));
}

class NcclStripedLoader final : public StripedLoader {
public:
    NcclStripedLoader(Backend& backend, ncclComm_t comm, int rank, int nranks,
                      std::unique_ptr<Stream> load, std::unique_ptr<Stream> exchange,
                      Memory staging0, Memory staging1)
        : backend_(backend),
          comm_(comm),
          rank_(rank),
          nranks_(nranks),
          load_(std::move(load)),
          exchange_(std::move(exchange)) {
        staging_[0] = std::move(staging0);
        staging_[1] = std::move(staging1);
    }
    ~NcclStripedLoader() override {
        // Streams drain in their destructors; the communicator goes after them.
        load_.reset();
        exchange_.reset();
        ncclCommDestroy(comm_);
    }

    int rank() const noexcept override { return rank_; }
    int size() const noexcept override { return nranks_; }

    std::size_t batchPagesPerRank(const CopyJob& job) const noexcept override {
        const std::size_t page_bytes = std::size_t{job.geometry.num_buffers} *
                                       (job.layer_end - job.layer_begin) * job.geometry.page_size *
                                       job.geometry.row_bytes;
        if (page_bytes == 0) return 0;
        return std::max<std::size_t>(1, staging_[0].size() / (page_bytes * nranks_));
    }

    Result<EventPtr> load(const CopyJob& job) override {
        STRATA_RETURN_IF_ERROR(kernels::validateCopy(job.geometry, job.device, job.host, job.pages,
                                                     job.layer_begin, job.layer_end));
        if (job.direction != Direction::kHostToDevice) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "a striped load moves host to device only");
        }
        const PoolGeometry& g = job.geometry;
        const std::uint32_t layers = job.layer_end - job.layer_begin;
        // Compact geometry over the loaded layers: staging holds only those.
        const PoolGeometry cg{layers, g.num_buffers, g.row_bytes, g.page_size};
        std::vector<std::byte*> pool_table(std::size_t{g.num_buffers} * layers);
        for (std::uint32_t b = 0; b < g.num_buffers; ++b) {
            for (std::uint32_t l = 0; l < layers; ++l) {
                pool_table[b * layers + l] =
                    job.device.layer_ptrs[b * g.num_layers + job.layer_begin + l];
            }
        }
        const std::size_t per_rank_max = batchPagesPerRank(job);
        const std::size_t n = static_cast<std::size_t>(nranks_);
        const std::size_t total = job.pages.size();
        for (std::size_t first = 0; first < total; first += n * per_rank_max) {
            const std::size_t in_batch = std::min(n * per_rank_max, total - first);
            const std::size_t per_rank = (in_batch + n - 1) / n;  // same on every rank
            // Same sequence on every rank: every rank makes the same calls with the same counts.
            const std::size_t slot = next_slot_;
            next_slot_ ^= 1;
            std::byte* staging = staging_[slot].data();
            const std::size_t slice_tokens = per_rank * g.page_size;
            const std::size_t slice_bytes = slice_tokens * cg.bytesPerToken();
            // The slot is free once the exchange of batch k - 2 has finished scattering.
            if (slot_done_[slot] != nullptr)
                STRATA_RETURN_IF_ERROR(load_->waitFor(slot_done_[slot]));

            // 1. This rank's stripe over PCIe into its slice.
            std::vector<PageCopy> mine;
            const std::size_t my_first = first + rank_ * per_rank;
            for (std::size_t i = 0; i < per_rank && my_first + i < first + in_batch; ++i) {
                mine.push_back({static_cast<std::uint32_t>(i), job.pages[my_first + i].host_page});
            }
            std::byte* my_slice = staging + rank_ * slice_bytes;
            std::vector<std::byte*> slice_table(pool_table.size());
            for (std::size_t p = 0; p < slice_table.size(); ++p) {
                slice_table[p] = my_slice + p * slice_tokens * g.row_bytes;
            }
            if (!mine.empty()) {
                CopyJob stripe;
                stripe.geometry = g;
                // The slice as a device pool of the full geometry: planes of other layers are
                // never touched but must be valid pointers.
                std::vector<std::byte*> full_table(std::size_t{g.num_buffers} * g.num_layers,
                                                   my_slice);
                for (std::uint32_t b = 0; b < g.num_buffers; ++b) {
                    for (std::uint32_t l = 0; l < layers; ++l) {
                        full_table[b * g.num_layers + job.layer_begin + l] =
                            slice_table[b * layers + l];
                    }
                }
                stripe.device = {full_table.data(), slice_tokens};
                stripe.host = job.host;
                stripe.pages = std::move(mine);
                stripe.layer_begin = job.layer_begin;
                stripe.layer_end = job.layer_end;
                stripe.direction = Direction::kHostToDevice;
                // Stripes and scatters stay on the SMs: with 256 KiB chunks kAuto sent both to
                // the copy engines (stripe loads and device-to-device scatter entries sharing
                // them), and the pair reached only 1.06x of one GPU (1.73x on the kernel path).
                stripe.path = CopyPath::kKernelWarp;
                STRATA_RETURN_IF_ERROR(load_->enqueueCopy(std::move(stripe)));
            }
            STRATA_ASSIGN_OR_RETURN(EventPtr loaded, load_->record());

            // 2. Exchange: every rank's slice on every GPU.
            STRATA_RETURN_IF_ERROR(exchange_->waitFor(loaded));
            auto stream = static_cast<cudaStream_t>(exchange_->nativeHandle());
            if (nranks_ > 1) {
                ncclResult_t r =
                    ncclAllGather(my_slice, staging, slice_bytes, ncclUint8, comm_, stream);
                if (r != ncclSuccess) return ncclError(r, "ncclAllGather");
            }
            // 3. Scatter each rank's slice into the pool slots (device to device).
            for (std::size_t q = 0; q < n; ++q) {
                std::vector<PageCopy> pages;
                const std::size_t q_first = first + q * per_rank;
                for (std::size_t i = 0; i < per_rank && q_first + i < first + in_batch; ++i) {
                    pages.push_back(
                        {job.pages[q_first + i].device_page, static_cast<std::uint32_t>(i)});
                }
                if (pages.empty()) continue;
                CopyJob scatter;
                scatter.geometry = cg;
                // The pool's own row stride: the scatter writes its rows in place.
                scatter.device = {pool_table.data(), job.device.capacity_tokens,
                                  job.device.row_stride};
                scatter.host = {staging + q * slice_bytes, HostLayout::kLayerFirst, slice_tokens};
                scatter.pages = std::move(pages);
                scatter.layer_begin = 0;
                scatter.layer_end = layers;
                scatter.direction = Direction::kHostToDevice;
                scatter.path = CopyPath::kKernelWarp;
                STRATA_RETURN_IF_ERROR(exchange_->enqueueCopy(std::move(scatter)));
            }
            STRATA_ASSIGN_OR_RETURN(slot_done_[slot], exchange_->record());
        }
        return exchange_->record();
    }

private:
    Backend& backend_;  // must outlive the loader
    ncclComm_t comm_;
    int rank_;
    int nranks_;
    std::unique_ptr<Stream> load_;
    std::unique_ptr<Stream> exchange_;
    Memory staging_[2];
    EventPtr slot_done_[2];
    std::size_t next_slot_ = 0;  // the staging buffer of the next batch (alternates across calls)
};

}  // namespace

Result<NcclUniqueIdBytes> newUniqueId() {
    ncclUniqueId id;
    ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) return ncclError(r, "ncclGetUniqueId");
    NcclUniqueIdBytes out;
    std::memcpy(out.bytes.data(), &id, sizeof(id));
    return out;
}

Result<std::unique_ptr<StripedLoader>> StripedLoader::create(Backend& backend,
                                                             const NcclUniqueIdBytes& id, int rank,
                                                             int nranks,
                                                             std::size_t staging_bytes) {
    if (backend.kind() != BackendKind::kCuda) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "striped loads need the cuda back end");
    }
    if (nranks < 1 || rank < 0 || rank >= nranks) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "rank {} of {} is out of range", rank,
                            nranks);
    }
    STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Stream> load, backend.createStream());
    STRATA_ASSIGN_OR_RETURN(std::unique_ptr<Stream> exchange, backend.createStream());
    const std::size_t half = std::max<std::size_t>(staging_bytes / 2, 1 << 20);
    STRATA_ASSIGN_OR_RETURN(Memory s0, backend.allocateDevice(half));
    STRATA_ASSIGN_OR_RETURN(Memory s1, backend.allocateDevice(half));
    ncclUniqueId nid;
    std::memcpy(&nid, id.bytes.data(), sizeof(nid));
    // The communicator binds to the calling thread's current device: make it the back end's (the
    // device its memory lives on), then restore the caller's.
    cudaPointerAttributes attr{};
    if (cudaError_t e = cudaPointerGetAttributes(&attr, s0.data()); e != cudaSuccess) {
        core::logger("comm").error("cudaPointerGetAttributes: {}", cudaGetErrorString(e));
        return STRATA_ERROR(StatusCode::kInternal, "cudaPointerGetAttributes: {}",
                            cudaGetErrorString(e));
    }
    int previous = 0;
    if (cudaGetDevice(&previous) != cudaSuccess) previous = attr.device;
    if (cudaError_t e = cudaSetDevice(attr.device); e != cudaSuccess) {
        core::logger("comm").error("cudaSetDevice({}): {}", attr.device, cudaGetErrorString(e));
        return STRATA_ERROR(StatusCode::kInternal, "cudaSetDevice({}): {}", attr.device,
                            cudaGetErrorString(e));
    }
    ncclComm_t comm = nullptr;
    ncclResult_t r = ncclCommInitRank(&comm, nranks, nid, rank);
    if (previous != attr.device) (void)cudaSetDevice(previous);
    if (r != ncclSuccess) return ncclError(r, "ncclCommInitRank");
    return std::unique_ptr<StripedLoader>(
        new NcclStripedLoader(backend, comm, rank, nranks, std::move(load), std::move(exchange),
                              std::move(s0), std::move(s1)));
}

}  // namespace strata::comm::nccl
