// Shared helpers of the HDF5 page store tests: CPU host pools, deterministic page contents per key,
// fresh temporary directories and a random seed printed by each randomised test.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "strata/io/hdf5_page_store.h"
#include "strata/kernels/backend.h"
#include "strata/pools/host_pool.h"
#include "strata/testing/host_pages.h"

namespace strata::io::testing {

namespace fs = std::filesystem;
using strata::testing::cpuBackend;
using strata::testing::kvSpec;
using strata::testing::patternBytes;
using strata::testing::putPage;
using strata::testing::takePage;

inline pools::HostPool makePool(kernels::Backend& backend, std::size_t row_bytes,
                                std::uint32_t pages, kernels::HostLayout layout,
                                std::uint32_t page_size = 16) {
    return std::move(pools::HostPool::create(backend, kvSpec(row_bytes),
                                             std::size_t{pages} * page_size, page_size, layout))
        .value();
}

inline core::PageKey keyOf(std::uint64_t i, std::uint64_t salt = 0) {
    return core::hash128("page-" + std::to_string(salt) + "-" + std::to_string(i));
}

inline std::string freshDir(const std::string& tag) {
    std::string templ = (fs::temp_directory_path() / ("strata-io-" + tag + "-XXXXXX")).string();
    char* made = ::mkdtemp(templ.data());
    EXPECT_NE(made, nullptr) << "mkdtemp " << templ;
    return templ;
}

inline Hdf5StoreOptions optionsFor(const std::string& dir, const pools::HostPool& pool,
                                   std::size_t segment_pages = 128) {
    Hdf5StoreOptions o;
    o.directory = dir;
    o.pool_signature = "kv-" + std::to_string(pool.geometry().bytesPerPage()) + "B";
    o.page_bytes = pool.geometry().bytesPerPage();
    o.segment_pages = segment_pages;
    return o;
}

inline std::unique_ptr<Hdf5PageStore> openStore(const Hdf5StoreOptions& o) {
    auto r = Hdf5PageStore::create(o);
    EXPECT_TRUE(r.isOk()) << r.status().toString();
    return r.isOk() ? std::move(r).value() : nullptr;
}

// Files in `dir` whose names end with `suffix`.
inline std::vector<std::string> filesEndingWith(const std::string& dir, const std::string& suffix) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        const std::string name = e.path().filename().string();
        if (name.ends_with(suffix)) out.push_back(e.path().string());
    }
    std::sort(out.begin(), out.end());
    return out;
}

// Offset of dataset `name` (contiguous) inside a segment file.
inline haddr_t datasetOffset(const std::string& path, const char* name) {
    hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    const haddr_t addr = H5Dget_offset(d);
    H5Dclose(d);
    H5Fclose(f);
    return addr;
}

// Byte offset of page `slot`'s chunk inside a segment file.
inline haddr_t chunkAddress(const std::string& path, hsize_t slot) {
    hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "pages", H5P_DEFAULT);
    const hsize_t offset[2] = {slot, 0};
    unsigned mask = 0;
    haddr_t addr = HADDR_UNDEF;
    hsize_t size = 0;
    EXPECT_GE(H5Dget_chunk_info_by_coord(d, offset, &mask, &addr, &size), 0);
    H5Dclose(d);
    H5Fclose(f);
    return addr;
}

// Flips the bits `mask` of the byte at `offset` of file `path` (a fault on disk).
inline void flipBits(const std::string& path, std::uint64_t offset, unsigned char mask) {
    const int fd = ::open(path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0) << path << ": " << std::strerror(errno);
    unsigned char byte = 0;
    EXPECT_EQ(::pread(fd, &byte, 1, static_cast<off_t>(offset)), 1);
    byte ^= mask;
    EXPECT_EQ(::pwrite(fd, &byte, 1, static_cast<off_t>(offset)), 1);
    ::close(fd);
}

inline std::uint64_t testSeed() {
    const std::uint64_t seed = std::random_device{}();
    std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
    return seed;
}

}  // namespace strata::io::testing
