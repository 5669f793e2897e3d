#include "segment.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>

#include "strata/core/hash.h"
#include "strata/core/log.h"

namespace strata::io {

namespace {

constexpr const char* kHeaderAttr = "strata_header";
// The header's words, in file order: its fields, then the checksum of the fields.
constexpr std::array<const char*, 11> kHeaderFields = {
    "format",    "page_bytes", "order",     "num_buffers", "num_layers", "row_bytes",
    "page_size", "writer_id",  "pool_hash", "capacity",    "checksum"};
constexpr std::size_t kHeaderWords = kHeaderFields.size();
// A header attribute with more words than this is refused unread.
constexpr hssize_t kMaxHeaderWords = 64;
constexpr std::uint64_t kHeaderTag = 0x5354524154414844ull;  // "STRATAHD"
constexpr std::uint64_t kLayoutTag = 0x5354524154414c59ull;  // "STRATALY"
constexpr hsize_t kFsPage = 4096;

std::atomic<std::uint64_t> g_name_counter{0};

bool parseNumber(std::string_view text, int base, auto* out) {
    if (text.empty()) return false;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), *out, base);
    return ec == std::errc() && ptr == text.data() + text.size();
}

H5Id makeSpace(std::initializer_list<hsize_t> dims) {
    std::array<hsize_t, 2> d{};
    std::size_t rank = 0;
    for (hsize_t v : dims) d[rank++] = v;
    return H5Id(H5Screate_simple(static_cast<int>(rank), d.data(), nullptr));
}

using HeaderWords = std::array<std::uint64_t, kHeaderWords>;

std::uint64_t headerChecksum(const std::uint64_t* words) noexcept {
    return core::foldDigest(kHeaderTag,
                            core::checksum64(words, (kHeaderWords - 1) * sizeof(std::uint64_t)));
}

HeaderWords headerWords(const SegmentHeader& h) noexcept {
    HeaderWords w = {h.format,
                     h.page_bytes,
                     static_cast<std::uint64_t>(h.order),
                     h.num_buffers,
                     h.num_layers,
                     h.row_bytes,
                     h.page_size,
                     h.writer_id,
                     h.pool_hash,
                     h.capacity,
                     0};
    w.back() = headerChecksum(w.data());
    return w;
}

}  // namespace

std::uint64_t SegmentHeader::layoutDigest() const noexcept {
    const std::uint64_t w[] = {
        kLayoutTag,  format,     page_bytes, static_cast<std::uint64_t>(order),
        num_buffers, num_layers, row_bytes,  page_size,
        pool_hash};
    return core::checksum64(w, sizeof w);
}

std::uint64_t poolSignatureHash(std::string_view pool_signature) noexcept {
    return core::checksum64(pool_signature.data(), pool_signature.size());
}

std::uint64_t sealChecksum(const SegmentHeader& header, std::uint64_t content) noexcept {
    return core::foldDigest(header.layoutDigest(), content);
}

std::uint32_t thisHostHash() {
    static const std::uint32_t hash = [] {
        char name[256] = {};
        if (gethostname(name, sizeof(name) - 1) != 0) std::strcpy(name, "unknown-host");
        return static_cast<std::uint32_t>(core::checksum64(name, std::strlen(name)));
    }();
    return hash;
}

std::string newSegmentName(int writer_id) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
    return fmt::format("seg-w{}-{:016x}-{:08x}-{}-{}.h5", writer_id, static_cast<std::uint64_t>(ns),
                       thisHostHash(), static_cast<long>(getpid()), g_name_counter.fetch_add(1));
}

std::optional<SegmentName> parseSegmentName(std::string_view name) {
    if (name.ends_with(".tmp")) name.remove_suffix(4);
    if (!name.starts_with("seg-w") || !name.ends_with(".h5")) return std::nullopt;
    name.remove_prefix(5);
    name.remove_suffix(3);
    std::array<std::string_view, 5> parts;
    for (std::size_t i = 0; i < parts.size(); ++i) {
        const std::size_t dash = name.find('-');
        if ((dash == std::string_view::npos) != (i + 1 == parts.size())) return std::nullopt;
        parts[i] = name.substr(0, dash);
        name = dash == std::string_view::npos ? std::string_view() : name.substr(dash + 1);
    }
    SegmentName out;
    std::uint64_t ns = 0, counter = 0;
    if (!parseNumber(parts[0], 10, &out.writer_id) || !parseNumber(parts[1], 16, &ns) ||
        !parseNumber(parts[2], 16, &out.host_hash) || !parseNumber(parts[3], 10, &out.pid) ||
        !parseNumber(parts[4], 10, &counter)) {
        return std::nullopt;
    }
    return out;
}

// ---- PoolPages ----

Result<PoolPages> PoolPages::create(const pools::HostPool& pool) {
    PoolPages p;
    p.pool_ = &pool;
    p.geometry_ = pool.geometry();
    p.view_ = pool.view();
    p.page_bytes_ = p.geometry_.bytesPerPage();
    p.order_ = pool.layout() == kernels::HostLayout::kPageFirst ? PageOrder::kTokenMajor
                                                                : PageOrder::kPlaneMajor;
    return p;
}

SegmentHeader PoolPages::header(int writer_id) const noexcept {
    SegmentHeader h;
    h.page_bytes = page_bytes_;
    h.order = order_;
    h.num_buffers = geometry_.num_buffers;
    h.num_layers = geometry_.num_layers;
    h.row_bytes = geometry_.row_bytes;
    h.page_size = geometry_.page_size;
    h.writer_id = static_cast<std::uint64_t>(writer_id);
    return h;
}

Status PoolPages::write(hid_t pages, std::uint64_t slot, std::uint32_t page) const {
    const hsize_t offset[2] = {slot, 0};
    if (view_.layout != kernels::HostLayout::kLayerFirst) {
        // Contiguous page: direct chunk write, no selection or chunk-cache machinery involved.
        if (H5Dwrite_chunk(pages, H5P_DEFAULT, 0, offset, page_bytes_,
                           pool_->pageBlob(page).data()) < 0) {
            return STRATA_ERROR(StatusCode::kIoError, "writing page to slot {}: {}", slot,
                                hdf5ErrorText());
        }
        return Status::ok();
    }
    // layer_first: the page's (buffer, layer) blocks gathered in plane order (the file's), then
    // one direct chunk write, as for contiguous pages.
    const auto& g = geometry_;
    const std::size_t block = std::size_t{g.page_size} * g.row_bytes;
    const std::size_t first_token = std::size_t{page} * g.page_size;
    staging_.resize(page_bytes_);
    for (std::uint32_t b = 0; b < g.num_buffers; ++b) {
        for (std::uint32_t l = 0; l < g.num_layers; ++l) {
            const std::size_t plane = std::size_t{b} * g.num_layers + l;
            std::memcpy(staging_.data() + plane * block,
                        view_.base + kernels::hostRowOffset(g, view_, b, l, first_token), block);
        }
    }
    if (H5Dwrite_chunk(pages, H5P_DEFAULT, 0, offset, page_bytes_, staging_.data()) < 0) {
        return STRATA_ERROR(StatusCode::kIoError, "writing page to slot {}: {}", slot,
                            hdf5ErrorText());
    }
    return Status::ok();
}

Status readPageChunk(hid_t pages, std::uint64_t slot, std::size_t page_bytes, std::byte* dst) {
    // A direct chunk read (no selection, no chunk cache): the bytes the chunk index records for
    // the slot are checked first, so a corrupt index cannot make it write past the page. (Asking
    // the index for the chunk's address and reading it with pread was slower on HDF5 1.10:
    // H5Dget_chunk_info_by_coord took 0.28-0.56x of pread's rate at 64 KiB pages, this 0.84x.)
    const hsize_t offset[2] = {slot, 0};
    hsize_t stored = 0;
    if (H5Dget_chunk_storage_size(pages, offset, &stored) < 0) {
        return STRATA_ERROR(StatusCode::kIoError, "reading slot {}: no chunk: {}", slot,
                            hdf5ErrorText());
    }
    if (stored != page_bytes) {
        return STRATA_ERROR(StatusCode::kIoError,
                            "reading slot {}: its chunk holds {} bytes, a page {}: not read", slot,
                            stored, page_bytes);
    }
    std::uint32_t filters = 0;
    if (H5Dread_chunk(pages, H5P_DEFAULT, offset, &filters, dst) < 0) {
        return STRATA_ERROR(StatusCode::kIoError, "reading slot {}: {}", slot, hdf5ErrorText());
    }
    if (filters != 0) {
        return STRATA_ERROR(StatusCode::kIoError,
                            "reading slot {}: filter mask {:#x}, none written", slot, filters);
    }
    return Status::ok();
}

Status PoolPages::read(hid_t pages, std::uint64_t slot, std::uint32_t page) const {
    return readPageChunk(pages, slot, page_bytes_, pool_->pageBlob(page).data());
}

void PoolPages::scatter(const std::byte* src, PageOrder order, std::uint32_t page) const noexcept {
    const auto& g = geometry_;
    const std::size_t planes = std::size_t{g.num_buffers} * g.num_layers;
    const std::size_t first_token = std::size_t{page} * g.page_size;
    if (order == PageOrder::kPlaneMajor && view_.layout == kernels::HostLayout::kLayerFirst) {
        // A plane's page_size rows are contiguous on both sides: one copy per plane.
        const std::size_t block = std::size_t{g.page_size} * g.row_bytes;
        for (std::uint32_t b = 0; b < g.num_buffers; ++b) {
            for (std::uint32_t l = 0; l < g.num_layers; ++l) {
                const std::size_t plane = std::size_t{b} * g.num_layers + l;
                std::memcpy(view_.base + kernels::hostRowOffset(g, view_, b, l, first_token),
                            src + plane * block, block);
            }
        }
        return;
    }
    for (std::uint32_t b = 0; b < g.num_buffers; ++b) {
        for (std::uint32_t l = 0; l < g.num_layers; ++l) {
            const std::size_t plane = std::size_t{b} * g.num_layers + l;
            for (std::uint32_t t = 0; t < g.page_size; ++t) {
                const std::size_t row =
                    order == PageOrder::kPlaneMajor ? plane * g.page_size + t : t * planes + plane;
                std::memcpy(view_.base + kernels::hostRowOffset(g, view_, b, l, first_token + t),
                            src + row * g.row_bytes, g.row_bytes);
            }
        }
    }
}

// ---- segment files ----

namespace {

// Space for a segment is checked and its closing metadata is guaranteed before HDF5 holds the
// file: HDF5 1.10 cannot close a file whose final metadata flush fails (the id stays open and
// crashes the library at exit). The pages themselves are not preallocated (a posix_fallocate of
// the whole segment, released again by H5Fcreate's truncation, doubled the allocation work: page
// zeroing on tmpfs, extent and discard work plus a flush-on-close on ext4).
// * statvfs: a file system without room for the whole segment fails here, cleanly.
// * A reservation file of `reserve_bytes` (an unused segment name + ".tmp", so that a crash leaves
//   only what create() already cleans up) is allocated before the segment is created. If a write
//   fails anyway (another process filled the disk, quotas), the segment's blocks and the
//   reservation are freed before HDF5's closing flush, which then finds room.
class SpaceReservation {
public:
    SpaceReservation() = default;
    SpaceReservation(const SpaceReservation&) = delete;
    SpaceReservation& operator=(const SpaceReservation&) = delete;
    ~SpaceReservation() { release(); }

    Status reserve(const std::string& segment_path, std::uint64_t segment_bytes,
                   std::uint64_t reserve_bytes, int writer_id) {
        const std::size_t slash = segment_path.rfind('/');
        const std::string dir =
            slash == std::string::npos ? std::string(".") : segment_path.substr(0, slash);
        struct statvfs vfs {};
        if (::statvfs(dir.c_str(), &vfs) == 0 && vfs.f_frsize > 0) {
            const std::uint64_t avail = std::uint64_t{vfs.f_bavail} * vfs.f_frsize;
            if (avail < segment_bytes) {
                return STRATA_ERROR(StatusCode::kIoError,
                                    "reserving {} bytes for segment '{}': {} ({} bytes free)",
                                    segment_bytes, segment_path, std::strerror(ENOSPC), avail);
            }
        }
        path_ = dir + "/" + newSegmentName(writer_id) + ".tmp";
        Fd fd(::open(path_.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644));
        if (!fd) {
            const int err = errno;
            std::string failed;
            failed.swap(path_);
            return STRATA_ERROR(StatusCode::kIoError, "creating space reservation '{}': {}", failed,
                                std::strerror(err));
        }
        const int rc = ::posix_fallocate(fd.get(), 0, static_cast<off_t>(reserve_bytes));
        if (rc != 0 && rc != EOPNOTSUPP && rc != EINVAL) {
            release();
            return STRATA_ERROR(StatusCode::kIoError, "reserving {} bytes for segment '{}': {}",
                                reserve_bytes, segment_path, std::strerror(rc));
        }
        return Status::ok();
    }

    // Frees the reserved blocks (idempotent).
    void release() noexcept {
        if (path_.empty()) return;
        if (::unlink(path_.c_str()) != 0 && errno != ENOENT) {
            try {
                core::logger("io").warn("cannot remove space reservation '{}': {}", path_,
                                        std::strerror(errno));
            } catch (...) {
            }
        }
        path_.clear();
    }

private:
    std::string path_;
};

// Frees the blocks of a failed segment so that HDF5's closing metadata flush finds room.
void truncateForClose(hid_t file) noexcept {
    void* handle = nullptr;
    if (H5Fget_vfd_handle(file, H5P_DEFAULT, &handle) >= 0 && handle != nullptr) {
        // Best effort: if it fails the close may fail too, which the caller logs.
        [[maybe_unused]] const int rc = ::ftruncate(*static_cast<int*>(handle), 0);
    }
    H5Eclear2(H5E_DEFAULT);
}

// File access for every open of a segment, writer and readers alike (HDF5 shares one open file
// per process, so they must agree): no sieve buffer (entry reads and writes go straight to the
// file, so a reader never sees a cached copy of entries that a writer has since committed) and no
// flock (readers open segments that a writer in another process still holds open for appends).
// Pages that are whole file-system pages get 4 KiB-aligned chunks: aligned pwrite/pread and no
// file-system page shared by two chunks; other sizes are packed (alignment would waste space).
H5Id segmentAccess(std::uint64_t page_bytes) {
    H5Id fapl(H5Pcreate(H5P_FILE_ACCESS));
    if (!fapl || H5Pset_sieve_buf_size(fapl.get(), 0) < 0 ||
        H5Pset_file_locking(fapl.get(), false, true) < 0 ||
        (page_bytes % kFsPage == 0 && H5Pset_alignment(fapl.get(), page_bytes, kFsPage) < 0)) {
        return H5Id();
    }
    return fapl;
}

constexpr std::uint64_t kEntryWords = 4;  // key lo, key hi, checksum, commit word
constexpr hsize_t kKickPages = 32;        // pages between write-back kicks in an append

Status createDatasets(hid_t file, const std::string& path, const SegmentHeader& header) {
    const hsize_t capacity = header.capacity;
    H5Id dcpl(H5Pcreate(H5P_DATASET_CREATE));
    H5Id edcpl(H5Pcreate(H5P_DATASET_CREATE));
    const hsize_t chunk[2] = {1, header.page_bytes};
    const std::uint64_t zero = 0;
    // Everything is allocated now so that appends change no HDF5 metadata; entries are written
    // as zeros (empty slots), pages are not filled.
    if (!dcpl || !edcpl || H5Pset_chunk(dcpl.get(), 2, chunk) < 0 ||
        H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER) < 0 ||
        H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY) < 0 ||
        H5Pset_obj_track_times(dcpl.get(), false) < 0 ||
        H5Pset_alloc_time(edcpl.get(), H5D_ALLOC_TIME_EARLY) < 0 ||
        H5Pset_fill_value(edcpl.get(), H5T_NATIVE_UINT64, &zero) < 0 ||
        H5Pset_fill_time(edcpl.get(), H5D_FILL_TIME_ALLOC) < 0 ||
        H5Pset_obj_track_times(edcpl.get(), false) < 0) {
        return STRATA_H5_ERROR("setting up dataset properties for", path);
    }
    H5Id space = makeSpace({capacity, header.page_bytes});
    H5Id pages(
        H5Dcreate2(file, "pages", H5T_STD_U8LE, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
    if (!pages) return STRATA_H5_ERROR("creating dataset 'pages' in", path);
    H5Id espace = makeSpace({capacity, kEntryWords});
    H5Id entries(H5Dcreate2(file, "entries", H5T_STD_U64LE, espace.get(), H5P_DEFAULT, edcpl.get(),
                            H5P_DEFAULT));
    if (!entries) return STRATA_H5_ERROR("creating dataset 'entries' in", path);
    const HeaderWords words = headerWords(header);
    H5Id hspace = makeSpace({kHeaderWords});
    H5Id attr(H5Acreate2(file, kHeaderAttr, H5T_STD_U64LE, hspace.get(), H5P_DEFAULT, H5P_DEFAULT));
    if (!attr || H5Awrite(attr.get(), H5T_NATIVE_UINT64, words.data()) < 0) {
        return STRATA_H5_ERROR("writing the segment header of", path);
    }
    return Status::ok();
}

int vfdHandle(hid_t file) noexcept {
    void* handle = nullptr;
    const int fd = H5Fget_vfd_handle(file, H5P_DEFAULT, &handle) >= 0 && handle != nullptr
                       ? *static_cast<int*>(handle)
                       : -1;
    H5Eclear2(H5E_DEFAULT);
    return fd;
}

Status openPages(OpenSegment* s, const std::string& path) {
    H5Id dapl(H5Pcreate(H5P_DATASET_ACCESS));
    if (!dapl || H5Pset_chunk_cache(dapl.get(), 0, 0, 1.0) < 0) {
        return STRATA_H5_ERROR("setting up dataset access for", path);
    }
    s->pages = H5Id(H5Dopen2(s->file.get(), "pages", dapl.get()));
    if (s->pages) s->file_space = H5Id(H5Dget_space(s->pages.get()));
    if (!s->pages || !s->file_space) return STRATA_H5_ERROR("opening dataset 'pages' in", path);
    s->fd = vfdHandle(s->file.get());
    return Status::ok();
}

const char* fileKind(mode_t mode) noexcept {
    if (S_ISFIFO(mode)) return "a fifo";
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    return "not a regular file";
}

// Opens a segment read-only once stat() shows a regular file: HDF5's open(2) of a FIFO blocks
// until a writer appears (a file swapped for a FIFO between the two calls is not guarded against:
// only someone who may write the directory can do that). `size_bytes`: the file's size.
Result<H5Id> openSegmentFile(const std::string& path, std::size_t page_bytes,
                             std::uint64_t* size_bytes) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        return STRATA_ERROR(StatusCode::kIoError, "stat of segment '{}': {}", path,
                            std::strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        return STRATA_ERROR(StatusCode::kIoError, "segment '{}' is {}: not opened", path,
                            fileKind(st.st_mode));
    }
    *size_bytes = static_cast<std::uint64_t>(st.st_size);
    H5Id fapl = segmentAccess(page_bytes);
    if (!fapl) return STRATA_H5_ERROR("setting up file access for", path);
    H5Id file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()));
    if (!file) return STRATA_H5_ERROR("opening segment", path);
    return file;
}

Status badHeaderField(const std::string& path, std::size_t field, std::string_view why) {
    return STRATA_ERROR(StatusCode::kDataLoss, "segment '{}': strata_header.{} {}", path,
                        kHeaderFields[field], why);
}

// Reads and verifies the header: format first (another format may have another size), then the
// checksum over every field, then each field against `expect` and the others.
Result<SegmentHeader> readHeader(hid_t file, const std::string& path,
                                 const SegmentExpectation& expect) {
    std::array<std::uint64_t, kMaxHeaderWords> w{};
    H5Id attr(H5Aopen(file, kHeaderAttr, H5P_DEFAULT));
    H5Id space(attr ? H5Aget_space(attr.get()) : H5I_INVALID_HID);
    const hssize_t n = space ? H5Sget_simple_extent_npoints(space.get()) : -1;
    if (n < 0) return STRATA_H5_ERROR("reading the segment header of", path);
    if (n < 1 || n > kMaxHeaderWords) {
        return STRATA_ERROR(StatusCode::kDataLoss, "segment '{}': strata_header has {} words", path,
                            n);
    }
    if (H5Aread(attr.get(), H5T_NATIVE_UINT64, w.data()) < 0) {
        return STRATA_H5_ERROR("reading the segment header of", path);
    }
    if (w[0] != kSegmentFormat) {
        return badHeaderField(
            path, 0,
            fmt::format("is {}: this build reads format {} only{}", w[0], kSegmentFormat,
                        w[0] < kSegmentFormat ? " (an older Strata's file)" : ""));
    }
    if (n != static_cast<hssize_t>(kHeaderWords)) {
        return STRATA_ERROR(StatusCode::kDataLoss,
                            "segment '{}': strata_header has {} words, format {} has {}", path, n,
                            kSegmentFormat, kHeaderWords);
    }
    const std::uint64_t sum = headerChecksum(w.data());
    if (w[kHeaderWords - 1] != sum) {
        return badHeaderField(
            path, kHeaderWords - 1,
            fmt::format("is {:016x}, its fields give {:016x}: the header is corrupt (fields {})",
                        w[kHeaderWords - 1], sum, fmt::join(w.begin(), w.begin() + n - 1, " ")));
    }
    // An intact header that this store cannot use: another store's file, or a crafted one.
    const SegmentHeader h{w[0], w[1], static_cast<PageOrder>(w[2]), w[3], w[4], w[5], w[6], w[7],
                          w[8], w[9]};
    if (h.page_bytes != expect.page_bytes) {
        return badHeaderField(
            path, 1,
            fmt::format("is {}: this store holds {}-byte pages", h.page_bytes, expect.page_bytes));
    }
    if (h.order != PageOrder::kPlaneMajor && h.order != PageOrder::kTokenMajor) {
        return badHeaderField(path, 2, fmt::format("is {}: not a page order", w[2]));
    }
    // Each geometry field divides what is left of page_bytes, the last one is all that is left:
    // their product is page_bytes (and never overflows).
    std::uint64_t left = h.page_bytes;
    for (std::size_t i = 3; i <= 6; ++i) {
        if (w[i] == 0 || left % w[i] != 0 || (i == 6 && w[i] != left)) {
            return badHeaderField(path, i,
                                  fmt::format("is {}: num_buffers x num_layers x row_bytes x "
                                              "page_size must be page_bytes {}",
                                              w[i], h.page_bytes));
        }
        left /= w[i];
    }
    if (h.pool_hash != expect.pool_hash) {
        return badHeaderField(path, 8,
                              fmt::format("is {:016x}: another pool signature's file (this "
                                          "directory's is {:016x})",
                                          h.pool_hash, expect.pool_hash));
    }
    if (h.capacity == 0 || h.capacity > kMaxSegmentSlots) {
        return badHeaderField(path, 9,
                              fmt::format("is {}: not in [1, {}]", h.capacity, kMaxSegmentSlots));
    }
    return h;
}

}  // namespace

std::uint64_t commitWord(const core::PageKey& key, std::uint64_t checksum,
                         std::uint64_t slot) noexcept {
    const std::uint64_t words[5] = {key.lo, key.hi, checksum, slot, 0x5354524154414332ull};
    return core::checksum64(words, sizeof words) | 1;
}

Result<std::unique_ptr<SegmentWriter>> SegmentWriter::create(const std::string& dir,
                                                             const std::string& name,
                                                             const SegmentHeader& header) {
    if (header.capacity == 0 || header.capacity > kMaxSegmentSlots) {
        return STRATA_ERROR(StatusCode::kInternal, "segment '{}' of {} slots", name,
                            header.capacity);
    }
    const auto capacity = static_cast<std::uint32_t>(header.capacity);
    std::unique_ptr<SegmentWriter> w(new SegmentWriter());
    w->name_ = name;
    w->path_ = dir + "/" + name;
    w->capacity_ = capacity;
    w->header_ = header;
    const std::string tmp = w->path_ + ".tmp";
    const std::uint64_t metadata_bytes = std::uint64_t{capacity} * 256 + 64 * 1024;
    SpaceReservation reservation;
    STRATA_RETURN_IF_ERROR(reservation.reserve(tmp, capacity * header.page_bytes + metadata_bytes,
                                               metadata_bytes, static_cast<int>(header.writer_id)));
    H5Id fapl = segmentAccess(header.page_bytes);
    if (!fapl) return STRATA_H5_ERROR("setting up file access for", tmp);
    w->handles_.file = H5Id(H5Fcreate(tmp.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, fapl.get()));
    if (!w->handles_.file) return STRATA_H5_ERROR("creating segment", tmp);
    const hid_t file = w->handles_.file.get();
    Status st = createDatasets(file, tmp, header);
    if (st.isOk() && H5Fflush(file, H5F_SCOPE_LOCAL) < 0) st = STRATA_H5_ERROR("flushing", tmp);
    if (st.isOk()) st = openPages(&w->handles_, tmp);
    if (st.isOk()) {
        w->entries_ = H5Id(H5Dopen2(file, "entries", H5P_DEFAULT));
        if (!w->entries_) st = STRATA_H5_ERROR("opening dataset 'entries' in", tmp);
    }
    if (st.isOk() && ::fsync(w->handles_.fd) != 0) {
        st = STRATA_ERROR(StatusCode::kIoError, "fsync '{}': {}", tmp, std::strerror(errno));
    }
    if (st.isOk() && ::rename(tmp.c_str(), w->path_.c_str()) != 0) {
        st = STRATA_ERROR(StatusCode::kIoError, "rename '{}' -> '{}': {}", tmp, w->path_,
                          std::strerror(errno));
    }
    if (st.isOk()) {
        st = fsyncDirectory(dir);
        if (!st.isOk()) ::unlink(w->path_.c_str());  // not durable: do not leave it behind
    }
    if (!st.isOk()) {
        truncateForClose(file);
        reservation.release();
        w->failed_ = true;
        [[maybe_unused]] Status ignored = w->close();
        ::unlink(tmp.c_str());
        return st;
    }
    return w;
}

SegmentWriter::~SegmentWriter() {
    Status st = close();
    if (!st.isOk()) core::logger("io").error("{}", st.message());
}

Status SegmentWriter::append(std::span<const core::PageKey> keys, const PoolPages& source,
                             std::span<const std::uint32_t> host_pages,
                             std::span<std::uint64_t> checksums) {
    const hsize_t n = keys.size();
    if (!usable() || n > capacity_ - used_) {
        return STRATA_ERROR(StatusCode::kInternal,
                            "segment '{}' cannot take {} pages ({} of {} used{})", path_, n, used_,
                            capacity_, failed_ ? ", failed" : "");
    }
    failed_ = true;  // until the whole append is durable
    const hid_t pages = handles_.pages.get();
    for (hsize_t i = 0; i < n; ++i) {
        // Checksum right before the write: the page is read from memory once and then written
        // from the cache.
        checksums[i] = sealChecksum(header_, pools::pageChecksum(source.pool(), host_pages[i]));
        Status st = source.write(pages, used_ + i, host_pages[i]);
        if (!st.isOk()) return st.withContext(path_);
        // Start write-back of what is written so far every kKickPages pages (no waiting): the
        // device works while the rest of the batch is copied, and the closing fdatasync waits for
        // less. Best effort (not every file system supports it).
        if ((i + 1) % kKickPages == 0 && i + 1 < n) {
            ::sync_file_range(handles_.fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        }
    }
    std::vector<std::uint64_t> words(kEntryWords * n);
    for (hsize_t i = 0; i < n; ++i) {
        std::uint64_t* e = &words[kEntryWords * i];
        e[0] = keys[i].lo;
        e[1] = keys[i].hi;
        e[2] = checksums[i];
        e[3] = commitWord(keys[i], checksums[i], used_ + i);
    }
    const hsize_t offset[2] = {used_, 0}, count[2] = {n, kEntryWords};
    H5Id mem = makeSpace({n, kEntryWords});
    H5Id file_space(H5Dget_space(entries_.get()));
    if (!mem || !file_space ||
        H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, offset, nullptr, count, nullptr) <
            0 ||
        H5Dwrite(entries_.get(), H5T_NATIVE_UINT64, mem.get(), file_space.get(), H5P_DEFAULT,
                 words.data()) < 0) {
        return STRATA_H5_ERROR("writing entries to", path_);
    }
    if (H5Fflush(handles_.file.get(), H5F_SCOPE_LOCAL) < 0) {
        return STRATA_H5_ERROR("flushing", path_);
    }
    if (::fdatasync(handles_.fd) != 0) {
        return STRATA_ERROR(StatusCode::kIoError, "fdatasync '{}': {}", path_,
                            std::strerror(errno));
    }
    used_ += static_cast<std::uint32_t>(n);
    failed_ = false;
    return Status::ok();
}

Status SegmentWriter::close() {
    if (!handles_.file) return Status::ok();
    entries_.reset();
    handles_.file_space.reset();
    handles_.pages.reset();
    handles_.fd = -1;
    const hid_t id = handles_.file.release();
    if (H5Fclose(id) >= 0) return Status::ok();
    // Appends dirty no metadata, so this is rare (a failed creation): free the file's blocks so
    // the closing flush finds room, and close again, or the id would stay open.
    Status st = STRATA_H5_ERROR("closing", path_);
    truncateForClose(id);
    if (H5Fclose(id) < 0) {
        core::logger("io").error("hdf5 cannot close '{}': the id stays open: {}", path_,
                                 hdf5ErrorText());
    }
    return st;
}

Result<SegmentIndex> readSegmentIndex(const std::string& path, const SegmentExpectation& expect) {
    std::uint64_t file_bytes = 0;
    STRATA_ASSIGN_OR_RETURN(H5Id file, openSegmentFile(path, expect.page_bytes, &file_bytes));
    SegmentIndex out;
    STRATA_ASSIGN_OR_RETURN(out.header, readHeader(file.get(), path, expect));
    const SegmentHeader& h = out.header;
    const hsize_t n = h.capacity;
    // Both datasets must have exactly the header's shape (checked before anything is sized by
    // them), and the file must be large enough for them: every chunk and entry is allocated at
    // creation, so a file smaller than that is truncated or crafted.
    auto checkShape = [&](const char* name, hsize_t columns) -> Status {
        H5Id ds(H5Dopen2(file.get(), name, H5P_DEFAULT));
        H5Id space(ds ? H5Dget_space(ds.get()) : H5I_INVALID_HID);
        const int rank = space ? H5Sget_simple_extent_ndims(space.get()) : -1;
        std::array<hsize_t, 2> d{};
        if (rank < 1 || rank > 2 || H5Sget_simple_extent_dims(space.get(), d.data(), nullptr) < 0) {
            return STRATA_H5_ERROR(fmt::format("reading the shape of dataset '{}' in", name), path);
        }
        if (rank != 2 || d[0] != n || d[1] != columns) {
            return STRATA_ERROR(StatusCode::kDataLoss,
                                "segment '{}': dataset '{}' is {}x{}, strata_header says {}x{}",
                                path, name, d[0], rank == 2 ? d[1] : 1, n, columns);
        }
        return Status::ok();
    };
    STRATA_RETURN_IF_ERROR(checkShape("pages", h.page_bytes));
    STRATA_RETURN_IF_ERROR(checkShape("entries", kEntryWords));
    const std::uint64_t declared = n * (h.page_bytes + kEntryWords * sizeof(std::uint64_t));
    if (declared > file_bytes) {
        return STRATA_ERROR(
            StatusCode::kDataLoss,
            "segment '{}': its {} slots (strata_header.capacity) need {} bytes, the "
            "file has {}",
            path, n, declared, file_bytes);
    }
    std::vector<std::uint64_t> entries(kEntryWords * n);
    H5Id ds(H5Dopen2(file.get(), "entries", H5P_DEFAULT));
    if (H5Dread(ds.get(), H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, entries.data()) < 0) {
        return STRATA_H5_ERROR("reading the entries of", path);
    }
    for (hsize_t i = 0; i < n; ++i) {
        const std::uint64_t* e = &entries[kEntryWords * i];
        const core::PageKey key{e[0], e[1]};
        if (e[3] == 0 || e[3] != commitWord(key, e[2], i)) continue;  // empty or torn
        out.slots.push_back(static_cast<std::uint32_t>(i));
        out.keys.push_back(key);
        out.checksums.push_back(e[2]);
    }
    return out;
}

Result<OpenSegment> openSegmentForRead(const std::string& path, std::size_t page_bytes) {
    OpenSegment s;
    std::uint64_t file_bytes = 0;
    STRATA_ASSIGN_OR_RETURN(s.file, openSegmentFile(path, page_bytes, &file_bytes));
    STRATA_RETURN_IF_ERROR(openPages(&s, path));
    return s;
}

void adviseWillNeed(const OpenSegment& segment, std::uint64_t first, std::uint64_t last,
                    std::size_t page_bytes) noexcept {
    if (segment.fd < 0) return;
    auto address = [&](std::uint64_t slot) {
        const hsize_t offset[2] = {slot, 0};
        unsigned mask = 0;
        haddr_t addr = HADDR_UNDEF;
        hsize_t size = 0;
        if (H5Dget_chunk_info_by_coord(segment.pages.get(), offset, &mask, &addr, &size) < 0) {
            H5Eclear2(H5E_DEFAULT);
            return HADDR_UNDEF;
        }
        return addr;
    };
    const haddr_t lo = address(first);
    const haddr_t hi = address(last);
    if (lo == HADDR_UNDEF || hi == HADDR_UNDEF) return;
    const haddr_t begin = std::min(lo, hi);
    const haddr_t end = std::max(lo, hi) + page_bytes;
    ::posix_fadvise(segment.fd, static_cast<off_t>(begin), static_cast<off_t>(end - begin),
                    POSIX_FADV_WILLNEED);
}

}  // namespace strata::io
