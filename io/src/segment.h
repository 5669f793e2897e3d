// Private: the segment file format and page I/O between host pools and HDF5 datasets.
// A segment is created with room for `capacity` pages and then filled by appends: `pages`
// [capacity x page_bytes] uint8 (chunk = one page, allocated at creation, no fill, chunk cache
// off), `entries` [capacity x 4] uint64 (key lo, key hi, checksum, commit word; zero = empty) and a
// root attribute `strata_header` (format, page bytes, page order, geometry, writer id, pool
// signature hash, capacity, header checksum). All HDF5 metadata is written once at creation; an
// append writes page chunks, then entry rows, so a slot is served only when its commit word matches
// its key, checksum and slot (a torn append is an empty slot, never a wrong page). Nothing that
// decides where a page's bytes go is trusted unchecked: the header carries its own checksum
// (verified at open) and its layout fields are folded into every page's stored checksum, so a page
// read under a layout other than the one it was written with fails its checksum. Thread-safety:
// plain functions and single-owner objects; HDF5 serialises them.
#pragma once

#include <hdf5.h>

#include <cstddef>
#include <cstdint>
#include <memory>
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

// 3: header checksum, pool signature hash and capacity in the header; layout-sealed page checksums.
inline constexpr std::uint64_t kSegmentFormat = 3;
// Most slots a segment may have (Hdf5StoreOptions::segment_pages is at most this): a reader refuses
// larger declared sizes before allocating anything for them.
inline constexpr std::uint64_t kMaxSegmentSlots = 65536;

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
    std::uint64_t pool_hash = 0;  // poolSignatureHash() of the store's pool signature
    std::uint64_t capacity = 0;   // slots of the segment

    bool sameGeometry(const kernels::PoolGeometry& g) const noexcept {
        return num_buffers == g.num_buffers && num_layers == g.num_layers &&
               row_bytes == g.row_bytes && page_size == g.page_size;
    }
    // Digest of every field that decides where a page's bytes go (format, page bytes, order,
    // geometry, pool signature hash): the seed of each stored page checksum (sealChecksum).
    std::uint64_t layoutDigest() const noexcept;
};

std::uint64_t poolSignatureHash(std::string_view pool_signature) noexcept;
// The checksum stored for a page whose bytes have checksum `content` (pools::pageChecksum) in a
// segment of header `header`: a page verified under another layout fails.
std::uint64_t sealChecksum(const SegmentHeader& header, std::uint64_t content) noexcept;

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

// Reads the chunk of row `slot` of `pages` (page_bytes bytes, no filter) into dst: a direct chunk
// read, after checking that the chunk index records exactly page_bytes for it (kIoError naming
// the slot otherwise, nothing written to dst). The caller verifies the page's checksum.
Status readPageChunk(hid_t pages, std::uint64_t slot, std::size_t page_bytes, std::byte* dst);

// Moves whole pages between one host pool and a `pages` dataset, in the pool's own page order.
// Borrows the pool (must outlive this object).
class PoolPages {
public:
    static Result<PoolPages> create(const pools::HostPool& pool);

    PageOrder order() const noexcept { return order_; }
    const kernels::PoolGeometry& geometry() const noexcept { return geometry_; }
    SegmentHeader header(int writer_id) const noexcept;
    const pools::HostPool& pool() const noexcept { return *pool_; }
    // Writes host page `page` to row `slot` of `pages`: one direct chunk write, of the pool's
    // blob for contiguous pages, of a staging copy gathered in plane order for layer_first.
    Status write(hid_t pages, std::uint64_t slot, std::uint32_t page) const;
    // Reads row `slot` of `pages` into host page `page` (readPageChunk). Only for contiguous
    // pages (directRead()); a layer_first pool reads through a staging copy and scatter(): HDF5
    // 1.10's selection I/O into a strided memory selection moved 28 MB/s.
    Status read(hid_t pages, std::uint64_t slot, std::uint32_t page) const;
    // True when read() can fill the pool's page in place (a page-first layout).
    bool directRead() const noexcept { return view_.layout != kernels::HostLayout::kLayerFirst; }
    // Copies a page held in `order` (a staging copy of a file page of the same geometry) into
    // host page `page`, permuting rows into this pool's layout.
    void scatter(const std::byte* src, PageOrder order, std::uint32_t page) const noexcept;

private:
    PoolPages() = default;

    const pools::HostPool* pool_ = nullptr;  // borrowed: must outlive this object
    kernels::PoolGeometry geometry_{};
    kernels::HostView view_{};
    PageOrder order_ = PageOrder::kPlaneMajor;
    std::size_t page_bytes_ = 0;
    mutable std::vector<std::byte> staging_;  // layer_first writes: the page in plane order
};

// The commit word of slot `slot` holding `key` with page checksum `checksum`: never zero.
std::uint64_t commitWord(const core::PageKey& key, std::uint64_t checksum,
                         std::uint64_t slot) noexcept;

// What a store requires of every segment in its directory.
struct SegmentExpectation {
    std::size_t page_bytes = 0;
    std::uint64_t pool_hash = 0;
};

// The index part of a segment: header (capacity included) and the committed slots.
struct SegmentIndex {
    SegmentHeader header;
    std::vector<std::uint32_t> slots;  // committed slots, ascending
    std::vector<core::PageKey> keys;   // per committed slot
    std::vector<std::uint64_t> checksums;
};
// Verifies the header (format, its checksum, then each field against `expect` and the others) and
// the dataset shapes against the header and the file's size before anything is allocated for them.
// kIoError when the file is not a regular file (a FIFO is never opened) or HDF5 cannot read it;
// kDataLoss naming the file and the field when it is inconsistent or of another format.
Result<SegmentIndex> readSegmentIndex(const std::string& path, const SegmentExpectation& expect);

// An open segment for reads: file, `pages` dataset (chunk cache off) and its file dataspace.
struct OpenSegment {
    H5Id file;
    H5Id pages;
    H5Id file_space;
    int fd = -1;  // the sec2 driver's descriptor (owned by `file`), for read-ahead advice
};
// kIoError when the file is not a regular file (never opened then) or HDF5 cannot open it.
Result<OpenSegment> openSegmentForRead(const std::string& path, std::size_t page_bytes);

// The segment this process is filling. create() writes <dir>/<name>.tmp with every dataset
// allocated and every entry empty, flushes and fsyncs it, renames it to <name> and fsyncs the
// directory: from then on the file is a valid, durable segment and its HDF5 metadata never
// changes. append() writes page chunks, then their entry rows, then flushes and fdatasyncs: when it
// returns ok the pages are durable and committed. After a failed append the writer accepts no more
// pages (the caller closes it; what was committed before stays valid).
// Ownership: owns the open file; borrows the pool of each append.
class SegmentWriter {
public:
    // kIoError naming the path: no room for the whole segment (statvfs), or an HDF5/POSIX failure
    // (the .tmp file is removed). `header.capacity` is the number of slots.
    static Result<std::unique_ptr<SegmentWriter>> create(const std::string& dir,
                                                         const std::string& name,
                                                         const SegmentHeader& header);
    ~SegmentWriter();  // close(), failure logged
    SegmentWriter(const SegmentWriter&) = delete;
    SegmentWriter& operator=(const SegmentWriter&) = delete;

    const std::string& name() const noexcept { return name_; }
    std::uint32_t capacity() const noexcept { return capacity_; }
    std::uint32_t used() const noexcept { return used_; }
    bool usable() const noexcept { return !failed_ && used_ < capacity_; }
    // Pages into slots [used, used + keys.size()); requires usable() and room for all of them.
    // Fills `checksums` (one per page, as stored: sealed with the segment's header).
    Status append(std::span<const core::PageKey> keys, const PoolPages& source,
                  std::span<const std::uint32_t> host_pages, std::span<std::uint64_t> checksums);
    // Handles through which this process reads the segment's committed pages.
    const OpenSegment& readHandles() const noexcept { return handles_; }
    // Closes the file (idempotent). kIoError when HDF5 cannot close it.
    Status close();

private:
    SegmentWriter() = default;

    std::string name_, path_;
    std::uint32_t capacity_ = 0, used_ = 0;
    bool failed_ = false;
    SegmentHeader header_;
    OpenSegment handles_;  // file, pages, its dataspace, fd
    H5Id entries_;
};

// Asks the kernel to start reading the chunks of slots [first, last] now (POSIX_FADV_WILLNEED),
// so that a batch's pages stream from the device while earlier ones are verified. Best effort.
void adviseWillNeed(const OpenSegment& segment, std::uint64_t first, std::uint64_t last,
                    std::size_t page_bytes) noexcept;

}  // namespace strata::io
