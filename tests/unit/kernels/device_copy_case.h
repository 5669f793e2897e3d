// Test support for copies inside one device pool (Stream::enqueueDeviceCopy), shared by the unit
// (CPU) and CUDA tests: an independent naive model, and one end-to-end copy through a back end
// checked byte for byte against it, every byte that must stay untouched included.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <random>
#include <vector>

#include "copy_case.h"
#include "strata/kernels/backend.h"
#include "strata/kernels/transfer.h"

namespace strata::kernels::testing {

struct DeviceCopyCase {
    const char* name = "";
    std::uint32_t num_layers = 4;
    std::uint32_t num_buffers = 1;
    std::size_t row_bytes = 16;
    std::uint32_t page_size = 1;
    std::uint32_t layer_begin = 0;
    std::uint32_t layer_end = 4;
    std::uint32_t num_pages = 12;  // pages of the pool
    // Moves: pages 0..2 to 8..10 (a run of consecutive pages), then page 4 to 6 and 11 (one source,
    // two destinations); page 3 is read by nothing, 5 and 7 are written by nothing.
    std::vector<DevicePageMove> moves = {{0, 8}, {1, 9}, {2, 10}, {4, 6}, {4, 11}};
    std::uint64_t seed = 1;
    std::size_t row_stride =
        0;  // bytes between rows; 0: packed (the bytes between stay as they are)
};
inline void PrintTo(const DeviceCopyCase& c, std::ostream* os) { *os << c.name; }

// Applies the moves to plain byte images: dev[b * L + l] holds the plane of (b, l), rows `stride`
// bytes apart. Reads the sources from `before`, so the result does not depend on the order of the
// moves.
inline std::vector<std::vector<std::byte>> naiveDeviceCopy(
    const PoolGeometry& g, const std::vector<std::vector<std::byte>>& before,
    const std::vector<DevicePageMove>& moves, std::uint32_t lb, std::uint32_t le,
    std::size_t stride) {
    auto after = before;
    for (const DevicePageMove& m : moves) {
        for (std::uint32_t b = 0; b < g.num_buffers; ++b) {
            for (std::uint32_t l = lb; l < le; ++l) {
                const std::size_t plane = std::size_t{b} * g.num_layers + l;
                for (std::size_t t = 0; t < g.page_size; ++t) {
                    for (std::size_t k = 0; k < g.row_bytes; ++k) {
                        after[plane][(std::size_t{m.dst_page} * g.page_size + t) * stride + k] =
                            before[plane][(std::size_t{m.src_page} * g.page_size + t) * stride + k];
                    }
                }
            }
        }
    }
    return after;
}

// Fills every plane of a pool with random bytes, checks copyDevicePagesCpu on plain images against
// the naive model, then runs the copy through `backend` (enqueueDeviceCopy on a stream) and
// compares every byte of every plane with the naive model.
inline void runDeviceCopyCase(Backend& backend, const DeviceCopyCase& c) {
    SCOPED_TRACE(::testing::Message()
                 << c.name << ": layers=[" << c.layer_begin << "," << c.layer_end << ") of "
                 << c.num_layers << " buffers=" << c.num_buffers << " row_bytes=" << c.row_bytes
                 << " page_size=" << c.page_size << " row_stride=" << c.row_stride
                 << " seed=" << c.seed);
    const PoolGeometry g{c.num_layers, c.num_buffers, c.row_bytes, c.page_size};
    const std::size_t capacity = std::size_t{c.num_pages} * c.page_size;
    const std::size_t stride = c.row_stride == 0 ? c.row_bytes : c.row_stride;
    const std::size_t plane_bytes = capacity * stride;
    const std::size_t planes = std::size_t{c.num_buffers} * c.num_layers;
    std::uint64_t fill_state = c.seed;
    std::vector<std::vector<std::byte>> before(planes, std::vector<std::byte>(plane_bytes));
    for (auto& p : before) fillRandom(p.data(), plane_bytes, fill_state);
    const auto expected = naiveDeviceCopy(g, before, c.moves, c.layer_begin, c.layer_end, stride);

    // The reference on plain images must agree with the naive model.
    {
        auto ref = before;
        std::vector<std::byte*> ref_ptrs;
        for (auto& p : ref) ref_ptrs.push_back(p.data());
        const DeviceView dv{ref_ptrs.data(), capacity, c.row_stride};
        const Status valid = validateDeviceCopy(g, dv, c.moves, c.layer_begin, c.layer_end);
        ASSERT_TRUE(valid.isOk()) << valid.toString();
        copyDevicePagesCpu(g, dv, c.moves, c.layer_begin, c.layer_end);
        for (std::size_t i = 0; i < planes; ++i) {
            ASSERT_EQ(firstDifference(ref[i].data(), expected[i].data(), plane_bytes), -1)
                << "copyDevicePagesCpu: plane " << i;
        }
    }

    std::vector<Memory> dev_mem;
    std::vector<std::byte*> layer_ptrs;
    for (std::size_t i = 0; i < planes; ++i) {
        auto mem = backend.allocateDevice(plane_bytes);
        ASSERT_TRUE(mem.isOk()) << mem.status().toString();
        ASSERT_TRUE(backend.copyToDevice(mem->data(), before[i].data(), plane_bytes).isOk());
        layer_ptrs.push_back(mem->data());
        dev_mem.push_back(std::move(mem).value());
    }
    auto stream = backend.createStream();
    ASSERT_TRUE(stream.isOk()) << stream.status().toString();
    const Status queued =
        (*stream)->enqueueDeviceCopy(g, DeviceView{layer_ptrs.data(), capacity, c.row_stride},
                                     c.moves, c.layer_begin, c.layer_end);
    ASSERT_TRUE(queued.isOk()) << queued.toString();
    const Status sync = (*stream)->synchronize();
    ASSERT_TRUE(sync.isOk()) << sync.toString();

    std::vector<std::byte> readback(plane_bytes);
    for (std::size_t i = 0; i < planes; ++i) {
        ASSERT_TRUE(backend.copyFromDevice(readback.data(), layer_ptrs[i], plane_bytes).isOk());
        const long long diff = firstDifference(readback.data(), expected[i].data(), plane_bytes);
        ASSERT_EQ(diff, -1) << "plane " << i << " (buffer " << i / c.num_layers << ", layer "
                            << i % c.num_layers << "), token slot "
                            << (diff < 0 ? 0 : diff / static_cast<long long>(stride));
    }
}

// Geometries shared by the CPU and CUDA tests.
inline std::vector<DeviceCopyCase> deviceCopyCases() {
    std::vector<DeviceCopyCase> cases;
    DeviceCopyCase c;
    c.name = "kv_656_rows";  // K and V, 656-byte rows, 16-token pages, every layer
    c.num_layers = 4;
    c.num_buffers = 2;
    c.row_bytes = 656;
    c.page_size = 16;
    c.layer_begin = 0;
    c.layer_end = 4;
    c.seed = 0xD0C0001;
    cases.push_back(c);
    c.name = "mamba_state";  // one row (the state) per page, one buffer
    c.num_layers = 3;
    c.num_buffers = 1;
    c.row_bytes = 4100;
    c.page_size = 1;
    c.layer_begin = 0;
    c.layer_end = 3;
    c.seed = 0xD0C0002;
    cases.push_back(c);
    c.name = "layer_subrange";  // three buffers, six layers, layers [2, 5), odd rows
    c.num_layers = 6;
    c.num_buffers = 3;
    c.row_bytes = 20;
    c.page_size = 4;
    c.layer_begin = 2;
    c.layer_end = 5;
    c.seed = 0xD0C0003;
    cases.push_back(c);
    c.name = "one_layer_shuffled";  // a single layer; moves in no order, one long run
    c.num_layers = 5;
    c.num_buffers = 2;
    c.row_bytes = 6;
    c.page_size = 64;
    c.layer_begin = 4;
    c.layer_end = 5;
    c.num_pages = 16;
    c.moves = {{3, 12}, {0, 9}, {2, 11}, {1, 10}, {7, 4}, {7, 5}, {8, 15}};
    c.seed = 0xD0C0004;
    cases.push_back(c);
    c.name = "padded_rows";  // 656-byte rows 704 bytes apart: the padding stays as it was
    c.num_layers = 3;
    c.num_buffers = 2;
    c.row_bytes = 656;
    c.row_stride = 704;
    c.page_size = 16;
    c.layer_begin = 0;
    c.layer_end = 3;
    c.num_pages = 12;
    c.moves = DeviceCopyCase{}.moves;
    c.seed = 0xD0C0005;
    cases.push_back(c);
    c.name = "mamba_state_strided";  // one state row per page, an odd stride
    c.num_layers = 2;
    c.num_buffers = 1;
    c.row_bytes = 4100;
    c.row_stride = 4107;
    c.page_size = 1;
    c.layer_begin = 1;
    c.layer_end = 2;
    c.seed = 0xD0C0006;
    cases.push_back(c);
    return cases;
}

}  // namespace strata::kernels::testing
