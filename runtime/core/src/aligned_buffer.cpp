#include "strata/core/aligned_buffer.h"

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <utility>

namespace strata::core {

Result<AlignedBuffer> AlignedBuffer::create(std::size_t size_bytes) {
    AlignedBuffer buf;
    if (size_bytes == 0) return buf;
    std::size_t rounded = (size_bytes + kAlignment - 1) / kAlignment * kAlignment;
    void* p = std::aligned_alloc(kAlignment, rounded);
    if (p == nullptr) {
        return STRATA_ERROR(StatusCode::kResourceExhausted,
                            "cannot allocate {} bytes of host memory", rounded);
    }
    std::memset(p, 0, rounded);
    buf.data_ = static_cast<std::byte*>(p);
    buf.size_ = size_bytes;
    return buf;
}

AlignedBuffer::AlignedBuffer(AlignedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& other) noexcept {
    if (this != &other) {
        std::free(data_);
        data_ = std::exchange(other.data_, nullptr);
        size_ = std::exchange(other.size_, 0);
    }
    return *this;
}

AlignedBuffer::~AlignedBuffer() { std::free(data_); }

}  // namespace strata::core
