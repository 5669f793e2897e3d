// Page contents for tests of host pools and page stores: a CPU back end, a small MHA pool spec,
// deterministic page bytes from a seed, and whole pages written into or read out of a host pool
// in canonical plane order ([buffer][layer][token][row]) whatever its layout. Header-only.
// Thread-safety: pure functions; the pool's bytes are the caller's to share.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "strata/kernels/backend.h"
#include "strata/kernels/transfer.h"
#include "strata/pools/host_pool.h"
#include "strata/pools/pool_spec.h"

namespace strata::testing {

inline std::unique_ptr<kernels::Backend> cpuBackend() {
    return std::move(kernels::Backend::create(kernels::BackendKind::kCpu, {})).value();
}

// K and V rows of `row_bytes` over 3 layers, sharded across TP.
inline pools::PoolSpec kvSpec(std::size_t row_bytes) {
    pools::PoolSpec s;
    s.name = "kv";
    s.kind = pools::PoolKind::kMha;
    s.num_layers = 3;
    s.num_buffers = 2;
    s.row_bytes = row_bytes;
    s.sharded_across_tp = true;
    return s;
}

// The bytes of one page in canonical plane order, from a seed.
inline std::vector<std::byte> patternBytes(const kernels::PoolGeometry& g, std::uint64_t seed) {
    std::vector<std::byte> out(g.bytesPerPage());
    std::mt19937_64 rng(seed);
    for (std::size_t i = 0; i < out.size(); i += 8) {
        const std::uint64_t v = rng();
        std::memcpy(out.data() + i, &v, std::min<std::size_t>(8, out.size() - i));
    }
    return out;
}

// Calls fn(pool row address, offset in canonical order) for every row of host page `page`.
template <typename Fn>
void forEachPageRow(const pools::HostPool& pool, std::uint32_t page, Fn&& fn) {
    const auto g = pool.geometry();
    const auto v = pool.view();
    std::size_t off = 0;
    for (std::uint32_t b = 0; b < g.num_buffers; ++b) {
        for (std::uint32_t l = 0; l < g.num_layers; ++l) {
            for (std::uint32_t t = 0; t < g.page_size; ++t, off += g.row_bytes) {
                fn(v.base + kernels::hostRowOffset(g, v, b, l, std::size_t{page} * g.page_size + t),
                   off);
            }
        }
    }
}

// Writes `bytes` (canonical plane order) into host page `page`.
inline void putPage(const pools::HostPool& pool, std::uint32_t page,
                    const std::vector<std::byte>& bytes) {
    const std::size_t row = pool.geometry().row_bytes;
    forEachPageRow(pool, page, [&](std::byte* dst, std::size_t off) {
        std::memcpy(dst, bytes.data() + off, row);
    });
}

// Host page `page` as canonical bytes.
inline std::vector<std::byte> takePage(const pools::HostPool& pool, std::uint32_t page) {
    std::vector<std::byte> out(pool.geometry().bytesPerPage());
    const std::size_t row = pool.geometry().row_bytes;
    forEachPageRow(pool, page, [&](const std::byte* src, std::size_t off) {
        std::memcpy(out.data() + off, src, row);
    });
    return out;
}

}  // namespace strata::testing
