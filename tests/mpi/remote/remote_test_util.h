// Helpers of the remote-tier MPI tests: CPU host pools, deterministic page bytes per page id,
// a transport per test, and the pid of every rank (for SIGSTOP/SIGCONT).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "strata/comm/mpi_comm.h"
#include "strata/comm/ucx/transport.h"
#include "strata/core/hash.h"
#include "strata/io/remote_page_store.h"
#include "strata/kernels/backend.h"
#include "strata/pools/host_pool.h"

namespace strata::io::testing {

inline std::unique_ptr<kernels::Backend> cpuBackend() {
    return std::move(kernels::Backend::create(kernels::BackendKind::kCpu, {})).value();
}

inline pools::HostPool makePool(kernels::Backend& backend, std::uint32_t pages,
                                kernels::HostLayout layout, std::size_t row_bytes = 256,
                                std::uint32_t page_size = 16) {
    pools::PoolSpec s;
    s.name = "kv";
    s.kind = pools::PoolKind::kMha;
    s.num_layers = 3;
    s.num_buffers = 2;
    s.row_bytes = row_bytes;
    s.sharded_across_tp = true;
    return std::move(pools::HostPool::create(backend, s, std::size_t{pages} * page_size, page_size,
                                             layout))
        .value();
}

inline core::PageKey keyOf(std::uint64_t id) {
    return core::hash128("remote-" + std::to_string(id));
}

// Host page `page` (in whatever layout) as canonical bytes, and back: [buffer][layer][token][row].
inline std::vector<std::byte> takePage(const pools::HostPool& pool, std::uint32_t page) {
    const auto g = pool.geometry();
    const auto v = pool.view();
    std::vector<std::byte> out(g.bytesPerPage());
    std::size_t off = 0;
    for (std::uint32_t b = 0; b < g.num_buffers; ++b) {
        for (std::uint32_t l = 0; l < g.num_layers; ++l) {
            for (std::uint32_t t = 0; t < g.page_size; ++t, off += g.row_bytes) {
                std::memcpy(out.data() + off,
                            v.base + kernels::hostRowOffset(g, v, b, l,
                                                            std::size_t{page} * g.page_size + t),
                            g.row_bytes);
            }
        }
    }
    return out;
}

inline std::vector<std::byte> patternOf(const pools::HostPool& pool, std::uint64_t id) {
    std::vector<std::byte> out(pool.geometry().bytesPerPage());
    std::mt19937_64 rng(id * 7919 + 13);
    for (std::size_t i = 0; i < out.size(); i += 8) {
        const std::uint64_t v = rng();
        std::memcpy(out.data() + i, &v, std::min<std::size_t>(8, out.size() - i));
    }
    return out;
}

inline void putPage(const pools::HostPool& pool, std::uint32_t page,
                    const std::vector<std::byte>& bytes) {
    const auto g = pool.geometry();
    const auto v = pool.view();
    std::size_t off = 0;
    for (std::uint32_t b = 0; b < g.num_buffers; ++b) {
        for (std::uint32_t l = 0; l < g.num_layers; ++l) {
            for (std::uint32_t t = 0; t < g.page_size; ++t, off += g.row_bytes) {
                std::memcpy(v.base + kernels::hostRowOffset(g, v, b, l,
                                                            std::size_t{page} * g.page_size + t),
                            bytes.data() + off, g.row_bytes);
            }
        }
    }
}

inline std::shared_ptr<comm::ucx::UcxTransport> makeTransport(
    const comm::ucx::TransportOptions& o = {}) {
    auto t = comm::ucx::UcxTransport::create(comm::MpiComm::world(), o);
    EXPECT_TRUE(t.isOk()) << t.status().toString();
    return t.isOk() ? std::move(t).value() : nullptr;
}

}  // namespace strata::io::testing
