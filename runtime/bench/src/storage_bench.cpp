// Bench `storage`: the HDF5 tier's write and read throughput for 64 KiB and 1 MiB pages, and the
// cost of a batch existence check of 128 keys. Strata: Hdf5PageStore::set/get/exists with pages
// from a page_first host pool in batches of 128 (appended to segment files of the default size:
// one fdatasync per batch, plus fsync, rename and directory fsync per new segment; write-back is
// started every 32 pages with sync_file_range, see io/README.md). Baseline
// `posix`, same run, same file system, same bytes, same sync policy: pwrite of each page into one
// file and one fdatasync per batch, then pread of each page; for existence, 128 stat() calls on one
// file per page (how a file-per-page tier answers "is it on disk?"), plus `memory_set` (128 lookups
// in an in-memory hash set: the floor).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>
#include <unordered_set>
#include <vector>

#include "registry.h"
#include "strata/core/hash.h"
#include "strata/io/hdf5_page_store.h"
#include "strata/kernels/backend.h"
#include "strata/pools/host_pool.h"

namespace strata::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr std::uint32_t kBatch = 128;
constexpr std::uint32_t kPageTokens = 64;

double secondsSince(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
}

// sync + drop the page cache so that reads come from the device; false when not permitted.
bool dropCaches() {
    ::sync();
    std::ofstream f("/proc/sys/vm/drop_caches");
    if (!f) return false;
    f << "3\n";
    f.flush();
    return static_cast<bool>(f);
}

core::PageKey keyOf(std::uint64_t i, std::uint64_t salt) {
    return core::hash128("bench-page-" + std::to_string(salt) + "-" + std::to_string(i));
}

struct SizeCase {
    const char* name;
    std::uint32_t num_layers;
    std::size_t row_bytes;  // 2 buffers x layers x row x 64 tokens = page bytes
};
constexpr SizeCase kSizes[] = {{"page_64KiB", 4, 128}, {"page_1MiB", 16, 512}};

struct Phase {
    std::vector<double> store_gbps, posix_gbps;
};

class StorageBench final : public Bench {
public:
    void addOptions(CLI::App& app) override {
        app.add_option("--dir", dir_, "directory to test (default: a fresh one under /tmp)");
        app.add_option("--total-mib", total_mib_, "MiB written per method, size and repeat")
            ->capture_default_str();
        app.add_option("--repeats", repeats_, "repeats per size (median reported)")
            ->capture_default_str();
        app.add_option("--exists-iters", exists_iters_, "existence batches timed per method")
            ->capture_default_str();
        app.add_flag("--no-drop-caches", no_drop_, "keep the page cache warm between phases");
    }

    Result<BenchReport> run(BenchContext& ctx) override;

private:
    Status runSize(const SizeCase& sc, BenchReport& report);
    Status runExists(BenchReport& report);

    std::string dir_;
    std::size_t total_mib_ = 512;
    int repeats_ = 3;
    int exists_iters_ = 2000;
    bool no_drop_ = false;
    bool dropped_ = true;  // every drop attempted succeeded
    std::unique_ptr<kernels::Backend> backend_;
};

Status StorageBench::runSize(const SizeCase& sc, BenchReport& report) {
    pools::PoolSpec spec{"kv", pools::PoolKind::kMha, sc.num_layers, 2, sc.row_bytes, true};
    STRATA_ASSIGN_OR_RETURN(pools::HostPool pool,
                            pools::HostPool::create(*backend_, spec, kBatch * kPageTokens,
                                                    kPageTokens, kernels::HostLayout::kPageFirst));
    const std::size_t page_bytes = pool.geometry().bytesPerPage();
    std::mt19937_64 rng(42);
    for (std::size_t i = 0; i + 8 <= pool.sizeBytes(); i += 8) {
        const std::uint64_t v = rng();
        std::memcpy(pool.data() + i, &v, 8);
    }
    const std::size_t batches =
        std::max<std::size_t>(1, (total_mib_ << 20) / (page_bytes * kBatch));
    const std::size_t total_pages = batches * kBatch;
    const double total_gb = static_cast<double>(total_pages * page_bytes) / 1e9;
    std::vector<std::uint32_t> host_pages(kBatch);
    for (std::uint32_t i = 0; i < kBatch; ++i) host_pages[i] = i;

    Phase write, read;
    std::uint64_t verified_pages = 0;
    for (int rep = 0; rep < repeats_; ++rep) {
        const std::string store_dir = fmt::format("{}/store-{}-{}", dir_, sc.name, rep);
        const std::string posix_file = fmt::format("{}/posix-{}-{}.bin", dir_, sc.name, rep);
        io::Hdf5StoreOptions opts;
        opts.directory = store_dir;
        opts.pool_signature = fmt::format("kv-{}B", page_bytes);
        opts.page_bytes = page_bytes;
        STRATA_ASSIGN_OR_RETURN(auto store, io::Hdf5PageStore::create(opts));
        std::vector<core::PageKey> keys(total_pages);
        for (std::size_t i = 0; i < total_pages; ++i) keys[i] = keyOf(i, rep);

        // The methods alternate batch by batch (and which goes first alternates too), so that
        // both meet the same device state: write-back of earlier batches, VM disk noise.
        const int fd = ::open(posix_file.c_str(), O_CREAT | O_TRUNC | O_RDWR, 0644);
        if (fd < 0) {
            return STRATA_ERROR(StatusCode::kIoError, "open '{}': {}", posix_file,
                                std::strerror(errno));
        }
        double store_s = 0, posix_s = 0;
        auto storeBatch = [&](std::size_t b, bool write_phase) -> Status {
            auto span = std::span(keys).subspan(b * kBatch, kBatch);
            const auto t0 = Clock::now();
            auto n = write_phase ? store->set(span, pool, host_pages)
                                 : store->get(span, pool, host_pages);
            store_s += secondsSince(t0);
            if (!n.isOk()) return n.status();
            if (*n != kBatch) {
                return STRATA_ERROR(StatusCode::kIoError, "store {} {} of {} pages",
                                    write_phase ? "set" : "get", *n, kBatch);
            }
            return Status::ok();
        };
        auto posixBatch = [&](std::size_t b, bool write_phase) -> Status {
            const auto t0 = Clock::now();
            for (std::uint32_t i = 0; i < kBatch; ++i) {
                const off_t at = static_cast<off_t>((b * kBatch + i) * page_bytes);
                const ssize_t n = write_phase
                                      ? ::pwrite(fd, pool.pageBlob(i).data(), page_bytes, at)
                                      : ::pread(fd, pool.pageBlob(i).data(), page_bytes, at);
                if (n != static_cast<ssize_t>(page_bytes)) {
                    return STRATA_ERROR(StatusCode::kIoError, "{} '{}': {}",
                                        write_phase ? "pwrite" : "pread", posix_file,
                                        std::strerror(errno));
                }
            }
            if (write_phase && ::fdatasync(fd) != 0) {
                return STRATA_ERROR(StatusCode::kIoError, "fdatasync '{}': {}", posix_file,
                                    std::strerror(errno));
            }
            posix_s += secondsSince(t0);
            return Status::ok();
        };
        Status st;
        for (bool write_phase : {true, false}) {
            store_s = posix_s = 0;
            for (std::size_t b = 0; b < batches && st.isOk(); ++b) {
                if ((b + rep) % 2 == 0) {
                    st = storeBatch(b, write_phase);
                    if (st.isOk()) st = posixBatch(b, write_phase);
                } else {
                    st = posixBatch(b, write_phase);
                    if (st.isOk()) st = storeBatch(b, write_phase);
                }
            }
            if (!st.isOk()) break;
            Phase& ph = write_phase ? write : read;
            ph.store_gbps.push_back(total_gb / store_s);
            ph.posix_gbps.push_back(total_gb / posix_s);
            if (write_phase && !no_drop_) dropped_ = dropCaches() && dropped_;
        }
        ::close(fd);
        if (!st.isOk()) return st;
        verified_pages += total_pages;
        store.reset();
        std::error_code ec;
        fs::remove_all(store_dir, ec);
        fs::remove(posix_file, ec);
    }
    auto extra = [&](const std::vector<double>& s, const std::vector<double>& p) {
        nlohmann::ordered_json e;
        e["page_bytes"] = page_bytes;
        e["batch_pages"] = kBatch;
        e["batches"] = batches;
        e["bytes_per_repeat"] = total_pages * page_bytes;
        e["repeats"] = repeats_;
        e["strata_gbps_each"] = s;
        e["posix_gbps_each"] = p;
        e["sync"] =
            "one fdatasync per batch on both sides (store: plus fsync, rename and directory fsync "
            "per new segment)";
        e["page_cache_dropped"] = !no_drop_ && dropped_;
        e["host_layout"] = "page_first";
        e["store_reads_verified_checksum_pages"] = verified_pages;
        e["dir"] = dir_;
        return e;
    };
    for (auto [metric, ph] : {std::pair{"write_gbps", &write}, std::pair{"read_gbps", &read}}) {
        report.addRow({sc.name,
                       metric,
                       "GB/s",
                       true,
                       median(ph->store_gbps),
                       {{"posix", median(ph->posix_gbps)}},
                       extra(ph->store_gbps, ph->posix_gbps)});
    }
    return Status::ok();
}

Status StorageBench::runExists(BenchReport& report) {
    // 8192 indexed keys in 64 segments (64 KiB pages), a file per key for the stat() baseline.
    constexpr std::size_t kKeys = 8192;
    pools::PoolSpec spec{"kv", pools::PoolKind::kMha, 1, 2, 16, true};  // 2 KiB pages: metadata
    STRATA_ASSIGN_OR_RETURN(pools::HostPool pool,
                            pools::HostPool::create(*backend_, spec, kBatch * kPageTokens,
                                                    kPageTokens, kernels::HostLayout::kPageFirst));
    io::Hdf5StoreOptions opts;
    opts.directory = dir_ + "/store-exists";
    opts.pool_signature = "kv-exists";
    opts.page_bytes = pool.geometry().bytesPerPage();
    STRATA_ASSIGN_OR_RETURN(auto store, io::Hdf5PageStore::create(opts));
    std::vector<core::PageKey> keys(kKeys);
    std::vector<std::uint32_t> host_pages(kBatch);
    for (std::uint32_t i = 0; i < kBatch; ++i) host_pages[i] = i;
    const std::string files_dir = dir_ + "/posix-exists";
    fs::create_directories(files_dir);
    std::unordered_set<core::PageKey> memory;
    std::vector<std::string> paths(kKeys);
    for (std::size_t i = 0; i < kKeys; ++i) {
        keys[i] = keyOf(i, 99);
        memory.insert(keys[i]);
        paths[i] = files_dir + "/" + keys[i].hex();
        std::ofstream(paths[i]).put('x');
    }
    for (std::size_t b = 0; b < kKeys / kBatch; ++b) {
        STRATA_ASSIGN_OR_RETURN(
            std::size_t n,
            store->set(std::span(keys).subspan(b * kBatch, kBatch), pool, host_pages));
        if (n != kBatch) return STRATA_ERROR(StatusCode::kIoError, "set {} of {}", n, kBatch);
    }
    // A fresh store, as a later job would see it (index rebuilt from the segments).
    store.reset();
    STRATA_ASSIGN_OR_RETURN(store, io::Hdf5PageStore::create(opts));

    std::mt19937_64 rng(7);
    std::vector<std::size_t> starts(exists_iters_);
    for (auto& s : starts) s = rng() % (kKeys - kBatch);
    std::size_t found_store = 0, found_posix = 0, found_memory = 0;
    auto time_us = [&](auto&& fn) {
        const auto t0 = Clock::now();
        for (std::size_t s : starts) fn(s);
        return secondsSince(t0) * 1e6 / static_cast<double>(starts.size());
    };
    Status failed;
    double store_us = 0, posix_us = 0, memory_us = 0;
    for (int rep = 0; rep < 3; ++rep) {  // interleaved; the last repeat is reported
        store_us = time_us([&](std::size_t s) {
            auto n = store->exists(std::span(keys).subspan(s, kBatch));
            if (n.isOk())
                found_store += *n;
            else
                failed = n.status();
        });
        posix_us = time_us([&](std::size_t s) {
            struct stat st {};
            for (std::size_t i = s; i < s + kBatch && ::stat(paths[i].c_str(), &st) == 0; ++i) {
                ++found_posix;
            }
        });
        memory_us = time_us([&](std::size_t s) {
            for (std::size_t i = s; i < s + kBatch && memory.contains(keys[i]); ++i) {
                ++found_memory;
            }
        });
    }
    STRATA_RETURN_IF_ERROR(failed);
    if (found_store != found_posix || found_store != found_memory) {
        return STRATA_ERROR(StatusCode::kInternal, "existence counts differ: {} / {} / {}",
                            found_store, found_posix, found_memory);
    }
    // Misses: the first key is absent, so the store looks for segments written since its last
    // scan. Right after a change of the directory (here: one more segment written) each miss
    // re-lists it; once the directory has been quiet for 2 s a stat() of it shows nothing new.
    const core::PageKey absent = keyOf(kKeys + 1, 99);
    const std::string absent_path = files_dir + "/" + absent.hex();
    std::vector<core::PageKey> miss_batch(keys.begin(), keys.begin() + kBatch);
    miss_batch[0] = absent;
    auto store_miss = [&](std::size_t) {
        if (!store->exists(miss_batch).isOk()) failed = STRATA_ERROR(StatusCode::kIoError, "x");
    };
    std::vector<core::PageKey> extra_keys(kBatch);
    for (std::size_t i = 0; i < kBatch; ++i) extra_keys[i] = keyOf(kKeys + 10 + i, 99);
    STRATA_RETURN_IF_ERROR(store->set(extra_keys, pool, host_pages).status());
    starts.resize(std::min<std::size_t>(starts.size(), 200));
    const double store_recent_us = time_us(store_miss);
    std::this_thread::sleep_for(std::chrono::milliseconds(2100));
    store_miss(0);  // the scan that records the quiet directory
    starts.resize(static_cast<std::size_t>(exists_iters_));
    const double store_miss_us = time_us(store_miss);
    const double posix_miss_us = time_us([&](std::size_t) {
        struct stat st {};
        if (::stat(absent_path.c_str(), &st) == 0) failed = STRATA_ERROR(StatusCode::kIoError, "y");
    });
    STRATA_RETURN_IF_ERROR(failed);

    nlohmann::ordered_json e;
    e["keys_indexed"] = kKeys;
    e["batch_keys"] = kBatch;
    e["iterations"] = exists_iters_;
    e["posix_baseline"] =
        "stat() of one file per page, named by key: how a file-per-page tier answers existence "
        "(warm dentry cache); memory_set = the floor of any in-memory index";
    report.addRow({"exists_hit_128",
                   "us_per_batch",
                   "us",
                   false,
                   store_us,
                   {{"posix", posix_us}, {"memory_set", memory_us}},
                   e});
    e["store_miss_path"] =
        "index miss -> stat(directory): unchanged for 2 s -> no readdir; else one re-listing";
    e["store_us_within_2s_of_a_directory_change"] = store_recent_us;
    e["segments_in_directory"] = kKeys / kBatch + 1;
    report.addRow({"exists_miss_first_128",
                   "us_per_batch",
                   "us",
                   false,
                   store_miss_us,
                   {{"posix", posix_miss_us}},
                   e});
    report.addRow({"exists_miss_first_128_dir_changed",
                   "us_per_batch",
                   "us",
                   false,
                   store_recent_us,
                   {{"posix", posix_miss_us}},
                   e});
    std::error_code ec;
    fs::remove_all(opts.directory, ec);
    fs::remove_all(files_dir, ec);
    return Status::ok();
}

Result<BenchReport> StorageBench::run(BenchContext&) {
    if (total_mib_ == 0 || repeats_ < 1 || exists_iters_ < 1) {
        return STRATA_ERROR(StatusCode::kInvalidArgument,
                            "--total-mib, --repeats and --exists-iters must be >= 1");
    }
    bool own_dir = false;
    if (dir_.empty()) {
        std::string templ = "/tmp/strata-bench-storage-XXXXXX";
        if (::mkdtemp(templ.data()) == nullptr) {
            return STRATA_ERROR(StatusCode::kIoError, "mkdtemp: {}", std::strerror(errno));
        }
        dir_ = templ;
        own_dir = true;
    }
    std::error_code ec;
    fs::create_directories(dir_, ec);
    if (ec) return STRATA_ERROR(StatusCode::kIoError, "--dir '{}': {}", dir_, ec.message());
    STRATA_ASSIGN_OR_RETURN(backend_, kernels::Backend::create(kernels::BackendKind::kCpu, {}));

    BenchReport report("storage", "cpu");
    for (const SizeCase& sc : kSizes) STRATA_RETURN_IF_ERROR(runSize(sc, report));
    STRATA_RETURN_IF_ERROR(runExists(report));
    for (const BenchRow& row : report.rows()) {
        const double ratio = advantage(row, row.baselines.front().second);
        report.addNote(fmt::format("goal: {} {} >= 0.8x posix: {} ({:.2f}x)", row.case_name,
                                   row.metric, ratio >= 0.8 ? "MET" : "MISSED", ratio));
    }
    report.addNote(fmt::format(
        "page cache dropped between write and read phases: {}",
        no_drop_ ? "no (--no-drop-caches)" : (dropped_ ? "yes" : "no (not permitted)")));
    if (own_dir) fs::remove_all(dir_, ec);
    return report;
}

}  // namespace

std::unique_ptr<Bench> makeStorageBench() { return std::make_unique<StorageBench>(); }

}  // namespace strata::bench
