// Private: the segment file format and page I/O between host pools and HDF5 datasets.
// A segment holds `pages` [n x page_bytes] uint8 (chunk = one page, no fill, chunk cache off),
// `keys` [n x 2] uint64 (lo, hi), `checksums` [n] uint64 and a root attribute `strata_header`
// (format, page bytes, page order, geometry, writer id). Thread-safety: plain functions; HDF5
// serialises them.
#pragma once

#include <hdf5.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "h5_util.h"
#include "strata/core/page_key.h"
#include "strata/core/status.h"
#include "strata/pools/host_pool.h"

namespace strata::io {

inline constexpr std::uint64_t kSegmentFormat = 1;

// Byte order of a page inside the file: the host layout's own order, so that I/O needs no copy.
// kPlaneMajor: [buffer][layer][token][row] (layer_first, page_first_direct);
// kTokenMajor: [token][buffer][layer][row] (page_first).
enum class PageOrder : std::uint64_t { kPlaneMajor = 0, kTokenMajor = 1 };

struct SegmentHeader {
    std::uint64_t format = kSegmentFormat;
    std::uint64_t page_bytes = 0;
    PageOrder order = PageOrder::kPlaneMajor;
    std::uint64_t num_buffers = 0, num_layers = 0, row_bytes = 0, page_size = 0;
    std::uint64_t writer_id = 0;

    bool sameGeometry(const kernels::PoolGeometry& g) const noexcept {
        return num_buffers == g.num_buffers && num_layers == g.num_layers &&
               row_bytes == g.row_bytes && page_size == g.page_size;
    }
};

// ---- names: seg-w<writer>-<ns hex>-<host hash hex>-<pid>-<counter>.h5[.tmp] ----
struct SegmentName {
    int writer_id = 0;
    std::uint32_t host_hash = 0;
    long pid = 0;
};
// A new name, unique across processes, hosts and jobs (time, host, pid, process-wide counter).
std::string newSegmentName(int writer_id);
// Parses a segment name (with or without ".tmp"); nullopt when it is not one of ours.
std::optional<SegmentName> parseSegmentName(std::string_view file_name);
std::uint32_t thisHostHash();

// Checksum of one page in file byte order: XXH3-64 of each of the num_buffers * num_layers
// consecutive blocks of page_size * row_bytes bytes, folded in order with core::foldDigest.
// The same function serves set (from pool memory) and get (from pool memory or a staging copy).
class PageChecksum {
public:
    void add(const std::byte* block, std::size_t bytes) noexcept;
    std::uint64_t value() const noexcept { return digest_; }

private:
    std::uint64_t digest_ = 0;
};
std::uint64_t checksumFileOrder(const kernels::PoolGeometry& g, const std::byte* page) noexcept;

// Moves whole pages between one host pool and a `pages` dataset, in the pool's own page order.
// Borrows the pool (must outlive this object).
class PoolPages {
public:
    static Result<PoolPages> create(const pools::HostPool& pool);

    PageOrder order() const noexcept { return order_; }
    const kernels::PoolGeometry& geometry() const noexcept { return geometry_; }
    SegmentHeader header(int writer_id) const noexcept;
    // Checksum of host page `page` as it would be stored (file order).
    std::uint64_t checksum(std::uint32_t page) const noexcept;
    // Writes host page `page` to row `slot` of `pages` (direct chunk write for contiguous pages).
    Status write(hid_t pages, std::uint64_t slot, std::uint32_t page) const;
    // Reads row `slot` of `pages` (file dataspace `file_space`) into host page `page`.
    Status read(hid_t pages, hid_t file_space, std::uint64_t slot, std::uint32_t page) const;
    // Copies a page held in `order` (a staging copy of a file page of the same geometry) into
    // host page `page`, permuting rows into this pool's layout.
    void scatter(const std::byte* src, PageOrder order, std::uint32_t page) const noexcept;

private:
    PoolPages() = default;
    // The memory selection of host page `page` inside mem_space_.
    Status selectPage(std::uint32_t page) const;

    const pools::HostPool* pool_ = nullptr;  // borrowed: must outlive this object
    kernels::PoolGeometry geometry_{};
    kernels::HostView view_{};
    PageOrder order_ = PageOrder::kPlaneMajor;
    std::size_t page_bytes_ = 0;
    H5Id mem_space_;  // 1-D over the whole pool; selections are set per page
};

// Writes a complete segment file at `path` (created exclusively): pages first, then keys and
// checksums, then flush and close. On failure the file may be left behind (the caller unlinks).
Status writeSegmentFile(const std::string& path, const SegmentHeader& header,
                        std::span<const core::PageKey> keys,
                        std::span<const std::uint64_t> checksums, const PoolPages& source,
                        std::span<const std::uint32_t> host_pages);

// The index part of a segment: header, keys and checksums, checked for consistency.
struct SegmentIndex {
    SegmentHeader header;
    std::vector<core::PageKey> keys;
    std::vector<std::uint64_t> checksums;
};
// kIoError (HDF5 text) when the file cannot be read; kDataLoss when it is inconsistent (format,
// page bytes other than `page_bytes`, dataset shapes).
Result<SegmentIndex> readSegmentIndex(const std::string& path, std::size_t page_bytes);

// An open segment for reads: file, `pages` dataset (chunk cache off) and its file dataspace.
struct OpenSegment {
    H5Id file;
    H5Id pages;
    H5Id file_space;
    int fd = -1;  // the sec2 driver's descriptor (owned by `file`), for read-ahead advice
};
Result<OpenSegment> openSegmentForRead(const std::string& path);

// Asks the kernel to start reading the chunks of slots [first, last] now (POSIX_FADV_WILLNEED),
// so that a batch's pages stream from the device while earlier ones are verified. Best effort.
void adviseWillNeed(const OpenSegment& segment, std::uint64_t first, std::uint64_t last,
                    std::size_t page_bytes) noexcept;

}  // namespace strata::io
