// AlignedBuffer: move-only owner of page-aligned host bytes (plain memory, not pinned).
// Used by the CPU back end as "device" memory and as host pool memory without CUDA.
// Thread-safety: like a unique_ptr; concurrent access to disjoint bytes is the caller's business.
#pragma once

#include <cstddef>

#include "strata/core/status.h"

namespace strata::core {

class AlignedBuffer {
public:
    static constexpr std::size_t kAlignment = 4096;

    AlignedBuffer() noexcept = default;
    // Allocates size_bytes (rounded up to the alignment), zero-filled.
    // Fails with kResourceExhausted when the allocation fails.
    static Result<AlignedBuffer> create(std::size_t size_bytes);

    AlignedBuffer(AlignedBuffer&& other) noexcept;
    AlignedBuffer& operator=(AlignedBuffer&& other) noexcept;
    AlignedBuffer(const AlignedBuffer&) = delete;
    AlignedBuffer& operator=(const AlignedBuffer&) = delete;
    ~AlignedBuffer();

    std::byte* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }

private:
    std::byte* data_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace strata::core
