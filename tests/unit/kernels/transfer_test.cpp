#include "strata/kernels/transfer.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <tuple>

#include "copy_case.h"
#include "strata/kernels/backend.h"

namespace strata::kernels {
namespace {

using testing::kLayerRanges;
using testing::kLayouts;
using testing::MatrixParam;

using testing::CopyCase;

TEST(HostLayout, NamesRoundTrip) {
    for (HostLayout layout : kLayouts) {
        auto parsed = parseHostLayout(hostLayoutName(layout));
        ASSERT_TRUE(parsed.isOk());
        EXPECT_EQ(*parsed, layout);
    }
    EXPECT_EQ(hostLayoutName(HostLayout::kPageFirstDirect), "page_first_direct");
    auto bad = parseHostLayout("page_last");
    ASSERT_FALSE(bad.isOk());
    EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(bad.status().message().find("page_last"), std::string::npos);
}

TEST(PoolGeometry, ValidateNamesTheZeroField) {
    const PoolGeometry good{4, 2, 656, 64};
    EXPECT_TRUE(good.validate().isOk());
    EXPECT_EQ(good.bytesPerToken(), 656u * 2 * 4);
    EXPECT_EQ(good.bytesPerPage(), 656u * 2 * 4 * 64);
    for (const char* field : {"num_layers", "num_buffers", "row_bytes", "page_size"}) {
        PoolGeometry g = good;
        if (std::string(field) == "num_layers") g.num_layers = 0;
        if (std::string(field) == "num_buffers") g.num_buffers = 0;
        if (std::string(field) == "row_bytes") g.row_bytes = 0;
        if (std::string(field) == "page_size") g.page_size = 0;
        Status s = g.validate();
        ASSERT_FALSE(s.isOk()) << field;
        EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
        EXPECT_NE(s.message().find(field), std::string::npos) << s.message();
    }
}

TEST(HostRowOffset, MatchesTheLayoutDefinitions) {
    const PoolGeometry g{3, 2, 24, 4};
    const std::size_t cap = 5 * g.page_size;
    EXPECT_EQ(hostBytes(g, cap), cap * 24 * 2 * 3);
    for (HostLayout layout : kLayouts) {
        const HostView hv{nullptr, layout, cap};
        for (std::uint32_t b = 0; b < g.num_buffers; ++b) {
            for (std::uint32_t l = 0; l < g.num_layers; ++l) {
                for (std::size_t t = 0; t < cap; ++t) {
                    ASSERT_EQ(hostRowOffset(g, hv, b, l, t),
                              testing::naiveHostOffset(layout, g, cap, b, l, t))
                        << hostLayoutName(layout) << " b=" << b << " l=" << l << " t=" << t;
                }
            }
        }
    }
    // Spot values, by hand: page_first keeps a token's rows together, direct a (page, plane) block.
    EXPECT_EQ(hostRowOffset(g, {nullptr, HostLayout::kLayerFirst, cap}, 1, 2, 3),
              ((1 * 3 + 2) * cap + 3) * 24);
    EXPECT_EQ(hostRowOffset(g, {nullptr, HostLayout::kPageFirst, cap}, 1, 2, 3), 3 * 144 + 5 * 24);
    EXPECT_EQ(hostRowOffset(g, {nullptr, HostLayout::kPageFirstDirect, cap}, 1, 2, 5),
              1 * 576 + (5 * 4 + 1) * 24);
}

class ValidateCopy : public ::testing::Test {
protected:
    PoolGeometry g{4, 2, 16, 8};
    std::vector<std::byte> storage = std::vector<std::byte>(4096);
    std::vector<std::byte*> ptrs = std::vector<std::byte*>(8, storage.data());
    DeviceView dev{ptrs.data(), 3 * 8};                                // 3 pages
    HostView host{storage.data(), HostLayout::kPageFirst, 2 * 8 + 7};  // 2 whole pages
};

TEST_F(ValidateCopy, AcceptsInRangePagesAndLayers) {
    const std::vector<PageCopy> pages{{2, 1}, {0, 0}};
    EXPECT_TRUE(validateCopy(g, dev, host, pages, 0, 4).isOk());
    EXPECT_TRUE(validateCopy(g, dev, host, pages, 3, 4).isOk());
    EXPECT_TRUE(validateCopy(g, dev, host, {}, 0, 1).isOk());
}

TEST_F(ValidateCopy, RejectsOutOfRangePagesNamingThem) {
    for (auto [pages, needle] : {std::pair{std::vector<PageCopy>{{0, 0}, {3, 0}}, "device page 3"},
                                 std::pair{std::vector<PageCopy>{{1, 2}}, "host page 2"}}) {
        Status s = validateCopy(g, dev, host, pages, 0, 4);
        ASSERT_FALSE(s.isOk());
        EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
        EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
    }
}

TEST_F(ValidateCopy, RejectsBadLayerRanges) {
    const std::vector<PageCopy> pages{{0, 0}};
    for (auto [begin, end] : {std::pair{0u, 0u}, std::pair{2u, 1u}, std::pair{0u, 5u},
                              std::pair{4u, 5u}, std::pair{3u, 3u}}) {
        Status s = validateCopy(g, dev, host, pages, begin, end);
        ASSERT_FALSE(s.isOk()) << begin << ".." << end;
        EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
        EXPECT_NE(s.message().find(std::to_string(end)), std::string::npos) << s.message();
    }
}

TEST_F(ValidateCopy, RejectsBadGeometryAndNullViews) {
    const std::vector<PageCopy> pages{{0, 0}};
    PoolGeometry bad = g;
    bad.row_bytes = 0;
    EXPECT_EQ(validateCopy(bad, dev, host, pages, 0, 1).code(), StatusCode::kInvalidArgument);
    HostView null_host = host;
    null_host.base = nullptr;
    EXPECT_EQ(validateCopy(g, dev, null_host, pages, 0, 1).code(), StatusCode::kInvalidArgument);
    ptrs[5] = nullptr;  // buffer 1, layer 1
    Status s = validateCopy(g, dev, host, pages, 0, 4);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("layer 1"), std::string::npos) << s.message();
}

// The whole matrix: layout x direction x layer range x page size, and inside each, row sizes
// (including ones that defeat 16/8/4-byte vector paths) and 1 or 2 buffers.
constexpr std::size_t kRowBytes[] = {6, 16, 20, 128, 656, 1152, 2048};

class TransferMatrix : public ::testing::TestWithParam<MatrixParam> {};

TEST_P(TransferMatrix, CpuBackendMatchesNaiveModel) {
    auto [layout, dir, range_index, page_size] = GetParam();
    auto backend = Backend::create(BackendKind::kCpu, {});
    ASSERT_TRUE(backend.isOk());
    std::uint64_t seed = 0x5717A7A0ull + static_cast<std::uint64_t>(layout) * 1000 +
                         static_cast<std::uint64_t>(dir) * 100 + range_index * 10 + page_size;
    for (std::size_t row_bytes : kRowBytes) {
        for (std::uint32_t buffers : {1u, 2u}) {
            CopyCase c;
            c.layout = layout;
            c.dir = dir;
            c.layer_begin = kLayerRanges[range_index].begin;
            c.layer_end = kLayerRanges[range_index].end;
            c.num_buffers = buffers;
            c.row_bytes = row_bytes;
            c.page_size = page_size;
            c.seed = seed++;
            testing::runCopyCase(**backend, c);
            if (HasFatalFailure()) return;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(AllLayouts, TransferMatrix, testing::matrixValues(), testing::matrixName);

// Strided device rows (DeviceView::row_stride): K and V interleaved per token in one block (with
// and without padding after each token), rows padded to a larger or odd stride; every layout,
// direction, layer range and page size. The bytes between rows (the other buffer's rows, the
// padding) must stay untouched: runCopyCase compares every byte of each block.
class StridedTransferMatrix : public ::testing::TestWithParam<MatrixParam> {};

TEST_P(StridedTransferMatrix, CpuBackendMatchesNaiveModel) {
    auto [layout, dir, range_index, page_size] = GetParam();
    auto backend = Backend::create(BackendKind::kCpu, {});
    ASSERT_TRUE(backend.isOk());
    std::uint64_t seed = 0x57121DE0ull + static_cast<std::uint64_t>(layout) * 1000 +
                         static_cast<std::uint64_t>(dir) * 100 + range_index * 10 + page_size;
    for (const testing::StrideVariant& variant : testing::kStrideVariants) {
        for (std::size_t row_bytes : {std::size_t{6}, std::size_t{16}, std::size_t{656}}) {
            CopyCase c = testing::stridedCase(variant, row_bytes);
            c.layout = layout;
            c.dir = dir;
            c.layer_begin = kLayerRanges[range_index].begin;
            c.layer_end = kLayerRanges[range_index].end;
            c.page_size = page_size;
            c.seed = seed++;
            testing::runCopyCase(**backend, c);
            if (HasFatalFailure()) return;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(AllLayouts, StridedTransferMatrix, testing::matrixValues(),
                         testing::matrixName);

TEST_F(ValidateCopy, RejectsARowStrideBelowTheRow) {
    const std::vector<PageCopy> pages{{0, 0}};
    DeviceView strided = dev;
    strided.row_stride = g.row_bytes;  // packed, said explicitly
    EXPECT_TRUE(validateCopy(g, strided, host, pages, 0, 4).isOk());
    strided.row_stride = g.row_bytes - 1;
    Status s = validateCopy(g, strided, host, pages, 0, 4);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("row stride 15"), std::string::npos) << s.message();
    s = validateDeviceCopy(g, strided, std::vector<DevicePageMove>{{0, 1}}, 0, 4);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("row stride 15"), std::string::npos) << s.message();
}

// device -> host -> device into different pages is bit exact, for every layout.
TEST(TransferRoundTrip, DeviceHostDeviceIsBitExact) {
    const PoolGeometry g{3, 2, 656, 16};
    const std::size_t dev_cap = 8 * g.page_size, host_cap = 4 * g.page_size;
    const std::uint64_t seed = 0xC0FFEEull;
    SCOPED_TRACE(::testing::Message() << "seed=" << seed);
    for (HostLayout layout : kLayouts) {
        SCOPED_TRACE(hostLayoutName(layout));
        std::uint64_t state = seed;
        std::vector<std::vector<std::byte>> planes(6, std::vector<std::byte>(dev_cap * 656));
        std::vector<std::byte*> ptrs;
        for (auto& p : planes) {
            testing::fillRandom(p.data(), p.size(), state);
            ptrs.push_back(p.data());
        }
        std::vector<std::byte> host(hostBytes(g, host_cap));
        testing::fillRandom(host.data(), host.size(), state);
        const DeviceView dv{ptrs.data(), dev_cap};
        const HostView hv{host.data(), layout, host_cap};
        const std::vector<PageCopy> out{{1, 3}, {6, 0}, {2, 2}};
        const std::vector<PageCopy> back{{4, 3}, {0, 0}, {7, 2}};
        copyPagesCpu(g, dv, hv, out, 0, 3, Direction::kDeviceToHost);
        copyPagesCpu(g, dv, hv, back, 0, 3, Direction::kHostToDevice);
        const std::size_t chunk = g.page_size * g.row_bytes;
        for (std::size_t i = 0; i < out.size(); ++i) {
            for (const auto& p : planes) {
                EXPECT_EQ(std::memcmp(p.data() + back[i].device_page * chunk,
                                      p.data() + out[i].device_page * chunk, chunk),
                          0)
                    << "device page " << out[i].device_page << " -> " << back[i].device_page;
            }
        }
    }
}

}  // namespace
}  // namespace strata::kernels
