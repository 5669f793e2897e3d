// The engine's boundary on a GPU: the pools of tests/engine/engine_model.h in cudaMalloc'd memory
// (the kv block with its gaps, a tensor per layer for the indexer, the compressed sidecar),
// registered with a Cache on the CUDA back end through the public API only (linked as libstrata).
// Requests hit on the device and come back from the pinned host tier after eviction; every byte
// is checked in device memory where the engine put it, and the gaps between its layers are never
// written; the same with strided rows (K and V interleaved per token, padded rows). Skips without a
// visible GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "engine_model.h"
#include "strata/strata.hpp"

namespace strata {
namespace {

using engine_test::Engine;
using engine_test::kDeviceTokens;
using engine_test::kPage;
using engine_test::tokensOf;

bool gpuVisible() {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

// Device copies of the engine's host memory, block for block; the declarations point at them.
class DeviceMirror {
public:
    explicit DeviceMirror(Engine& engine) : engine_(engine), decls_(engine.decls()) {
        for (std::size_t p = 0; p < decls_.size(); ++p) {
            DeviceMemory& m = decls_[p].memory;
            if (m.base != nullptr) {
                m.base = add(engine_.block(p, 0));
            } else {
                for (std::size_t l = 0; l < m.layer_ptrs.size(); ++l)
                    m.layer_ptrs[l] = add(engine_.block(p, l + 1));
            }
        }
    }
    ~DeviceMirror() {
        for (const Block& b : blocks_) cudaFree(b.device);
    }
    const std::vector<PoolDecl>& decls() const { return decls_; }
    // The device rows to the engine's host view (before it checks them), and back (after it
    // wrote the rows of the computed tokens).
    void toHost() {
        for (Block& b : blocks_)
            ASSERT_EQ(cudaMemcpy(b.host->data(), b.device, b.host->size(), cudaMemcpyDeviceToHost),
                      cudaSuccess);
    }
    void toDevice() {
        for (Block& b : blocks_)
            ASSERT_EQ(cudaMemcpy(b.device, b.host->data(), b.host->size(), cudaMemcpyHostToDevice),
                      cudaSuccess);
    }

private:
    struct Block {
        std::vector<std::byte>* host;
        void* device;
    };
    void* add(std::vector<std::byte>* host) {
        void* d = nullptr;
        EXPECT_EQ(cudaMalloc(&d, host->size()), cudaSuccess);
        EXPECT_EQ(cudaMemcpy(d, host->data(), host->size(), cudaMemcpyHostToDevice), cudaSuccess);
        blocks_.push_back({host, d});
        return d;
    }
    Engine& engine_;
    std::vector<PoolDecl> decls_;
    std::vector<Block> blocks_;
};

// strided: the engine's strided pools (K and V interleaved per token, padded rows).
void serveHitsFromDeviceAndHost(bool strided) {
    JobOptions jo;
    jo.gpus = 1;
    auto job = Job::create(jo);
    ASSERT_TRUE(job.isOk()) << job.status().toString();
    Engine engine(0, strided);
    DeviceMirror mirror(engine);
    CacheConfig cc;
    cc.model = "engine-test-model";
    cc.pools = mirror.decls();
    cc.backend = "cuda";
    cc.page_size = kPage;
    cc.device_tokens = kDeviceTokens;
    cc.host_tokens = 64 * kPage;
    cc.check_consistency = true;
    auto made = Cache::create(**job, cc);
    ASSERT_TRUE(made.isOk()) << made.status().toString();
    Cache& cache = **made;
    ASSERT_EQ(cache.pools().size(), 3u);
    EXPECT_EQ(cache.pools()[0].layer_ptrs.at(0), mirror.decls()[0].memory.base);
    EXPECT_EQ(cache.pools()[1].layer_ptrs.at(1), mirror.decls()[1].memory.layer_ptrs.at(1));

    auto serve = [&](Cache::RequestId id, const std::vector<std::int32_t>& tokens) {
        return engine_test::serve(
            cache, engine, id, tokens, [&] { mirror.toHost(); }, [&] { mirror.toDevice(); });
    };
    const auto first = tokensOf(1, 5 * kPage + 3);
    EXPECT_EQ(serve(1, first).cached_tokens, 0u);
    ASSERT_TRUE(cache.drain().isOk());
    EXPECT_EQ(serve(2, first).device_hit_tokens, 5 * kPage);
    serve(3, tokensOf(2, 7 * kPage));
    serve(4, tokensOf(3, 7 * kPage));
    ASSERT_TRUE(cache.drain().isOk());
    const Admission back = serve(5, tokensOf(4, 6 * kPage, first));
    EXPECT_EQ(back.host_hit_tokens, 5 * kPage);
    EXPECT_EQ(back.cached_tokens, 5 * kPage);
    ASSERT_TRUE(cache.drain().isOk());
    EXPECT_GT(cache.stats().load_pages, 0u);
    mirror.toHost();
    EXPECT_EQ(engine.paddingChanged(), 0u) << "bytes written outside the engine's rows";
}

TEST(EnginePoolsCuda, CudaMallocedPoolsOfANewShapeServeHitsFromDeviceAndHostByteExact) {
    if (!gpuVisible()) GTEST_SKIP() << "no CUDA device visible";
    serveHitsFromDeviceAndHost(/*strided=*/false);
}

// Rows that do not follow each other in cudaMalloc'd memory: K and V interleaved per token (a slot
// stride of two rows), the indexer's and the sidecar's rows padded; the padding is never written.
TEST(EnginePoolsCuda, StridedRowsServeHitsFromDeviceAndHostByteExact) {
    if (!gpuVisible()) GTEST_SKIP() << "no CUDA device visible";
    serveHitsFromDeviceAndHost(/*strided=*/true);
}

}  // namespace
}  // namespace strata
