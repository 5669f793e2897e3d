#include "strata/testing/memory_page_store.h"

#include <algorithm>
#include <cstring>
#include <thread>
#include <utility>

#include "strata/core/hash.h"

namespace strata::testing {

namespace {

template <typename Fn>
void forEachRow(const pools::HostPool& pool, std::uint32_t page, Fn&& fn) {
    const kernels::PoolGeometry g = pool.geometry();
    const kernels::HostView v = pool.view();
    std::size_t at = 0;
    for (std::uint32_t b = 0; b < g.num_buffers; ++b) {
        for (std::uint32_t l = 0; l < g.num_layers; ++l) {
            for (std::uint32_t t = 0; t < g.page_size; ++t) {
                std::size_t token = static_cast<std::size_t>(page) * g.page_size + t;
                fn(v.base + kernels::hostRowOffset(g, v, b, l, token), at, g.row_bytes);
                at += g.row_bytes;
            }
        }
    }
}

}  // namespace

void copyPageOut(const pools::HostPool& pool, std::uint32_t page, std::byte* out) {
    forEachRow(pool, page, [&](std::byte* row, std::size_t at, std::size_t n) {
        std::memcpy(out + at, row, n);
    });
}

void copyPageIn(const pools::HostPool& pool, std::uint32_t page, const std::byte* in) {
    forEachRow(pool, page, [&](std::byte* row, std::size_t at, std::size_t n) {
        std::memcpy(row, in + at, n);
    });
}

void MemoryPageStore::delay() const {
    // Read under the lock (a test may call setDelay() while the storage worker is inside a call;
    // ThreadSanitizer reported the unlocked read), slept outside it.
    std::chrono::microseconds d;
    {
        std::lock_guard lock(mu_);
        d = delay_;
    }
    if (d.count() > 0) std::this_thread::sleep_for(d);  // a slow store, by design
}

void MemoryPageStore::setDelay(std::chrono::microseconds d) {
    std::lock_guard lock(mu_);
    delay_ = d;
}

Result<std::size_t> MemoryPageStore::exists(std::span<const io::PageKey> keys) {
    delay();
    std::lock_guard lock(mu_);
    std::size_t n = 0;
    while (n < keys.size() && pages_.contains(keys[n])) ++n;
    return n;
}

Result<std::size_t> MemoryPageStore::get(std::span<const io::PageKey> keys,
                                         const pools::HostPool& pool,
                                         std::span<const std::uint32_t> host_pages) {
    delay();
    std::lock_guard lock(mu_);
    const std::size_t bytes = pool.geometry().bytesPerPage();
    std::vector<std::byte> buf(bytes);
    std::size_t n = 0;
    for (; n < keys.size(); ++n) {
        auto it = pages_.find(keys[n]);
        if (it == pages_.end()) break;
        copyPageIn(pool, host_pages[n], it->second.bytes.data());
        copyPageOut(pool, host_pages[n], buf.data());
        if (core::checksum64(buf.data(), bytes) != it->second.checksum) {
            ++stats_.checksum_failures;
            pages_.erase(it);
            break;
        }
        ++stats_.pages_read;
    }
    return n;
}

Result<std::size_t> MemoryPageStore::set(std::span<const io::PageKey> keys,
                                         const pools::HostPool& pool,
                                         std::span<const std::uint32_t> host_pages) {
    delay();
    std::lock_guard lock(mu_);
    const std::size_t bytes = pool.geometry().bytesPerPage();
    for (std::size_t i = 0; i < keys.size(); ++i) {
        if (pages_.contains(keys[i])) {
            ++stats_.pages_skipped;
            continue;
        }
        Page p;
        p.bytes.resize(bytes);
        copyPageOut(pool, host_pages[i], p.bytes.data());
        p.checksum = core::checksum64(p.bytes.data(), bytes);
        pages_.emplace(keys[i], std::move(p));
        order_.push_back(keys[i]);
        ++stats_.pages_written;
    }
    // Over capacity: the oldest pages go (those of this call last), as a store of that size would.
    std::size_t present = keys.size();
    while (capacity_ > 0 && pages_.size() > capacity_ && !order_.empty()) {
        const io::PageKey old = order_.front();
        order_.pop_front();
        pages_.erase(old);
        ++stats_.pages_evicted;
        if (record_evictions_) evicted_.push_back(old);
        const auto at = std::find(keys.begin(), keys.end(), old);  // one of this call's pages
        present = std::min(present, static_cast<std::size_t>(at - keys.begin()));
    }
    return present;
}

void MemoryPageStore::setCapacity(std::size_t pages) {
    std::lock_guard lock(mu_);
    capacity_ = pages;
}

void MemoryPageStore::recordEvictions(bool on) {
    std::lock_guard lock(mu_);
    record_evictions_ = on;
    if (!on) evicted_.clear();
}

std::vector<io::PageKey> MemoryPageStore::takeEvicted() {
    std::lock_guard lock(mu_);
    return std::exchange(evicted_, {});
}

io::StoreStats MemoryPageStore::stats() const {
    std::lock_guard lock(mu_);
    return stats_;
}

std::size_t MemoryPageStore::size() const {
    std::lock_guard lock(mu_);
    return pages_.size();
}

void MemoryPageStore::corruptPage(const io::PageKey& key) {
    std::lock_guard lock(mu_);
    auto& p = pages_.at(key);
    p.bytes[p.bytes.size() / 2] ^= std::byte{0x5A};
}

}  // namespace strata::testing
