#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "strata/pools/device_pool.h"
#include "strata/pools/host_pool.h"

namespace strata::pools {
namespace {

using kernels::HostLayout;

PoolSpec mhaSpec() {
    PoolSpec s;
    s.name = "kv";
    s.kind = PoolKind::kMha;
    s.num_layers = 3;
    s.num_buffers = 2;
    s.row_bytes = 656;
    s.sharded_across_tp = true;
    return s;
}

std::unique_ptr<kernels::Backend> cpu() {
    return std::move(kernels::Backend::create(kernels::BackendKind::kCpu, {})).value();
}

void expectInvalid(const Result<std::size_t>& r, const std::string& needle) {
    ASSERT_FALSE(r.isOk()) << "got " << *r;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
}

TEST(HostCapacityTokens, EachSizingRoundsDownToPages) {
    EXPECT_EQ(*hostCapacityTokens({.tokens = 1000}, 0, 0, 64), 960u);
    EXPECT_EQ(*hostCapacityTokens({.tokens = 128}, 0, 0, 64), 128u);
    EXPECT_EQ(*hostCapacityTokens({.ratio = 2.5}, 1000, 0, 64), 2496u);  // floor(2500) -> pages
    EXPECT_EQ(*hostCapacityTokens({.ratio = 0.5}, 256, 0, 64), 128u);
    EXPECT_EQ(*hostCapacityTokens({.bytes = 100 * 1024}, 0, 1024, 16), 96u);
    EXPECT_EQ(*hostCapacityTokens({.bytes = 64 * 1024}, 0, 1024, 64), 64u);
}

TEST(HostCapacityTokens, RejectsBadSizingNamingTheField) {
    expectInvalid(hostCapacityTokens({}, 1000, 1024, 64), "empty");
    expectInvalid(hostCapacityTokens({.tokens = 64, .ratio = 1.0}, 1000, 1024, 64), "ratio");
    expectInvalid(hostCapacityTokens({.tokens = 64, .bytes = 4096}, 1000, 1024, 64), "bytes");
    expectInvalid(hostCapacityTokens({.ratio = -1.0}, 1000, 1024, 64), "ratio");
    expectInvalid(hostCapacityTokens({.ratio = std::nan("")}, 1000, 1024, 64), "ratio");
    expectInvalid(
        hostCapacityTokens({.ratio = std::numeric_limits<double>::infinity()}, 1000, 1024, 64),
        "ratio");
    expectInvalid(hostCapacityTokens({.tokens = 63}, 1000, 1024, 64), "tokens");
    expectInvalid(hostCapacityTokens({.ratio = 0.05}, 1000, 1024, 64), "ratio");
    expectInvalid(hostCapacityTokens({.bytes = 1023}, 1000, 1024, 1), "bytes");
    expectInvalid(hostCapacityTokens({.bytes = 4096}, 1000, 0, 1), "bytes");
    expectInvalid(hostCapacityTokens({.tokens = 64}, 1000, 1024, 0), "page_size");
}

TEST(DevicePool, CreateAllocatesWholePagesPerBufferAndLayer) {
    auto backend = cpu();
    auto pool = DevicePool::create(*backend, mhaSpec(), 1000, 64);
    ASSERT_TRUE(pool.isOk()) << pool.status().toString();
    EXPECT_EQ(pool->capacityTokens(), 960u);
    EXPECT_EQ(pool->numPages(), 15u);
    EXPECT_EQ(pool->pageSize(), 64u);
    EXPECT_EQ(pool->backendKind(), kernels::BackendKind::kCpu);
    EXPECT_EQ(pool->sizeBytes(), 960u * 656 * 2 * 3);
    const kernels::DeviceView view = pool->view();
    EXPECT_EQ(view.capacity_tokens, 960u);
    for (std::uint32_t b = 0; b < 2; ++b) {
        for (std::uint32_t l = 0; l < 3; ++l) {
            std::byte* plane = view.layer_ptrs[b * 3 + l];
            ASSERT_NE(plane, nullptr);
            EXPECT_EQ(pool->row(b, l, 7), plane + 7 * 656);
            // Distinct planes: writing the last row of one does not touch another.
            std::memset(pool->row(b, l, 959), static_cast<int>(b * 3 + l + 1), 656);
        }
    }
    for (std::uint32_t i = 0; i < 6; ++i) {
        EXPECT_EQ(static_cast<int>(*pool->row(i / 3, i % 3, 959)), static_cast<int>(i + 1));
        EXPECT_EQ(static_cast<int>(*pool->row(i / 3, i % 3, 0)), 0);  // zero-filled
    }
    const kernels::PoolGeometry g = pool->geometry();
    EXPECT_EQ(g.row_bytes, 656u);
    EXPECT_EQ(g.page_size, 64u);
}

TEST(DevicePool, CreateRejectsLessThanOnePageAndBadSpecs) {
    auto backend = cpu();
    auto small = DevicePool::create(*backend, mhaSpec(), 63, 64);
    ASSERT_FALSE(small.isOk());
    EXPECT_EQ(small.status().code(), StatusCode::kInvalidArgument);
    PoolSpec bad = mhaSpec();
    bad.num_buffers = 0;
    EXPECT_EQ(DevicePool::create(*backend, bad, 640, 64).status().code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(DevicePool::create(*backend, mhaSpec(), 640, 0).status().code(),
              StatusCode::kInvalidArgument);
}

TEST(DevicePool, AdoptValidatesPointers) {
    std::vector<std::vector<std::byte>> arrays(6, std::vector<std::byte>(128 * 656));
    std::vector<std::byte*> ptrs;
    for (auto& a : arrays) ptrs.push_back(a.data());
    auto pool = DevicePool::adopt(kernels::BackendKind::kCuda, mhaSpec(), ptrs, 128, 64);
    ASSERT_TRUE(pool.isOk()) << pool.status().toString();
    EXPECT_EQ(pool->backendKind(), kernels::BackendKind::kCuda);
    EXPECT_EQ(pool->row(1, 2, 3), arrays[5].data() + 3 * 656);
    EXPECT_EQ(pool->numPages(), 2u);

    std::vector<std::byte*> short_list(ptrs.begin(), ptrs.begin() + 5);
    auto wrong_count =
        DevicePool::adopt(kernels::BackendKind::kCpu, mhaSpec(), short_list, 128, 64);
    EXPECT_EQ(wrong_count.status().code(), StatusCode::kInvalidArgument);
    ptrs[4] = nullptr;
    auto null_ptr = DevicePool::adopt(kernels::BackendKind::kCpu, mhaSpec(), ptrs, 128, 64);
    ASSERT_FALSE(null_ptr.isOk());
    EXPECT_EQ(null_ptr.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(null_ptr.status().message().find("layer pointer 4"), std::string::npos);
}

// K and V interleaved per token in one array per layer: V's plane starts one row in, rows lie
// two rows apart; row() and the kernels' view use that stride. A stride below the row is named.
TEST(DevicePool, AdoptKeepsTheRowStride) {
    constexpr std::size_t kRow = 656;
    std::vector<std::vector<std::byte>> layers(3, std::vector<std::byte>(128 * 2 * kRow));
    std::vector<std::byte*> ptrs;
    for (std::uint32_t b = 0; b < 2; ++b) {
        for (auto& l : layers) ptrs.push_back(l.data() + b * kRow);
    }
    auto pool = DevicePool::adopt(kernels::BackendKind::kCpu, mhaSpec(), ptrs, 128, 64, 2 * kRow);
    ASSERT_TRUE(pool.isOk()) << pool.status().toString();
    EXPECT_EQ(pool->rowStride(), 2 * kRow);
    EXPECT_EQ(pool->row(1, 2, 3), layers[2].data() + 3 * 2 * kRow + kRow);
    EXPECT_EQ(pool->view().row_stride, 2 * kRow);
    EXPECT_EQ(pool->view().rowStride(kRow), 2 * kRow);

    auto packed = DevicePool::adopt(kernels::BackendKind::kCpu, mhaSpec(), ptrs, 128, 64);
    ASSERT_TRUE(packed.isOk());
    EXPECT_EQ(packed->rowStride(), kRow);
    auto created = DevicePool::create(*cpu(), mhaSpec(), 128, 64);
    ASSERT_TRUE(created.isOk());
    EXPECT_EQ(created->rowStride(), kRow);

    auto overlapping =
        DevicePool::adopt(kernels::BackendKind::kCpu, mhaSpec(), ptrs, 128, 64, kRow - 1);
    ASSERT_FALSE(overlapping.isOk());
    EXPECT_EQ(overlapping.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(overlapping.status().message().find("row stride 655"), std::string::npos)
        << overlapping.status().message();
}

TEST(HostPool, CreateSizesTheAllocationByLayout) {
    auto backend = cpu();
    for (HostLayout layout :
         {HostLayout::kLayerFirst, HostLayout::kPageFirst, HostLayout::kPageFirstDirect}) {
        auto pool = HostPool::create(*backend, mhaSpec(), 200, 16, layout);
        ASSERT_TRUE(pool.isOk()) << pool.status().toString();
        EXPECT_EQ(pool->capacityTokens(), 192u);
        EXPECT_EQ(pool->numPages(), 12u);
        EXPECT_EQ(pool->layout(), layout);
        EXPECT_EQ(pool->sizeBytes(), 192u * 656 * 2 * 3);
        EXPECT_EQ(pool->view().base, pool->data());
        EXPECT_EQ(pool->view().layout, layout);
    }
    EXPECT_EQ(HostPool::create(*backend, mhaSpec(), 15, 16, HostLayout::kPageFirst).status().code(),
              StatusCode::kInvalidArgument);
}

TEST(HostPool, PageBlobIsContiguousAndMatchesRowOffsets) {
    auto backend = cpu();
    for (HostLayout layout : {HostLayout::kPageFirst, HostLayout::kPageFirstDirect}) {
        SCOPED_TRACE(kernels::hostLayoutName(layout));
        auto pool = HostPool::create(*backend, mhaSpec(), 64, 16, layout);
        ASSERT_TRUE(pool.isOk());
        const kernels::PoolGeometry g = pool->geometry();
        for (std::uint32_t p = 0; p < pool->numPages(); ++p) {
            std::span<std::byte> blob = pool->pageBlob(p);
            ASSERT_EQ(blob.size(), g.bytesPerPage());
            ASSERT_EQ(blob.data(), pool->data() + p * g.bytesPerPage());
            // Every row of every token of the page lies inside the blob, and no other page's does.
            for (std::uint32_t b = 0; b < g.num_buffers; ++b) {
                for (std::uint32_t l = 0; l < g.num_layers; ++l) {
                    for (std::size_t t = 0; t < pool->capacityTokens(); ++t) {
                        const std::byte* row =
                            pool->data() + kernels::hostRowOffset(g, pool->view(), b, l, t);
                        const bool inside =
                            row >= blob.data() && row + g.row_bytes <= blob.data() + blob.size();
                        EXPECT_EQ(inside, t / 16 == p) << "b=" << b << " l=" << l << " t=" << t;
                    }
                }
            }
        }
        EXPECT_TRUE(pool->pageBlob(static_cast<std::uint32_t>(pool->numPages())).empty());
    }
    auto layer_first = HostPool::create(*backend, mhaSpec(), 64, 16, HostLayout::kLayerFirst);
    ASSERT_TRUE(layer_first.isOk());
    EXPECT_TRUE(layer_first->pageBlob(0).empty());
}

TEST(HostPool, PageChecksumIsThatOfThePageInFileOrder) {
    auto backend = cpu();
    const PoolSpec spec = mhaSpec();
    std::vector<HostPool> pools;
    for (HostLayout layout :
         {HostLayout::kLayerFirst, HostLayout::kPageFirst, HostLayout::kPageFirstDirect}) {
        pools.push_back(std::move(HostPool::create(*backend, spec, 64, 16, layout)).value());
    }
    // The same rows everywhere: row (b, l, t) filled with one byte of its own.
    for (HostPool& pool : pools) {
        const kernels::PoolGeometry g = pool.geometry();
        for (std::uint32_t b = 0; b < g.num_buffers; ++b) {
            for (std::uint32_t l = 0; l < g.num_layers; ++l) {
                for (std::size_t t = 0; t < pool.capacityTokens(); ++t) {
                    std::memset(pool.data() + kernels::hostRowOffset(g, pool.view(), b, l, t),
                                static_cast<int>((t + 7 * l + 31 * b) & 0xFF), g.row_bytes);
                }
            }
        }
    }
    const kernels::PoolGeometry g = pools[0].geometry();
    for (std::uint32_t p = 0; p < pools[0].numPages(); ++p) {
        SCOPED_TRACE(p);
        // layer_first in plane order = page_first_direct's blob (plane-major, file order).
        const std::uint64_t plane_major = pageChecksum(pools[2], p);
        EXPECT_EQ(plane_major, pageBytesChecksum(g, pools[2].pageBlob(p).data()));
        EXPECT_EQ(pageChecksum(pools[0], p), plane_major);
        // page_first keeps the page token-major: other bytes in file order, another checksum.
        EXPECT_EQ(pageChecksum(pools[1], p), pageBytesChecksum(g, pools[1].pageBlob(p).data()));
        EXPECT_NE(pageChecksum(pools[1], p), plane_major);
    }
    // One byte changed: only its page's checksum changes.
    const std::uint64_t before0 = pageChecksum(pools[0], 0), before1 = pageChecksum(pools[0], 1);
    pools[0].data()[kernels::hostRowOffset(g, pools[0].view(), 1, 2, 17) + 5] ^= std::byte{1};
    EXPECT_EQ(pageChecksum(pools[0], 0), before0);
    EXPECT_NE(pageChecksum(pools[0], 1), before1);
}

TEST(Pools, DeviceToHostRoundTripThroughAStream) {
    auto backend = cpu();
    const PoolSpec spec = mhaSpec();
    auto dev = std::move(DevicePool::create(*backend, spec, 128, 16)).value();
    auto host =
        std::move(HostPool::create(*backend, spec, 64, 16, HostLayout::kPageFirstDirect)).value();
    for (std::uint32_t b = 0; b < 2; ++b) {
        for (std::uint32_t l = 0; l < 3; ++l) {
            for (std::size_t s = 0; s < 128; ++s) {
                std::memset(dev.row(b, l, s), static_cast<int>((s + 7 * l + 31 * b) & 0xFF), 656);
            }
        }
    }
    auto stream = std::move(backend->createStream()).value();
    kernels::CopyJob job{
        dev.geometry(), dev.view(), host.view(), {{5, 2}}, 0, 3, kernels::Direction::kDeviceToHost};
    ASSERT_TRUE(stream->enqueueCopy(job).isOk());
    ASSERT_TRUE(stream->synchronize().isOk());
    std::span<std::byte> blob = host.pageBlob(2);
    // page_first_direct: [buffer][layer][token_in_page][row] inside the blob.
    for (std::uint32_t b = 0; b < 2; ++b) {
        for (std::uint32_t l = 0; l < 3; ++l) {
            for (std::size_t t = 0; t < 16; ++t) {
                const std::byte got = blob[((b * 3 + l) * 16 + t) * 656 + 100];
                EXPECT_EQ(static_cast<int>(got),
                          static_cast<int>((5 * 16 + t + 7 * l + 31 * b) & 0xFF));
            }
        }
    }
}

}  // namespace
}  // namespace strata::pools
