// Hdf5PageStore on corrupted and crafted segment files: every field that decides where a page's
// bytes go (header words, index entries, the chunk index, the pool signature) is covered by a
// checksum, so a corruption is a refused segment (logged, naming the file and the field) or a
// counted miss, never a wrong byte; sizes declared by a file are checked before anything is
// allocated for them; a FIFO named like a segment is skipped, never opened.
#include <poll.h>
#include <signal.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>

#include "store_fixture.h"
#include "strata/core/hash.h"
#include "strata/core/log.h"

namespace strata::io::testing {
namespace {

using kernels::HostLayout;

constexpr std::size_t kPages = 4;

// Everything the io logger logs while this object lives.
class IoLogCapture {
public:
    IoLogCapture() : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)) {
        core::logger("io").sinks().push_back(sink_);
    }
    ~IoLogCapture() {
        auto& sinks = core::logger("io").sinks();
        sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
    }
    std::string text() {
        sink_->flush();
        return out_.str();
    }

private:
    std::ostringstream out_;
    std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
};

std::vector<char> fileBytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void putFileBytes(const std::string& path, const std::vector<char>& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Offsets of every occurrence of `needle` in `hay`.
std::vector<std::size_t> occurrences(const std::vector<char>& hay, const void* needle,
                                     std::size_t n) {
    std::vector<std::size_t> out;
    const char* p = static_cast<const char*>(needle);
    for (auto it = hay.begin(); (it = std::search(it, hay.end(), p, p + n)) != hay.end(); ++it) {
        out.push_back(static_cast<std::size_t>(it - hay.begin()));
    }
    return out;
}

std::vector<std::uint64_t> headerWords(const std::string& path) {
    hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t a = H5Aopen(f, "strata_header", H5P_DEFAULT);
    hid_t s = H5Aget_space(a);
    std::vector<std::uint64_t> w(static_cast<std::size_t>(H5Sget_simple_extent_npoints(s)));
    EXPECT_GE(H5Aread(a, H5T_NATIVE_UINT64, w.data()), 0);
    H5Sclose(s);
    H5Aclose(a);
    H5Fclose(f);
    return w;
}

void putHeaderWords(const std::string& path, const std::vector<std::uint64_t>& w) {
    hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t a = H5Aopen(f, "strata_header", H5P_DEFAULT);
    EXPECT_GE(H5Awrite(a, H5T_NATIVE_UINT64, w.data()), 0);
    H5Aclose(a);
    H5Fclose(f);
}

// A CPU pool of `layout` (kPages + 1 pages) and a fresh store directory holding one segment of
// kPages pages written from it (page i = pattern seed ^ i); the directory is removed at the end.
struct SegmentOnDisk {
    SegmentOnDisk(const std::string& tag, HostLayout layout)
        : seed(testSeed()),
          backend(cpuBackend()),
          pool(makePool(*backend, 656, kPages + 1, layout)),
          dir(freshDir(tag)),
          opts(optionsFor(dir, pool)) {
        std::vector<std::uint32_t> pages;
        for (std::uint32_t i = 0; i < kPages; ++i) {
            keys.push_back(keyOf(i, seed));
            putPage(pool, i, patternBytes(pool.geometry(), seed ^ i));
            pages.push_back(i);
        }
        auto store = openStore(opts);
        EXPECT_EQ(*store->set(keys, pool, pages), kPages);
        const auto segs = filesEndingWith(store->segmentDirectory(), ".h5");
        EXPECT_EQ(segs.size(), 1u);
        path = segs.at(0);
    }
    ~SegmentOnDisk() { fs::remove_all(dir); }

    // Reads every key alone into the last page of `reader` (this segment's pool by default) and
    // returns how many were served; each served page must hold exactly the bytes written for it.
    std::size_t servedExactly(Hdf5PageStore& store, pools::HostPool* reader = nullptr) {
        pools::HostPool& into = reader ? *reader : pool;
        std::size_t served = 0;
        for (std::size_t i = 0; i < keys.size(); ++i) {
            std::memset(into.data(), 0xEE, into.sizeBytes());
            auto got = store.get(std::span(keys).subspan(i, 1), into,
                                 std::vector<std::uint32_t>{static_cast<std::uint32_t>(kPages)});
            EXPECT_TRUE(got.isOk()) << got.status().toString();
            if (got.isOk() && *got == 1) {
                ++served;
                EXPECT_EQ(takePage(into, kPages), patternBytes(into.geometry(), seed ^ i))
                    << "a wrong byte served for key " << i;
            }
        }
        return served;
    }

    std::uint64_t seed;
    std::unique_ptr<kernels::Backend> backend;
    pools::HostPool pool;
    std::string dir;
    Hdf5StoreOptions opts;
    std::string path;  // the segment file
    std::vector<core::PageKey> keys;
};

TEST(Hdf5PageStoreCorruption, EveryFlippedHeaderBitRefusesTheSegmentNamingTheField) {
    // The case: the order word of a page_first (token-major) segment flipped 1 -> 0 was
    // served in the wrong row order. Every header word, two bits each.
    SegmentOnDisk w("header-flip", HostLayout::kPageFirst);
    const std::vector<std::uint64_t> words = headerWords(w.path);
    ASSERT_EQ(words.size(), 11u);
    ASSERT_EQ(words[2], 1u) << "page_first pages are stored token-major";
    const std::vector<char> pristine = fileBytes(w.path);
    const auto at = occurrences(pristine, words.data(), words.size() * sizeof(std::uint64_t));
    ASSERT_EQ(at.size(), 1u) << "the header's bytes are not found once in the file";
    for (std::size_t word = 0; word < words.size(); ++word) {
        for (const unsigned bit : {0u, 1u + static_cast<unsigned>(w.seed % 63)}) {
            putFileBytes(w.path, pristine);
            flipBits(w.path, at[0] + word * 8 + bit / 8, static_cast<unsigned char>(1u << bit % 8));
            IoLogCapture log;
            auto store = openStore(w.opts);
            ASSERT_TRUE(store);
            EXPECT_EQ(store->indexedPages(), 0u) << "word " << word << " bit " << bit;
            EXPECT_EQ(*store->exists(w.keys), 0u);
            EXPECT_EQ(w.servedExactly(*store), 0u) << "word " << word;
            EXPECT_EQ(store->stats().checksum_failures, 0u);
            const std::string text = log.text();
            const std::string field = word == 0 ? "strata_header.format" : "strata_header.checksum";
            EXPECT_NE(text.find(w.path), std::string::npos) << text;
            EXPECT_NE(text.find(field), std::string::npos) << "word " << word << ": " << text;
            if (word == 0 && bit == 0) {
                EXPECT_NE(text.find("older Strata"), std::string::npos) << text;  // format 2
            }
        }
    }
    putFileBytes(w.path, pristine);
    auto store = openStore(w.opts);
    EXPECT_EQ(w.servedExactly(*store), kPages);
}

TEST(Hdf5PageStoreCorruption, AnIntactHeaderOfTheOtherPageOrderFailsEveryPageChecksum) {
    // Two segments of the same geometry and pool signature, one token-major (page_first) and one
    // plane-major (layer_first), exchange their headers: each header is intact (its checksum
    // holds) but describes the other layout. The page checksums are sealed with the layout they
    // were written under, so every page read under the swapped one is a counted miss, whatever
    // layout the reading pool has.
    SegmentOnDisk a("swap-a", HostLayout::kPageFirst);
    SegmentOnDisk b("swap-b", HostLayout::kLayerFirst);
    ASSERT_EQ(a.opts.pool_signature, b.opts.pool_signature);
    const auto wa = headerWords(a.path), wb = headerWords(b.path);
    ASSERT_NE(wa[2], wb[2]) << "the two segments must differ in page order";
    putHeaderWords(a.path, wb);
    putHeaderWords(b.path, wa);
    for (pools::HostPool* reader : {&a.pool, &b.pool}) {
        for (SegmentOnDisk* w : {&a, &b}) {
            auto store = openStore(w->opts);
            ASSERT_TRUE(store);
            EXPECT_EQ(store->indexedPages(), kPages) << "the swapped header is intact";
            EXPECT_EQ(w->servedExactly(*store, reader), 0u);
            EXPECT_EQ(store->stats().checksum_failures, kPages);
        }
    }
}

TEST(Hdf5PageStoreCorruption, ASegmentOfAnotherPoolSignatureIsRefusedNamingThePoolHash) {
    // Same page bytes and geometry, another pool's directory: its pages are not this pool's.
    SegmentOnDisk w("signature", HostLayout::kLayerFirst);
    Hdf5StoreOptions other = w.opts;
    other.pool_signature = "other-" + w.opts.pool_signature;
    fs::create_directories(fs::path(w.dir) / other.pool_signature);
    fs::copy_file(w.path, fs::path(w.dir) / other.pool_signature / fs::path(w.path).filename());
    IoLogCapture log;
    auto store = openStore(other);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->indexedPages(), 0u);
    EXPECT_EQ(w.servedExactly(*store), 0u);
    EXPECT_NE(log.text().find("strata_header.pool_hash"), std::string::npos) << log.text();
}

TEST(Hdf5PageStoreCorruption, SwappedIndexEntriesAreEmptySlotsNeverServed) {
    // Entries 1 and 2 exchanged: each is intact but names the other slot's page; the commit word
    // binds an entry to its slot, so both are empty slots and the others are still served.
    SegmentOnDisk w("entry-swap", HostLayout::kPageFirst);
    const haddr_t entries = datasetOffset(w.path, "entries");
    ASSERT_NE(entries, HADDR_UNDEF);
    std::vector<char> bytes = fileBytes(w.path);
    std::swap_ranges(bytes.begin() + entries + 32, bytes.begin() + entries + 64,
                     bytes.begin() + entries + 64);
    putFileBytes(w.path, bytes);
    auto store = openStore(w.opts);
    EXPECT_EQ(store->indexedPages(), kPages - 2);
    EXPECT_EQ(w.servedExactly(*store), kPages - 2);
}

TEST(Hdf5PageStoreCorruption, ChunksSwappedInTheChunkIndexAreCountedChecksumFailures) {
    // HDF5's chunk index (where slot i's bytes are in the file) is layout too: slots 1 and 2
    // pointing at each other's chunks read the other page, which fails its checksum.
    SegmentOnDisk w("chunk-swap", HostLayout::kLayerFirst);
    const std::uint64_t a1 = chunkAddress(w.path, 1), a2 = chunkAddress(w.path, 2);
    std::vector<char> bytes = fileBytes(w.path);
    const auto at1 = occurrences(bytes, &a1, 8), at2 = occurrences(bytes, &a2, 8);
    ASSERT_EQ(at1.size(), 1u);
    ASSERT_EQ(at2.size(), 1u);
    std::memcpy(&bytes[at1[0]], &a2, 8);
    std::memcpy(&bytes[at2[0]], &a1, 8);
    putFileBytes(w.path, bytes);
    ASSERT_EQ(chunkAddress(w.path, 1), a2);
    auto store = openStore(w.opts);
    EXPECT_EQ(store->indexedPages(), kPages);
    EXPECT_EQ(w.servedExactly(*store), kPages - 2);
    EXPECT_EQ(store->stats().checksum_failures, 2u);
}

// A crafted segment: header `fields` sealed with the checksum the README documents, datasets of
// `rows` rows, chunked and allocated late so that the file stays a few KiB whatever they declare.
void craftSegment(const std::string& path, std::vector<std::uint64_t> fields, hsize_t rows,
                  hsize_t page_bytes) {
    fields.push_back(core::foldDigest(0x5354524154414844ull,
                                      core::checksum64(fields.data(), fields.size() * 8)));
    hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    for (const auto& [name, columns, type] : {std::tuple("pages", page_bytes, H5T_STD_U8LE),
                                              std::tuple("entries", hsize_t{4}, H5T_STD_U64LE)}) {
        const hsize_t dims[2] = {rows, columns}, chunk[2] = {1, columns};
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        ASSERT_GE(H5Pset_chunk(dcpl, 2, chunk), 0);
        hid_t space = H5Screate_simple(2, dims, nullptr);
        hid_t d = H5Dcreate2(f, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        ASSERT_GE(d, 0) << name;
        H5Dclose(d);
        H5Sclose(space);
        H5Pclose(dcpl);
    }
    const hsize_t n = fields.size();
    hid_t space = H5Screate_simple(1, &n, nullptr);
    hid_t a = H5Acreate2(f, "strata_header", H5T_STD_U64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(H5Awrite(a, H5T_NATIVE_UINT64, fields.data()), 0);
    H5Aclose(a);
    H5Sclose(space);
    H5Fclose(f);
}

long maxRssKiB() {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

TEST(Hdf5PageStoreCorruption, HugeDeclaredSlotCountsAreRefusedBeforeAnyAllocation) {
    // The 2^32-1 slots aborted every rank (bad_alloc); 2^28 took 9.2 GB. Declared sizes
    // are checked against the format's limit, the header and the file's size first.
    SegmentOnDisk w("huge", HostLayout::kPageFirst);
    const std::vector<std::uint64_t> real = headerWords(w.path);
    const std::string seg_dir = fs::path(w.path).parent_path().string();
    struct Case {
        std::uint64_t header_slots;
        hsize_t dataset_slots;
        std::string expected;
    };
    const hsize_t page_bytes = w.opts.page_bytes;
    const std::vector<Case> cases = {
        {(1ull << 32) - 1, (1ull << 32) - 1, "strata_header.capacity is 4294967295"},
        {1ull << 28, 1ull << 28, "strata_header.capacity is 268435456"},
        {65536, 65536, "65536 slots (strata_header.capacity) need"},
        {4, (1ull << 32) - 1, "dataset 'pages' is 4294967295x"},
    };
    const long rss_before = maxRssKiB();
    for (std::size_t i = 0; i < cases.size(); ++i) {
        std::vector<std::uint64_t> fields(real.begin(), real.end() - 1);
        fields[9] = cases[i].header_slots;
        const std::string path =
            seg_dir + "/seg-w7-00000000000000a" + std::to_string(i) + "-00000000-1-0.h5";
        craftSegment(path, fields, cases[i].dataset_slots, page_bytes);
        EXPECT_LT(fs::file_size(path), 64u << 10) << path;
        IoLogCapture log;
        auto store = openStore(w.opts);
        ASSERT_TRUE(store);
        EXPECT_EQ(store->indexedPages(), kPages) << "only the real segment is indexed";
        EXPECT_EQ(w.servedExactly(*store), kPages);
        const std::string text = log.text();
        EXPECT_NE(text.find(path), std::string::npos) << text;
        EXPECT_NE(text.find(cases[i].expected), std::string::npos) << text;
        fs::remove(path);
    }
    EXPECT_LT(maxRssKiB() - rss_before, 256 * 1024) << "KiB of peak memory grown";
}

TEST(Hdf5PageStoreCorruption, AFifoNamedLikeASegmentIsSkippedAndOpenReturnsPromptly) {
    // open(2) of a FIFO blocks until a writer comes: the store must never open one. The open runs
    // in a child so that a hang is a failed test (the child is killed) rather than a hung one.
    SegmentOnDisk w("fifo", HostLayout::kPageFirst);
    const std::string fifo =
        fs::path(w.path).parent_path().string() + "/seg-w0-00000000000000ff-00000000-1-0.h5";
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0) << std::strerror(errno);
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        ::close(fds[0]);
        IoLogCapture log;
        auto store = Hdf5PageStore::create(w.opts);
        const bool ok = store.isOk() && (*store)->indexedPages() == kPages &&
                        log.text().find("'" + fifo + "' is a fifo") != std::string::npos;
        const char verdict = ok ? 'y' : 'n';
        [[maybe_unused]] auto n = ::write(fds[1], &verdict, 1);
        _exit(0);
    }
    ::close(fds[1]);
    pollfd p{fds[0], POLLIN, 0};
    const int ready = ::poll(&p, 1, 60'000);  // generous on a loaded machine: a hang is forever
    char verdict = 0;
    const bool answered = ready == 1 && ::read(fds[0], &verdict, 1) == 1;
    if (!answered) ::kill(child, SIGKILL);
    ::close(fds[0]);
    ASSERT_EQ(::waitpid(child, nullptr, 0), child);
    ASSERT_TRUE(answered) << "store open hung on a fifo named like a segment";
    EXPECT_EQ(verdict, 'y') << "the fifo was not skipped with a warning naming it";
}

// Damage of the kinds a crash, a bad disk or a stray write leaves (issue 19's fault matrix):
// truncation, a zeroed header, garbage over page bytes, over index entries, over the whole file.
// Each is a refused segment or a counted miss: a get() that succeeds, serves fewer pages, and
// never a wrong byte.

// Overwrites `n` bytes at `offset` of `bytes` with pseudo-random garbage from `rng`.
void garble(std::vector<char>& bytes, std::size_t offset, std::size_t n, std::mt19937_64& rng) {
    ASSERT_LE(offset + n, bytes.size());
    for (std::size_t i = 0; i < n; ++i) bytes[offset + i] = static_cast<char>(rng());
}

TEST(Hdf5PageStoreDamage, TruncatedSegmentsServeNoWrongByte) {
    SegmentOnDisk w("truncated", HostLayout::kLayerFirst);
    const std::vector<char> pristine = fileBytes(w.path);
    const std::size_t size = pristine.size();
    const haddr_t last_chunk = chunkAddress(w.path, kPages - 1);
    ASSERT_LT(last_chunk, size);
    for (const std::size_t cut : {std::size_t{0}, std::size_t{1}, std::size_t{512}, size / 4,
                                  size / 2, static_cast<std::size_t>(last_chunk) + 100, size - 1}) {
        putFileBytes(w.path, std::vector<char>(pristine.begin(), pristine.begin() + cut));
        IoLogCapture log;
        auto store = openStore(w.opts);
        ASSERT_TRUE(store) << "cut at " << cut;
        const std::size_t served = w.servedExactly(*store);
        // The last page's bytes are cut short at every length tried: never served.
        EXPECT_LT(served, kPages) << "cut at " << cut << " of " << size;
        EXPECT_LE(served + store->stats().checksum_failures, store->indexedPages())
            << "cut at " << cut;
        if (store->indexedPages() == 0) {
            EXPECT_NE(log.text().find(w.path), std::string::npos)
                << "a refused segment is not named: " << log.text();
        }
        std::printf("cut at %zu of %zu: %zu indexed, %zu served, %llu checksum failures\n", cut,
                    size, store->indexedPages(), served,
                    static_cast<unsigned long long>(store->stats().checksum_failures));
    }
    putFileBytes(w.path, pristine);
    auto store = openStore(w.opts);
    EXPECT_EQ(w.servedExactly(*store), kPages);
}

TEST(Hdf5PageStoreDamage, AZeroedHeaderRefusesTheSegmentNamingTheFile) {
    SegmentOnDisk w("zeroed-header", HostLayout::kPageFirst);
    const std::vector<std::uint64_t> words = headerWords(w.path);
    std::vector<char> bytes = fileBytes(w.path);
    const auto at = occurrences(bytes, words.data(), words.size() * sizeof(std::uint64_t));
    ASSERT_EQ(at.size(), 1u);
    std::fill_n(bytes.begin() + static_cast<std::ptrdiff_t>(at[0]),
                words.size() * sizeof(std::uint64_t), 0);
    putFileBytes(w.path, bytes);
    IoLogCapture log;
    auto store = openStore(w.opts);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->indexedPages(), 0u);
    EXPECT_EQ(w.servedExactly(*store), 0u);
    EXPECT_NE(log.text().find(w.path), std::string::npos) << log.text();
    EXPECT_NE(log.text().find("strata_header"), std::string::npos) << log.text();
}

TEST(Hdf5PageStoreDamage, GarbageOverPageBytesIsACountedChecksumFailure) {
    // 64 bytes of garbage inside the chunks of pages 0 and 2 (at a different offset in each):
    // both are counted checksum failures, pages 1 and 3 are still served exactly.
    for (const HostLayout layout : {HostLayout::kLayerFirst, HostLayout::kPageFirst}) {
        SegmentOnDisk w("garbage-pages", layout);
        std::mt19937_64 rng(w.seed);
        std::vector<char> bytes = fileBytes(w.path);
        const std::size_t page_bytes = w.pool.geometry().bytesPerPage();
        for (const hsize_t slot : {hsize_t{0}, hsize_t{2}}) {
            const std::size_t offset = rng() % (page_bytes - 64);
            garble(bytes, chunkAddress(w.path, slot) + offset, 64, rng);
        }
        putFileBytes(w.path, bytes);
        auto store = openStore(w.opts);
        ASSERT_TRUE(store);
        EXPECT_EQ(store->indexedPages(), kPages);
        EXPECT_EQ(w.servedExactly(*store), kPages - 2);
        EXPECT_EQ(store->stats().checksum_failures, 2u);
    }
}

TEST(Hdf5PageStoreDamage, GarbageOverIndexEntriesMakesEmptySlotsNeverServed) {
    // Entries 0 and 3 (32 bytes each) overwritten with garbage: two empty slots; 1 and 2 served.
    SegmentOnDisk w("garbage-index", HostLayout::kLayerFirst);
    std::mt19937_64 rng(w.seed);
    const haddr_t entries = datasetOffset(w.path, "entries");
    ASSERT_NE(entries, HADDR_UNDEF);
    std::vector<char> bytes = fileBytes(w.path);
    garble(bytes, entries + 0 * 32, 32, rng);
    garble(bytes, entries + 3 * 32, 32, rng);
    putFileBytes(w.path, bytes);
    auto store = openStore(w.opts);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->indexedPages(), kPages - 2);
    EXPECT_EQ(w.servedExactly(*store), kPages - 2);
}

TEST(Hdf5PageStoreDamage, AFileOfGarbageNamedLikeASegmentIsRefused) {
    // The whole segment overwritten with garbage of the same size, and a second file of garbage
    // under another segment name: both refused, named in the log, nothing served, no crash.
    SegmentOnDisk w("garbage-file", HostLayout::kPageFirst);
    std::mt19937_64 rng(w.seed);
    std::vector<char> bytes = fileBytes(w.path);
    garble(bytes, 0, bytes.size(), rng);
    putFileBytes(w.path, bytes);
    std::string other = w.path;
    other.replace(other.size() - 4, 1, other[other.size() - 4] == '0' ? "1" : "0");
    garble(bytes, 0, bytes.size(), rng);
    putFileBytes(other, bytes);
    IoLogCapture log;
    auto store = openStore(w.opts);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->indexedPages(), 0u);
    EXPECT_EQ(w.servedExactly(*store), 0u);
    EXPECT_NE(log.text().find(w.path), std::string::npos) << log.text();
}

}  // namespace
}  // namespace strata::io::testing
