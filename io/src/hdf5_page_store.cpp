// Hdf5PageStore. Each store fills one segment at a time (SegmentWriter): the segment file is made
// durable empty (.tmp, fsync, rename, directory fsync), then every set() appends page chunks and
// their entries and fdatasyncs; only then are its pages indexed and counted. A reader opens only
// complete files and serves only committed slots; a crash leaves .tmp files (deleted at the next
// open when stale) and segments with empty or torn trailing slots, which are never served.
#include "strata/io/hdf5_page_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <list>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "h5_util.h"
#include "segment.h"
#include "strata/core/log.h"

namespace strata::io {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxOpenSegments = 32;
// Default segment size: appends fill a segment of about this many bytes (at most kMaxSegmentPages
// pages), so that file creation and its directory fsync are paid once per many batches.
constexpr std::uint64_t kSegmentTargetBytes = 256ull << 20;
constexpr std::uint64_t kMaxSegmentPages = 4096;
// A .tmp file this old is abandoned whoever wrote it: one segment is created in seconds. A
// partly filled segment of another host unchanged this long is no longer watched for appends.
constexpr auto kStaleTmpAge = std::chrono::minutes(15);
constexpr std::int64_t kStaleNs =
    std::chrono::duration_cast<std::chrono::nanoseconds>(kStaleTmpAge).count();
// Skipping a rescan on an unchanged directory mtime is trusted only when the scan that saw that
// mtime began this long after it (coarse timestamps: a later rename may keep the same mtime).
constexpr std::int64_t kMtimeSlackNs = 2'000'000'000;

spdlog::logger& log() { return core::logger("io"); }

std::int64_t realtimeNs() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::int64_t mtimeNs(const struct stat& st) {
    return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

double secondsSince(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

struct Hdf5PageStore::Impl {
    struct Location {
        std::uint32_t segment;
        std::uint32_t slot;
        std::uint64_t checksum;
    };
    struct Segment {
        std::string name;
        SegmentHeader header;              // capacity = its slots
        std::vector<PageKey> keys;         // indexed (committed) slots, in the order indexed
        std::vector<std::uint8_t> filled;  // per slot: committed and indexed
        bool own = false;
        std::uint64_t last_access = 0;  // LRU tick
        bool geometry_warned = false;
        // Another process's segment with free slots whose writer may still append: refreshed
        // on rescans when its mtime or size moved (or may have moved within timestamp slack).
        bool growing = false;
        std::int64_t seen_mtime_ns = -1, seen_size = -1, checked_ns = 0;
    };

    Hdf5StoreOptions options;
    SegmentExpectation expect;  // page bytes and pool signature hash of every segment here
    std::string dir;            // <directory>/<pool_signature>
    std::unordered_map<PageKey, Location> index;
    std::unordered_map<std::uint32_t, Segment> segments;
    std::unordered_set<std::string> known_names;  // indexed, ignored or deleted segment files
    std::uint32_t next_segment = 0;
    std::uint64_t tick = 0;
    std::uint64_t own_pages = 0;
    // Guarded by stats_mutex: the storage worker updates them while the Cache's thread may read
    // them for live metrics.
    StoreStats stats;
    bool record_evictions = false;  // guarded by stats_mutex too
    std::vector<PageKey> evicted;   // since the last takeEvicted()
    mutable std::mutex stats_mutex;
    template <typename F>
    void count(F&& update) {
        std::lock_guard<std::mutex> lock(stats_mutex);
        update(stats);
    }
    // Read handles of recently used segments, most recent first.
    std::list<std::pair<std::uint32_t, OpenSegment>> open_segments;
    // The segment this store appends to, and its id.
    std::unique_ptr<SegmentWriter> writer;
    std::uint32_t writer_segment = UINT32_MAX;
    std::size_t segment_pages = 0;  // resolved options.segment_pages
    // Directory mtime seen by the last scan and the time that scan began.
    std::int64_t scanned_mtime_ns = -1;
    std::int64_t scan_started_ns = 0;

    std::string path(const std::string& name) const { return dir + "/" + name; }

    void touch(std::uint32_t seg) {
        auto it = segments.find(seg);
        if (it != segments.end()) it->second.last_access = ++tick;
    }

    // Registers a segment (no entries yet).
    std::uint32_t addSegment(Segment seg) {
        const std::uint32_t id = next_segment++;
        seg.filled.assign(seg.header.capacity, 0);
        known_names.insert(seg.name);
        segments.emplace(id, std::move(seg));
        return id;
    }

    // Indexes committed slots of segment `id` not indexed yet (a key already indexed elsewhere
    // keeps its first copy). Returns how many slots were new.
    std::size_t addEntries(std::uint32_t id, std::span<const std::uint32_t> slots,
                           std::span<const PageKey> keys, std::span<const std::uint64_t> sums) {
        Segment& seg = segments.at(id);
        std::size_t added = 0;
        for (std::size_t i = 0; i < slots.size(); ++i) {
            if (slots[i] >= seg.header.capacity || seg.filled[slots[i]]) continue;
            seg.filled[slots[i]] = 1;
            seg.keys.push_back(keys[i]);
            index.try_emplace(keys[i], Location{id, slots[i], sums[i]});
            ++added;
        }
        if (seg.own) own_pages += added;
        return added;
    }

    // Whether another process may still append to `seg` (named `name`).
    bool mayGrow(const Segment& seg, const SegmentName& name, std::int64_t mtime_ns) const {
        if (seg.own || seg.keys.size() >= seg.header.capacity) return false;
        if (name.host_hash == thisHostHash()) {
            return ::kill(static_cast<pid_t>(name.pid), 0) == 0 || errno != ESRCH;
        }
        return realtimeNs() - mtime_ns < kStaleNs;
    }

    // Re-reads the entries of growing segments whose file changed since they were last read.
    std::size_t refreshGrowing() {
        std::size_t added = 0;
        for (auto& [id, seg] : segments) {
            if (!seg.growing) continue;
            struct stat st {};
            const std::int64_t started = realtimeNs();
            if (::stat(path(seg.name).c_str(), &st) != 0) continue;  // gone: dropped on read
            const std::int64_t m = mtimeNs(st);
            if (m == seg.seen_mtime_ns && st.st_size == seg.seen_size &&
                seg.checked_ns - m > kMtimeSlackNs) {
                seg.growing = mayGrow(seg, *parseSegmentName(seg.name), m);
                continue;
            }
            Result<SegmentIndex> idx = readSegmentIndex(path(seg.name), expect);
            if (!idx.isOk()) {
                log().warn("cannot re-read growing segment: {}", idx.status().message());
                continue;
            }
            seg.seen_mtime_ns = m;
            seg.seen_size = st.st_size;
            seg.checked_ns = started;
            added += addEntries(id, idx->slots, idx->keys, idx->checksums);
            seg.growing = mayGrow(seg, *parseSegmentName(seg.name), m);
        }
        return added;
    }

    // Forgets a segment: closes its handle and drops the index entries that point into it.
    void dropSegment(std::uint32_t id) {
        auto it = segments.find(id);
        if (it == segments.end()) return;
        open_segments.remove_if([id](const auto& e) { return e.first == id; });
        if (id == writer_segment) closeWriter();
        for (const PageKey& k : it->second.keys) {
            auto e = index.find(k);
            if (e != index.end() && e->second.segment == id) index.erase(e);
        }
        if (it->second.own) own_pages -= it->second.keys.size();
        segments.erase(it);
    }

    // Drops the indexed segments whose files are no longer in the directory (another writer
    // evicted them for its capacity): their index entries, and their cached read handles, which
    // would otherwise keep the unlinked files' blocks allocated (up to kMaxOpenSegments of them)
    // until pushed out of the cache. Found by strata-bench soak.
    void forgetRemoved(const std::unordered_set<std::string>& present) {
        std::vector<std::uint32_t> gone;
        for (const auto& [id, seg] : segments) {
            if (id != writer_segment && !present.contains(seg.name)) gone.push_back(id);
        }
        for (std::uint32_t id : gone) {
            log().debug("segment '{}' was removed (by its writer): dropped from the index",
                        path(segments.at(id).name));
            dropSegment(id);
        }
    }

    // Seals the segment being filled (its committed pages stay indexed).
    void closeWriter() {
        if (!writer) return;
        Status st = writer->close();
        if (!st.isOk()) log().error("{}", st.message());
        writer.reset();
        writer_segment = UINT32_MAX;
    }

    Result<const OpenSegment*> openForRead(std::uint32_t id) {
        if (writer && id == writer_segment) return &writer->readHandles();
        for (auto it = open_segments.begin(); it != open_segments.end(); ++it) {
            if (it->first == id) {
                open_segments.splice(open_segments.begin(), open_segments, it);
                return &open_segments.front().second;
            }
        }
        STRATA_ASSIGN_OR_RETURN(OpenSegment s,
                                openSegmentForRead(path(segments.at(id).name), options.page_bytes));
        open_segments.emplace_front(id, std::move(s));
        while (open_segments.size() > kMaxOpenSegments) open_segments.pop_back();
        return &open_segments.front().second;
    }

    // Deletes .tmp files that no live writer can still be writing: those of processes of this
    // host that are gone, and any older than kStaleTmpAge (another host's crashed writer).
    void removeStaleTmp(const fs::path& p, const SegmentName& name) {
        struct stat st {};
        if (::stat(p.c_str(), &st) != 0) return;
        const bool dead_here = name.host_hash == thisHostHash() &&
                               ::kill(static_cast<pid_t>(name.pid), 0) != 0 && errno == ESRCH;
        const bool old = realtimeNs() - mtimeNs(st) >
                         std::chrono::duration_cast<std::chrono::nanoseconds>(kStaleTmpAge).count();
        if (!dead_here && !old) return;
        if (::unlink(p.c_str()) == 0) {
            log().info("removed unfinished segment '{}' (writer {} {})", p.string(), name.writer_id,
                       dead_here ? "gone" : "stale");
        } else if (errno != ENOENT) {
            log().warn("cannot remove unfinished segment '{}': {}", p.string(),
                       std::strerror(errno));
        }
    }

    // Indexes segment files not seen before. `recovery`: also cleans .tmp files and takes file
    // mtimes as the LRU order of this writer's segments. Returns the number of new segments.
    std::size_t scan(bool recovery) {
        struct stat dst {};
        const std::int64_t started = realtimeNs();
        if (::stat(dir.c_str(), &dst) != 0) {
            log().warn("cannot stat storage directory '{}': {}", dir, std::strerror(errno));
            return 0;
        }
        if (!recovery && mtimeNs(dst) == scanned_mtime_ns &&
            scan_started_ns - scanned_mtime_ns > kMtimeSlackNs) {
            return refreshGrowing();  // nothing renamed into the directory since the last scan
        }
        scanned_mtime_ns = mtimeNs(dst);
        scan_started_ns = started;
        std::error_code ec;
        std::vector<std::pair<std::int64_t, std::uint32_t>> own_by_mtime;
        std::size_t added = 0;
        std::unordered_set<std::string> present;  // segment files listed now
        for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
            const std::string name = it->path().filename().string();
            auto parsed = parseSegmentName(name);
            if (!parsed) continue;
            if (name.ends_with(".tmp")) {
                if (recovery) removeStaleTmp(it->path(), *parsed);
                continue;
            }
            present.insert(name);
            if (known_names.contains(name)) continue;
            known_names.insert(name);
            Result<SegmentIndex> seg = readSegmentIndex(path(name), expect);
            if (!seg.isOk()) {
                log().warn("ignoring segment: {}", seg.status().message());
                continue;
            }
            Segment s;
            s.name = name;
            s.header = seg->header;
            s.own = parsed->writer_id == options.writer_id;
            s.last_access = ++tick;
            const std::uint32_t id = addSegment(std::move(s));
            added += addEntries(id, seg->slots, seg->keys, seg->checksums);
            Segment& added_seg = segments.at(id);
            struct stat fst {};
            if (::stat(path(name).c_str(), &fst) == 0) {
                if (recovery && added_seg.own) own_by_mtime.emplace_back(mtimeNs(fst), id);
                added_seg.seen_mtime_ns = mtimeNs(fst);
                added_seg.seen_size = fst.st_size;
                added_seg.checked_ns = started;
                added_seg.growing = mayGrow(added_seg, *parsed, mtimeNs(fst));
            }
        }
        if (ec) log().warn("listing storage directory '{}': {}", dir, ec.message());
        if (!ec) forgetRemoved(present);
        // LRU order of earlier jobs' segments of this writer: their modification times.
        std::sort(own_by_mtime.begin(), own_by_mtime.end());
        for (const auto& [mtime, id] : own_by_mtime) segments.at(id).last_access = ++tick;
        return added + refreshGrowing();
    }

    // Deletes this writer's least recently used segments until it holds at most capacity_pages.
    void enforceCapacity() {
        if (options.capacity_pages == 0) return;
        while (own_pages > options.capacity_pages) {
            std::uint32_t victim = 0;
            std::uint64_t oldest = UINT64_MAX;
            for (const auto& [id, s] : segments) {
                if (s.own && s.last_access < oldest) {
                    oldest = s.last_access;
                    victim = id;
                }
            }
            if (oldest == UINT64_MAX) return;
            const Segment& s = segments.at(victim);
            const std::string p = path(s.name);
            if (::unlink(p.c_str()) != 0 && errno != ENOENT) {
                log().warn("evicting segment '{}': unlink failed: {}", p, std::strerror(errno));
            }
            count([&](StoreStats& st) { st.pages_evicted += s.keys.size(); });
            {
                std::lock_guard<std::mutex> lock(stats_mutex);
                if (record_evictions) evicted.insert(evicted.end(), s.keys.begin(), s.keys.end());
            }
            log().debug("evicted segment '{}' ({} pages) for capacity {}", p, s.keys.size(),
                        options.capacity_pages);
            dropSegment(victim);
        }
    }

    // Appends pages to the segment being filled (a new one when there is none or it is full);
    // indexes them only once durable. Returns the number stored; a failure seals the segment.
    Status appendPages(const PoolPages& source, std::span<const PageKey> keys,
                       std::span<const std::uint32_t> pages, std::size_t* stored) {
        std::vector<std::uint64_t> sums(keys.size());
        *stored = 0;
        while (*stored < keys.size()) {
            if (!writer || !writer->usable()) {
                closeWriter();
                const std::string name = newSegmentName(options.writer_id);
                SegmentHeader header = source.header(options.writer_id);
                header.pool_hash = expect.pool_hash;
                header.capacity = segment_pages;
                STRATA_ASSIGN_OR_RETURN(writer, SegmentWriter::create(dir, name, header));
                Segment s;
                s.name = name;
                s.header = header;
                s.own = true;
                s.last_access = ++tick;
                writer_segment = addSegment(std::move(s));
            }
            const std::uint32_t first_slot = writer->used();
            const std::size_t n =
                std::min<std::size_t>(keys.size() - *stored, writer->capacity() - first_slot);
            const auto k = keys.subspan(*stored, n);
            const auto c = std::span<std::uint64_t>(sums).subspan(*stored, n);
            Status st = writer->append(k, source, pages.subspan(*stored, n), c);
            if (!st.isOk()) {
                closeWriter();
                return st;
            }
            std::vector<std::uint32_t> slots(n);
            for (std::size_t i = 0; i < n; ++i)
                slots[i] = first_slot + static_cast<std::uint32_t>(i);
            addEntries(writer_segment, slots, k, c);
            touch(writer_segment);
            *stored += n;
        }
        return Status::ok();
    }

    Status checkBatch(std::span<const PageKey> keys, const pools::HostPool& pool,
                      std::span<const std::uint32_t> host_pages) const {
        if (keys.size() != host_pages.size()) {
            return STRATA_ERROR(StatusCode::kInvalidArgument, "{} keys but {} host pages",
                                keys.size(), host_pages.size());
        }
        if (pool.geometry().bytesPerPage() != options.page_bytes) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "pool '{}' has {}-byte pages, store '{}' holds {}-byte pages",
                                pool.spec().name, pool.geometry().bytesPerPage(), dir,
                                options.page_bytes);
        }
        for (std::uint32_t p : host_pages) {
            if (p >= pool.numPages()) {
                return STRATA_ERROR(StatusCode::kInvalidArgument,
                                    "host page {} out of range (pool '{}' has {} pages)", p,
                                    pool.spec().name, pool.numPages());
            }
        }
        return Status::ok();
    }

    // Read-ahead for the run of keys from `first` that lie in `segment`: one WILLNEED over its
    // chunks, so the device streams them while earlier pages are copied and verified. Returns the
    // end of the run.
    std::size_t adviseRun(std::span<const PageKey> keys, std::size_t first, std::uint32_t segment) {
        std::uint32_t lo = UINT32_MAX, hi = 0;
        std::size_t end = first;
        for (; end < keys.size(); ++end) {
            auto it = index.find(keys[end]);
            if (it == index.end() || it->second.segment != segment) break;
            lo = std::min(lo, it->second.slot);
            hi = std::max(hi, it->second.slot);
        }
        if (end - first >= 2) {
            Result<const OpenSegment*> open = openForRead(segment);
            if (open.isOk()) adviseWillNeed(**open, lo, hi, options.page_bytes);
        }
        return std::max(end, first + 1);
    }

    // Reads one page into the pool and verifies it. False (logged, counted) when not served.
    bool readPage(const PageKey& key, const Location& loc, const PoolPages& dst,
                  std::uint32_t host_page, std::vector<std::byte>& staging) {
        Segment& seg = segments.at(loc.segment);
        if (!seg.header.sameGeometry(dst.geometry())) {
            if (!seg.geometry_warned) {
                log().warn("segment '{}' holds pages of another geometry than pool: not served",
                           path(seg.name));
                seg.geometry_warned = true;
            }
            return false;
        }
        Result<const OpenSegment*> open = openForRead(loc.segment);
        if (!open.isOk()) {
            log().warn("dropping segment from the index: {}", open.status().message());
            dropSegment(loc.segment);
            return false;
        }
        const OpenSegment& h = **open;
        std::uint64_t sum = 0;
        Status st;
        const bool direct = seg.header.order == dst.order() && dst.directRead();
        if (direct) {
            st = dst.read(h.pages.get(), loc.slot, host_page);
            if (st.isOk()) sum = pools::pageChecksum(dst.pool(), host_page);
        } else {
            // Written from a host layout of the other page order (another job's choice), or read
            // into a layer_first pool: read the file page whole, verify it, then scatter its rows
            // into this pool.
            staging.resize(options.page_bytes);
            st = readPageChunk(h.pages.get(), loc.slot, options.page_bytes, staging.data());
            if (st.isOk()) sum = pools::pageBytesChecksum(dst.geometry(), staging.data());
        }
        if (!st.isOk()) {
            log().warn("read of page {} from '{}' failed: {}", key.hex(), path(seg.name),
                       st.message());
            return false;
        }
        // The stored checksum is sealed with the layout the page was written under: a page read
        // under another one (a corrupt header) fails here too.
        sum = sealChecksum(seg.header, sum);
        if (sum != loc.checksum) {
            log().error(
                "checksum mismatch: page {} in '{}' slot {} (stored {:016x}, read {:016x}): "
                "not served, dropped from the index",
                key.hex(), path(seg.name), loc.slot, loc.checksum, sum);
            count([](StoreStats& st) { ++st.checksum_failures; });
            index.erase(key);
            return false;
        }
        if (!direct) dst.scatter(staging.data(), seg.header.order, host_page);
        touch(loc.segment);
        return true;
    }
};

Hdf5PageStore::Hdf5PageStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Hdf5PageStore::~Hdf5PageStore() {
    if (impl_) {
        quietHdf5();
        impl_->closeWriter();
    }
}

Result<std::unique_ptr<Hdf5PageStore>> Hdf5PageStore::create(const Hdf5StoreOptions& options) {
    quietHdf5();
    if (options.directory.empty()) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "storage directory is empty");
    }
    if (options.pool_signature.empty() ||
        options.pool_signature.find_first_of("/\\") != std::string::npos ||
        options.pool_signature == "." || options.pool_signature == "..") {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "pool signature '{}' must be a non-empty file name",
                            options.pool_signature);
    }
    if (options.page_bytes == 0 || options.page_bytes >= (std::size_t{1} << 32)) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "page_bytes {} must be in [1, 4 GiB) (one HDF5 chunk per page)",
                            options.page_bytes);
    }
    if (options.segment_pages > kMaxSegmentSlots) {
        return STRATA_ERROR(StatusCode::kInvalidArgument, "segment_pages {} is above {}",
                            options.segment_pages, kMaxSegmentSlots);
    }
    auto impl = std::make_unique<Impl>();
    impl->options = options;
    impl->expect = {options.page_bytes, poolSignatureHash(options.pool_signature)};
    impl->segment_pages = options.segment_pages;
    if (impl->segment_pages == 0) {
        std::uint64_t pages = std::clamp<std::uint64_t>(kSegmentTargetBytes / options.page_bytes, 1,
                                                        kMaxSegmentPages);
        // Capacity is enforced by whole segments: keep at least eight of them within it.
        if (options.capacity_pages > 0) {
            pages = std::min<std::uint64_t>(pages,
                                            std::max<std::uint64_t>(1, options.capacity_pages / 8));
        }
        impl->segment_pages = pages;
    }
    impl->dir = (fs::path(options.directory) / options.pool_signature).string();
    std::error_code ec;
    fs::create_directories(impl->dir, ec);
    if (ec) {
        return STRATA_ERROR(StatusCode::kIoError, "cannot create storage directory '{}': {}",
                            impl->dir, ec.message());
    }
    if (!fs::is_directory(impl->dir, ec)) {
        return STRATA_ERROR(StatusCode::kIoError, "storage path '{}' is not a directory",
                            impl->dir);
    }
    // Probe writability by creating a file: access(2) says yes to root on read-only mounts.
    const std::string probe = impl->path(fmt::format(".probe-{}-{}", getpid(), realtimeNs()));
    {
        Fd fd(::open(probe.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644));
        if (!fd) {
            return STRATA_ERROR(StatusCode::kIoError, "storage directory '{}' is not writable: {}",
                                impl->dir, std::strerror(errno));
        }
    }
    ::unlink(probe.c_str());
    impl->scan(/*recovery=*/true);
    impl->enforceCapacity();
    log().info("storage '{}': {} pages in {} segments ({} of writer {}), capacity {} pages",
               impl->dir, impl->index.size(), impl->segments.size(), impl->own_pages,
               options.writer_id, options.capacity_pages);
    return std::unique_ptr<Hdf5PageStore>(new Hdf5PageStore(std::move(impl)));
}

PageStore::Capabilities Hdf5PageStore::capabilities() const noexcept {
    return {.zero_copy = true, .shared_across_ranks = true, .persistent = true};
}

Result<std::size_t> Hdf5PageStore::exists(std::span<const PageKey> keys) {
    quietHdf5();
    Impl& s = *impl_;
    bool rescanned = false;
    std::size_t n = 0;
    for (; n < keys.size(); ++n) {
        if (s.index.contains(keys[n])) continue;
        if (rescanned) break;
        rescanned = true;
        s.scan(false);
        if (!s.index.contains(keys[n])) break;
    }
    return n;
}

Result<std::size_t> Hdf5PageStore::get(std::span<const PageKey> keys, const pools::HostPool& pool,
                                       std::span<const std::uint32_t> host_pages) {
    quietHdf5();
    Impl& s = *impl_;
    STRATA_RETURN_IF_ERROR(s.checkBatch(keys, pool, host_pages));
    const auto t0 = Clock::now();
    STRATA_ASSIGN_OR_RETURN(PoolPages dst, PoolPages::create(pool));
    std::vector<std::byte> staging;
    bool rescanned = false;
    std::size_t n = 0;
    std::size_t advised_until = 0;  // keys [n, advised_until) are covered by read-ahead advice
    for (; n < keys.size(); ++n) {
        auto it = s.index.find(keys[n]);
        if (it == s.index.end() && !rescanned) {
            rescanned = true;
            s.scan(false);
            it = s.index.find(keys[n]);
        }
        if (it == s.index.end()) break;
        if (n >= advised_until) advised_until = s.adviseRun(keys, n, it->second.segment);
        if (!s.readPage(keys[n], it->second, dst, host_pages[n], staging)) break;
        s.count([&](StoreStats& st) {
            ++st.pages_read;
            st.bytes_read += s.options.page_bytes;
        });
    }
    s.count([&](StoreStats& st) { st.read_seconds += secondsSince(t0); });
    return n;
}

Result<std::size_t> Hdf5PageStore::set(std::span<const PageKey> keys, const pools::HostPool& pool,
                                       std::span<const std::uint32_t> host_pages) {
    quietHdf5();
    Impl& s = *impl_;
    STRATA_RETURN_IF_ERROR(s.checkBatch(keys, pool, host_pages));
    const auto t0 = Clock::now();
    STRATA_ASSIGN_OR_RETURN(PoolPages src, PoolPages::create(pool));
    std::vector<PageKey> missing_keys;
    std::vector<std::uint32_t> missing_pages;
    std::unordered_set<PageKey> in_batch;
    for (std::size_t i = 0; i < keys.size(); ++i) {
        auto it = s.index.find(keys[i]);
        if (it != s.index.end()) {
            s.count([](StoreStats& st) { ++st.pages_skipped; });
            s.touch(it->second.segment);
        } else if (in_batch.insert(keys[i]).second) {
            missing_keys.push_back(keys[i]);
            missing_pages.push_back(host_pages[i]);
        }
    }
    std::size_t stored = 0;
    Status st = s.appendPages(src, missing_keys, missing_pages, &stored);
    s.count([&](StoreStats& c) {
        c.pages_written += stored;
        c.bytes_written += stored * s.options.page_bytes;
    });
    if (!st.isOk()) {
        const std::size_t lost = missing_keys.size() - stored;
        s.count([&](StoreStats& c) { c.write_failures += lost; });
        if (looksLikeStorageFull(st.message())) {
            log().error("storage full: {} pages not stored in '{}': {}", lost, s.dir, st.message());
        } else {
            log().error("storage write failed: {} pages not stored in '{}': {}", lost, s.dir,
                        st.message());
        }
    }
    s.enforceCapacity();
    std::size_t n = 0;
    while (n < keys.size() && s.index.contains(keys[n])) ++n;
    s.count([&](StoreStats& st) { st.write_seconds += secondsSince(t0); });
    return n;
}

StoreStats Hdf5PageStore::stats() const {
    std::lock_guard<std::mutex> lock(impl_->stats_mutex);
    return impl_->stats;
}
void Hdf5PageStore::recordEvictions(bool on) {
    std::lock_guard<std::mutex> lock(impl_->stats_mutex);
    impl_->record_evictions = on;
    if (!on) impl_->evicted.clear();
}
std::vector<PageKey> Hdf5PageStore::takeEvicted() {
    std::lock_guard<std::mutex> lock(impl_->stats_mutex);
    return std::exchange(impl_->evicted, {});
}
const std::string& Hdf5PageStore::segmentDirectory() const noexcept { return impl_->dir; }
std::size_t Hdf5PageStore::indexedPages() const noexcept { return impl_->index.size(); }
std::uint64_t Hdf5PageStore::ownPages() const noexcept { return impl_->own_pages; }

}  // namespace strata::io
