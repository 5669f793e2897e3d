// Test support shared by the unit (CPU) and CUDA transfer tests: random fills, an independent naive
// model of the three host layouts, and one end-to-end scattered copy checked byte for byte against
// it (including every byte that must stay untouched).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <numeric>
#include <ostream>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "strata/kernels/backend.h"
#include "strata/kernels/transfer.h"

namespace strata::kernels {

// Readable parameter names in gtest output (found by argument-dependent lookup).
inline void PrintTo(HostLayout layout, std::ostream* os) { *os << hostLayoutName(layout); }
inline void PrintTo(Direction dir, std::ostream* os) {
    *os << (dir == Direction::kDeviceToHost ? "device_to_host" : "host_to_device");
}

}  // namespace strata::kernels

namespace strata::kernels::testing {

// Fills bytes from a splitmix64 stream (fast enough for megabytes per case).
inline void fillRandom(std::byte* data, std::size_t n, std::uint64_t& state) {
    auto next = [&state] {
        std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    };
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        std::uint64_t v = next();
        std::memcpy(data + i, &v, 8);
    }
    if (i < n) {
        std::uint64_t v = next();
        std::memcpy(data + i, &v, n - i);
    }
}

// Row offset in the host allocation, written as "row-major array with these dimensions", which
// is how the layouts are defined, independently of kernels::hostRowOffset.
inline std::size_t naiveHostOffset(HostLayout layout, const PoolGeometry& g, std::size_t cap,
                                   std::size_t b, std::size_t l, std::size_t t) {
    auto rowMajor = [](std::initializer_list<std::size_t> dims,
                       std::initializer_list<std::size_t> index) {
        std::size_t off = 0;
        auto d = dims.begin();
        for (std::size_t i : index) off = off * *d++ + i;
        return off;
    };
    const std::size_t B = g.num_buffers, L = g.num_layers, P = g.page_size;
    std::size_t row_index = 0;
    switch (layout) {
        case HostLayout::kLayerFirst:  // [buffer][layer][token]
            row_index = rowMajor({B, L, cap}, {b, l, t});
            break;
        case HostLayout::kPageFirst:  // [token][buffer][layer]
            row_index = rowMajor({cap, B, L}, {t, b, l});
            break;
        case HostLayout::kPageFirstDirect:  // [page][buffer][layer][token_in_page]
            row_index = rowMajor({cap / P, B, L, P}, {t / P, b, l, t % P});
            break;
    }
    return row_index * g.row_bytes;
}

// Applies the copy to plain byte images: dev[b * L + l] points at the plane of (b, l), whose row
// of token slot s is dev_stride * s bytes further.
inline void naiveCopy(const PoolGeometry& g, HostLayout layout, std::size_t host_cap,
                      const std::vector<std::byte*>& dev, std::size_t dev_stride,
                      std::vector<std::byte>& host, const std::vector<PageCopy>& pages,
                      std::uint32_t lb, std::uint32_t le, Direction dir) {
    for (const PageCopy& pc : pages) {
        for (std::uint32_t b = 0; b < g.num_buffers; ++b) {
            for (std::uint32_t l = lb; l < le; ++l) {
                for (std::size_t i = 0; i < g.page_size; ++i) {
                    std::byte* d = dev[b * g.num_layers + l] +
                                   (std::size_t{pc.device_page} * g.page_size + i) * dev_stride;
                    std::byte* h =
                        host.data() + naiveHostOffset(layout, g, host_cap, b, l,
                                                      std::size_t{pc.host_page} * g.page_size + i);
                    for (std::size_t k = 0; k < g.row_bytes; ++k) {
                        if (dir == Direction::kDeviceToHost) {
                            h[k] = d[k];
                        } else {
                            d[k] = h[k];
                        }
                    }
                }
            }
        }
    }
}

// Index of the first differing byte, or -1.
inline long long firstDifference(const std::byte* a, const std::byte* b, std::size_t n) {
    if (std::memcmp(a, b, n) == 0) return -1;
    for (std::size_t i = 0; i < n; ++i) {
        if (a[i] != b[i]) return static_cast<long long>(i);
    }
    return -1;
}

// `count` distinct device pages paired with `count` distinct host pages, both in random order.
inline std::vector<PageCopy> randomPairs(std::size_t device_pages, std::size_t host_pages,
                                         std::size_t count, std::mt19937_64& rng) {
    std::vector<std::uint32_t> d(device_pages), h(host_pages);
    std::iota(d.begin(), d.end(), 0u);
    std::iota(h.begin(), h.end(), 0u);
    std::shuffle(d.begin(), d.end(), rng);
    std::shuffle(h.begin(), h.end(), rng);
    std::vector<PageCopy> pairs;
    for (std::size_t i = 0; i < count; ++i) pairs.push_back({d[i], h[i]});
    return pairs;
}

struct CopyCase {
    HostLayout layout = HostLayout::kLayerFirst;
    Direction dir = Direction::kDeviceToHost;
    std::uint32_t num_layers = 4;
    std::uint32_t layer_begin = 0;
    std::uint32_t layer_end = 4;
    std::uint32_t num_buffers = 1;
    std::size_t row_bytes = 16;
    std::uint32_t page_size = 1;
    std::uint64_t seed = 1;
    // Device rows: row_stride bytes apart (0: packed). With interleave_buffers the buffers of a
    // layer share one block, buffer b's row of slot s at b * row_bytes + s * row_stride (K and V
    // interleaved per token; row_stride >= num_buffers * row_bytes); else each plane is a block.
    std::size_t row_stride = 0;
    bool interleave_buffers = false;
};

// Runs one scattered copy through `backend` (device memory from allocateDevice, host memory from
// allocateHost, a stream) and checks every byte of both pools against the naive model (with strided
// rows, the bytes between rows must stay as they were). Also checks that copyPagesCpu on plain
// images agrees with the naive model.
// `run` (when given) runs the job to completion instead of a stream of the back end (e.g. a striped
// load).
using CopyRunner = std::function<Status(const CopyJob&)>;
inline void runCopyCase(Backend& backend, const CopyCase& c, const CopyRunner& run = {}) {
    SCOPED_TRACE(::testing::Message()
                 << "layout=" << hostLayoutName(c.layout)
                 << " dir=" << (c.dir == Direction::kDeviceToHost ? "d2h" : "h2d") << " layers=["
                 << c.layer_begin << "," << c.layer_end << ") of " << c.num_layers
                 << " buffers=" << c.num_buffers << " row_bytes=" << c.row_bytes
                 << " page_size=" << c.page_size << " row_stride=" << c.row_stride
                 << (c.interleave_buffers ? " interleaved" : "") << " seed=" << c.seed);
    const PoolGeometry g{c.num_layers, c.num_buffers, c.row_bytes, c.page_size};
    constexpr std::size_t kDevicePages = 7, kHostPages = 6, kPairs = 4;
    const std::size_t dev_cap = kDevicePages * c.page_size;
    const std::size_t host_cap = kHostPages * c.page_size;
    const std::size_t stride = c.row_stride == 0 ? c.row_bytes : c.row_stride;
    const std::size_t block_bytes = dev_cap * stride;  // one allocation
    const std::size_t planes = std::size_t{c.num_buffers} * c.num_layers;
    const std::size_t blocks = c.interleave_buffers ? c.num_layers : planes;
    ASSERT_TRUE(!c.interleave_buffers || stride >= c.num_buffers * c.row_bytes);
    // Plane (b, l) = i lies in block blockOf(i) at offsetOf(i).
    auto blockOf = [&](std::size_t i) { return c.interleave_buffers ? i % c.num_layers : i; };
    auto offsetOf = [&](std::size_t i) {
        return c.interleave_buffers ? i / c.num_layers * c.row_bytes : 0;
    };
    auto planePtrs = [&](std::vector<std::vector<std::byte>>& images) {
        std::vector<std::byte*> ptrs;
        for (std::size_t i = 0; i < planes; ++i)
            ptrs.push_back(images[blockOf(i)].data() + offsetOf(i));
        return ptrs;
    };
    std::uint64_t fill_state = c.seed;
    std::mt19937_64 rng(c.seed);

    std::vector<std::vector<std::byte>> dev_image(blocks, std::vector<std::byte>(block_bytes));
    std::vector<Memory> dev_mem;
    for (std::size_t i = 0; i < blocks; ++i) {
        fillRandom(dev_image[i].data(), block_bytes, fill_state);
        auto mem = backend.allocateDevice(block_bytes);
        ASSERT_TRUE(mem.isOk()) << mem.status().toString();
        ASSERT_TRUE(backend.copyToDevice(mem->data(), dev_image[i].data(), block_bytes).isOk());
        dev_mem.push_back(std::move(mem).value());
    }
    std::vector<std::byte*> layer_ptrs;
    for (std::size_t i = 0; i < planes; ++i) {
        layer_ptrs.push_back(dev_mem[blockOf(i)].data() + offsetOf(i));
    }
    const std::size_t host_bytes = hostBytes(g, host_cap);
    auto host_mem = backend.allocateHost(host_bytes);
    ASSERT_TRUE(host_mem.isOk()) << host_mem.status().toString();
    std::vector<std::byte> host_image(host_bytes);
    fillRandom(host_image.data(), host_bytes, fill_state);
    std::memcpy(host_mem->data(), host_image.data(), host_bytes);

    const std::vector<PageCopy> pairs = randomPairs(kDevicePages, kHostPages, kPairs, rng);

    // Expected images, from the naive model.
    auto dev_expected = dev_image;
    auto host_expected = host_image;
    naiveCopy(g, c.layout, host_cap, planePtrs(dev_expected), stride, host_expected, pairs,
              c.layer_begin, c.layer_end, c.dir);

    // The reference on plain images must agree with the naive model.
    {
        auto dev_ref = dev_image;
        auto host_ref = host_image;
        const std::vector<std::byte*> ref_ptrs = planePtrs(dev_ref);
        const DeviceView dv{ref_ptrs.data(), dev_cap, c.row_stride};
        const HostView hv{host_ref.data(), c.layout, host_cap};
        ASSERT_TRUE(validateCopy(g, dv, hv, pairs, c.layer_begin, c.layer_end).isOk());
        copyPagesCpu(g, dv, hv, pairs, c.layer_begin, c.layer_end, c.dir);
        for (std::size_t i = 0; i < blocks; ++i) {
            ASSERT_EQ(firstDifference(dev_ref[i].data(), dev_expected[i].data(), block_bytes), -1)
                << "copyPagesCpu: device block " << i;
        }
        ASSERT_EQ(firstDifference(host_ref.data(), host_expected.data(), host_bytes), -1)
            << "copyPagesCpu: host";
    }

    CopyJob job;
    job.geometry = g;
    job.device = DeviceView{layer_ptrs.data(), dev_cap, c.row_stride};
    job.host = HostView{host_mem->data(), c.layout, host_cap};
    job.pages = pairs;
    job.layer_begin = c.layer_begin;
    job.layer_end = c.layer_end;
    job.direction = c.dir;
    if (run) {
        const Status ran = run(job);
        ASSERT_TRUE(ran.isOk()) << ran.toString();
    } else {
        auto stream = backend.createStream();
        ASSERT_TRUE(stream.isOk()) << stream.status().toString();
        ASSERT_TRUE((*stream)->enqueueCopy(job).isOk());
        Status sync = (*stream)->synchronize();
        ASSERT_TRUE(sync.isOk()) << sync.toString();
    }

    std::vector<std::byte> readback(block_bytes);
    for (std::size_t i = 0; i < blocks; ++i) {
        ASSERT_TRUE(backend.copyFromDevice(readback.data(), dev_mem[i].data(), block_bytes).isOk());
        const long long diff =
            firstDifference(readback.data(), dev_expected[i].data(), block_bytes);
        ASSERT_EQ(diff, -1) << "device block " << i << ", token slot "
                            << (diff < 0 ? 0 : diff / static_cast<long long>(stride))
                            << ", byte in the slot "
                            << (diff < 0 ? 0 : diff % static_cast<long long>(stride));
    }
    const long long diff = firstDifference(host_mem->data(), host_expected.data(), host_bytes);
    ASSERT_EQ(diff, -1) << "host byte " << diff;
}

// The parameter matrix shared by the CPU and CUDA transfer tests: host layout x direction x layer
// range (an index into kLayerRanges, 4-layer pools) x page size, with readable test names.
inline constexpr HostLayout kLayouts[] = {HostLayout::kLayerFirst, HostLayout::kPageFirst,
                                          HostLayout::kPageFirstDirect};
struct LayerRange {
    const char* name;
    std::uint32_t begin, end;
};
inline constexpr LayerRange kLayerRanges[] = {{"one", 2, 3}, {"all", 0, 4}, {"sub", 1, 3}};
using MatrixParam = std::tuple<HostLayout, Direction, int, std::uint32_t>;

inline auto matrixValues() {
    return ::testing::Combine(::testing::ValuesIn(kLayouts),
                              ::testing::Values(Direction::kDeviceToHost, Direction::kHostToDevice),
                              ::testing::Values(0, 1, 2), ::testing::Values(1u, 16u, 64u));
}

inline std::string matrixName(const ::testing::TestParamInfo<MatrixParam>& info) {
    auto [layout, dir, range_index, page_size] = info.param;
    return std::string(hostLayoutName(layout)) + "_" +
           (dir == Direction::kDeviceToHost ? "d2h" : "h2d") + "_" +
           kLayerRanges[range_index].name + "_p" + std::to_string(page_size);
}

// Strided device rows shared by the CPU and CUDA tests: row sizes x (K and V interleaved per token
// in one block, a stride of two rows; padded rows, planes of their own).
struct StrideVariant {
    const char* name;
    std::uint32_t buffers;
    std::size_t extra;  // bytes of padding after each row (per token when interleaved)
    bool interleave;
};
inline constexpr StrideVariant kStrideVariants[] = {
    {"interleaved_kv", 2, 0, true},       // (rows, 2, row): slot stride 2 * row_bytes
    {"interleaved_kv_pad", 2, 16, true},  // and 16 bytes after each token's K and V
    {"padded_rows", 1, 48, false},        // a row padded to row_bytes + 48
    {"padded_rows_odd", 2, 5, false},     // an odd stride: no 16/8/4-byte access fits it
};

inline CopyCase stridedCase(const StrideVariant& v, std::size_t row_bytes) {
    CopyCase c;
    c.num_buffers = v.buffers;
    c.row_bytes = row_bytes;
    c.interleave_buffers = v.interleave;
    c.row_stride = (v.interleave ? v.buffers * row_bytes : row_bytes) + v.extra;
    return c;
}

}  // namespace strata::kernels::testing
