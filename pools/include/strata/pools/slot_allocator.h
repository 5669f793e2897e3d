// SlotAllocator: page-granular allocator of token slots for one pool (device or host).
// Deterministic: the same sequence of calls gives the same pages on every rank, so ranks that
// mutate it only at agreed points stay identical without exchanging indices.
// Detects double allocation and double free. Thread-safety: not thread-safe (one owner thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "strata/core/status.h"

namespace strata::pools {

class SlotAllocator {
public:
    // An allocator over pages [0, num_pages). kInvalidArgument when page_size is 0.
    static Result<SlotAllocator> create(std::size_t num_pages, std::uint32_t page_size);

    // Allocates n pages (all or nothing). kResourceExhausted (nothing allocated) when fewer are
    // free.
    Result<std::vector<std::uint32_t>> allocate(std::size_t n);
    // Frees pages. kFailedPrecondition naming the page when one is out of range or not allocated
    // (double free); nothing is freed in that case.
    Status free(std::span<const std::uint32_t> pages);

    std::size_t numPages() const noexcept { return used_.size(); }
    std::size_t freePages() const noexcept { return free_list_.size(); }
    std::size_t usedPages() const noexcept { return used_.size() - free_list_.size(); }
    std::uint32_t pageSize() const noexcept { return page_size_; }
    bool isAllocated(std::uint32_t page) const noexcept;
    // Digest of the allocator state (free list order and used set), for cross-rank checks.
    std::uint64_t digest() const noexcept;

private:
    SlotAllocator(std::size_t num_pages, std::uint32_t page_size);
    std::vector<std::uint32_t> free_list_;  // popped from the back
    std::vector<bool> used_;
    std::uint32_t page_size_ = 0;
};

}  // namespace strata::pools
