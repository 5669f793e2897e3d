#include "strata/pools/slot_allocator.h"

#include <fmt/format.h>

#include <limits>

#include "strata/core/hash.h"

namespace strata::pools {

Result<SlotAllocator> SlotAllocator::create(std::size_t num_pages, std::uint32_t page_size) {
    if (page_size == 0) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "slot allocator page_size is 0");
    }
    if (num_pages > std::numeric_limits<std::uint32_t>::max()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "slot allocator of {} pages exceeds 32-bit page indices", num_pages);
    }
    return SlotAllocator(num_pages, page_size);
}

// The free list is popped from the back, so it starts in descending order: a fresh allocator
// hands out 0, 1, 2, ... which keeps early runs easy to read and identical on every rank.
SlotAllocator::SlotAllocator(std::size_t num_pages, std::uint32_t page_size)
    : used_(num_pages, false), page_size_(page_size) {
    free_list_.reserve(num_pages);
    for (std::size_t p = num_pages; p > 0; --p)
        free_list_.push_back(static_cast<std::uint32_t>(p - 1));
}

Result<std::vector<std::uint32_t>> SlotAllocator::allocate(std::size_t n) {
    if (n > free_list_.size()) {
        return STRATA_ERROR(StatusCode::kResourceExhausted,
                            "cannot allocate {} pages: {} of {} free", n, free_list_.size(),
                            used_.size());
    }
    std::vector<std::uint32_t> pages;
    pages.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint32_t page = free_list_.back();
        free_list_.pop_back();
        used_[page] = true;
        pages.push_back(page);
    }
    return pages;
}

Status SlotAllocator::free(std::span<const std::uint32_t> pages) {
    // Validate everything first so that a bad call frees nothing. `seen` catches a page listed
    // twice in the same call, which would otherwise be a double free within one call.
    std::vector<bool> seen(used_.size(), false);
    for (std::uint32_t page : pages) {
        if (page >= used_.size()) {
            return STRATA_ERROR(StatusCode::kFailedPrecondition,
                                "cannot free page {}: out of range (allocator has {} pages)", page,
                                used_.size());
        }
        if (!used_[page]) {
            return STRATA_ERROR(StatusCode::kFailedPrecondition,
                                "cannot free page {}: not allocated (double free?)", page);
        }
        if (seen[page]) {
            return STRATA_ERROR(StatusCode::kFailedPrecondition,
                                "cannot free page {}: listed twice in one call", page);
        }
        seen[page] = true;
    }
    // Pushed in reverse so that allocate(n) right after free(pages) returns them in their order.
    for (auto it = pages.rbegin(); it != pages.rend(); ++it) {
        used_[*it] = false;
        free_list_.push_back(*it);
    }
    return Status::ok();
}

bool SlotAllocator::isAllocated(std::uint32_t page) const noexcept {
    return page < used_.size() && used_[page];
}

std::uint64_t SlotAllocator::digest() const noexcept {
    // The free list determines the used set (its complement), so size + free list order suffice.
    std::uint64_t d = core::foldDigest(0, used_.size());
    d = core::foldDigest(d, page_size_);
    d = core::foldDigest(d, free_list_.size());
    for (std::uint32_t page : free_list_) d = core::foldDigest(d, page);
    return d;
}

}  // namespace strata::pools
