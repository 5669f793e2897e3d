// Back ends: device memory, pinned host memory, streams and events, with one CPU and one CUDA
// implementation behind the same interface. The CPU back end stands in for a GPU: "device" memory
// is host memory, and each stream is a worker thread that runs its queued work in order, so copies
// finish later than they are issued, exactly as on a GPU stream.
// Ownership: Memory blocks, streams and events are move-only or shared owners; a Stream must be
// destroyed (or synchronized) before the memory its queued copies touch.
// Thread-safety: a Backend is safe to share; one Stream is used by one thread at a time; Event
// query/wait are safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "strata/core/status.h"
#include "strata/kernels/transfer.h"

namespace strata::kernels {

enum class BackendKind : std::uint8_t { kCpu, kCuda };
std::string_view backendKindName(BackendKind kind) noexcept;

// Owns bytes allocated by a back end (device or host). Move-only; frees on destruction.
class Memory {
public:
    using Free = void (*)(std::byte* ptr, std::size_t size_bytes) noexcept;
    Memory() noexcept = default;
    Memory(std::byte* ptr, std::size_t size_bytes, Free free_fn) noexcept
        : ptr_(ptr), size_(size_bytes), free_(free_fn) {}
    Memory(Memory&& other) noexcept;
    Memory& operator=(Memory&& other) noexcept;
    Memory(const Memory&) = delete;
    Memory& operator=(const Memory&) = delete;
    ~Memory();

    std::byte* data() const noexcept { return ptr_; }
    std::size_t size() const noexcept { return size_; }

private:
    std::byte* ptr_ = nullptr;
    std::size_t size_ = 0;
    Free free_ = nullptr;
};

// Completion marker recorded on a stream. Shared by the stream and its waiters.
class Event {
public:
    virtual ~Event() = default;
    // True once every piece of work queued on the stream before record() has finished. Never
    // blocks.
    virtual bool query() = 0;
    // Blocks the calling thread until query() is true. Fails when the copy failed
    // (kIoError/kInternal).
    virtual Status wait() = 0;
    // Makes work later submitted to `native_stream` (a cudaStream_t on the CUDA back end, ignored
    // on CPU, where this blocks like wait()) wait for this event, without blocking the host.
    virtual Status blockStream(void* native_stream) = 0;
};
using EventPtr = std::shared_ptr<Event>;

// One copy job: `pages` of one pool, layers [layer_begin, layer_end), one direction.
struct CopyJob {
    PoolGeometry geometry;
    DeviceView device;
    HostView host;
    std::vector<PageCopy> pages;
    std::uint32_t layer_begin = 0;
    std::uint32_t layer_end = 0;
    Direction direction = Direction::kDeviceToHost;
};

// An in-order work queue (a CUDA stream, or a CPU worker thread).
class Stream {
public:
    virtual ~Stream() = default;
    // Queues a copy after all earlier work. The job is validated first (kInvalidArgument, nothing
    // queued). Returns once queued; the copy finishes later.
    virtual Status enqueueCopy(CopyJob job) = 0;
    // Records an event that completes when all work queued so far has finished.
    virtual Result<EventPtr> record() = 0;
    // Later work on this stream waits for `event` (which may belong to another stream).
    virtual Status waitFor(const EventPtr& event) = 0;
    // Blocks until every queued piece of work has finished.
    virtual Status synchronize() = 0;
};

struct BackendOptions {
    int device_index = 0;         // CUDA device ordinal (after CUDA_VISIBLE_DEVICES)
    std::uint32_t jitter_us = 0;  // CPU back end: delay each queued job by a random 0..jitter_us
    std::uint64_t jitter_seed =
        0;  // seed of that delay (per rank, so ranks finish at different times)
};

class Backend {
public:
    virtual ~Backend() = default;

    // Creates a back end. kCuda fails with kNotSupported when the build has no CUDA, and with
    // kUnavailable when no GPU is visible (the message carries the CUDA error text).
    static Result<std::unique_ptr<Backend>> create(BackendKind kind, const BackendOptions& options);
    // True when a CUDA device is present and usable by this build.
    static bool cudaAvailable() noexcept;
    // Number of CUDA devices this process sees (after CUDA_VISIBLE_DEVICES); 0 without CUDA.
    static int cudaDeviceCount() noexcept;

    virtual BackendKind kind() const noexcept = 0;
    // Device memory (GPU memory, or plain host memory on CPU). Zero-filled. kResourceExhausted on
    // OOM.
    virtual Result<Memory> allocateDevice(std::size_t size_bytes) = 0;
    // Host memory for host pools: pinned (cudaHostAlloc) on CUDA, page-aligned on CPU. Zero-filled.
    virtual Result<Memory> allocateHost(std::size_t size_bytes) = 0;
    virtual Result<std::unique_ptr<Stream>> createStream() = 0;
    // True when device memory can be read and written by the host directly (CPU back end).
    virtual bool deviceIsHostAddressable() const noexcept = 0;
    // Copies bytes between device memory and host memory synchronously (for tests and for workers
    // that fill device slots from the host). dst/src are device or host pointers of this back end.
    virtual Status copyToDevice(std::byte* device_dst, const std::byte* host_src,
                                std::size_t size_bytes) = 0;
    virtual Status copyFromDevice(std::byte* host_dst, const std::byte* device_src,
                                  std::size_t size_bytes) = 0;
};

}  // namespace strata::kernels
