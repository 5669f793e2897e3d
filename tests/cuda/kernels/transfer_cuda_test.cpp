// The CUDA back end against the same naive model (and copyPagesCpu) as the CPU back end: every
// layout, direction, layer range, page size, row size (including 656-byte and unaligned rows) and
// buffer count. Skips when no CUDA device is visible.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "copy_case.h"
#include "device_copy_case.h"
#include "strata/comm/nccl/striped_loader.h"
#include "strata/kernels/backend.h"

namespace strata::kernels {
namespace {

using testing::kLayerRanges;
using testing::kLayouts;
using testing::MatrixParam;

std::unique_ptr<Backend> cudaBackend() {
    auto backend = Backend::create(BackendKind::kCuda, {});
    EXPECT_TRUE(backend.isOk()) << backend.status().toString();
    return backend.isOk() ? std::move(backend).value() : nullptr;
}

#define SKIP_WITHOUT_CUDA() \
    if (!Backend::cudaAvailable()) GTEST_SKIP() << "no CUDA device visible"

constexpr std::size_t kRowBytes[] = {6, 16, 20, 24, 128, 656, 1152, 2048};

class CudaTransferMatrix : public ::testing::TestWithParam<MatrixParam> {};

// Every copy path, forced, and shapes that stress them: one CTA (many units per bulk pipeline,
// the stage ring wrapping around), tiny stages (units of a few rows or bytes), small warp CTAs.
struct PathVariant {
    const char* name;
    CopyTuning tuning;
};

std::vector<PathVariant> pathVariants() {
    std::vector<PathVariant> v;
    v.push_back({"auto", CopyTuning{}});
    CopyTuning t;
    t.path = CopyPath::kKernelWarp;
    v.push_back({"warp", t});
    t.max_blocks = 1;
    t.warp_threads = 64;
    v.push_back({"warp_one_cta", t});
    t = CopyTuning{};
    t.path = CopyPath::kKernelWarp;
    t.warp_loads_in_flight = 8;
    v.push_back({"warp_8_in_flight", t});
    t = CopyTuning{};
    t.path = CopyPath::kKernelBulk;
    v.push_back({"bulk", t});
    t.max_blocks = 1;
    t.bulk_pipes = 2;
    t.bulk_stage_bytes = 256;
    v.push_back({"bulk_one_cta_small_stages", t});
    t = CopyTuning{};
    t.path = CopyPath::kCopyEngine;
    v.push_back({"copy_engine", t});
    // Staged: one batch; then 4 KiB slots, so that pages of 1-4 KiB go through 2 to 4 batches
    // that reuse both slots (larger pages and layer subsets fall back to the kernel).
    t = CopyTuning{};
    t.path = CopyPath::kStaged;
    v.push_back({"staged", t});
    t.staging_slot_bytes = 4096;
    v.push_back({"staged_4KiB_slots", t});
    return v;
}

TEST_P(CudaTransferMatrix, MatchesReference) {
    SKIP_WITHOUT_CUDA();
    auto [layout, dir, range_index, page_size] = GetParam();
    for (const PathVariant& variant : pathVariants()) {
        SCOPED_TRACE(variant.name);
        BackendOptions options;
        options.tuning = variant.tuning;
        auto created = Backend::create(BackendKind::kCuda, options);
        ASSERT_TRUE(created.isOk()) << created.status().toString();
        auto backend = std::move(created).value();
        std::uint64_t seed = 0xC0DA0000ull + static_cast<std::uint64_t>(layout) * 1000 +
                             static_cast<std::uint64_t>(dir) * 100 + range_index * 10 + page_size;
        for (std::size_t row_bytes : kRowBytes) {
            for (std::uint32_t buffers : {1u, 2u}) {
                testing::CopyCase c;
                c.layout = layout;
                c.dir = dir;
                c.layer_begin = kLayerRanges[range_index].begin;
                c.layer_end = kLayerRanges[range_index].end;
                c.num_buffers = buffers;
                c.row_bytes = row_bytes;
                c.page_size = page_size;
                c.seed = seed++;
                testing::runCopyCase(*backend, c);
                if (HasFatalFailure()) return;
            }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(AllLayouts, CudaTransferMatrix, testing::matrixValues(),
                         testing::matrixName);

// Strided device rows (DeviceView::row_stride) through every path: K and V interleaved per token
// in one block, padded rows (an odd stride too). The kernels move groups of rows, the copy engine
// one entry per row, staged re-lays out through the kernel; the bytes between rows stay untouched
// (runCopyCase compares every byte of each block).
class CudaStridedTransferMatrix : public ::testing::TestWithParam<MatrixParam> {};

TEST_P(CudaStridedTransferMatrix, MatchesReference) {
    SKIP_WITHOUT_CUDA();
    auto [layout, dir, range_index, page_size] = GetParam();
    for (const PathVariant& variant : pathVariants()) {
        SCOPED_TRACE(variant.name);
        BackendOptions options;
        options.tuning = variant.tuning;
        auto created = Backend::create(BackendKind::kCuda, options);
        ASSERT_TRUE(created.isOk()) << created.status().toString();
        auto backend = std::move(created).value();
        std::uint64_t seed = 0x5C0DA000ull + static_cast<std::uint64_t>(layout) * 1000 +
                             static_cast<std::uint64_t>(dir) * 100 + range_index * 10 + page_size;
        for (const testing::StrideVariant& stride : testing::kStrideVariants) {
            for (std::size_t row_bytes :
                 {std::size_t{6}, std::size_t{16}, std::size_t{656}, std::size_t{2048}}) {
                testing::CopyCase c = testing::stridedCase(stride, row_bytes);
                c.layout = layout;
                c.dir = dir;
                c.layer_begin = kLayerRanges[range_index].begin;
                c.layer_end = kLayerRanges[range_index].end;
                c.page_size = page_size;
                c.seed = seed++;
                testing::runCopyCase(*backend, c);
                if (HasFatalFailure()) return;
            }
        }
    }
}

INSTANTIATE_TEST_SUITE_P(AllLayouts, CudaStridedTransferMatrix, testing::matrixValues(),
                         testing::matrixName);

// The auto path never sends strided rows to the copy engine as whole chunks, and the bulk kernel
// runs only where the stride is 16-byte aligned (else the warp kernel).
TEST(CudaBackend, StridedRowsPlanRowGroups) {
    SKIP_WITHOUT_CUDA();
    CopyTuning t;
    t.copy_engine_min_chunk_h2d = t.copy_engine_min_chunk_d2h = 1;  // any packed chunk: engine
    BackendOptions options;
    options.tuning = t;
    auto backend = std::move(Backend::create(BackendKind::kCuda, options)).value();
    const PoolGeometry g{1, 1, 256, 16};
    const std::size_t cap = 4 * g.page_size;
    auto dev = std::move(backend->allocateDevice(cap * 512)).value();
    auto host = std::move(backend->allocateHost(hostBytes(g, cap))).value();
    std::byte* planes[] = {dev.data()};
    auto stream = std::move(backend->createStream()).value();
    CopyJob job;
    job.geometry = g;
    job.device = DeviceView{planes, cap, 0};
    job.host = HostView{host.data(), HostLayout::kLayerFirst, cap};
    job.pages = {{0, 1}, {2, 3}};
    job.layer_begin = 0;
    job.layer_end = g.num_layers;
    job.direction = Direction::kHostToDevice;
    auto enqueue = [&] {
        const Status s = stream->enqueueCopy(job);
        EXPECT_TRUE(s.isOk()) << s.toString();
        return s.isOk();
    };
    ASSERT_TRUE(enqueue());
    EXPECT_EQ(stream->lastPlan().path, CopyPath::kCopyEngine);
    job.device.row_stride = 512;
    ASSERT_TRUE(enqueue());
    EXPECT_NE(stream->lastPlan().path, CopyPath::kCopyEngine);
    job.path = CopyPath::kKernelBulk;
    ASSERT_TRUE(enqueue());
    EXPECT_EQ(stream->lastPlan().path, CopyPath::kKernelBulk);
    job.device.row_stride = 260;  // not a multiple of 16: the warp kernel
    ASSERT_TRUE(enqueue());
    EXPECT_EQ(stream->lastPlan().path, CopyPath::kKernelWarp);
    job.device.row_stride = 255;  // below the row
    EXPECT_EQ(stream->enqueueCopy(job).code(), StatusCode::kInvalidArgument);
    ASSERT_TRUE(stream->synchronize().isOk());
}

// Stream::enqueueDeviceCopy (device-to-device cudaMemcpyAsync per run of pages) against the naive
// model and copyDevicePagesCpu: 656-byte KV rows, one-row Mamba state pages, a layer subrange of
// three buffers, shuffled moves with a long run of consecutive pages.
TEST(CudaDeviceCopy, MatchesReferenceForEveryGeometry) {
    SKIP_WITHOUT_CUDA();
    auto backend = cudaBackend();
    ASSERT_NE(backend, nullptr);
    for (const testing::DeviceCopyCase& c : testing::deviceCopyCases()) {
        testing::runDeviceCopyCase(*backend, c);
        if (HasFatalFailure()) return;
    }
}

TEST(CudaDeviceCopy, RunsAfterAnEarlierLoadAndRejectsBadMoves) {
    SKIP_WITHOUT_CUDA();
    auto backend = cudaBackend();
    ASSERT_NE(backend, nullptr);
    const std::uint64_t seed = 0xD0C0C0DA;
    SCOPED_TRACE(::testing::Message() << "seed=" << seed);
    constexpr std::uint32_t kPages = 8;
    const PoolGeometry g{1, 1, 656, 16};
    const std::size_t page_bytes = g.page_size * g.row_bytes;
    const std::size_t bytes = kPages * page_bytes;
    auto dev = std::move(backend->allocateDevice(bytes)).value();
    auto host = std::move(backend->allocateHost(bytes)).value();
    std::uint64_t state = seed;
    testing::fillRandom(host.data(), bytes, state);
    std::byte* plane = dev.data();
    const DeviceView view{&plane, kPages * g.page_size};
    auto stream = std::move(backend->createStream()).value();

    const std::vector<DevicePageMove> bad = {{0, 1}, {1, 2}};  // page 1 read and written
    EXPECT_EQ(stream->enqueueDeviceCopy(g, view, bad, 0, 1).code(), StatusCode::kInvalidArgument);

    // Host page 3 -> device page 2, then device page 2 -> device pages 5 and 6 on the same stream.
    CopyJob load;
    load.geometry = g;
    load.device = view;
    load.host = {host.data(), HostLayout::kLayerFirst, kPages * g.page_size};
    load.pages = {{2, 3}};
    load.layer_begin = 0;
    load.layer_end = 1;
    load.direction = Direction::kHostToDevice;
    ASSERT_TRUE(stream->enqueueCopy(load).isOk());
    const std::vector<DevicePageMove> moves = {{2, 5}, {2, 6}};
    ASSERT_TRUE(stream->enqueueDeviceCopy(g, view, moves, 0, 1).isOk());
    ASSERT_TRUE(stream->synchronize().isOk());

    std::vector<std::byte> back(bytes);
    ASSERT_TRUE(backend->copyFromDevice(back.data(), dev.data(), bytes).isOk());
    std::vector<std::byte> zeros(page_bytes);
    for (std::uint32_t p = 0; p < kPages; ++p) {
        const bool loaded = p == 2 || p == 5 || p == 6;
        const std::byte* want = loaded ? host.data() + 3 * page_bytes : zeros.data();
        EXPECT_EQ(std::memcmp(back.data() + p * page_bytes, want, page_bytes), 0) << "page " << p;
    }
}

TEST(CudaBackend, AllocatesZeroedMemory) {
    SKIP_WITHOUT_CUDA();
    auto backend = cudaBackend();
    ASSERT_NE(backend, nullptr);
    EXPECT_EQ(backend->kind(), BackendKind::kCuda);
    EXPECT_FALSE(backend->deviceIsHostAddressable());
    auto dev = backend->allocateDevice(1 << 20);
    ASSERT_TRUE(dev.isOk());
    std::vector<std::byte> back(1 << 20, std::byte{0x5A}), zeros(1 << 20);
    ASSERT_TRUE(backend->copyFromDevice(back.data(), dev->data(), back.size()).isOk());
    EXPECT_EQ(back, zeros);
    auto host = backend->allocateHost(4096);
    ASSERT_TRUE(host.isOk());
    EXPECT_EQ(std::memcmp(host->data(), zeros.data(), 4096), 0);
}

TEST(CudaBackend, RejectsPageableHostMemory) {
    SKIP_WITHOUT_CUDA();
    auto backend = cudaBackend();
    ASSERT_NE(backend, nullptr);
    const PoolGeometry g{1, 1, 64, 4};
    auto dev = std::move(backend->allocateDevice(16 * 64)).value();
    std::byte* plane = dev.data();
    std::vector<std::byte> pageable(16 * 64);
    CopyJob job;
    job.geometry = g;
    job.device = {&plane, 16};
    job.host = {pageable.data(), HostLayout::kLayerFirst, 16};
    job.pages = {{0, 1}};
    job.layer_begin = 0;
    job.layer_end = 1;
    auto stream = std::move(backend->createStream()).value();
    EXPECT_EQ(stream->enqueueCopy(job).code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(stream->synchronize().isOk());
}

TEST(CudaBackend, WaitForOrdersWorkAcrossStreamsAndManyJobsReuseStaging) {
    SKIP_WITHOUT_CUDA();
    auto backend = cudaBackend();
    ASSERT_NE(backend, nullptr);
    const std::uint64_t seed = 0xE7E7;
    SCOPED_TRACE(::testing::Message() << "seed=" << seed);
    constexpr std::uint32_t kPages = 64;
    const PoolGeometry g{1, 1, 656, 16};
    const std::size_t bytes = kPages * g.page_size * g.row_bytes;
    const std::size_t page_bytes = g.page_size * g.row_bytes;
    auto dev = std::move(backend->allocateDevice(bytes)).value();
    auto host = std::move(backend->allocateHost(bytes)).value();
    std::uint64_t state = seed;
    testing::fillRandom(host.data(), bytes / 2, state);  // pages [0, 32) random, rest zero
    std::byte* plane = dev.data();
    auto job = [&](std::uint32_t d, std::uint32_t h, Direction dir) {
        CopyJob j;
        j.geometry = g;
        j.device = {&plane, kPages * g.page_size};
        j.host = {host.data(), HostLayout::kLayerFirst, kPages * g.page_size};
        j.pages = {{d, h}};
        j.layer_begin = 0;
        j.layer_end = 1;
        j.direction = dir;
        return j;
    };
    auto producer = std::move(backend->createStream()).value();
    auto consumer = std::move(backend->createStream()).value();
    // 32 single-page jobs per stream: more than the staging slots, so slots are recycled.
    for (std::uint32_t p = 0; p < 32; ++p) {
        ASSERT_TRUE(producer->enqueueCopy(job(p, p, Direction::kHostToDevice)).isOk());
    }
    EventPtr produced = std::move(producer->record()).value();
    ASSERT_TRUE(consumer->waitFor(produced).isOk());
    for (std::uint32_t p = 0; p < 32; ++p) {
        ASSERT_TRUE(consumer->enqueueCopy(job(p, p + 32, Direction::kDeviceToHost)).isOk());
    }
    EventPtr consumed = std::move(consumer->record()).value();
    ASSERT_TRUE(consumed->wait().isOk());
    EXPECT_TRUE(consumed->query());
    EXPECT_TRUE(produced->query());
    for (std::uint32_t p = 0; p < 32; ++p) {
        EXPECT_EQ(std::memcmp(host.data() + (p + 32) * page_bytes, host.data() + p * page_bytes,
                              page_bytes),
                  0)
            << "page " << p;
    }
}

// A pool with random device and host bytes, for the per-layer and striped-load tests.
struct SmallPool {
    PoolGeometry g{6, 2, 656, 16};
    static constexpr std::uint32_t kPages = 40;
    Memory dev;
    Memory host;
    std::vector<std::byte*> planes;
    std::vector<PageCopy> pairs;

    std::size_t capTokens() const { return std::size_t{kPages} * g.page_size; }
    std::size_t planeBytes() const { return capTokens() * g.row_bytes; }

    void init(Backend& backend, std::uint64_t seed) {
        const std::size_t bytes = capTokens() * g.bytesPerToken();
        dev = std::move(backend.allocateDevice(bytes)).value();
        host = std::move(backend.allocateHost(bytes)).value();
        std::uint64_t state = seed;
        testing::fillRandom(host.data(), bytes, state);
        std::vector<std::byte> junk(bytes);
        testing::fillRandom(junk.data(), bytes, state);
        ASSERT_TRUE(backend.copyToDevice(dev.data(), junk.data(), bytes).isOk());
        for (std::uint32_t i = 0; i < g.num_buffers * g.num_layers; ++i) {
            planes.push_back(dev.data() + i * planeBytes());
        }
        std::mt19937_64 rng(seed);
        pairs = testing::randomPairs(kPages, kPages, 29, rng);
    }
    CopyJob loadJob() {
        CopyJob job;
        job.geometry = g;
        job.device = {planes.data(), capTokens()};
        job.host = {host.data(), HostLayout::kLayerFirst, capTokens()};
        job.pages = pairs;
        job.layer_begin = 0;
        job.layer_end = g.num_layers;
        job.direction = Direction::kHostToDevice;
        return job;
    }
    // Number of (page, buffer, layer) chunks of `layer` that differ from the host pool.
    int wrongChunks(Backend& backend, std::uint32_t layer) {
        int wrong = 0;
        const std::size_t chunk = std::size_t{g.page_size} * g.row_bytes;
        std::vector<std::byte> back(chunk);
        for (const PageCopy& pc : pairs) {
            for (std::uint32_t b = 0; b < g.num_buffers; ++b) {
                const std::size_t plane = std::size_t{b} * g.num_layers + layer;
                EXPECT_TRUE(
                    backend
                        .copyFromDevice(back.data(), planes[plane] + pc.device_page * chunk, chunk)
                        .isOk());
                const std::byte* expect =
                    host.data() +
                    (plane * capTokens() + std::size_t{pc.host_page} * g.page_size) * g.row_bytes;
                wrong += std::memcmp(back.data(), expect, chunk) != 0;
            }
        }
        return wrong;
    }
};

TEST(CudaBackend, LayerByLayerLoadPublishesOneReadyEventPerLayer) {
    SKIP_WITHOUT_CUDA();
    auto backend = cudaBackend();
    ASSERT_NE(backend, nullptr);
    SmallPool pool;
    pool.init(*backend, 0x1A7E);
    if (HasFatalFailure()) return;
    auto stream = std::move(backend->createStream()).value();
    auto events = enqueueLayerByLayer(*stream, pool.loadJob());
    ASSERT_TRUE(events.isOk()) << events.status().toString();
    ASSERT_EQ(events->size(), pool.g.num_layers);
    // Waiting for layer L's event is enough to read layer L.
    for (std::uint32_t l = 0; l < pool.g.num_layers; ++l) {
        ASSERT_TRUE((*events)[l]->wait().isOk());
        EXPECT_EQ(pool.wrongChunks(*backend, l), 0) << "layer " << l;
    }
    CopyJob bad = pool.loadJob();
    bad.layer_end = pool.g.num_layers + 1;
    EXPECT_EQ(enqueueLayerByLayer(*stream, bad).status().code(), StatusCode::kInvalidArgument);
}

TEST(CudaBackend, CopyPlanReportsPathAndCtas) {
    SKIP_WITHOUT_CUDA();
    BackendOptions options;
    options.tuning.max_blocks = 3;
    options.tuning.copy_engine_min_chunk_h2d = 16 * 656;  // this pool's chunk: the copy engine
    auto backend = std::move(Backend::create(BackendKind::kCuda, options)).value();
    SmallPool pool;
    pool.init(*backend, 0x9147);
    if (HasFatalFailure()) return;
    auto stream = std::move(backend->createStream()).value();
    ASSERT_TRUE(stream->enqueueCopy(pool.loadJob()).isOk());
    EXPECT_EQ(stream->lastPlan().path, CopyPath::kCopyEngine);
    EXPECT_EQ(stream->lastPlan().blocks, 0u);
    CopyJob backup = pool.loadJob();
    backup.direction = Direction::kDeviceToHost;
    ASSERT_TRUE(stream->enqueueCopy(backup).isOk());
    EXPECT_EQ(stream->lastPlan().path, CopyPath::kKernelWarp);  // the default D2H kernel
    EXPECT_EQ(stream->lastPlan().blocks, 3u);
    EXPECT_NE(stream->nativeHandle(), nullptr);
    ASSERT_TRUE(stream->synchronize().isOk());
}

// kStaged runs whole-page jobs of the page-first layouts (kAuto above the threshold, or a job's
// own path) through many batches, byte-exact, and falls back for layer_first and layer subsets.
TEST(CudaBackend, StagedPathChosenForWholePagesAndExactOverManyBatches) {
    SKIP_WITHOUT_CUDA();
    BackendOptions options;
    SmallPool probe;
    const std::size_t page_bytes = probe.g.bytesPerPage();
    options.tuning.staged_min_page_h2d = page_bytes;
    options.tuning.staging_slot_bytes = 3 * page_bytes;  // 29 pages: 10 batches, 3 pages each
    auto backend = std::move(Backend::create(BackendKind::kCuda, options)).value();
    for (HostLayout layout : {HostLayout::kPageFirst, HostLayout::kPageFirstDirect}) {
        SCOPED_TRACE(hostLayoutName(layout));
        SmallPool pool;
        pool.init(*backend, 0x57A6 + static_cast<int>(layout));
        if (HasFatalFailure()) return;
        auto stream = std::move(backend->createStream()).value();
        CopyJob load = pool.loadJob();
        load.host.layout = layout;
        const std::vector<std::byte> before(
            pool.host.data(), pool.host.data() + pool.capTokens() * pool.g.bytesPerToken());
        ASSERT_TRUE(stream->enqueueCopy(load).isOk());
        EXPECT_EQ(stream->lastPlan().path, CopyPath::kStaged);
        // Back to other host pages through the staged backup (the job's own path).
        CopyJob backup = load;
        backup.direction = Direction::kDeviceToHost;
        backup.path = CopyPath::kStaged;
        for (PageCopy& pc : backup.pages) pc.host_page = SmallPool::kPages - 1 - pc.host_page;
        ASSERT_TRUE(stream->enqueueCopy(backup).isOk());
        EXPECT_EQ(stream->lastPlan().path, CopyPath::kStaged);
        ASSERT_TRUE(stream->synchronize().isOk());
        // Every row of every loaded page on the device, and every backed-up page blob, match the
        // host pool as it was before the backup (which only wrote pages kPages - 1 - source).
        const PoolGeometry& g = pool.g;
        const std::size_t chunk = std::size_t{g.page_size} * g.row_bytes;
        std::vector<std::byte> back(chunk);
        int wrong_rows = 0;
        int wrong_blobs = 0;
        for (const PageCopy& pc : load.pages) {
            for (std::uint32_t b = 0; b < g.num_buffers; ++b) {
                for (std::uint32_t l = 0; l < g.num_layers; ++l) {
                    ASSERT_TRUE(backend
                                    ->copyFromDevice(
                                        back.data(),
                                        pool.planes[b * g.num_layers + l] + pc.device_page * chunk,
                                        chunk)
                                    .isOk());
                    for (std::uint32_t t = 0; t < g.page_size; ++t) {
                        const std::size_t token = std::size_t{pc.host_page} * g.page_size + t;
                        wrong_rows +=
                            std::memcmp(back.data() + t * g.row_bytes,
                                        before.data() + hostRowOffset(g, load.host, b, l, token),
                                        g.row_bytes) != 0;
                    }
                }
            }
            const std::size_t to = std::size_t{SmallPool::kPages - 1 - pc.host_page} * page_bytes;
            wrong_blobs += std::memcmp(pool.host.data() + to,
                                       before.data() + std::size_t{pc.host_page} * page_bytes,
                                       page_bytes) != 0;
        }
        EXPECT_EQ(wrong_rows, 0);
        EXPECT_EQ(wrong_blobs, 0);
        CopyJob subset = load;
        subset.layer_begin = 1;
        ASSERT_TRUE(stream->enqueueCopy(subset).isOk());
        EXPECT_EQ(stream->lastPlan().path, CopyPath::kKernelWarp);
        CopyJob layer_first = pool.loadJob();
        ASSERT_TRUE(stream->enqueueCopy(layer_first).isOk());
        EXPECT_EQ(stream->lastPlan().path, CopyPath::kKernelWarp);
        ASSERT_TRUE(stream->synchronize().isOk());
    }
}

TEST(CudaStripedLoad, OneRankLoadsEveryPageThroughStagingInSeveralBatches) {
    SKIP_WITHOUT_CUDA();
    if (!comm::nccl::available()) GTEST_SKIP() << "this build has no NCCL";
    auto backend = cudaBackend();
    ASSERT_NE(backend, nullptr);
    SmallPool pool;
    pool.init(*backend, 0x57A1);
    if (HasFatalFailure()) return;
    auto id = comm::nccl::newUniqueId();
    ASSERT_TRUE(id.isOk()) << id.status().toString();
    // 2 MiB of staging: 1 MiB per batch, i.e. 8 of the 29 pages (126 KiB each) per batch.
    auto loader = comm::nccl::StripedLoader::create(*backend, *id, 0, 1, 2 << 20);
    ASSERT_TRUE(loader.isOk()) << loader.status().toString();
    const CopyJob job = pool.loadJob();
    EXPECT_LT((*loader)->batchPagesPerRank(job), job.pages.size());
    auto done = (*loader)->load(job);
    ASSERT_TRUE(done.isOk()) << done.status().toString();
    ASSERT_TRUE((*done)->wait().isOk());
    for (std::uint32_t l = 0; l < pool.g.num_layers; ++l) {
        EXPECT_EQ(pool.wrongChunks(*backend, l), 0) << "layer " << l;
    }
    CopyJob backup = job;
    backup.direction = Direction::kDeviceToHost;
    EXPECT_EQ((*loader)->load(backup).status().code(), StatusCode::kInvalidArgument);
}

// A striped load into strided device rows (K and V interleaved per token, padded rows): the
// stripes go to packed staging, the scatter writes the pool's rows in place; every byte of the
// pool's blocks is checked against the naive model.
TEST(CudaStripedLoad, LoadsIntoStridedRows) {
    SKIP_WITHOUT_CUDA();
    if (!comm::nccl::available()) GTEST_SKIP() << "this build has no NCCL";
    auto backend = cudaBackend();
    ASSERT_NE(backend, nullptr);
    auto id = comm::nccl::newUniqueId();
    ASSERT_TRUE(id.isOk()) << id.status().toString();
    auto loader = comm::nccl::StripedLoader::create(*backend, *id, 0, 1, 64 << 10);
    ASSERT_TRUE(loader.isOk()) << loader.status().toString();
    auto run = [&](const CopyJob& job) -> Status {
        STRATA_ASSIGN_OR_RETURN(EventPtr done, (*loader)->load(job));
        return done->wait();
    };
    std::uint64_t seed = 0x57A1D0;
    for (const testing::StrideVariant& stride : testing::kStrideVariants) {
        for (HostLayout layout : kLayouts) {
            testing::CopyCase c = testing::stridedCase(stride, 656);
            c.layout = layout;
            c.dir = Direction::kHostToDevice;
            c.page_size = 16;
            c.layer_begin = 1;
            c.layer_end = 4;
            c.seed = seed++;
            testing::runCopyCase(*backend, c, run);
            if (HasFatalFailure()) return;
        }
    }
}

}  // namespace
}  // namespace strata::kernels
