// CPU back end: "device" memory is plain aligned host memory, and each Stream is one worker thread
// draining a FIFO queue, so that copies complete after they are issued, in order, as on a GPU
// stream. Events are shared completion flags set by marker jobs in that queue.
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <new>
#include <optional>
#include <random>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "backend_impl.h"
#include "strata/core/hash.h"
#include "strata/core/log.h"

namespace strata::kernels::detail {
namespace {

constexpr std::size_t kCpuAlignment = 4096;

void freeAligned(std::byte* ptr, std::size_t /*size_bytes*/) noexcept { std::free(ptr); }

Result<Memory> allocateAligned(std::size_t size_bytes, const char* what) {
    if (size_bytes == 0) return Memory();
    const std::size_t rounded = (size_bytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
    void* p = std::aligned_alloc(kCpuAlignment, rounded);
    if (p == nullptr) {
        core::logger("kernels").error("cannot allocate {} bytes of {} memory", rounded, what);
        return STRATA_ERROR(StatusCode::kResourceExhausted, "cannot allocate {} bytes of {} memory",
                            rounded, what);
    }
    std::memset(p, 0, rounded);
    return Memory(static_cast<std::byte*>(p), size_bytes, &freeAligned);
}

// Completion state shared by a CpuEvent and the marker job that completes it.
struct EventState {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    Status status;  // the first failure of the stream before the marker, if any
    std::chrono::steady_clock::time_point done_at;  // when the stream reached the marker
};

class CpuEvent final : public Event {
public:
    explicit CpuEvent(std::shared_ptr<EventState> state) : state_(std::move(state)) {}

    bool query() override {
        std::lock_guard<std::mutex> lock(state_->mu);
        return state_->done;
    }
    Status wait() override {
        std::unique_lock<std::mutex> lock(state_->mu);
        state_->cv.wait(lock, [&] { return state_->done; });
        return state_->status;
    }
    // There is no device stream to defer: block like wait().
    Status blockStream(void* /*native_stream*/) override { return wait(); }
    // Every CPU event carries its time: the worker notes it when it reaches the marker.
    Result<double> secondsSince(Event& start) override {
        auto* begin = dynamic_cast<CpuEvent*>(&start);
        if (begin == nullptr) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "secondsSince needs an event of the cpu back end");
        }
        const auto at = [](EventState& s) -> std::optional<std::chrono::steady_clock::time_point> {
            std::lock_guard<std::mutex> lock(s.mu);
            if (!s.done) return std::nullopt;
            return s.done_at;
        };
        const auto t0 = at(*begin->state_);
        const auto t1 = at(*state_);
        if (!t0 || !t1) {
            return STRATA_ERROR(StatusCode::kFailedPrecondition,
                                "secondsSince: an event is not complete yet");
        }
        return std::chrono::duration<double>(*t1 - *t0).count();
    }

private:
    std::shared_ptr<EventState> state_;
};

class CpuStream final : public Stream {
public:
    static Result<std::unique_ptr<Stream>> create(const BackendOptions& options,
                                                  std::uint64_t ordinal) {
        std::unique_ptr<CpuStream> stream(new CpuStream(options, ordinal));
        try {
            stream->worker_ = std::thread([s = stream.get()] { s->run(); });
        } catch (const std::system_error& e) {
            return STRATA_ERROR(StatusCode::kResourceExhausted,
                                "cannot start a cpu stream worker thread: {}", e.what());
        }
        return std::unique_ptr<Stream>(std::move(stream));
    }

    // Drains everything queued (the copies touch memory the caller still owns), then joins.
    ~CpuStream() override {
        {
            std::lock_guard<std::mutex> lock(mu_);
            stopping_ = true;
        }
        cv_.notify_one();
        if (worker_.joinable()) worker_.join();
    }

    Status enqueueCopy(CopyJob job) override {
        STRATA_RETURN_IF_ERROR(validateCopy(job.geometry, job.device, job.host, job.pages,
                                            job.layer_begin, job.layer_end));
        if (job.pages.empty()) return Status::ok();
        // Snapshot the layer pointer table, as the CUDA back end does when it uploads it: the
        // caller's table need not outlive the call.
        std::vector<std::byte*> table(
            job.device.layer_ptrs, job.device.layer_ptrs + std::size_t{job.geometry.num_buffers} *
                                                               job.geometry.num_layers);
        push([this, job = std::move(job), table = std::move(table)]() mutable {
            job.device.layer_ptrs = table.data();
            jitter();
            copyPagesCpu(job.geometry, job.device, job.host, job.pages, job.layer_begin,
                         job.layer_end, job.direction);
        });
        return Status::ok();
    }

    Status enqueueDeviceCopy(const PoolGeometry& geometry, const DeviceView& device,
                             std::span<const DevicePageMove> moves, std::uint32_t layer_begin,
                             std::uint32_t layer_end) override {
        STRATA_RETURN_IF_ERROR(validateDeviceCopy(geometry, device, moves, layer_begin, layer_end));
        if (moves.empty()) return Status::ok();
        // The caller's spans and table need not outlive the call: the job owns copies of both.
        std::vector<std::byte*> table(
            device.layer_ptrs,
            device.layer_ptrs + std::size_t{geometry.num_buffers} * geometry.num_layers);
        std::vector<DevicePageMove> owned(moves.begin(), moves.end());
        push([this, geometry, capacity = device.capacity_tokens, stride = device.row_stride,
              table = std::move(table), owned = std::move(owned), layer_begin, layer_end] {
            jitter();
            copyDevicePagesCpu(geometry, DeviceView{table.data(), capacity, stride}, owned,
                               layer_begin, layer_end);
        });
        return Status::ok();
    }

    Result<EventPtr> record() override {
        auto state = std::make_shared<EventState>();
        push([this, state] {
            {
                std::lock_guard<std::mutex> lock(state->mu);
                state->done = true;
                state->status = failure_;
                state->done_at = std::chrono::steady_clock::now();
            }
            state->cv.notify_all();
        });
        return EventPtr(std::make_shared<CpuEvent>(std::move(state)));
    }
    Result<EventPtr> recordTimed() override { return record(); }

    Status waitFor(const EventPtr& event) override {
        if (event == nullptr) {
            return STRATA_ERROR(StatusCode::kInvalidArgument, "waitFor given a null event");
        }
        // Any Event works here: the worker blocks in wait(), which is safe from any thread.
        push([this, event] {
            Status s = event->wait();
            if (!s.isOk() && failure_.isOk()) failure_ = s.withContext("awaited event failed");
        });
        return Status::ok();
    }

    Status waitForNative(void* /*native_stream*/) override { return Status::ok(); }

    Status synchronize() override {
        STRATA_ASSIGN_OR_RETURN(EventPtr event, record());
        return event->wait();
    }

private:
    CpuStream(const BackendOptions& options, std::uint64_t ordinal)
        : jitter_us_(options.jitter_us), rng_(core::foldDigest(options.jitter_seed, ordinal)) {}

    void push(std::function<void()> job) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            queue_.push_back(std::move(job));
        }
        cv_.notify_one();
    }

    void run() noexcept {
        for (;;) {
            std::function<void()> job;
            {
                std::unique_lock<std::mutex> lock(mu_);
                cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
                if (queue_.empty()) return;  // stopping and drained
                job = std::move(queue_.front());
                queue_.pop_front();
            }
            job();
        }
    }

    // Fault injection: completions land at different times on different ranks. The only sleep
    // in the back end, and it never synchronises anything.
    void jitter() {
        if (jitter_us_ == 0) return;
        std::uniform_int_distribution<std::uint32_t> dist(0, jitter_us_);
        std::this_thread::sleep_for(std::chrono::microseconds(dist(rng_)));
    }

    const std::uint32_t jitter_us_;
    std::mt19937_64 rng_;  // used by the worker only
    Status failure_;       // first failure seen by the worker; reported by later events

    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> queue_;  // guarded by mu_
    bool stopping_ = false;                    // guarded by mu_
    std::thread worker_;  // last member: started after everything it uses exists
};

class CpuBackend final : public Backend {
public:
    explicit CpuBackend(const BackendOptions& options) : options_(options) {}

    BackendKind kind() const noexcept override { return BackendKind::kCpu; }
    Result<Memory> allocateDevice(std::size_t size_bytes) override {
        return allocateAligned(size_bytes, "device (cpu)");
    }
    Result<Memory> allocateHost(std::size_t size_bytes) override {
        return allocateAligned(size_bytes, "host");
    }
    Result<Memory> registerHost(std::byte* ptr, std::size_t size_bytes) override {
        if (ptr == nullptr || size_bytes == 0) {
            return STRATA_ERROR(StatusCode::kInvalidArgument, "registerHost of empty memory");
        }
        return Memory(ptr, size_bytes, nullptr);  // plain memory is what the CPU back end copies
    }
    Result<std::unique_ptr<Stream>> createStream() override {
        return CpuStream::create(options_, next_stream_.fetch_add(1));
    }
    bool deviceIsHostAddressable() const noexcept override { return true; }
    Status copyToDevice(std::byte* device_dst, const std::byte* host_src,
                        std::size_t size_bytes) override {
        if (size_bytes != 0) std::memcpy(device_dst, host_src, size_bytes);
        return Status::ok();
    }
    Status copyFromDevice(std::byte* host_dst, const std::byte* device_src,
                          std::size_t size_bytes) override {
        if (size_bytes != 0) std::memcpy(host_dst, device_src, size_bytes);
        return Status::ok();
    }

private:
    const BackendOptions options_;
    std::atomic<std::uint64_t> next_stream_{0};  // seeds each stream's jitter differently
};

}  // namespace

Result<std::unique_ptr<Backend>> createCpuBackend(const BackendOptions& options) {
    return std::unique_ptr<Backend>(std::make_unique<CpuBackend>(options));
}

}  // namespace strata::kernels::detail
