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
#include <span>
#include <string_view>
#include <vector>

#include "strata/core/status.h"
#include "strata/kernels/transfer.h"

namespace strata::kernels {

enum class BackendKind : std::uint8_t { kCpu, kCuda };
inline constexpr core::EnumNames<BackendKind, 2> kBackendKindNames{
    "back end", {{{BackendKind::kCpu, "cpu"}, {BackendKind::kCuda, "cuda"}}}};
constexpr const auto& enumNames(BackendKind) noexcept { return kBackendKindNames; }
constexpr std::string_view backendKindName(BackendKind kind) noexcept {
    return core::enumName(kind);
}

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
    // Seconds from `start` to this event, both complete and both made by Stream::recordTimed() of
    // the same back end (the CUDA back end's other events carry no time): how long the stream
    // spent between the two marks, e.g. busy with one batch of copies. kFailedPrecondition when
    // either is not complete; kInvalidArgument for an event that carries no time.
    virtual Result<double> secondsSince(Event& start);
};
using EventPtr = std::shared_ptr<Event>;

// How a copy job runs on the CUDA back end (the CPU back end always runs copyPagesCpu).
enum class CopyPath : std::uint8_t {
    kAuto,        // chosen per job from chunk size, layout and alignment (CopyTuning)
    kKernelWarp,  // SM kernel, one warp per piece, 16/8/4/1-byte accesses: any row size
    kKernelBulk,  // SM kernel, bulk async copies (TMA) through shared memory: 16-byte rows
    kCopyEngine,  // cudaMemcpyBatchAsync, one entry per chunk: no SM; contiguous host chunks
    // Page blobs through device staging: one copy-engine entry per whole page (page_first and
    // page_first_direct jobs over every layer, where a page is one contiguous host blob) into
    // (or out of) a device staging slot, and the warp kernel re-lays pages out on the device,
    // pipelined over two slots on a second stream. Other jobs fall back to kAuto's choice.
    kStaged,
};
inline constexpr core::EnumNames<CopyPath, 5> kCopyPathNames{
    "copy path",
    {{{CopyPath::kAuto, "auto"},
      {CopyPath::kKernelWarp, "kernel_warp"},
      {CopyPath::kKernelBulk, "kernel_bulk"},
      {CopyPath::kCopyEngine, "copy_engine"},
      {CopyPath::kStaged, "staged"}}}};
constexpr const auto& enumNames(CopyPath) noexcept { return kCopyPathNames; }
constexpr std::string_view copyPathName(CopyPath path) noexcept { return core::enumName(path); }

// One copy job: `pages` of one pool, layers [layer_begin, layer_end), one direction.
struct CopyJob {
    PoolGeometry geometry;
    DeviceView device;
    HostView host;
    std::vector<PageCopy> pages;
    std::uint32_t layer_begin = 0;
    std::uint32_t layer_end = 0;
    Direction direction = Direction::kDeviceToHost;
    // Path for this job only (CUDA back end); kAuto follows the stream's CopyTuning. A path that
    // cannot run this job (kStaged on a layer subset, kKernelBulk on unaligned rows) falls back
    // as under kAuto.
    CopyPath path = CopyPath::kAuto;
};

// Tuning of the CUDA copy paths. The defaults come from measurements on an H200 (README,
// Performance): kernels stay on at most `max_blocks` SMs so that model kernels keep running.
struct CopyTuning {
    CopyPath path = CopyPath::kAuto;
    std::uint32_t max_blocks = 8;  // CTAs of a copy kernel, at most one per SM
    // kAuto: host-to-device jobs whose copy-engine entries (chunks contiguous in the host layout,
    // one page of one layer, joined where consecutive pages follow on both sides, as a stored
    // prefix in a layer_first host pool does) are at least this big on average go to the copy
    // engine (0 = never). From 256 KiB: there the copy engine matches the warp kernel alone
    // (44.7 vs 44.0 GB/s, 50.7 vs 51.1 on another H200), at 64 KiB it moved 28-40 GB/s against
    // 48-51; and beside a model it needs no SM: a Llama-3-8B 32k-token host hit from a
    // layer_first pool (one 64 MiB entry per layer's K or V) took 85.5 ms on the copy engine
    // (1.06x of the overlapped ideal), 107 ms on the warp kernel from page_first.
    std::size_t copy_engine_min_chunk_h2d = std::size_t{256} << 10;
    // Device-to-host from 256 KiB too: slower alone than the warp kernel (50.1 vs 52.3 GB/s on the
    // H200) but a backup on the copy engine beside a load on it moved 85.7 GB/s against 59.4
    // with both on SMs (SM-issued PCIe traffic of both directions tops out near 60-66 GB/s).
    std::size_t copy_engine_min_chunk_d2h = std::size_t{256} << 10;
    // kAuto: page_first / page_first_direct jobs over every layer whose page blob (one page of
    // every layer and buffer) is at least this big go through device staging (kStaged; 0 = never).
    // Measured on the H200: 1 MiB blobs 52.0 (H2D) / 53.2 (D2H) GB/s against 49.0 / 52.4 on the
    // warp kernel, 4 MiB blobs 54.0 / 53.8 (the contiguous copy: 53.5 / 55.3); 256 KiB blobs
    // lose (42-47 H2D).
    std::size_t staged_min_page_h2d = std::size_t{1} << 20;
    std::size_t staged_min_page_d2h = std::size_t{1} << 20;
    // kStaged: bytes of each of the two device staging slots of a stream (allocated on first use;
    // a page blob larger than a slot falls back to the kernel).
    std::size_t staging_slot_bytes = std::size_t{32} << 20;
    // kAuto: the kernel used for everything else. The warp kernel: on an H200 it moves as much
    // as the bulk kernel (51 GB/s H2D, 52.5 D2H at 4-256 KiB chunks, 8 CTAs) but needs no shared
    // memory, so its CTAs fit beside model kernels (the bulk kernel's 192 KiB stages do not).
    CopyPath kernel_h2d = CopyPath::kKernelWarp;
    CopyPath kernel_d2h = CopyPath::kKernelWarp;
    // Threads per CTA of the warp kernel, and independent 16-byte loads in flight per lane before
    // its stores (4 or 8): 256 x 8 keeps the 256 KiB in flight of 512 x 4 (same bandwidth alone)
    // with half the warps per SM, so a model kernel sharing those SMs is slowed less (per-layer
    // overlap on the H200: 1.08-1.11x of ideal with 256-thread CTAs, 1.37-1.39x with 512).
    std::uint32_t warp_threads = 256;
    std::uint32_t warp_loads_in_flight = 8;
    std::uint32_t bulk_pipes = 4;            // pipelines (warps) per CTA of the bulk kernel
    std::uint32_t bulk_stage_bytes = 16384;  // shared-memory stage (largest unit) of a pipe
};

// What the last queued copy job of a stream ran as (for benchmarks and reports).
struct CopyPlan {
    CopyPath path = CopyPath::kAuto;
    std::uint32_t blocks = 0;  // CTAs of the kernel (SMs used at most); 0 on the copy engine
};

// An in-order work queue (a CUDA stream, or a CPU worker thread).
class Stream {
public:
    virtual ~Stream() = default;
    // Queues a copy after all earlier work. The job is validated first (kInvalidArgument, nothing
    // queued). Returns once queued; the copy finishes later.
    virtual Status enqueueCopy(CopyJob job) = 0;
    // Queues, after all earlier work, a copy inside one device pool of `moves` (each a whole
    // page: slots [src_page * P, +P) to [dst_page * P, +P), P = geometry.page_size) for layers
    // [layer_begin, layer_end): a request's private copy of a page the cache shares, such as a
    // Mamba state checkpoint that the request then advances. kInvalidArgument (nothing queued)
    // for a bad geometry or layer range, a page outside the pool, or a page that is both a
    // source and a destination. Returns once queued.
    virtual Status enqueueDeviceCopy(const PoolGeometry& geometry, const DeviceView& device,
                                     std::span<const DevicePageMove> moves,
                                     std::uint32_t layer_begin, std::uint32_t layer_end) = 0;
    // Records an event that completes when all work queued so far has finished.
    virtual Result<EventPtr> record() = 0;
    // As record(), for an event that also carries the time it completed (Event::secondsSince).
    // A little dearer on CUDA (a timing event): for marks around batches, not for every layer.
    virtual Result<EventPtr> recordTimed() = 0;
    // Later work on this stream waits for `event` (which may belong to another stream).
    virtual Status waitFor(const EventPtr& event) = 0;
    // Later work on this stream waits for all work queued so far on an engine's own stream
    // (cudaStream_t on the CUDA back end; nullptr: the legacy default stream). The CPU back end
    // has no such streams (an engine's writes there are done when it calls): a no-op.
    virtual Status waitForNative(void* native_stream) = 0;
    // Blocks until every queued piece of work has finished.
    virtual Status synchronize() = 0;
    // The cudaStream_t on the CUDA back end (for a worker that queues its own kernels after a
    // copy, and for timing); nullptr on CPU.
    virtual void* nativeHandle() const noexcept { return nullptr; }
    // How the last enqueueCopy ran.
    virtual CopyPlan lastPlan() const noexcept { return {}; }
};

// Queues `job` one layer at a time and records an event after each layer: events[i] completes
// when layer job.layer_begin + i has arrived, so the worker's layer L waits only for layer L
// (Event::blockStream on its compute stream). Fails as enqueueCopy; nothing is queued on failure
// of validation.
Result<std::vector<EventPtr>> enqueueLayerByLayer(Stream& stream, const CopyJob& job);

struct BackendOptions {
    int device_index = 0;         // CUDA device ordinal (after CUDA_VISIBLE_DEVICES)
    std::uint32_t jitter_us = 0;  // CPU back end: delay each queued job by a random 0..jitter_us
    std::uint64_t jitter_seed =
        0;              // seed of that delay (per rank, so ranks finish at different times)
    CopyTuning tuning;  // CUDA back end only
    // CUDA: copy streams get the highest priority, so that their few CTAs start before queued
    // model kernels fill the SMs.
    bool high_priority_streams = true;
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
    // Pins memory this process did not allocate (a segment of the node's shared window) for DMA:
    // cudaHostRegister (portable, mapped) on CUDA; nothing to do on CPU. The returned Memory is
    // the registration, not the bytes: destroying it unregisters and never frees. kInvalidArgument
    // for null or empty memory; CUDA's error text when it refuses.
    virtual Result<Memory> registerHost(std::byte* ptr, std::size_t size_bytes) = 0;
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
