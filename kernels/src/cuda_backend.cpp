// CUDA back end: cudaMalloc device memory, pinned (portable, mapped) host memory, non-blocking
// streams, timing-free events, and the transfer kernel of transfer_cuda.cu. Every call selects
// the back end's device with a guard that restores the caller's current device.
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cstring>
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

    cudaEvent_t native() const noexcept { return event_; }

private:
    int device_;
    cudaEvent_t event_;
};

Result<EventPtr> recordEvent(int device, cudaStream_t stream) {
    cudaEvent_t event = nullptr;
    cudaError_t err = cudaEventCreateWithFlags(&event, cudaEventDisableTiming);
    if (err != cudaSuccess) return cudaError(err, "cudaEventCreateWithFlags");
    auto owner = std::make_shared<CudaEvent>(device, event);
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
    static Result<std::unique_ptr<Stream>> create(int device) {
        DeviceGuard guard(device);
        cudaStream_t stream = nullptr;
        cudaError_t err = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
        if (err != cudaSuccess) return cudaError(err, "cudaStreamCreateWithFlags");
        return std::unique_ptr<Stream>(new CudaStream(device, stream));
    }

    // Waits for queued work (it reads the staging slots and caller memory), then releases.
    ~CudaStream() override {
        DeviceGuard guard(device_);
        logRelease(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
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
        STRATA_ASSIGN_OR_RETURN(std::byte * host_base, deviceAddressOfHost(job.host.base));

        const PoolGeometry& g = job.geometry;
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
                                          cudaMemcpyHostToDevice, stream_);
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
        params.layer_begin = job.layer_begin;
        params.layer_end = job.layer_end;
        params.device_to_host = job.direction == Direction::kDeviceToHost;
        const cudaError_t launch = static_cast<cudaError_t>(launchCopyPages(params, stream_));
        // The staging memcpy is queued whatever the launch did: guard the slot until it is done.
        slot->in_use = true;
        err = cudaEventRecord(slot->done, stream_);
        if (launch != cudaSuccess) return cudaError(launch, "transfer kernel launch");
        if (err != cudaSuccess) return cudaError(err, "cudaEventRecord (staging slot)");
        return Status::ok();
    }

    Result<EventPtr> record() override {
        DeviceGuard guard(device_);
        return recordEvent(device_, stream_);
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

    Status synchronize() override {
        DeviceGuard guard(device_);
        cudaError_t err = cudaStreamSynchronize(stream_);
        if (err != cudaSuccess) return cudaError(err, "cudaStreamSynchronize");
        return Status::ok();
    }

private:
    CudaStream(int device, cudaStream_t stream) noexcept : device_(device), stream_(stream) {}

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
    std::vector<StagingSlot> slots_;  // grows only while every slot is in flight
    std::size_t next_wait_ = 0;
};

class CudaBackend final : public Backend {
public:
    explicit CudaBackend(int device) noexcept : device_(device) {}

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

    Result<std::unique_ptr<Stream>> createStream() override { return CudaStream::create(device_); }

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
        return Status::ok();
    }

    const int device_;
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
    return std::unique_ptr<Backend>(std::make_unique<CudaBackend>(options.device_index));
}

}  // namespace strata::kernels::detail
