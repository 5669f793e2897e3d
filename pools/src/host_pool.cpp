#include "strata/pools/host_pool.h"

#include <fmt/format.h>

#include <cmath>
#include <string>

#include "strata/core/hash.h"

namespace strata::pools {

Result<std::size_t> hostCapacityTokens(const HostPoolSizing& sizing, std::size_t device_tokens,
                                       std::size_t bytes_per_token, std::uint32_t page_size) {
    if (page_size == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "host pool sizing: page_size is 0");
    }
    std::string set;
    if (sizing.tokens != 0) set += "tokens";
    if (sizing.ratio != 0.0) set += set.empty() ? "ratio" : ", ratio";  // NaN counts as set
    if (sizing.bytes != 0) set += set.empty() ? "bytes" : ", bytes";
    if (set.empty()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "host pool sizing is empty: set one of tokens, ratio or bytes");
    }
    if (set.find(',') != std::string::npos) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "host pool sizing is ambiguous: {} are all set, set exactly one", set);
    }

    std::size_t tokens = 0;
    const char* field = "tokens";
    if (sizing.tokens != 0) {
        tokens = sizing.tokens;
    } else if (sizing.ratio != 0.0) {
        field = "ratio";
        if (!std::isfinite(sizing.ratio) || sizing.ratio < 0.0) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "host pool ratio {} must be a finite positive number",
                                sizing.ratio);
        }
        const double t = std::floor(sizing.ratio * static_cast<double>(device_tokens));
        if (t >= 9.0e18) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "host pool ratio {} of {} device tokens is too large", sizing.ratio,
                                device_tokens);
        }
        tokens = static_cast<std::size_t>(t);
    } else {
        field = "bytes";
        if (bytes_per_token == 0) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "host pool bytes sizing needs a non-zero bytes per token");
        }
        tokens = sizing.bytes / bytes_per_token;
    }
    const std::size_t rounded = tokens / page_size * page_size;
    if (rounded == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "host pool {} gives {} tokens, less than one page of {} tokens", field,
                            tokens, page_size);
    }
    return rounded;
}

Result<HostPool> HostPool::create(kernels::Backend& backend, const PoolSpec& spec,
                                  std::size_t capacity_tokens, std::uint32_t page_size,
                                  kernels::HostLayout layout) {
    Status s = spec.validate(page_size);
    if (!s.isOk()) return s.withContext("host pool");
    const kernels::PoolGeometry g = spec.geometry(page_size);
    const std::size_t units = spec.unitsPerPage(page_size);
    const std::size_t capacity = capacity_tokens / units * units;
    if (capacity == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "host pool '{}': capacity of {} {} is less than one page of {}",
                            spec.name, capacity_tokens,
                            spec.kind == PoolKind::kMamba ? "slots" : "tokens", units);
    }
    const std::size_t rows = capacity / units * g.page_size;
    HostPool pool;
    STRATA_ASSIGN_OR_RETURN(pool.memory_, backend.allocateHost(kernels::hostBytes(g, rows)));
    pool.spec_ = spec;
    pool.layout_ = layout;
    pool.capacity_tokens_ = capacity;
    pool.capacity_rows_ = rows;
    pool.page_size_ = page_size;
    return pool;
}

std::size_t HostPool::bytesFor(const PoolSpec& spec, std::size_t capacity_tokens,
                               std::uint32_t page_size) noexcept {
    if (page_size == 0 || !spec.validate(page_size).isOk()) return 0;
    const std::size_t units = spec.unitsPerPage(page_size);
    const std::size_t capacity = capacity_tokens / units * units;
    if (capacity == 0) return 0;
    const kernels::PoolGeometry g = spec.geometry(page_size);
    return kernels::hostBytes(g, capacity / units * g.page_size);
}

Result<HostPool> HostPool::adopt(const PoolSpec& spec, std::size_t capacity_tokens,
                                 std::uint32_t page_size, kernels::HostLayout layout,
                                 std::byte* memory, std::size_t size_bytes) {
    Status s = spec.validate(page_size);
    if (!s.isOk()) return s.withContext("host pool");
    const std::size_t need = bytesFor(spec, capacity_tokens, page_size);
    if (need == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "host pool '{}': capacity of {} is less than one page", spec.name,
                            capacity_tokens);
    }
    if (memory == nullptr || size_bytes < need) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "host pool '{}': adopted memory of {} bytes, {} needed", spec.name,
                            memory == nullptr ? 0 : size_bytes, need);
    }
    const kernels::PoolGeometry g = spec.geometry(page_size);
    const std::size_t units = spec.unitsPerPage(page_size);
    HostPool pool;
    pool.memory_ = kernels::Memory(memory, need, nullptr);
    pool.owns_ = false;
    pool.spec_ = spec;
    pool.layout_ = layout;
    pool.capacity_tokens_ = capacity_tokens / units * units;
    pool.capacity_rows_ = pool.capacity_tokens_ / units * g.page_size;
    pool.page_size_ = page_size;
    return pool;
}

std::span<std::byte> HostPool::pageBlob(std::uint32_t page) const noexcept {
    if (layout_ == kernels::HostLayout::kLayerFirst || page >= numPages()) return {};
    // Both page-first layouts keep a page's rows [p * R, (p + 1) * R) in one contiguous blob.
    const std::size_t page_bytes = geometry().bytesPerPage();
    return {memory_.data() + std::size_t{page} * page_bytes, page_bytes};
}

std::uint64_t pageBytesChecksum(const kernels::PoolGeometry& geometry,
                                const std::byte* page) noexcept {
    const std::size_t block = std::size_t{geometry.page_size} * geometry.row_bytes;
    const std::size_t blocks = std::size_t{geometry.num_buffers} * geometry.num_layers;
    std::uint64_t digest = 0;
    for (std::size_t k = 0; k < blocks; ++k) {
        digest = core::foldDigest(digest, core::checksum64(page + k * block, block));
    }
    return digest;
}

std::uint64_t pageChecksum(const HostPool& pool, std::uint32_t page) noexcept {
    const kernels::PoolGeometry g = pool.geometry();
    if (pool.layout() != kernels::HostLayout::kLayerFirst) {
        return pageBytesChecksum(g, pool.pageBlob(page).data());
    }
    // layer_first: one block of page_size rows per (buffer, layer), planes in plane order.
    const kernels::HostView view = pool.view();
    const std::size_t block = std::size_t{g.page_size} * g.row_bytes;
    const std::size_t first_token = std::size_t{page} * g.page_size;
    std::uint64_t digest = 0;
    for (std::uint32_t b = 0; b < g.num_buffers; ++b) {
        for (std::uint32_t l = 0; l < g.num_layers; ++l) {
            const std::byte* rows = view.base + kernels::hostRowOffset(g, view, b, l, first_token);
            digest = core::foldDigest(digest, core::checksum64(rows, block));
        }
    }
    return digest;
}

}  // namespace strata::pools
