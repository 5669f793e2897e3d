#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "copy_case.h"
#include "gate_event.h"
#include "strata/config.h"
#include "strata/kernels/backend.h"

namespace strata::kernels {
namespace {

using testing::Gate;

// A one-layer, one-buffer pool pair with distinct random bytes on each side.
struct SmallPools {
    static constexpr std::size_t kPages = 8;
    PoolGeometry g{1, 1, 64, 4};
    Memory dev, host;
    std::byte* plane = nullptr;

    explicit SmallPools(Backend& backend, std::uint64_t seed) {
        const std::size_t bytes = kPages * g.page_size * g.row_bytes;
        dev = std::move(backend.allocateDevice(bytes)).value();
        host = std::move(backend.allocateHost(bytes)).value();
        plane = dev.data();
        testing::fillRandom(dev.data(), bytes, seed);
        testing::fillRandom(host.data(), bytes, seed);
    }
    std::size_t pageBytes() const { return g.page_size * g.row_bytes; }
    std::byte* devPage(std::uint32_t p) const { return dev.data() + p * pageBytes(); }
    std::byte* hostPage(std::uint32_t p) const { return host.data() + p * pageBytes(); }
    CopyJob job(std::vector<PageCopy> pages, Direction dir) const {
        CopyJob j;
        j.geometry = g;
        j.device = DeviceView{&plane, kPages * g.page_size};
        j.host = HostView{host.data(), HostLayout::kLayerFirst, kPages * g.page_size};
        j.pages = std::move(pages);
        j.layer_begin = 0;
        j.layer_end = 1;
        j.direction = dir;
        return j;
    }
};

std::unique_ptr<Backend> cpuBackend(BackendOptions options = {}) {
    auto b = Backend::create(BackendKind::kCpu, options);
    EXPECT_TRUE(b.isOk());
    return std::move(b).value();
}

TEST(Backend, KindsAndCpuProperties) {
    EXPECT_EQ(backendKindName(BackendKind::kCpu), "cpu");
    EXPECT_EQ(backendKindName(BackendKind::kCuda), "cuda");
    auto backend = cpuBackend();
    EXPECT_EQ(backend->kind(), BackendKind::kCpu);
    EXPECT_TRUE(backend->deviceIsHostAddressable());
    auto mem = backend->allocateDevice(10000);
    ASSERT_TRUE(mem.isOk());
    EXPECT_EQ(mem->size(), 10000u);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(mem->data()) % 4096, 0u);
    std::vector<std::byte> zeros(10000), back(10000, std::byte{1});
    EXPECT_EQ(std::memcmp(mem->data(), zeros.data(), zeros.size()), 0) << "not zero-filled";
    std::vector<std::byte> src(10000, std::byte{7});
    ASSERT_TRUE(backend->copyToDevice(mem->data(), src.data(), src.size()).isOk());
    ASSERT_TRUE(backend->copyFromDevice(back.data(), mem->data(), back.size()).isOk());
    EXPECT_EQ(back, src);
}

TEST(Backend, CudaWithoutDeviceFailsCleanly) {
    if (Backend::cudaAvailable()) GTEST_SKIP() << "a CUDA device is present";
    auto backend = Backend::create(BackendKind::kCuda, {});
    ASSERT_FALSE(backend.isOk());
    EXPECT_EQ(backend.status().code(),
              STRATA_HAVE_CUDA ? StatusCode::kUnavailable : StatusCode::kNotSupported);
    EXPECT_FALSE(backend.status().message().empty());
}

TEST(Memory, MoveTransfersOwnership) {
    auto backend = cpuBackend();
    Memory a = std::move(backend->allocateHost(100)).value();
    std::byte* p = a.data();
    Memory b(std::move(a));
    EXPECT_EQ(a.data(), nullptr);
    EXPECT_EQ(b.data(), p);
    Memory c;
    c = std::move(b);
    EXPECT_EQ(c.data(), p);
    EXPECT_EQ(c.size(), 100u);
}

TEST(CpuStream, RejectsInvalidJobsWithoutQueueing) {
    auto backend = cpuBackend();
    SmallPools pools(*backend, 1);
    auto stream = std::move(backend->createStream()).value();
    Status s = stream->enqueueCopy(pools.job({{SmallPools::kPages, 0}}, Direction::kHostToDevice));
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    CopyJob bad_layers = pools.job({{0, 0}}, Direction::kHostToDevice);
    bad_layers.layer_end = 2;
    EXPECT_EQ(stream->enqueueCopy(bad_layers).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(stream->waitFor(nullptr).code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(stream->synchronize().isOk());
}

TEST(CpuStream, CopiesCompleteAfterTheyAreIssued) {
    const std::uint64_t seed = 11;
    SCOPED_TRACE(::testing::Message() << "seed=" << seed);
    auto backend = cpuBackend();
    SmallPools pools(*backend, seed);
    std::vector<std::byte> before(pools.devPage(5), pools.devPage(5) + pools.pageBytes());
    auto stream = std::move(backend->createStream()).value();
    auto gate = std::make_shared<Gate>();
    ASSERT_TRUE(stream->waitFor(gate).isOk());
    ASSERT_TRUE(stream->enqueueCopy(pools.job({{5, 2}}, Direction::kHostToDevice)).isOk());
    EventPtr done = std::move(stream->record()).value();

    // Held behind the gate: the event is pending and the device bytes are untouched.
    EXPECT_FALSE(done->query());
    EXPECT_EQ(std::memcmp(pools.devPage(5), before.data(), before.size()), 0);

    gate->open();
    ASSERT_TRUE(done->wait().isOk());
    EXPECT_TRUE(done->query());
    EXPECT_EQ(std::memcmp(pools.devPage(5), pools.hostPage(2), pools.pageBytes()), 0);
}

TEST(CpuStream, TimedEventsMeasureTheTimeBetweenThem) {
    auto backend = cpuBackend();
    auto stream = std::move(backend->createStream()).value();
    auto gate = std::make_shared<Gate>();
    EventPtr start = std::move(stream->recordTimed()).value();
    ASSERT_TRUE(stream->waitFor(gate).isOk());
    EventPtr end = std::move(stream->recordTimed()).value();
    ASSERT_TRUE(start->wait().isOk());
    // Not complete yet: no figure.
    EXPECT_EQ(end->secondsSince(*start).status().code(), StatusCode::kFailedPrecondition);
    const auto opened = std::chrono::steady_clock::now() + std::chrono::milliseconds(30);
    std::this_thread::sleep_until(opened);
    gate->open();
    ASSERT_TRUE(end->wait().isOk());
    // The stream was held at least until the gate opened (a lower bound: a loaded machine only
    // makes it longer).
    Result<double> s = end->secondsSince(*start);
    ASSERT_TRUE(s.isOk()) << s.status().toString();
    EXPECT_GE(*s, 0.030);
    // An event of no back end carries no time.
    EXPECT_EQ(end->secondsSince(*gate).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(gate->secondsSince(*start).status().code(), StatusCode::kInvalidArgument);
}

TEST(CpuStream, QueuedCopyKeepsItsOwnPointerTable) {
    const std::uint64_t seed = 14;
    SCOPED_TRACE(::testing::Message() << "seed=" << seed);
    auto backend = cpuBackend();
    SmallPools pools(*backend, seed);
    auto stream = std::move(backend->createStream()).value();
    auto gate = std::make_shared<Gate>();
    ASSERT_TRUE(stream->waitFor(gate).isOk());
    {
        // The caller's table dies (and is scribbled over) before the copy runs.
        auto table = std::make_unique<std::byte*>(pools.plane);
        CopyJob job = pools.job({{1, 3}}, Direction::kHostToDevice);
        job.device.layer_ptrs = table.get();
        ASSERT_TRUE(stream->enqueueCopy(std::move(job)).isOk());
        *table = nullptr;
    }
    gate->open();
    ASSERT_TRUE(stream->synchronize().isOk());
    EXPECT_EQ(std::memcmp(pools.devPage(1), pools.hostPage(3), pools.pageBytes()), 0);
}

TEST(CpuStream, WaitForOrdersWorkAcrossStreams) {
    const std::uint64_t seed = 12;
    SCOPED_TRACE(::testing::Message() << "seed=" << seed);
    auto backend = cpuBackend();
    SmallPools pools(*backend, seed);
    std::vector<std::byte> source(pools.hostPage(0), pools.hostPage(0) + pools.pageBytes());
    auto producer = std::move(backend->createStream()).value();
    auto consumer = std::move(backend->createStream()).value();
    auto gate = std::make_shared<Gate>();

    // Producer: (gated) host page 0 -> device page 3. Consumer: device page 3 -> host page 6,
    // only after the producer's event. Without the dependency the consumer would read old bytes.
    ASSERT_TRUE(producer->waitFor(gate).isOk());
    ASSERT_TRUE(producer->enqueueCopy(pools.job({{3, 0}}, Direction::kHostToDevice)).isOk());
    EventPtr produced = std::move(producer->record()).value();
    ASSERT_TRUE(consumer->waitFor(produced).isOk());
    ASSERT_TRUE(consumer->enqueueCopy(pools.job({{3, 6}}, Direction::kDeviceToHost)).isOk());
    EventPtr consumed = std::move(consumer->record()).value();
    EXPECT_FALSE(consumed->query());

    gate->open();
    ASSERT_TRUE(consumer->synchronize().isOk());
    EXPECT_TRUE(produced->query());
    EXPECT_EQ(std::memcmp(pools.hostPage(6), source.data(), source.size()), 0);
}

TEST(CpuStream, JitterKeepsBytesAndOrder) {
    BackendOptions options;
    options.jitter_us = 300;
    options.jitter_seed = 0xBADC0DEull;
    SCOPED_TRACE(::testing::Message() << "jitter_seed=" << options.jitter_seed);
    auto backend = cpuBackend(options);
    SmallPools pools(*backend, options.jitter_seed);
    std::vector<std::byte> source(pools.hostPage(0), pools.hostPage(0) + pools.pageBytes());
    auto stream = std::move(backend->createStream()).value();

    // A chain host 0 -> dev 0 -> host 1 -> dev 1 -> ... : each step reads what the previous one
    // wrote, so any reordering leaves stale bytes at the end of the chain.
    std::vector<EventPtr> events;
    for (std::uint32_t p = 0; p + 1 < SmallPools::kPages; ++p) {
        ASSERT_TRUE(stream->enqueueCopy(pools.job({{p, p}}, Direction::kHostToDevice)).isOk());
        ASSERT_TRUE(stream->enqueueCopy(pools.job({{p, p + 1}}, Direction::kDeviceToHost)).isOk());
        events.push_back(std::move(stream->record()).value());
    }
    // In-order completion: once event i is done, every earlier event is done too.
    for (std::size_t i = events.size(); i-- > 0;) {
        ASSERT_TRUE(events[i]->wait().isOk());
        for (std::size_t j = 0; j < i; ++j) EXPECT_TRUE(events[j]->query()) << j << " < " << i;
    }
    for (std::uint32_t p = 0; p < SmallPools::kPages; ++p) {
        EXPECT_EQ(std::memcmp(pools.hostPage(p), source.data(), source.size()), 0) << "host " << p;
    }
}

TEST(CpuStream, DestructionDrainsQueuedWork) {
    const std::uint64_t seed = 13;
    SCOPED_TRACE(::testing::Message() << "seed=" << seed);
    BackendOptions options;
    options.jitter_us = 50;  // keeps work queued when the stream is destroyed
    options.jitter_seed = seed;
    auto backend = cpuBackend(options);
    SmallPools pools(*backend, seed);
    std::vector<std::byte> source(pools.hostPage(4), pools.hostPage(4) + pools.pageBytes());
    {
        auto stream = std::move(backend->createStream()).value();
        for (int i = 0; i < 40; ++i) {
            const std::uint32_t p = static_cast<std::uint32_t>(i % SmallPools::kPages);
            ASSERT_TRUE(stream->enqueueCopy(pools.job({{p, 4}}, Direction::kHostToDevice)).isOk());
        }
    }
    for (std::uint32_t p = 0; p < SmallPools::kPages; ++p) {
        EXPECT_EQ(std::memcmp(pools.devPage(p), source.data(), source.size()), 0) << "dev " << p;
    }
}

TEST(CpuStream, FailedDependencyIsReportedByLaterEvents) {
    auto backend = cpuBackend();
    auto stream = std::move(backend->createStream()).value();
    auto failed = std::make_shared<Gate>(Status(StatusCode::kIoError, "peer went away"));
    failed->open();
    ASSERT_TRUE(stream->waitFor(failed).isOk());
    EventPtr after = std::move(stream->record()).value();
    Status s = after->wait();
    EXPECT_EQ(s.code(), StatusCode::kIoError);
    EXPECT_NE(s.message().find("peer went away"), std::string::npos) << s.message();
    EXPECT_FALSE(stream->synchronize().isOk());
}

}  // namespace
}  // namespace strata::kernels
