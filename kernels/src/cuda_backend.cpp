// CUDA back end: cudaMalloc device memory, pinned (portable, mapped) host memory, non-blocking
// streams, timing-free events, and the transfer kernel of transfer_cuda.cu. Every call selects
// the back end's device with a guard that restores the caller's current device.
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "backend_impl.h"
#include "strata/core/log.h"
#include "transfer_cuda.h"

namespace strata::kernels::detail {
namespace {

std::string cudaText(cudaError_t err) {
    return fmt::format("{} ({})", cudaGetErrorString(err), cudaGetErrorName(err));
}

// Logs a failed release, unless the CUDA runtime is already shutting down (static destruction).
void logRelease(cudaError_t err, const char* what) noexcept {
    if (err == cudaSuccess || err == cudaErrorCudartUnloading) return;
    try {
        core::logger("kernels").warn("{} failed: {}", what, cudaText(err));
    } catch (...) {
    }
}

// Saves the current device, switches to `device`, restores on destruction.
class DeviceGuard {
public:
    explicit DeviceGuard(int device) noexcept {
        if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
        if (previous_ != device) cudaSetDevice(device);
    }
    ~DeviceGuard() {
        int current = -1;
        if (previous_ >= 0 && cudaGetDevice(&current) == cudaSuccess && current != previous_) {
            cudaSetDevice(previous_);
        }
    }
    DeviceGuard(const DeviceGuard&) = delete;
    DeviceGuard& operator=(const DeviceGuard&) = delete;

private:
    int previous_ = -1;
};

Status cudaError(cudaError_t err, std::string_view what) {
    const StatusCode code =
        err == cudaErrorMemoryAllocation ? StatusCode::kResourceExhausted : StatusCode::kInternal;
    core::logger("kernels").error("{}: {}", what, cudaText(err));
    return STRATA_ERROR(code, "{}: {}", what, cudaText(err));
}

void freeDevice(std::byte* ptr, std::size_t /*size_bytes*/) noexcept {
    logRelease(cudaFree(ptr), "cudaFree");
}
void freePinned(std::byte* ptr, std::size_t /*size_bytes*/) noexcept {
    logRelease(cudaFreeHost(ptr), "cudaFreeHost");
}

void unregisterPinned(std::byte* ptr, std::size_t /*size_bytes*/) noexcept {
    logRelease(cudaHostUnregister(ptr), "cudaHostUnregister");
}

class CudaEvent final : public Event {
public:
    CudaEvent(int device, cudaEvent_t event) noexcept : device_(device), event_(event) {}
    ~CudaEvent() override {
        DeviceGuard guard(device_);
        logRelease(cudaEventDestroy(event_), "cudaEventDestroy");
    }
    CudaEvent(const CudaEvent&) = delete;
    CudaEvent& operator=(const CudaEvent&) = delete;

    // A failed event counts as finished, so that wait() reports the failure instead of hanging.
    bool query() override { return cudaEventQuery(event_) != cudaErrorNotReady; }
    Status wait() override {
        cudaError_t err = cudaEventSynchronize(event_);
        if (err != cudaSuccess) return cudaError(err, "cudaEventSynchronize");
        return Status::ok();
    }
    Status blockStream(void* native_stream) override {
        cudaError_t err = cudaStreamWaitEvent(static_cast<cudaStream_t>(native_stream), event_, 0);
        if (err != cudaSuccess) return cudaError(err, "cudaStreamWaitEvent");
        return Status::ok();
    }

    Result<double> secondsSince(Event& start) override {
        auto* begin = dynamic_cast<CudaEvent*>(&start);
        if (begin == nullptr || !begin->timed_ || !timed_) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "secondsSince needs two events of Stream::recordTimed()");
        }
        DeviceGuard guard(device_);
        float ms = 0;
        cudaError_t err = cudaEventElapsedTime(&ms, begin->event_, event_);
        if (err == cudaErrorNotReady) {
            return STRATA_ERROR(StatusCode::kFailedPrecondition,
                                "secondsSince: an event is not complete yet");
        }
        if (err != cudaSuccess) return cudaError(err, "cudaEventElapsedTime");
        return static_cast<double>(ms) * 1e-3;
    }

    cudaEvent_t native() const noexcept { return event_; }
    void setTimed() noexcept { timed_ = true; }

private:
    int device_;
    cudaEvent_t event_;
    bool timed_ = false;
};

Result<EventPtr> recordEvent(int device, cudaStream_t stream, bool timed = false) {
    cudaEvent_t event = nullptr;
    cudaError_t err =
        cudaEventCreateWithFlags(&event, timed ? cudaEventDefault : cudaEventDisableTiming);
    if (err != cudaSuccess) return cudaError(err, "cudaEventCreateWithFlags");
    auto owner = std::make_shared<CudaEvent>(device, event);
    if (timed) owner->setTimed();
    err = cudaEventRecord(event, stream);
    if (err != cudaSuccess) return cudaError(err, "cudaEventRecord");
    return EventPtr(std::move(owner));
}

// Per-job staging of the layer pointer table and the page list: packed in pinned memory, copied
// asynchronously to device memory, read by the kernel. A slot is reused only after its `done`
// event (recorded after the kernel) has completed, so neither buffer is overwritten in flight.
struct StagingSlot {
    std::byte* host = nullptr;    // pinned
    std::byte* device = nullptr;  // device memory
    std::size_t capacity = 0;
    cudaEvent_t done = nullptr;
    bool in_use = false;

    void release() noexcept {
        if (host != nullptr) logRelease(cudaFreeHost(host), "cudaFreeHost");
        if (device != nullptr) logRelease(cudaFree(device), "cudaFree");
        host = nullptr;
        device = nullptr;
        capacity = 0;
    }
};

constexpr std::size_t kMinStagingBytes = 4096;
constexpr std::size_t kMaxStagingSlots = 32;

class CudaStream final : public Stream {
public:
    static Result<std::unique_ptr<Stream>> create(int device, const CopyTuning& tuning,
                                                  bool high_priority) {
        DeviceGuard guard(device);
        int least = 0;
        int greatest = 0;
        cudaError_t err = cudaDeviceGetStreamPriorityRange(&least, &greatest);
        if (err != cudaSuccess) return cudaError(err, "cudaDeviceGetStreamPriorityRange");
        cudaStream_t stream = nullptr;
        err = cudaStreamCreateWithPriority(&stream, cudaStreamNonBlocking,
                                           high_priority ? greatest : least);
        if (err != cudaSuccess) return cudaError(err, "cudaStreamCreateWithPriority");
        return std::unique_ptr<Stream>(new CudaStream(device, stream, tuning));
    }

    // Waits for queued work (it reads the staging slots and caller memory), then releases.
    ~CudaStream() override {
        DeviceGuard guard(device_);
        logRelease(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
        if (aux_ != nullptr) {
            logRelease(cudaStreamSynchronize(aux_), "cudaStreamSynchronize");
            logRelease(cudaStreamDestroy(aux_), "cudaStreamDestroy");
        }
        for (std::byte* slot : staging_) {
            if (slot != nullptr) logRelease(cudaFree(slot), "cudaFree");
        }
        for (cudaEvent_t e : {start_, aux_done_, loaded_[0], loaded_[1], freed_[0], freed_[1]}) {
            if (e != nullptr) logRelease(cudaEventDestroy(e), "cudaEventDestroy");
        }
        for (StagingSlot& slot : slots_) {
            slot.release();
            if (slot.done != nullptr) logRelease(cudaEventDestroy(slot.done), "cudaEventDestroy");
        }
        logRelease(cudaStreamDestroy(stream_), "cudaStreamDestroy");
    }

    Status enqueueCopy(CopyJob job) override {
        STRATA_RETURN_IF_ERROR(validateCopy(job.geometry, job.device, job.host, job.pages,
                                            job.layer_begin, job.layer_end));
        if (job.pages.empty()) return Status::ok();
        DeviceGuard guard(device_);
        const CopyPath path = choosePath(job);
        if (path == CopyPath::kCopyEngine) return enqueueCopyEngine(job);
        if (path == CopyPath::kStaged) return enqueueStaged(job);
        return enqueueKernel(job, path, stream_);
    }

    // One cudaMemcpyAsync (device to device) per (buffer, layer, run of moves whose source and
    // destination pages both follow on): each page of one plane is P * row_bytes contiguous bytes
    // (packed rows), or P rows a stride apart (one cudaMemcpy2DAsync of the run's rows).
    // Validation rules out a page that is both read and written, so the order of the moves does
    // not matter and they can be sorted into runs.
    Status enqueueDeviceCopy(const PoolGeometry& geometry, const DeviceView& device,
                             std::span<const DevicePageMove> moves, std::uint32_t layer_begin,
                             std::uint32_t layer_end) override {
        STRATA_RETURN_IF_ERROR(validateDeviceCopy(geometry, device, moves, layer_begin, layer_end));
        if (moves.empty()) return Status::ok();
        std::vector<DevicePageMove> sorted(moves.begin(), moves.end());
        std::sort(
            sorted.begin(), sorted.end(), [](const DevicePageMove& a, const DevicePageMove& b) {
                return a.src_page != b.src_page ? a.src_page < b.src_page : a.dst_page < b.dst_page;
            });
        struct Run {
            std::uint32_t src_page;
            std::uint32_t dst_page;
            std::uint32_t num_pages;
        };
        std::vector<Run> runs;
        for (const DevicePageMove& m : sorted) {
            if (!runs.empty() && runs.back().src_page + runs.back().num_pages == m.src_page &&
                runs.back().dst_page + runs.back().num_pages == m.dst_page) {
                ++runs.back().num_pages;
            } else {
                runs.push_back({m.src_page, m.dst_page, 1});
            }
        }
        const std::size_t chunk = std::size_t{geometry.page_size} * geometry.row_bytes;
        const std::size_t stride = device.rowStride(geometry.row_bytes);
        const std::size_t page_span = std::size_t{geometry.page_size} * stride;
        DeviceGuard guard(device_);
        for (std::uint32_t b = 0; b < geometry.num_buffers; ++b) {
            for (std::uint32_t l = layer_begin; l < layer_end; ++l) {
                std::byte* plane = device.layer_ptrs[std::size_t{b} * geometry.num_layers + l];
                for (const Run& r : runs) {
                    std::byte* dst = plane + std::size_t{r.dst_page} * page_span;
                    const std::byte* src = plane + std::size_t{r.src_page} * page_span;
                    const cudaError_t err =
                        stride == geometry.row_bytes
                            ? cudaMemcpyAsync(dst, src, std::size_t{r.num_pages} * chunk,
                                              cudaMemcpyDeviceToDevice, stream_)
                            : cudaMemcpy2DAsync(dst, stride, src, stride, geometry.row_bytes,
                                                std::size_t{r.num_pages} * geometry.page_size,
                                                cudaMemcpyDeviceToDevice, stream_);
                    if (err != cudaSuccess) {
                        return cudaError(err, "cudaMemcpyAsync (device page copy)");
                    }
                }
            }
        }
        return Status::ok();
    }

    Result<EventPtr> record() override {
        DeviceGuard guard(device_);
        return recordEvent(device_, stream_);
    }
    Result<EventPtr> recordTimed() override {
        DeviceGuard guard(device_);
        return recordEvent(device_, stream_, /*timed=*/true);
    }

    Status waitFor(const EventPtr& event) override {
        auto* cuda_event = dynamic_cast<CudaEvent*>(event.get());
        if (cuda_event == nullptr) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "waitFor needs an event of the cuda back end");
        }
        DeviceGuard guard(device_);
        cudaError_t err = cudaStreamWaitEvent(stream_, cuda_event->native(), 0);
        if (err != cudaSuccess) return cudaError(err, "cudaStreamWaitEvent");
        return Status::ok();
    }

    Status waitForNative(void* native_stream) override {
        DeviceGuard guard(device_);
        // A one-off event: destroying it once the wait is queued is allowed (CUDA releases it
        // when the recorded work completes), and the wait keeps its place in this stream.
        STRATA_ASSIGN_OR_RETURN(EventPtr event,
                                recordEvent(device_, static_cast<cudaStream_t>(native_stream)));
        return waitFor(event);
    }

    Status synchronize() override {
        DeviceGuard guard(device_);
        cudaError_t err = cudaStreamSynchronize(stream_);
        if (err != cudaSuccess) return cudaError(err, "cudaStreamSynchronize");
        return Status::ok();
    }

    void* nativeHandle() const noexcept override { return stream_; }
    CopyPlan lastPlan() const noexcept override { return last_plan_; }

private:
    CudaStream(int device, cudaStream_t stream, const CopyTuning& tuning) noexcept
        : device_(device), stream_(stream), tuning_(tuning) {}

    // The kernel path on `stream` (this stream, or the staged path's second stream).
    Status enqueueKernel(const CopyJob& job, CopyPath path, cudaStream_t stream) {
        STRATA_ASSIGN_OR_RETURN(std::byte * host_base, deviceAddressOfHost(job.host.base));

        const PoolGeometry& g = job.geometry;
        bool aligned = (reinterpret_cast<std::uintptr_t>(host_base) & 15u) == 0;
        for (std::size_t i = 0; i < std::size_t{g.num_buffers} * g.num_layers; ++i) {
            aligned =
                aligned && (reinterpret_cast<std::uintptr_t>(job.device.layer_ptrs[i]) & 15u) == 0;
        }
        const std::size_t table_bytes =
            std::size_t{g.num_buffers} * g.num_layers * sizeof(std::byte*);
        const std::size_t pages_bytes = job.pages.size() * 2 * sizeof(std::uint32_t);
        STRATA_ASSIGN_OR_RETURN(StagingSlot * slot, acquireSlot(table_bytes + pages_bytes));

        std::memcpy(slot->host, job.device.layer_ptrs, table_bytes);
        auto* staged_pages = reinterpret_cast<std::uint32_t*>(slot->host + table_bytes);
        for (std::size_t i = 0; i < job.pages.size(); ++i) {
            staged_pages[2 * i] = job.pages[i].device_page;
            staged_pages[2 * i + 1] = job.pages[i].host_page;
        }
        cudaError_t err = cudaMemcpyAsync(slot->device, slot->host, table_bytes + pages_bytes,
                                          cudaMemcpyHostToDevice, stream);
        if (err != cudaSuccess) return cudaError(err, "cudaMemcpyAsync (copy job staging)");

        CudaCopyParams params;
        params.layer_ptrs = reinterpret_cast<std::byte* const*>(slot->device);
        params.pages = reinterpret_cast<const std::uint32_t*>(slot->device + table_bytes);
        params.num_pages = static_cast<std::uint32_t>(job.pages.size());
        params.host_base = host_base;
        params.host_capacity_tokens = job.host.capacity_tokens;
        params.host_layout = static_cast<std::uint32_t>(job.host.layout);
        params.num_layers = g.num_layers;
        params.num_buffers = g.num_buffers;
        params.page_size = g.page_size;
        params.row_bytes = g.row_bytes;
        params.dev_stride = job.device.rowStride(g.row_bytes);
        params.layer_begin = job.layer_begin;
        params.layer_end = job.layer_end;
        params.device_to_host = job.direction == Direction::kDeviceToHost;
        const bool bulk = path == CopyPath::kKernelBulk && bulkCopyPossible(params, aligned);
        CudaKernelKnobs knobs;
        knobs.max_blocks = tuning_.max_blocks;
        knobs.warp_threads = tuning_.warp_threads;
        knobs.warp_unroll = tuning_.warp_loads_in_flight;
        knobs.bulk_pipes = tuning_.bulk_pipes;
        knobs.bulk_stage_bytes = tuning_.bulk_stage_bytes;
        const CudaKernelPlan plan = planCopyKernel(params, bulk, knobs);
        last_plan_ = {bulk ? CopyPath::kKernelBulk : CopyPath::kKernelWarp, plan.blocks};
        const auto launch = static_cast<cudaError_t>(launchCopyPages(params, plan, stream));
        // The staging memcpy is queued whatever the launch did: guard the slot until it is done.
        slot->in_use = true;
        err = cudaEventRecord(slot->done, stream);
        if (launch != cudaSuccess) return cudaError(launch, "transfer kernel launch");
        if (err != cudaSuccess) return cudaError(err, "cudaEventRecord (staging slot)");
        return Status::ok();
    }

    // kAuto's choice, or the job's or the tuning's forced path where it can run the job.
    CopyPath choosePath(const CopyJob& job) const {
        const PoolGeometry& g = job.geometry;
        const bool h2d = job.direction == Direction::kHostToDevice;
        const bool whole_pages = job.host.layout != HostLayout::kLayerFirst &&
                                 job.layer_begin == 0 && job.layer_end == g.num_layers &&
                                 g.bytesPerPage() <= tuning_.staging_slot_bytes;
        CopyPath path = job.path != CopyPath::kAuto ? job.path : tuning_.path;
        if (path == CopyPath::kStaged && !whole_pages) path = CopyPath::kAuto;
        if (path != CopyPath::kAuto) return path;
        const std::size_t staged_min =
            h2d ? tuning_.staged_min_page_h2d : tuning_.staged_min_page_d2h;
        if (whole_pages && staged_min > 0 && g.bytesPerPage() >= staged_min) {
            return CopyPath::kStaged;
        }
        const std::size_t chunk_bytes = std::size_t{g.page_size} * g.row_bytes;
        const std::size_t threshold =
            h2d ? tuning_.copy_engine_min_chunk_h2d : tuning_.copy_engine_min_chunk_d2h;
        const bool contiguous = job.host.layout != HostLayout::kPageFirst &&
                                job.device.rowStride(g.row_bytes) == g.row_bytes;
        if (!contiguous || threshold == 0) return h2d ? tuning_.kernel_h2d : tuning_.kernel_d2h;
        // The copy engines' cost is per entry: what counts is the mean entry after joining. In
        // a layer_first host pool, pages that follow on both sides make one entry per layer's
        // buffer (a stored prefix loaded back into consecutive device pages: megabytes each).
        std::size_t entries = 1;
        if (job.host.layout == HostLayout::kLayerFirst) {
            for (std::size_t i = 1; i < job.pages.size(); ++i) {
                const PageCopy& a = job.pages[i - 1];
                const PageCopy& b = job.pages[i];
                if (b.device_page != a.device_page + 1 || b.host_page != a.host_page + 1) {
                    ++entries;
                }
            }
        } else {
            entries = job.pages.size();
        }
        const std::size_t mean_entry = chunk_bytes * job.pages.size() / entries;
        return mean_entry >= threshold ? CopyPath::kCopyEngine
                                       : (h2d ? tuning_.kernel_h2d : tuning_.kernel_d2h);
    }

    // Creates the staged path's second stream, events and two device slots on first use.
    Status ensureStaging() {
        if (aux_ != nullptr) return Status::ok();
        int least = 0;
        int greatest = 0;
        cudaError_t err = cudaDeviceGetStreamPriorityRange(&least, &greatest);
        if (err != cudaSuccess) return cudaError(err, "cudaDeviceGetStreamPriorityRange");
        int priority = 0;
        err = cudaStreamGetPriority(stream_, &priority);
        if (err != cudaSuccess) return cudaError(err, "cudaStreamGetPriority");
        for (cudaEvent_t* e :
             {&start_, &aux_done_, &loaded_[0], &loaded_[1], &freed_[0], &freed_[1]}) {
            err = cudaEventCreateWithFlags(e, cudaEventDisableTiming);
            if (err != cudaSuccess) return cudaError(err, "cudaEventCreateWithFlags (staged)");
        }
        for (std::byte*& slot : staging_) {
            void* p = nullptr;
            err = cudaMalloc(&p, tuning_.staging_slot_bytes);
            if (err != cudaSuccess) return cudaError(err, "cudaMalloc (staging slot)");
            slot = static_cast<std::byte*>(p);
        }
        cudaStream_t aux = nullptr;
        err = cudaStreamCreateWithPriority(&aux, cudaStreamNonBlocking, priority);
        if (err != cudaSuccess) return cudaError(err, "cudaStreamCreateWithPriority (staged)");
        aux_ = aux;
        return Status::ok();
    }

    // One copy-engine batch between whole host page blobs of `pages` and staging slot `slot`
    // (page i of the batch at i * page_bytes), on this stream.
    Status stagedBlobs(const CopyJob& job, std::span<const PageCopy> pages, std::byte* slot) {
        const std::size_t page_bytes = job.geometry.bytesPerPage();
        const bool h2d = job.direction == Direction::kHostToDevice;
        ce_dsts_.clear();
        ce_srcs_.clear();
        for (std::size_t i = 0; i < pages.size(); ++i) {
            std::byte* host = job.host.base + std::size_t{pages[i].host_page} * page_bytes;
            std::byte* staged = slot + i * page_bytes;
            ce_dsts_.push_back(h2d ? staged : host);
            ce_srcs_.push_back(h2d ? host : staged);
        }
        ce_sizes_.assign(ce_dsts_.size(), page_bytes);
        cudaMemcpyAttributes attrs{};
        attrs.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
        attrs.flags = cudaMemcpyFlagPreferOverlapWithCompute;
        std::size_t attrs_index = 0;
        cudaError_t err = cudaMemcpyBatchAsync(
            reinterpret_cast<void* const*>(ce_dsts_.data()),
            reinterpret_cast<const void* const*>(ce_srcs_.data()), ce_sizes_.data(),
            ce_dsts_.size(), &attrs, &attrs_index, 1, stream_);
        if (err != cudaSuccess) return cudaError(err, "cudaMemcpyBatchAsync (staged)");
        return Status::ok();
    }

    // kStaged: batches of whole pages alternate between two device slots. Load: copy engine
    // (this stream) host blobs -> slot, then the warp kernel (second stream) slot -> pool slots.
    // Backup: the kernel (second stream) pool -> slot, then the copy engine slot -> host blobs.
    // A slot is refilled only after the other stream has finished with its last batch; the job
    // completes on this stream (a load waits for the last re-layout).
    Status enqueueStaged(const CopyJob& job) {
        STRATA_RETURN_IF_ERROR(ensureStaging());
        const PoolGeometry& g = job.geometry;
        const bool h2d = job.direction == Direction::kHostToDevice;
        const std::size_t per_slot = tuning_.staging_slot_bytes / g.bytesPerPage();
        cudaError_t err = cudaEventRecord(start_, stream_);
        if (err == cudaSuccess) err = cudaStreamWaitEvent(aux_, start_, 0);
        if (err != cudaSuccess) return cudaError(err, "ordering the staged path's streams");
        CopyPlan kernel_plan;
        std::size_t batch = 0;
        for (std::size_t first = 0; first < job.pages.size(); first += per_slot, ++batch) {
            const std::size_t n = std::min(per_slot, job.pages.size() - first);
            const std::size_t s = batch % 2;
            const std::span<const PageCopy> pages(job.pages.data() + first, n);
            CopyJob relayout = job;  // the slot seen as a host pool of n pages in the job's layout
            relayout.host = HostView{staging_[s], job.host.layout, n * g.page_size};
            relayout.pages.resize(n);
            for (std::size_t i = 0; i < n; ++i) {
                relayout.pages[i] = {pages[i].device_page, static_cast<std::uint32_t>(i)};
            }
            if (h2d) {
                if (batch >= 2) err = cudaStreamWaitEvent(stream_, freed_[s], 0);
                if (err != cudaSuccess) return cudaError(err, "cudaStreamWaitEvent (staged)");
                STRATA_RETURN_IF_ERROR(stagedBlobs(job, pages, staging_[s]));
                err = cudaEventRecord(loaded_[s], stream_);
                if (err == cudaSuccess) err = cudaStreamWaitEvent(aux_, loaded_[s], 0);
                if (err != cudaSuccess) return cudaError(err, "ordering a staged batch");
                STRATA_RETURN_IF_ERROR(enqueueKernel(relayout, CopyPath::kKernelWarp, aux_));
                kernel_plan = last_plan_;
                err = cudaEventRecord(freed_[s], aux_);
            } else {
                if (batch >= 2) err = cudaStreamWaitEvent(aux_, freed_[s], 0);
                if (err != cudaSuccess) return cudaError(err, "cudaStreamWaitEvent (staged)");
                STRATA_RETURN_IF_ERROR(enqueueKernel(relayout, CopyPath::kKernelWarp, aux_));
                kernel_plan = last_plan_;
                err = cudaEventRecord(loaded_[s], aux_);
                if (err == cudaSuccess) err = cudaStreamWaitEvent(stream_, loaded_[s], 0);
                if (err != cudaSuccess) return cudaError(err, "ordering a staged batch");
                STRATA_RETURN_IF_ERROR(stagedBlobs(job, pages, staging_[s]));
                err = cudaEventRecord(freed_[s], stream_);
            }
            if (err != cudaSuccess) return cudaError(err, "cudaEventRecord (staged)");
        }
        // The job ends on this stream; the second stream's work is all before it.
        err = cudaEventRecord(aux_done_, aux_);
        if (err == cudaSuccess) err = cudaStreamWaitEvent(stream_, aux_done_, 0);
        if (err != cudaSuccess) return cudaError(err, "joining the staged path's streams");
        last_plan_ = {CopyPath::kStaged, kernel_plan.blocks};
        return Status::ok();
    }

    // The copy engines: one cudaMemcpyBatchAsync entry per contiguous piece (a chunk, or a row
    // in page_first or over strided device rows), pieces that continue the previous one on both
    // sides joined into it (consecutive pages of a layer_first host pool and of the device pool:
    // the driver's cost is per entry). The entry arrays are read during the call, so they need
    // no staging.
    Status enqueueCopyEngine(const CopyJob& job) {
        const PoolGeometry& g = job.geometry;
        const bool h2d = job.direction == Direction::kHostToDevice;
        const std::size_t stride = job.device.rowStride(g.row_bytes);
        const bool by_row = job.host.layout == HostLayout::kPageFirst || stride != g.row_bytes;
        const std::size_t chunk_bytes = std::size_t{g.page_size} * g.row_bytes;
        const std::size_t piece_bytes = by_row ? g.row_bytes : chunk_bytes;
        const std::uint32_t pieces_per_chunk = by_row ? g.page_size : 1;
        ce_dsts_.clear();
        ce_srcs_.clear();
        ce_sizes_.clear();
        for (std::uint32_t b = 0; b < g.num_buffers; ++b) {
            for (std::uint32_t l = job.layer_begin; l < job.layer_end; ++l) {
                // Joined only within one layer's buffer: two of them may be separate allocations
                // (an engine's tensors), which one copy must not span.
                const std::size_t first_of_layer = ce_dsts_.size();
                for (const PageCopy& pc : job.pages) {
                    std::byte* dev = job.device.layer_ptrs[b * g.num_layers + l] +
                                     std::size_t{pc.device_page} * g.page_size * stride;
                    for (std::uint32_t t = 0; t < pieces_per_chunk; ++t) {
                        std::byte* host =
                            job.host.base +
                            hostRowOffset(g, job.host, b, l,
                                          std::size_t{pc.host_page} * g.page_size + t);
                        std::byte* d = dev + std::size_t{t} * stride;
                        std::byte* dst = h2d ? d : host;
                        std::byte* src = h2d ? host : d;
                        if (ce_dsts_.size() > first_of_layer &&
                            ce_dsts_.back() + ce_sizes_.back() == dst &&
                            ce_srcs_.back() + ce_sizes_.back() == src) {
                            ce_sizes_.back() += piece_bytes;
                            continue;
                        }
                        ce_dsts_.push_back(dst);
                        ce_srcs_.push_back(src);
                        ce_sizes_.push_back(piece_bytes);
                    }
                }
            }
        }
        cudaMemcpyAttributes attrs{};
        attrs.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
        attrs.flags = cudaMemcpyFlagPreferOverlapWithCompute;
        std::size_t attrs_index = 0;
        constexpr std::size_t kMaxBatch = 65536;
        for (std::size_t first = 0; first < ce_dsts_.size(); first += kMaxBatch) {
            const std::size_t count = std::min(kMaxBatch, ce_dsts_.size() - first);
            cudaError_t err = cudaMemcpyBatchAsync(
                reinterpret_cast<void* const*>(ce_dsts_.data() + first),
                reinterpret_cast<const void* const*>(ce_srcs_.data() + first),
                ce_sizes_.data() + first, count, &attrs, &attrs_index, 1, stream_);
            if (err != cudaSuccess) return cudaError(err, "cudaMemcpyBatchAsync");
        }
        last_plan_ = {CopyPath::kCopyEngine, 0};
        return Status::ok();
    }

    // The kernel dereferences the host pool: it must be pinned (or managed) memory.
    static Result<std::byte*> deviceAddressOfHost(std::byte* host) {
        cudaPointerAttributes attr{};
        cudaError_t err = cudaPointerGetAttributes(&attr, host);
        if (err != cudaSuccess) return cudaError(err, "cudaPointerGetAttributes (host pool)");
        switch (attr.type) {
            case cudaMemoryTypeHost:
                if (attr.devicePointer != nullptr) {
                    return static_cast<std::byte*>(attr.devicePointer);
                }
                return host;  // unified addressing
            case cudaMemoryTypeManaged:
            case cudaMemoryTypeDevice:  // device staging seen as a host layout (striped loads)
                return host;
            default:
                return STRATA_ERROR(StatusCode::kInvalidArgument,
                                    "host pool memory {} is not pinned host memory (allocate it "
                                    "with Backend::allocateHost)",
                                    static_cast<const void*>(host));
        }
    }

    Result<StagingSlot*> acquireSlot(std::size_t bytes) {
        StagingSlot* slot = nullptr;
        for (StagingSlot& s : slots_) {
            if (!s.in_use || cudaEventQuery(s.done) == cudaSuccess) {
                s.in_use = false;
                slot = &s;
                if (s.capacity >= bytes) break;
            }
        }
        if (slot == nullptr && slots_.size() < kMaxStagingSlots) {
            StagingSlot fresh;
            cudaError_t err = cudaEventCreateWithFlags(&fresh.done, cudaEventDisableTiming);
            if (err != cudaSuccess) return cudaError(err, "cudaEventCreateWithFlags");
            slots_.push_back(fresh);
            slot = &slots_.back();
        }
        if (slot == nullptr) {  // every slot in flight: wait for the oldest one
            slot = &slots_[next_wait_];
            next_wait_ = (next_wait_ + 1) % slots_.size();
            cudaError_t err = cudaEventSynchronize(slot->done);
            if (err != cudaSuccess) return cudaError(err, "cudaEventSynchronize (staging slot)");
            slot->in_use = false;
        }
        if (slot->capacity < bytes) {
            slot->release();
            std::size_t capacity = std::max(kMinStagingBytes, std::bit_ceil(bytes));
            void* host = nullptr;
            cudaError_t err = cudaHostAlloc(&host, capacity, cudaHostAllocPortable);
            if (err != cudaSuccess) return cudaError(err, "cudaHostAlloc (staging)");
            slot->host = static_cast<std::byte*>(host);
            void* device = nullptr;
            err = cudaMalloc(&device, capacity);
            if (err != cudaSuccess) {
                slot->release();
                return cudaError(err, "cudaMalloc (staging)");
            }
            slot->device = static_cast<std::byte*>(device);
            slot->capacity = capacity;
        }
        return slot;
    }

    const int device_;
    cudaStream_t stream_;
    const CopyTuning tuning_;
    CopyPlan last_plan_;
    std::vector<StagingSlot> slots_;  // grows only while every slot is in flight
    std::size_t next_wait_ = 0;
    std::vector<std::byte*> ce_dsts_;  // copy-engine entry arrays, reused between jobs
    std::vector<std::byte*> ce_srcs_;
    std::vector<std::size_t> ce_sizes_;
    // kStaged (created on first use, released after the streams drain).
    cudaStream_t aux_ = nullptr;
    std::byte* staging_[2] = {nullptr, nullptr};  // device slots of tuning_.staging_slot_bytes
    cudaEvent_t start_ = nullptr;                 // this stream's work before the job
    cudaEvent_t aux_done_ = nullptr;              // the second stream's work of the job
    cudaEvent_t loaded_[2] = {nullptr, nullptr};  // slot filled (by either side)
    cudaEvent_t freed_[2] = {nullptr, nullptr};   // slot emptied (by either side)
};

class CudaBackend final : public Backend {
public:
    explicit CudaBackend(const BackendOptions& options) noexcept
        : device_(options.device_index),
          tuning_(options.tuning),
          high_priority_(options.high_priority_streams) {}

    BackendKind kind() const noexcept override { return BackendKind::kCuda; }

    Result<Memory> allocateDevice(std::size_t size_bytes) override {
        if (size_bytes == 0) return Memory();
        DeviceGuard guard(device_);
        void* p = nullptr;
        cudaError_t err = cudaMalloc(&p, size_bytes);
        if (err != cudaSuccess) {
            return cudaError(err, fmt::format("cudaMalloc of {} bytes", size_bytes));
        }
        Memory memory(static_cast<std::byte*>(p), size_bytes, &freeDevice);
        // Streams are non-blocking, so finish the fill before anyone can queue work on it.
        err = cudaMemset(p, 0, size_bytes);
        if (err == cudaSuccess) err = cudaStreamSynchronize(nullptr);
        if (err != cudaSuccess) return cudaError(err, "zero-filling device memory");
        return memory;
    }

    Result<Memory> allocateHost(std::size_t size_bytes) override {
        if (size_bytes == 0) return Memory();
        DeviceGuard guard(device_);
        void* p = nullptr;
        cudaError_t err =
            cudaHostAlloc(&p, size_bytes, cudaHostAllocPortable | cudaHostAllocMapped);
        if (err != cudaSuccess) {
            return cudaError(err, fmt::format("cudaHostAlloc of {} bytes", size_bytes));
        }
        std::memset(p, 0, size_bytes);
        return Memory(static_cast<std::byte*>(p), size_bytes, &freePinned);
    }

    Result<Memory> registerHost(std::byte* ptr, std::size_t size_bytes) override {
        if (ptr == nullptr || size_bytes == 0) {
            return STRATA_ERROR(StatusCode::kInvalidArgument, "registerHost of empty memory");
        }
        DeviceGuard guard(device_);
        cudaError_t err =
            cudaHostRegister(ptr, size_bytes, cudaHostRegisterPortable | cudaHostRegisterMapped);
        if (err != cudaSuccess) {
            return cudaError(err, fmt::format("cudaHostRegister of {} bytes", size_bytes));
        }
        return Memory(ptr, size_bytes, &unregisterPinned);
    }

    Result<std::unique_ptr<Stream>> createStream() override {
        return CudaStream::create(device_, tuning_, high_priority_);
    }

    bool deviceIsHostAddressable() const noexcept override { return false; }

    Status copyToDevice(std::byte* device_dst, const std::byte* host_src,
                        std::size_t size_bytes) override {
        return copy(device_dst, host_src, size_bytes, cudaMemcpyHostToDevice);
    }
    Status copyFromDevice(std::byte* host_dst, const std::byte* device_src,
                          std::size_t size_bytes) override {
        return copy(host_dst, device_src, size_bytes, cudaMemcpyDeviceToHost);
    }

private:
    Status copy(std::byte* dst, const std::byte* src, std::size_t size_bytes, cudaMemcpyKind kind) {
        if (size_bytes == 0) return Status::ok();
        DeviceGuard guard(device_);
        cudaError_t err = cudaMemcpy(dst, src, size_bytes, kind);
        if (err != cudaSuccess) return cudaError(err, "cudaMemcpy");
        // From pageable memory cudaMemcpy may return before its DMA has landed, and copy streams
        // are non-blocking (they do not wait for the legacy stream): finish it here, so that a
        // copy queued next reads the new bytes.
        err = cudaStreamSynchronize(nullptr);
        if (err != cudaSuccess) return cudaError(err, "cudaStreamSynchronize (cudaMemcpy)");
        return Status::ok();
    }

    const int device_;
    const CopyTuning tuning_;
    const bool high_priority_;
};

}  // namespace

int cudaDeviceCount() noexcept {
    // Without a driver this fails (cudaErrorInsufficientDriver, 35) and leaves count untouched.
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();  // clear the (non-sticky) error
        return 0;
    }
    return count;
}

Result<std::unique_ptr<Backend>> createCudaBackend(const BackendOptions& options) {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        cudaGetLastError();
        core::logger("kernels").error("no usable cuda device: {}", cudaText(err));
        return STRATA_ERROR(StatusCode::kUnavailable, "no usable cuda device: {}", cudaText(err));
    }
    if (count == 0) {
        return STRATA_ERROR(StatusCode::kUnavailable, "no cuda device is visible");
    }
    if (options.device_index < 0 || options.device_index >= count) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "cuda device index {} out of range ({} devices visible)",
                            options.device_index, count);
    }
    DeviceGuard guard(options.device_index);
    err = cudaFree(nullptr);  // creates the primary context now, not in the first copy
    if (err != cudaSuccess) {
        core::logger("kernels").error("cannot initialise cuda device {}: {}", options.device_index,
                                      cudaText(err));
        return STRATA_ERROR(StatusCode::kUnavailable, "cannot initialise cuda device {}: {}",
                            options.device_index, cudaText(err));
    }
    return std::unique_ptr<Backend>(std::make_unique<CudaBackend>(options));
}

}  // namespace strata::kernels::detail
