// Fuzz target: the HDF5 store's recovery on open (io/src/hdf5_page_store.cpp). The input is written
// as a segment file of a store directory (another writer's, on another host), then the store is
// opened on that directory and asked for the pages the seed segment holds (and one it never held).
// Opening must succeed (a bad segment is logged and ignored), and every page it serves must be
// byte for byte the page stored under that key: a mutated file errs or misses, never serves a
// wrong byte.
// The seed (corpus/fuzz_hdf5_store/seed.h5) is a real segment of the pages this target expects;
// `STRATA_FUZZ_WRITE_SEED=FILE fuzz_hdf5_store` writes it again (for a new segment format).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "strata/core/hash.h"
#include "strata/core/log.h"
#include "strata/io/hdf5_page_store.h"
#include "strata/testing/host_pages.h"

using namespace strata;
namespace fs = std::filesystem;

namespace {

constexpr std::uint32_t kPages = 4;      // pages in the seed segment
constexpr std::uint32_t kPageSize = 16;  // tokens per page
constexpr std::size_t kRowBytes = 16;    // 3 layers x K,V x 16 tokens x 16 bytes = 1536-byte pages

struct Fixture {
    std::unique_ptr<kernels::Backend> backend = testing::cpuBackend();
    pools::HostPool pool =
        std::move(pools::HostPool::create(*backend, testing::kvSpec(kRowBytes),
                                          std::size_t{kPages + 1} * kPageSize, kPageSize,
                                          kernels::HostLayout::kPageFirst))
            .value();
    std::vector<core::PageKey> keys;            // kPages stored keys, then one never stored
    std::vector<std::vector<std::byte>> pages;  // the stored pages' bytes (canonical order)

    Fixture() {
        for (std::uint32_t i = 0; i <= kPages; ++i) {
            keys.push_back(core::hash128("fuzz-page-" + std::to_string(i)));
            pages.push_back(testing::patternBytes(pool.geometry(), 1000 + i));
        }
    }
    io::Hdf5StoreOptions options(const fs::path& dir, int writer) const {
        io::Hdf5StoreOptions o;
        o.directory = dir.string();
        o.pool_signature = "kv-" + std::to_string(pool.geometry().bytesPerPage()) + "B";
        o.page_bytes = pool.geometry().bytesPerPage();
        o.segment_pages = kPages;
        o.writer_id = writer;
        return o;
    }
};

Fixture& fixture() {
    static Fixture f;
    return f;
}

// Writes the seed: a store of writer 1 holding the kPages pages; its one segment copied to `out`.
void writeSeed(const std::string& out) {
    auto& f = fixture();
    const fs::path dir = fuzz::scratchDir() / "seed";
    auto store = io::Hdf5PageStore::create(f.options(dir, 1));
    STRATA_FUZZ_CHECK(store.isOk());
    std::vector<std::uint32_t> slots;
    for (std::uint32_t i = 0; i < kPages; ++i) {
        testing::putPage(f.pool, i, f.pages[i]);
        slots.push_back(i);
    }
    auto set = (*store)->set(std::span(f.keys).first(kPages), f.pool, slots);
    STRATA_FUZZ_CHECK(set.isOk() && set.value() == kPages);
    const std::string seg_dir = (*store)->segmentDirectory();
    store.value().reset();
    for (const auto& e : fs::directory_iterator(seg_dir)) {
        fs::copy_file(e.path(), out, fs::copy_options::overwrite_existing);
        std::printf("seed: %s -> %s\n", e.path().c_str(), out.c_str());
    }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    core::setLogLevel(spdlog::level::off);
    if (const char* seed = std::getenv("STRATA_FUZZ_WRITE_SEED"); seed != nullptr && *seed) {
        writeSeed(seed);
        std::exit(0);
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto& f = fixture();
    const fs::path dir = fuzz::scratchDir() / "store";
    std::error_code ec;
    fs::remove_all(dir, ec);
    const auto options = f.options(dir, 0);
    const fs::path seg_dir = dir / options.pool_signature;
    fs::create_directories(seg_dir);
    // Writer 1 on host hash 0 (not this host), pid 1: another process's segment.
    fuzz::writeFile(seg_dir / "seg-w1-0000000000000001-00000000-1-0.h5", data, size);

    auto store = io::Hdf5PageStore::create(options);
    STRATA_FUZZ_CHECK(store.isOk());
    auto& s = *store.value();
    auto present = s.exists(f.keys);
    STRATA_FUZZ_CHECK(present.isOk() && present.value() <= kPages);
    STRATA_FUZZ_CHECK(s.indexedPages() <= kPages);
    // Each key on its own, so a miss of one does not hide the others; then all at once.
    for (std::uint32_t i = 0; i <= kPages; ++i) {
        const std::uint32_t slot = kPages;  // the pool's spare page
        testing::putPage(f.pool, slot, std::vector<std::byte>(f.pool.geometry().bytesPerPage()));
        auto got = s.get(std::span(f.keys).subspan(i, 1), f.pool, std::span(&slot, 1));
        STRATA_FUZZ_CHECK(got.isOk() && got.value() <= 1);
        if (got.value() == 1) {
            STRATA_FUZZ_CHECK(i < kPages);  // the key never stored is never served
            STRATA_FUZZ_CHECK(testing::takePage(f.pool, slot) == f.pages[i]);
        }
    }
    std::vector<std::uint32_t> slots;
    for (std::uint32_t i = 0; i < kPages; ++i) slots.push_back(i);
    auto got = s.get(std::span(f.keys).first(kPages), f.pool, slots);
    STRATA_FUZZ_CHECK(got.isOk() && got.value() <= kPages);
    for (std::size_t i = 0; i < got.value(); ++i) {
        STRATA_FUZZ_CHECK(testing::takePage(f.pool, static_cast<std::uint32_t>(i)) == f.pages[i]);
    }
    return 0;
}
