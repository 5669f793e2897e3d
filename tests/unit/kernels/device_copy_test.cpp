// Copies inside one device pool (validateDeviceCopy, copyDevicePagesCpu, and
// Stream::enqueueDeviceCopy on the CPU back end): exact bytes for several geometries, FIFO order
// with the stream's other work, and rejection of bad input with nothing queued.
#include <gtest/gtest.h>

#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "copy_case.h"
#include "device_copy_case.h"
#include "gate_event.h"
#include "strata/kernels/backend.h"

namespace strata::kernels {
namespace {

std::unique_ptr<Backend> cpuBackend(BackendOptions options = {}) {
    auto b = Backend::create(BackendKind::kCpu, options);
    EXPECT_TRUE(b.isOk());
    return std::move(b).value();
}

using testing::Gate;

class DeviceCopyGeometry : public ::testing::TestWithParam<testing::DeviceCopyCase> {};

TEST_P(DeviceCopyGeometry, CpuStreamMatchesNaiveModel) {
    auto backend = cpuBackend();
    testing::runDeviceCopyCase(*backend, GetParam());
}

TEST_P(DeviceCopyGeometry, CpuStreamWithJitterMatchesNaiveModel) {
    BackendOptions options;
    options.jitter_us = 200;
    options.jitter_seed = GetParam().seed;
    auto backend = cpuBackend(options);
    testing::runDeviceCopyCase(*backend, GetParam());
}

INSTANTIATE_TEST_SUITE_P(Geometries, DeviceCopyGeometry,
                         ::testing::ValuesIn(testing::deviceCopyCases()),
                         [](const ::testing::TestParamInfo<testing::DeviceCopyCase>& info) {
                             return std::string(info.param.name);
                         });

// A pool of two buffers x three layers of 656-byte rows, 4-token pages, random bytes, plus a
// layer_first host pool of the same capacity.
struct Pools {
    static constexpr std::uint32_t kPages = 8;
    PoolGeometry g{3, 2, 656, 4};
    std::vector<Memory> planes_mem;
    std::vector<std::byte*> planes;
    Memory host;

    Pools(Backend& backend, std::uint64_t seed) {
        for (std::uint32_t i = 0; i < g.num_buffers * g.num_layers; ++i) {
            planes_mem.push_back(std::move(backend.allocateDevice(planeBytes())).value());
            planes.push_back(planes_mem.back().data());
            testing::fillRandom(planes.back(), planeBytes(), seed);
        }
        host = std::move(backend.allocateHost(hostBytes(g, capacity()))).value();
        testing::fillRandom(host.data(), host.size(), seed);
    }
    std::size_t capacity() const { return std::size_t{kPages} * g.page_size; }
    std::size_t planeBytes() const { return capacity() * g.row_bytes; }
    std::size_t chunk() const { return std::size_t{g.page_size} * g.row_bytes; }
    DeviceView view() const { return DeviceView{planes.data(), capacity()}; }
    std::byte* devPage(std::size_t plane, std::uint32_t page) const {
        return planes[plane] + page * chunk();
    }
    // layer_first host pool: plane-major like the device, so a host page of a plane is contiguous.
    std::byte* hostPage(std::size_t plane, std::uint32_t page) const {
        return host.data() + plane * planeBytes() + page * chunk();
    }
    std::vector<std::vector<std::byte>> snapshot() const {
        std::vector<std::vector<std::byte>> s;
        for (std::byte* p : planes) s.emplace_back(p, p + planeBytes());
        return s;
    }
};

TEST(CpuDeviceCopy, RunsAfterAnEarlierCopyOnTheSameStream) {
    const std::uint64_t seed = 0xD0C0010;
    SCOPED_TRACE(::testing::Message() << "seed=" << seed);
    BackendOptions options;
    options.jitter_us = 300;  // each job lands late; order must still hold
    options.jitter_seed = seed;
    auto backend = cpuBackend(options);
    Pools pools(*backend, seed);
    auto stream = std::move(backend->createStream()).value();
    auto gate = std::make_shared<Gate>();
    ASSERT_TRUE(stream->waitFor(gate).isOk());

    // Host page 5 -> device page 2, then device page 2 -> device pages 6 and 7: the device copy
    // must read what the load wrote.
    CopyJob load;
    load.geometry = pools.g;
    load.device = pools.view();
    load.host = HostView{pools.host.data(), HostLayout::kLayerFirst, pools.capacity()};
    load.pages = {{2, 5}};
    load.layer_begin = 0;
    load.layer_end = pools.g.num_layers;
    load.direction = Direction::kHostToDevice;
    ASSERT_TRUE(stream->enqueueCopy(load).isOk());
    const std::vector<DevicePageMove> moves = {{2, 6}, {2, 7}};
    ASSERT_TRUE(
        stream->enqueueDeviceCopy(pools.g, pools.view(), moves, 0, pools.g.num_layers).isOk());
    EventPtr done = std::move(stream->record()).value();
    EXPECT_FALSE(done->query());

    gate->open();
    ASSERT_TRUE(done->wait().isOk());
    for (std::size_t plane = 0; plane < pools.planes.size(); ++plane) {
        for (std::uint32_t page : {2u, 6u, 7u}) {
            EXPECT_EQ(
                std::memcmp(pools.devPage(plane, page), pools.hostPage(plane, 5), pools.chunk()), 0)
                << "plane " << plane << " page " << page;
        }
    }
}

TEST(CpuDeviceCopy, QueuedCopyKeepsItsOwnMovesAndPointerTable) {
    const std::uint64_t seed = 0xD0C0011;
    SCOPED_TRACE(::testing::Message() << "seed=" << seed);
    auto backend = cpuBackend();
    Pools pools(*backend, seed);
    const auto before = pools.snapshot();
    auto stream = std::move(backend->createStream()).value();
    auto gate = std::make_shared<Gate>();
    ASSERT_TRUE(stream->waitFor(gate).isOk());
    {
        // The caller's table and moves die (scribbled over first) before the copy runs.
        std::vector<std::byte*> table = pools.planes;
        std::vector<DevicePageMove> moves = {{1, 4}};
        ASSERT_TRUE(stream
                        ->enqueueDeviceCopy(pools.g, DeviceView{table.data(), pools.capacity()},
                                            moves, 1, 3)
                        .isOk());
        for (std::byte*& p : table) p = nullptr;
        moves[0] = {0, 0};
    }
    gate->open();
    ASSERT_TRUE(stream->synchronize().isOk());
    for (std::uint32_t b = 0; b < pools.g.num_buffers; ++b) {
        for (std::uint32_t l = 0; l < pools.g.num_layers; ++l) {
            const std::size_t plane = std::size_t{b} * pools.g.num_layers + l;
            const bool copied = l >= 1 && l < 3;
            const std::byte* want = before[plane].data() + (copied ? 1 : 4) * pools.chunk();
            EXPECT_EQ(std::memcmp(pools.devPage(plane, 4), want, pools.chunk()), 0)
                << "buffer " << b << " layer " << l;
        }
    }
}

struct BadInput {
    const char* what;
    PoolGeometry g;
    bool null_table;
    std::vector<DevicePageMove> moves;
    std::uint32_t layer_begin, layer_end;
    const char* message_part;  // the error message names the problem
};

TEST(CpuDeviceCopy, RejectsInvalidInputAndQueuesNothing) {
    const std::uint64_t seed = 0xD0C0012;
    auto backend = cpuBackend();
    Pools pools(*backend, seed);
    const PoolGeometry g = pools.g;
    PoolGeometry zero_rows = g;
    zero_rows.row_bytes = 0;
    // Every case starts with a valid move (0 -> 1), so a partly queued job would show.
    const std::vector<BadInput> cases = {
        {"bad geometry", zero_rows, false, {{0, 1}}, 0, 3, "row_bytes"},
        {"empty layer range", g, false, {{0, 1}}, 2, 2, "layer range"},
        {"layers beyond the pool", g, false, {{0, 1}}, 1, 4, "layer range"},
        {"null layer table", g, true, {{0, 1}}, 0, 3, "layer pointers"},
        {"source out of range", g, false, {{0, 1}, {Pools::kPages, 2}}, 0, 3, "source page 8"},
        {"destination out of range", g, false, {{0, 1}, {2, 100}}, 0, 3, "destination page 100"},
        {"page onto itself", g, false, {{0, 1}, {3, 3}}, 0, 3, "both source and destination"},
        {"destination read later", g, false, {{0, 1}, {1, 2}}, 0, 3, "source page 1"},
        {"source written later", g, false, {{0, 1}, {2, 0}}, 0, 3, "destination page 0"},
        {"destination twice", g, false, {{0, 1}, {2, 1}}, 0, 3, "already the destination"},
    };
    const auto before = pools.snapshot();
    auto stream = std::move(backend->createStream()).value();
    for (const BadInput& c : cases) {
        SCOPED_TRACE(c.what);
        DeviceView view = pools.view();
        if (c.null_table) view.layer_ptrs = nullptr;
        const Status direct = validateDeviceCopy(c.g, view, c.moves, c.layer_begin, c.layer_end);
        EXPECT_EQ(direct.code(), StatusCode::kInvalidArgument);
        EXPECT_NE(direct.message().find(c.message_part), std::string::npos) << direct.message();
        const Status s = stream->enqueueDeviceCopy(c.g, view, c.moves, c.layer_begin, c.layer_end);
        EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.toString();
    }
    ASSERT_TRUE(stream->synchronize().isOk());
    const auto after = pools.snapshot();
    for (std::size_t i = 0; i < before.size(); ++i) {
        EXPECT_EQ(before[i], after[i]) << "plane " << i << " changed";
    }
}

TEST(CpuDeviceCopy, EmptyMovesAndOneSourceToManyAreValid) {
    auto backend = cpuBackend();
    Pools pools(*backend, 0xD0C0013);
    const auto before = pools.snapshot();
    auto stream = std::move(backend->createStream()).value();
    EXPECT_TRUE(stream->enqueueDeviceCopy(pools.g, pools.view(), {}, 0, 3).isOk());
    const std::vector<DevicePageMove> fan_out = {{5, 0}, {5, 1}, {5, 7}};
    EXPECT_TRUE(validateDeviceCopy(pools.g, pools.view(), fan_out, 0, 3).isOk());
    ASSERT_TRUE(stream->synchronize().isOk());
    EXPECT_EQ(before, pools.snapshot());
}

}  // namespace
}  // namespace strata::kernels
