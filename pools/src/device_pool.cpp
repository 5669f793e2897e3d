#include "strata/pools/device_pool.h"

#include <fmt/format.h>

#include <utility>

namespace strata::pools {
namespace {

Status checkSpec(const PoolSpec& spec, std::uint32_t page_size) {
    Status s = spec.validate(page_size);
    if (!s.isOk()) return s.withContext("device pool");
    return Status::ok();
}

// Whole pages of the pool's index units (tokens, or request slots for kMamba).
Result<std::size_t> wholePages(const PoolSpec& spec, std::size_t capacity_tokens,
                               std::uint32_t page_size) {
    const std::size_t units = spec.unitsPerPage(page_size);
    const std::size_t rounded = capacity_tokens / units * units;
    if (rounded == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "device pool '{}': capacity of {} {} is less than one page of {}",
                            spec.name, capacity_tokens,
                            spec.kind == PoolKind::kMamba ? "slots" : "tokens", units);
    }
    return rounded;
}

}  // namespace

Result<DevicePool> DevicePool::create(kernels::Backend& backend, const PoolSpec& spec,
                                      std::size_t capacity_tokens, std::uint32_t page_size) {
    STRATA_RETURN_IF_ERROR(checkSpec(spec, page_size));
    STRATA_ASSIGN_OR_RETURN(std::size_t capacity, wholePages(spec, capacity_tokens, page_size));
    DevicePool pool;
    pool.spec_ = spec;
    pool.kind_ = backend.kind();
    pool.capacity_tokens_ = capacity;
    pool.page_size_ = page_size;
    pool.capacity_rows_ = capacity / spec.unitsPerPage(page_size) * spec.rowsPerPage(page_size);
    pool.row_stride_ = spec.row_bytes;
    const std::size_t planes = std::size_t{spec.num_buffers} * spec.num_layers;
    pool.owned_.reserve(planes);
    pool.layer_ptrs_.reserve(planes);
    for (std::size_t i = 0; i < planes; ++i) {
        STRATA_ASSIGN_OR_RETURN(kernels::Memory memory,
                                backend.allocateDevice(pool.capacity_rows_ * spec.row_bytes));
        pool.layer_ptrs_.push_back(memory.data());
        pool.owned_.push_back(std::move(memory));
    }
    return pool;
}

Result<DevicePool> DevicePool::adopt(kernels::BackendKind kind, const PoolSpec& spec,
                                     std::span<std::byte* const> layer_ptrs,
                                     std::size_t capacity_tokens, std::uint32_t page_size,
                                     std::size_t row_stride) {
    STRATA_RETURN_IF_ERROR(checkSpec(spec, page_size));
    if (row_stride != 0 && row_stride < spec.row_bytes) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "device pool '{}': row stride {} is below the row's {} bytes",
                            spec.name, row_stride, spec.row_bytes);
    }
    const std::size_t planes = std::size_t{spec.num_buffers} * spec.num_layers;
    if (layer_ptrs.size() != planes) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "device pool '{}': {} layer pointers given, expected {} ({} buffers x "
                            "{} layers)",
                            spec.name, layer_ptrs.size(), planes, spec.num_buffers,
                            spec.num_layers);
    }
    for (std::size_t i = 0; i < planes; ++i) {
        if (layer_ptrs[i] == nullptr) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "device pool '{}': layer pointer {} (buffer {}, layer {}) is null",
                                spec.name, i, i / spec.num_layers, i % spec.num_layers);
        }
    }
    STRATA_ASSIGN_OR_RETURN(std::size_t capacity, wholePages(spec, capacity_tokens, page_size));
    DevicePool pool;
    pool.spec_ = spec;
    pool.kind_ = kind;
    pool.capacity_tokens_ = capacity;
    pool.page_size_ = page_size;
    pool.capacity_rows_ = capacity / spec.unitsPerPage(page_size) * spec.rowsPerPage(page_size);
    pool.row_stride_ = row_stride == 0 ? spec.row_bytes : row_stride;
    pool.layer_ptrs_.assign(layer_ptrs.begin(), layer_ptrs.end());
    return pool;
}

}  // namespace strata::pools
