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
#include "strata/testing/host_pages.h"

namespace strata::io::testing {

using strata::testing::cpuBackend;
using strata::testing::kvSpec;
using strata::testing::patternBytes;
using strata::testing::putPage;
using strata::testing::takePage;

inline pools::HostPool makePool(kernels::Backend& backend, std::uint32_t pages,
                                kernels::HostLayout layout, std::size_t row_bytes = 256,
                                std::uint32_t page_size = 16) {
    return std::move(pools::HostPool::create(backend, kvSpec(row_bytes),
                                             std::size_t{pages} * page_size, page_size, layout))
        .value();
}

inline core::PageKey keyOf(std::uint64_t id) {
    return core::hash128("remote-" + std::to_string(id));
}

inline std::vector<std::byte> patternOf(const pools::HostPool& pool, std::uint64_t id) {
    return patternBytes(pool.geometry(), id * 7919 + 13);
}

inline std::shared_ptr<comm::ucx::UcxTransport> makeTransport(
    const comm::ucx::TransportOptions& o = {}) {
    auto t = comm::ucx::UcxTransport::create(comm::MpiComm::world(), o);
    EXPECT_TRUE(t.isOk()) << t.status().toString();
    return t.isOk() ? std::move(t).value() : nullptr;
}

}  // namespace strata::io::testing
