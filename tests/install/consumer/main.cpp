// An engine built against the installed libstrata: a Job on one rank, a Cache over a KV pool the
// engine owns (K and V of 80-byte rows on two layers, a gap between its layers), one prompt
// computed and inserted, then a second prompt that shares its first three pages: the second must
// reuse exactly those pages, in the slots where the engine wrote them, with their bytes intact.
// Exit 0 on success; a message and exit 1 otherwise.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "strata/strata.hpp"
#include "strata/version.h"

namespace {

constexpr std::uint32_t kPage = 16;
constexpr std::size_t kRows = 64 * kPage;
constexpr std::size_t kRowBytes = 80;
constexpr std::size_t kLayerStride = kRows * kRowBytes + 256;
constexpr std::size_t kBufferStride = 2 * kLayerStride;

int fail(const std::string& what) {
    std::fprintf(stderr, "consumer: %s\n", what.c_str());
    return 1;
}

unsigned char byteOf(std::int32_t token, std::size_t pos, std::size_t buffer, std::size_t layer,
                     std::size_t j) {
    return static_cast<unsigned char>((token * 131 + pos * 31 + buffer * 7 + layer * 3 + j) & 0xff);
}

std::size_t rowOffset(std::uint32_t page, std::size_t pos, std::size_t buffer, std::size_t layer) {
    return buffer * kBufferStride + layer * kLayerStride +
           (std::size_t{page} * kPage + pos % kPage) * kRowBytes;
}

}  // namespace

int main() {
    if (std::string(strata::version()) != STRATA_VERSION)
        return fail("version() " + std::string(strata::version()) + " != " STRATA_VERSION);
    auto job = strata::Job::create({});
    if (!job.isOk()) return fail("Job::create: " + job.status().toString());

    std::vector<unsigned char> memory(2 * kBufferStride, 0);
    strata::CacheConfig config;
    config.model = "consumer-model";
    config.page_size = kPage;
    config.device_tokens = kRows;
    config.host_tokens = 2 * kRows;
    strata::PoolDecl kv;
    kv.name = "kv";
    kv.layers = {0, 1};
    kv.buffers = 2;
    kv.row_bytes = kRowBytes;
    kv.memory = {.base = memory.data(),
                 .layer_ptrs = {},
                 .rows = kRows,
                 .slot_stride = 0,
                 .layer_stride = kLayerStride,
                 .buffer_stride = kBufferStride};
    config.pools.push_back(kv);
    auto cache = strata::Cache::create(*job.value(), config);
    if (!cache.isOk()) return fail("Cache::create: " + cache.status().toString());
    strata::Cache& c = *cache.value();

    std::vector<std::int32_t> first(5 * kPage), second(4 * kPage);
    for (std::size_t i = 0; i < first.size(); ++i) first[i] = static_cast<std::int32_t>(i * 7 + 1);
    for (std::size_t i = 0; i < second.size(); ++i)
        second[i] = i < 3 * kPage ? first[i] : static_cast<std::int32_t>(90000 + i);

    // The first prompt: nothing cached; the engine computes and writes every row.
    auto a = c.admit(1, first);
    if (!a.isOk()) return fail("admit: " + a.status().toString());
    if (a.value().cached_tokens != 0) return fail("a cold cache reused tokens");
    for (std::size_t pos = 0; pos < first.size(); ++pos)
        for (std::size_t b = 0; b < 2; ++b)
            for (std::size_t l = 0; l < 2; ++l)
                for (std::size_t j = 0; j < kRowBytes; ++j)
                    memory[rowOffset(a.value().pages[pos / kPage], pos, b, l) + j] =
                        byteOf(first[pos], pos, b, l, j);
    if (!c.insert(1).isOk() || !c.release(1).isOk() || !c.step().isOk())
        return fail("insert/release/step failed");

    // The second prompt shares three pages: they are reused, in place, byte for byte.
    auto s = c.admit(2, second);
    if (!s.isOk()) return fail("admit: " + s.status().toString());
    if (s.value().cached_tokens != 3 * kPage)
        return fail("reused " + std::to_string(s.value().cached_tokens) + " tokens, not " +
                    std::to_string(3 * kPage));
    if (!c.launchLoads().isOk()) return fail("launchLoads failed");
    for (std::uint32_t l = 0; l < 2; ++l)
        if (!c.waitLayer(2, l).isOk()) return fail("waitLayer failed");
    for (std::size_t pos = 0; pos < 3 * kPage; ++pos)
        for (std::size_t b = 0; b < 2; ++b)
            for (std::size_t l = 0; l < 2; ++l)
                for (std::size_t j = 0; j < kRowBytes; ++j)
                    if (memory[rowOffset(s.value().pages[pos / kPage], pos, b, l) + j] !=
                        byteOf(second[pos], pos, b, l, j))
                        return fail("byte " + std::to_string(j) + " of position " +
                                    std::to_string(pos) + " differs");
    if (!c.abort(2).isOk() || !c.drain().isOk()) return fail("abort/drain failed");
    const strata::CacheStats stats = c.stats();
    std::printf("consumer: strata %s, reused %zu of %zu tokens, %llu rounds\n", strata::version(),
                s.value().cached_tokens, second.size(),
                static_cast<unsigned long long>(stats.rounds));
    return 0;
}
