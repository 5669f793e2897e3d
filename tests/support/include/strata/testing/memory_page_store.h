// MemoryPageStore: an in-memory PageStore for unit tests of the layers above io/: pages are kept
// in a map with their checksums; a per-call delay makes it a slow store; corruptPage() flips a
// stored byte so that the next read fails its checksum. Shared across "ranks" of one process when
// the same object is given to several controllers (shared_across_ranks).
// Thread-safety: every method locks; safe from the storage worker and the test thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <vector>

#include "strata/io/page_store.h"

namespace strata::testing {

class MemoryPageStore final : public io::PageStore {
public:
    explicit MemoryPageStore(std::chrono::microseconds delay_per_call = {})
        : delay_(delay_per_call) {}

    Capabilities capabilities() const noexcept override { return {false, true, false}; }
    Result<std::size_t> exists(std::span<const io::PageKey> keys) override;
    Result<std::size_t> get(std::span<const io::PageKey> keys, const pools::HostPool& pool,
                            std::span<const std::uint32_t> host_pages) override;
    Result<std::size_t> set(std::span<const io::PageKey> keys, const pools::HostPool& pool,
                            std::span<const std::uint32_t> host_pages) override;
    io::StoreStats stats() const override;
    void recordEvictions(bool on) override;
    std::vector<io::PageKey> takeEvicted() override;

    std::size_t size() const;
    // At most `pages` pages (0: no limit): a set() beyond it drops the oldest stored first.
    void setCapacity(std::size_t pages);
    // Flips one byte of a stored page (the key must be present).
    void corruptPage(const io::PageKey& key);
    void setDelay(std::chrono::microseconds d);

private:
    struct Page {
        std::vector<std::byte> bytes;
        std::uint64_t checksum = 0;
    };
    void delay() const;
    mutable std::mutex mu_;
    std::chrono::microseconds delay_;  // guarded by mu_
    std::map<io::PageKey, Page> pages_;
    std::deque<io::PageKey> order_;  // stored order, oldest first
    std::size_t capacity_ = 0;
    bool record_evictions_ = false;
    std::vector<io::PageKey> evicted_;
    io::StoreStats stats_;
};

// Copies one page of a host pool to or from a contiguous buffer (canonical order: every token's
// rows of the page, buffer-major then layer), for any host layout.
void copyPageOut(const pools::HostPool& pool, std::uint32_t page, std::byte* out);
void copyPageIn(const pools::HostPool& pool, std::uint32_t page, const std::byte* in);

}  // namespace strata::testing
