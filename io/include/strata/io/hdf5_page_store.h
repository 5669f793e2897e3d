// Hdf5PageStore: the L3 tier. Pages of one pool live in HDF5 *segment* files under
// <directory>/<pool_signature>/. A segment is created durable and empty (.tmp, fsync, rename) and
// then filled by appends (page chunks, then entries with commit words, then fdatasync), so a crash
// leaves .tmp leftovers (deleted at open) and empty or torn slots that are never served. Keys are
// indexed in memory (rebuilt from the segments on create, extended by directory rescans); pages
// move straight between the files and host pool memory through HDF5 selections. Ownership: owns its
// open HDF5 files; borrows the host pools given per call. Thread-safety: one thread at a time per
// store (HDF5 serialises all calls under one global lock anyway); any number of processes may share
// the directory (each names files by writer id).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "strata/io/page_store.h"

namespace strata::io {

struct Hdf5StoreOptions {
    std::string directory;             // created (with parents) if missing
    std::string pool_signature;        // e.g. "kv-131072B": pages of different shapes never mix
    std::size_t page_bytes = 0;        // bytes of one page of this pool (the pool's bytesPerPage)
    std::uint64_t capacity_pages = 0;  // 0 = unlimited; beyond it this writer's LRU segments go
    int writer_id = 0;                 // world rank of this process: in the names of its files
    // Pages per segment file. 0 = about 256 MiB (at most 4096 pages), and at most an eighth of
    // capacity_pages when that is set (capacity is enforced by whole segments).
    std::size_t segment_pages = 0;
};

class Hdf5PageStore final : public PageStore {
public:
    // Creates <directory>/<pool_signature>/ if needed, checks that it is writable, deletes stale
    // .tmp files (see README: those of dead processes on this host, or older than 15 minutes) and
    // indexes every readable segment (unreadable or inconsistent ones are logged and ignored).
    // kInvalidArgument for bad options; kIoError naming the path and errno text when the directory
    // cannot be created or written.
    static Result<std::unique_ptr<Hdf5PageStore>> create(const Hdf5StoreOptions& options);

    ~Hdf5PageStore() override;
    Hdf5PageStore(const Hdf5PageStore&) = delete;
    Hdf5PageStore& operator=(const Hdf5PageStore&) = delete;

    Capabilities capabilities() const noexcept override;
    // Leading run of keys present; a key not in the index triggers one directory rescan per call
    // (segments written since by other processes). kIoError never (a failed rescan is logged).
    Result<std::size_t> exists(std::span<const PageKey> keys) override;
    // See PageStore::get. kInvalidArgument when sizes differ, the pool's page bytes differ from
    // the store's or a host page is out of range.
    Result<std::size_t> get(std::span<const PageKey> keys, const pools::HostPool& pool,
                            std::span<const std::uint32_t> host_pages) override;
    // See PageStore::set. Missing pages are appended to this store's open segment (new segments
    // of segment_pages pages as needed); then, over capacity, this writer's least recently used
    // segments are deleted.
    Result<std::size_t> set(std::span<const PageKey> keys, const pools::HostPool& pool,
                            std::span<const std::uint32_t> host_pages) override;
    StoreStats stats() const override;
    void recordEvictions(bool on) override;
    std::vector<PageKey> takeEvicted() override;

    // <directory>/<pool_signature>.
    const std::string& segmentDirectory() const noexcept;
    // Keys currently indexed (all writers).
    std::size_t indexedPages() const noexcept;
    // Pages in indexed segments written under this store's writer id (what capacity bounds).
    std::uint64_t ownPages() const noexcept;

private:
    struct Impl;
    explicit Hdf5PageStore(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace strata::io
