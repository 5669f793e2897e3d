// The CUDA back end against the same naive model (and copyPagesCpu) as the CPU back end: every
// layout, direction, layer range, page size, row size (including 656-byte and unaligned rows) and
// buffer count. Skips when no CUDA device is visible.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "copy_case.h"
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

TEST_P(CudaTransferMatrix, MatchesReference) {
    SKIP_WITHOUT_CUDA();
    auto backend = cudaBackend();
    ASSERT_NE(backend, nullptr);
    auto [layout, dir, range_index, page_size] = GetParam();
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

INSTANTIATE_TEST_SUITE_P(AllLayouts, CudaTransferMatrix, testing::matrixValues(),
                         testing::matrixName);

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

}  // namespace
}  // namespace strata::kernels
