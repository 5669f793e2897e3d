// Hdf5PageStore: round trips for every host layout, later jobs, existence runs, skipped duplicates,
// corrupted pages and files, stale .tmp clean-up, capacity eviction, argument errors.
#include <fcntl.h>
#include <hdf5.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <numeric>

#include "store_fixture.h"

namespace strata::io::testing {
namespace {

using kernels::HostLayout;

struct LayoutCase {
    HostLayout layout;
    std::size_t row_bytes;
};

class RoundTrip : public ::testing::TestWithParam<LayoutCase> {};

TEST_P(RoundTrip, HostToFileToHostIsBitExactAndALaterJobFindsEveryPage) {
    const auto [layout, row_bytes] = GetParam();
    const std::uint64_t seed = testSeed();
    auto backend = cpuBackend();
    auto pool = makePool(*backend, row_bytes, 24, layout);
    const auto g = pool.geometry();
    const std::string dir = freshDir("roundtrip");
    auto opts = optionsFor(dir, pool, /*segment_pages=*/4);

    constexpr std::uint32_t kPages = 10;
    std::vector<core::PageKey> keys;
    std::vector<std::uint32_t> src_pages;
    std::vector<std::vector<std::byte>> expected;
    for (std::uint32_t i = 0; i < kPages; ++i) {
        keys.push_back(keyOf(i, seed));
        src_pages.push_back(i);
        expected.push_back(patternBytes(g, seed + i));
        putPage(pool, i, expected.back());
    }
    {
        auto store = openStore(opts);
        ASSERT_TRUE(store);
        const auto caps = store->capabilities();
        EXPECT_TRUE(caps.zero_copy && caps.shared_across_ranks && caps.persistent);
        ASSERT_EQ(*store->set(keys, pool, src_pages), kPages);
        EXPECT_EQ(store->stats().pages_written, kPages);
        EXPECT_EQ(filesEndingWith(store->segmentDirectory(), ".h5").size(), 3u);  // 4 + 4 + 2

        std::memset(pool.data(), 0, pool.sizeBytes());
        std::vector<std::uint32_t> dst_pages(kPages);
        std::iota(dst_pages.rbegin(), dst_pages.rend(), 14u);  // 23, 22, ..., 14
        ASSERT_EQ(*store->get(keys, pool, dst_pages), kPages);
        for (std::uint32_t i = 0; i < kPages; ++i) {
            EXPECT_EQ(takePage(pool, dst_pages[i]), expected[i]) << "page " << i;
        }
        const auto st = store->stats();
        EXPECT_EQ(st.pages_read, kPages);
        EXPECT_EQ(st.bytes_read, kPages * g.bytesPerPage());
        EXPECT_EQ(st.checksum_failures, 0u);
    }
    // A later job: a new store object on the same directory.
    std::memset(pool.data(), 0, pool.sizeBytes());
    auto later = openStore(opts);
    ASSERT_TRUE(later);
    EXPECT_EQ(later->indexedPages(), kPages);
    EXPECT_EQ(*later->exists(keys), kPages);
    std::vector<std::uint32_t> dst_pages(kPages);
    std::iota(dst_pages.begin(), dst_pages.end(), 3u);
    ASSERT_EQ(*later->get(keys, pool, dst_pages), kPages);
    for (std::uint32_t i = 0; i < kPages; ++i) {
        EXPECT_EQ(takePage(pool, dst_pages[i]), expected[i]) << "page " << i;
    }
    fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Layouts, RoundTrip,
                         ::testing::Values(LayoutCase{HostLayout::kLayerFirst, 656},
                                           LayoutCase{HostLayout::kLayerFirst, 2048},
                                           LayoutCase{HostLayout::kPageFirst, 656},
                                           LayoutCase{HostLayout::kPageFirst, 2048},
                                           LayoutCase{HostLayout::kPageFirstDirect, 656},
                                           LayoutCase{HostLayout::kPageFirstDirect, 2048}),
                         [](const auto& info) {
                             return std::string(kernels::hostLayoutName(info.param.layout)) + "_" +
                                    std::to_string(info.param.row_bytes);
                         });

TEST(Hdf5PageStore, PagesWrittenFromOneLayoutReadBackIntoEveryOther) {
    const std::uint64_t seed = testSeed();
    auto backend = cpuBackend();
    const HostLayout layouts[] = {HostLayout::kLayerFirst, HostLayout::kPageFirst,
                                  HostLayout::kPageFirstDirect};
    const std::string dir = freshDir("cross");
    std::uint64_t salt = seed;
    for (HostLayout from : layouts) {
        auto src = makePool(*backend, 656, 4, from);
        const auto g = src.geometry();
        std::vector<core::PageKey> keys = {keyOf(0, ++salt), keyOf(1, salt)};
        const std::vector<std::uint32_t> pages = {0, 1};
        putPage(src, 0, patternBytes(g, salt));
        putPage(src, 1, patternBytes(g, salt + 1000));
        auto store = openStore(optionsFor(dir, src));
        ASSERT_EQ(*store->set(keys, src, pages), 2u);
        for (HostLayout to : layouts) {
            auto dst = makePool(*backend, 656, 4, to);
            const std::vector<std::uint32_t> dst_pages = {3, 2};
            ASSERT_EQ(*store->get(keys, dst, dst_pages), 2u);
            EXPECT_EQ(takePage(dst, 3), patternBytes(g, salt))
                << kernels::hostLayoutName(from) << " -> " << kernels::hostLayoutName(to);
            EXPECT_EQ(takePage(dst, 2), patternBytes(g, salt + 1000));
        }
    }
    fs::remove_all(dir);
}

TEST(Hdf5PageStore, ExistsReturnsTheLeadingRunAndSetSkipsPresentKeys) {
    auto backend = cpuBackend();
    auto pool = makePool(*backend, 656, 8, HostLayout::kPageFirst);
    const std::string dir = freshDir("exists");
    auto store = openStore(optionsFor(dir, pool));
    std::vector<core::PageKey> keys;
    for (int i = 0; i < 8; ++i) keys.push_back(keyOf(i));
    std::vector<std::uint32_t> pages = {0, 1, 2, 3, 4, 5, 6, 7};
    ASSERT_EQ(*store->set(std::span(keys).first(5), pool, std::span(pages).first(5)), 5u);

    const std::vector<core::PageKey> probe = {keys[0], keys[1], keys[2], keyOf(99), keys[3]};
    EXPECT_EQ(*store->exists(probe), 3u);
    EXPECT_EQ(*store->exists(std::vector{keyOf(99), keys[0]}), 0u);
    EXPECT_EQ(*store->exists({}), 0u);
    EXPECT_EQ(*store->exists(std::span(keys).first(5)), 5u);

    ASSERT_EQ(*store->set(keys, pool, pages), 8u);
    const auto st = store->stats();
    EXPECT_EQ(st.pages_skipped, 5u);
    EXPECT_EQ(st.pages_written, 8u);
    // Both batches were appended to the one open segment.
    EXPECT_EQ(filesEndingWith(store->segmentDirectory(), ".h5").size(), 1u);
    // A key twice in one batch is stored once.
    const std::vector<core::PageKey> dup = {keyOf(50), keyOf(50)};
    EXPECT_EQ(*store->set(dup, pool, std::vector<std::uint32_t>{0, 1}), 2u);
    EXPECT_EQ(store->stats().pages_written, 9u);
    fs::remove_all(dir);
}

TEST(Hdf5PageStore, SegmentsOfAnotherWriterAreFoundByRescan) {
    auto backend = cpuBackend();
    auto pool = makePool(*backend, 2048, 4, HostLayout::kPageFirstDirect);
    const auto g = pool.geometry();
    const std::string dir = freshDir("rescan");
    auto opts = optionsFor(dir, pool);
    auto reader = openStore(opts);
    opts.writer_id = 1;
    auto writer = openStore(opts);
    const std::vector<core::PageKey> keys = {keyOf(1), keyOf(2)};
    putPage(pool, 0, patternBytes(g, 1));
    putPage(pool, 1, patternBytes(g, 2));
    ASSERT_EQ(*writer->set(keys, pool, std::vector<std::uint32_t>{0, 1}), 2u);
    EXPECT_EQ(reader->indexedPages(), 0u);
    EXPECT_EQ(*reader->exists(keys), 2u);  // rescans on the first unknown key
    std::memset(pool.data(), 0, pool.sizeBytes());
    ASSERT_EQ(*reader->get(keys, pool, std::vector<std::uint32_t>{2, 3}), 2u);
    EXPECT_EQ(takePage(pool, 2), patternBytes(g, 1));
    EXPECT_EQ(takePage(pool, 3), patternBytes(g, 2));
    EXPECT_EQ(reader->ownPages(), 0u);
    EXPECT_EQ(writer->ownPages(), 2u);
    fs::remove_all(dir);
}

TEST(Hdf5PageStore, PagesAppendedToAnotherWritersOpenSegmentAreFoundLater) {
    auto backend = cpuBackend();
    auto pool = makePool(*backend, 656, 6, HostLayout::kPageFirst);
    const auto g = pool.geometry();
    const std::string dir = freshDir("growing");
    auto opts = optionsFor(dir, pool, /*segment_pages=*/64);
    opts.writer_id = 1;
    auto writer = openStore(opts);
    opts.writer_id = 0;
    auto reader = openStore(opts);
    for (std::uint32_t i = 0; i < 6; ++i) putPage(pool, i, patternBytes(g, 40 + i));
    const std::vector<core::PageKey> first = {keyOf(40), keyOf(41)};
    const std::vector<core::PageKey> later = {keyOf(42), keyOf(43)};
    ASSERT_EQ(*writer->set(first, pool, std::vector<std::uint32_t>{0, 1}), 2u);
    EXPECT_EQ(*reader->exists(first), 2u);
    EXPECT_EQ(*reader->exists(later), 0u);
    // Appended to the same (still open) segment file: no new file, found by the reader's rescan.
    ASSERT_EQ(*writer->set(later, pool, std::vector<std::uint32_t>{2, 3}), 2u);
    EXPECT_EQ(filesEndingWith(writer->segmentDirectory(), ".h5").size(), 1u);
    EXPECT_EQ(*reader->exists(later), 2u);
    std::memset(pool.data(), 0, pool.sizeBytes());
    ASSERT_EQ(*reader->get(later, pool, std::vector<std::uint32_t>{4, 5}), 2u);
    EXPECT_EQ(takePage(pool, 4), patternBytes(g, 42));
    EXPECT_EQ(takePage(pool, 5), patternBytes(g, 43));
    EXPECT_EQ(reader->stats().checksum_failures, 0u);
    fs::remove_all(dir);
}

TEST(Hdf5PageStore, AnEntryWhoseCommitWordDoesNotMatchIsAnEmptySlot) {
    // A torn or tampered entry (key, checksum or commit word changed) is never indexed; the
    // other slots of the segment are served.
    for (int word = 0; word < 4; ++word) {
        auto backend = cpuBackend();
        auto pool = makePool(*backend, 656, 6, HostLayout::kPageFirst);
        const auto g = pool.geometry();
        const std::string dir = freshDir("entry");
        auto opts = optionsFor(dir, pool);
        std::vector<core::PageKey> keys;
        for (std::uint32_t i = 0; i < 3; ++i) {
            keys.push_back(keyOf(i, 9));
            putPage(pool, i, patternBytes(g, 90 + i));
        }
        std::string seg_dir;
        {
            auto store = openStore(opts);
            ASSERT_EQ(*store->set(keys, pool, std::vector<std::uint32_t>{0, 1, 2}), 3u);
            seg_dir = store->segmentDirectory();
        }
        const auto segs = filesEndingWith(seg_dir, ".h5");
        ASSERT_EQ(segs.size(), 1u);
        const haddr_t entries = datasetOffset(segs[0], "entries");
        ASSERT_NE(entries, HADDR_UNDEF);
        flipBits(segs[0], entries + 1 * 32 + word * 8 + 3, 0x01);  // slot 1

        auto store = openStore(opts);
        EXPECT_EQ(store->indexedPages(), 2u) << "word " << word;
        EXPECT_EQ(*store->exists(std::span(keys).subspan(1, 1)), 0u);
        std::memset(pool.data(), 0, pool.sizeBytes());
        const std::vector<core::PageKey> others = {keys[0], keys[2]};
        ASSERT_EQ(*store->get(others, pool, std::vector<std::uint32_t>{3, 4}), 2u);
        EXPECT_EQ(takePage(pool, 3), patternBytes(g, 90));
        EXPECT_EQ(takePage(pool, 4), patternBytes(g, 92));
        fs::remove_all(dir);
    }
}

TEST(Hdf5PageStore, AFlippedByteOnDiskIsACountedMissNeverServed) {
    const std::uint64_t seed = testSeed();
    for (HostLayout layout : {HostLayout::kLayerFirst, HostLayout::kPageFirst}) {
        auto backend = cpuBackend();
        auto pool = makePool(*backend, 656, 8, layout);
        const auto g = pool.geometry();
        const std::string dir = freshDir("flip");
        auto opts = optionsFor(dir, pool);
        std::vector<core::PageKey> keys;
        for (std::uint32_t i = 0; i < 4; ++i) {
            keys.push_back(keyOf(i, seed));
            putPage(pool, i, patternBytes(g, seed + i));
        }
        std::string seg_dir;
        {
            auto store = openStore(opts);
            ASSERT_EQ(*store->set(keys, pool, std::vector<std::uint32_t>{0, 1, 2, 3}), 4u);
            seg_dir = store->segmentDirectory();
        }
        const auto segs = filesEndingWith(seg_dir, ".h5");
        ASSERT_EQ(segs.size(), 1u);
        const haddr_t addr = chunkAddress(segs[0], 2);
        ASSERT_NE(addr, HADDR_UNDEF);
        flipBits(segs[0], addr + (seed % g.bytesPerPage()), 0x10);

        auto store = openStore(opts);
        std::memset(pool.data(), 0, pool.sizeBytes());
        EXPECT_EQ(*store->get(keys, pool, std::vector<std::uint32_t>{4, 5, 6, 7}), 2u);
        EXPECT_EQ(takePage(pool, 4), patternBytes(g, seed));
        EXPECT_EQ(takePage(pool, 5), patternBytes(g, seed + 1));
        EXPECT_EQ(store->stats().checksum_failures, 1u);
        EXPECT_EQ(store->stats().pages_read, 2u);
        EXPECT_EQ(*store->exists(std::span(keys).subspan(2, 1)), 0u);
        EXPECT_EQ(*store->exists(std::span(keys).subspan(3, 1)), 1u);
        EXPECT_EQ(*store->get(std::span(keys).subspan(3, 1), pool, std::vector<std::uint32_t>{7}),
                  1u);
        EXPECT_EQ(takePage(pool, 7), patternBytes(g, seed + 3));
        fs::remove_all(dir);
    }
}

TEST(Hdf5PageStore, UnreadableSegmentsAreIgnoredAndStaleTmpFilesRemoved) {
    auto backend = cpuBackend();
    auto pool = makePool(*backend, 656, 2, HostLayout::kPageFirst);
    const std::string dir = freshDir("recover");
    auto opts = optionsFor(dir, pool);
    std::string seg_dir;
    {
        auto store = openStore(opts);
        ASSERT_EQ(*store->set(std::vector{keyOf(1)}, pool, std::vector<std::uint32_t>{0}), 1u);
        seg_dir = store->segmentDirectory();
    }
    // A garbage file with a segment name, a truncated copy of a real segment, a .tmp of a process
    // of this host that is gone (a reaped child) and one of this live process.
    const auto real = filesEndingWith(seg_dir, ".h5").at(0);
    const pid_t child = fork();
    if (child == 0) _exit(0);
    ASSERT_GT(child, 0);
    ASSERT_EQ(waitpid(child, nullptr, 0), child);
    const std::string name_prefix = fs::path(real).filename().string();  // seg-w0-<ns>-<host>-...
    const std::string host_hash = name_prefix.substr(name_prefix.find('-', 7) + 1, 8);
    auto write = [](const std::string& p, std::size_t bytes) {
        std::FILE* f = std::fopen(p.c_str(), "wb");
        ASSERT_NE(f, nullptr);
        std::vector<char> junk(bytes, 'x');
        std::fwrite(junk.data(), 1, junk.size(), f);
        std::fclose(f);
    };
    write(seg_dir + "/seg-w3-00000000000000aa-" + host_hash + "-12-0.h5", 4096);
    fs::copy_file(real, seg_dir + "/seg-w3-00000000000000ab-" + host_hash + "-12-1.h5");
    fs::resize_file(seg_dir + "/seg-w3-00000000000000ab-" + host_hash + "-12-1.h5", 1000);
    const std::string dead_tmp = seg_dir + "/seg-w0-00000000000000ac-" + host_hash + "-" +
                                 std::to_string(child) + "-0.h5.tmp";
    const std::string live_tmp = seg_dir + "/seg-w0-00000000000000ad-" + host_hash + "-" +
                                 std::to_string(getpid()) + "-0.h5.tmp";
    write(dead_tmp, 100);
    write(live_tmp, 100);

    auto store = openStore(opts);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->indexedPages(), 1u);
    EXPECT_EQ(*store->exists(std::vector{keyOf(1)}), 1u);
    EXPECT_FALSE(fs::exists(dead_tmp));
    EXPECT_TRUE(fs::exists(live_tmp));  // its writer may still be writing it
    fs::remove_all(dir);
}

TEST(Hdf5PageStore, CapacityEvictsTheLeastRecentlyUsedSegmentOfThisWriter) {
    auto backend = cpuBackend();
    auto pool = makePool(*backend, 656, 8, HostLayout::kLayerFirst);
    const std::string dir = freshDir("capacity");
    auto opts = optionsFor(dir, pool, /*segment_pages=*/4);
    opts.capacity_pages = 12;  // three segments
    auto store = openStore(opts);
    std::vector<std::vector<core::PageKey>> seg_keys(4);
    const std::vector<std::uint32_t> pages = {0, 1, 2, 3};
    for (int s = 0; s < 3; ++s) {
        for (int i = 0; i < 4; ++i) seg_keys[s].push_back(keyOf(s * 4 + i, 7));
        ASSERT_EQ(*store->set(seg_keys[s], pool, pages), 4u);
    }
    EXPECT_EQ(store->ownPages(), 12u);
    store->recordEvictions(true);  // the evicted keys are told from now on (KV events)
    // Touch segment 0 (read one of its pages): segment 1 is now the least recently used.
    ASSERT_EQ(*store->get(std::span(seg_keys[0]).first(1), pool, std::vector<std::uint32_t>{4}),
              1u);
    for (int i = 0; i < 4; ++i) seg_keys[3].push_back(keyOf(100 + i, 7));
    ASSERT_EQ(*store->set(seg_keys[3], pool, pages), 4u);
    EXPECT_EQ(store->ownPages(), 12u);
    EXPECT_EQ(store->stats().pages_evicted, 4u);
    EXPECT_EQ(store->takeEvicted(), seg_keys[1]);
    EXPECT_TRUE(store->takeEvicted().empty());  // each once
    EXPECT_EQ(*store->exists(seg_keys[0]), 4u);
    EXPECT_EQ(*store->exists(seg_keys[1]), 0u);
    EXPECT_EQ(*store->exists(seg_keys[2]), 4u);
    EXPECT_EQ(*store->exists(seg_keys[3]), 4u);
    EXPECT_EQ(filesEndingWith(store->segmentDirectory(), ".h5").size(), 3u);
    store.reset();

    // A later job of the same writer counts those segments against its capacity; others do not.
    opts.capacity_pages = 8;
    auto again = openStore(opts);
    EXPECT_EQ(again->ownPages(), 8u);  // over capacity at open: the oldest segment went
    EXPECT_EQ(again->stats().pages_evicted, 4u);
    EXPECT_TRUE(again->takeEvicted().empty());  // not recorded unless asked
    opts.writer_id = 5;
    auto other = openStore(opts);
    EXPECT_EQ(other->ownPages(), 0u);
    EXPECT_EQ(other->indexedPages(), 8u);
    fs::remove_all(dir);
}

TEST(Hdf5PageStore, ClearErrorsForBadArgumentsAndAnUncreatableDirectory) {
    auto backend = cpuBackend();
    auto pool = makePool(*backend, 656, 2, HostLayout::kPageFirst);
    auto opts = optionsFor("/etc/hostname/x", pool);
    auto r = Hdf5PageStore::create(opts);
    ASSERT_FALSE(r.isOk());
    EXPECT_EQ(r.status().code(), StatusCode::kIoError);
    EXPECT_NE(r.status().message().find("/etc/hostname/x"), std::string::npos)
        << r.status().message();
    EXPECT_NE(r.status().message().find("Not a directory"), std::string::npos)
        << r.status().message();

    opts = optionsFor(freshDir("args"), pool);
    opts.page_bytes = 0;
    EXPECT_EQ(Hdf5PageStore::create(opts).status().code(), StatusCode::kInvalidArgument);
    opts.page_bytes = pool.geometry().bytesPerPage();
    opts.pool_signature = "a/b";
    EXPECT_EQ(Hdf5PageStore::create(opts).status().code(), StatusCode::kInvalidArgument);
    opts.pool_signature = "kv";
    auto store = openStore(opts);
    auto other = makePool(*backend, 2048, 2, HostLayout::kPageFirst);
    const std::vector<core::PageKey> one = {keyOf(1)};
    EXPECT_EQ(store->set(one, other, std::vector<std::uint32_t>{0}).status().code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(store->set(one, pool, std::vector<std::uint32_t>{2}).status().code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(store->get(one, pool, std::vector<std::uint32_t>{0, 1}).status().code(),
              StatusCode::kInvalidArgument);
    fs::remove_all(opts.directory);
}

}  // namespace
}  // namespace strata::io::testing
