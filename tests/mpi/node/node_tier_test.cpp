// MPI tests of the node-wide host tier's parts at 2 and 4 ranks (every rank on this host, so one
// node): the shared window (comm::NodeWindow), the node index with its pins and leases
// (comm::NodePageIndex) and the cross-replica page store (io::NodePageStore) over host pools
// adopted in the window.
#include <gtest/gtest.h>
#include <mpi.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "strata/comm/mpi_comm.h"
#include "strata/comm/node_page_index.h"
#include "strata/comm/node_window.h"
#include "strata/core/hash.h"
#include "strata/io/node_page_store.h"
#include "strata/kernels/backend.h"
#include "strata/pools/host_pool.h"
#include "strata/pools/pool_spec.h"
#include "strata/testing/mpi_test_util.h"

namespace strata {
namespace {

using comm::MpiComm;
using comm::NodePageIndex;
using comm::NodeWindow;
using strata::testing::allRanks;
using strata::testing::worldRank;
using strata::testing::worldSize;

core::PageKey keyOf(std::uint64_t i) {
    return {core::checksum64(&i, sizeof(i)), i * 0x9E3779B97F4A7C15ull + 1};
}

// The bytes page `key` holds in these tests: a function of the key, so any rank can check them.
void fillPage(std::byte* page, std::size_t bytes, const core::PageKey& key) {
    for (std::size_t i = 0; i < bytes; i += 8) {
        const std::uint64_t v = key.lo ^ (key.hi + i * 0x100000001B3ull);
        std::memcpy(page + i, &v, std::min<std::size_t>(8, bytes - i));
    }
}

bool pageIs(const std::byte* page, std::size_t bytes, const core::PageKey& key) {
    std::vector<std::byte> want(bytes);
    fillPage(want.data(), bytes, key);
    return std::memcmp(page, want.data(), bytes) == 0;
}

MpiComm nodeComm() {
    auto node = MpiComm::world().splitShared(worldRank());
    EXPECT_TRUE(node.isOk()) << node.status().toString();
    return std::move(node).value();
}

TEST(NodeWindow, EveryRankSeesEverySegment) {
    MpiComm node = nodeComm();
    ASSERT_EQ(node.size(), worldSize()) << "the tests run every rank on one host";
    const std::size_t mine = 1000 * static_cast<std::size_t>(node.rank() + 1);
    auto w = NodeWindow::create(node, mine);
    ASSERT_TRUE(allRanks(w.isOk())) << w.status().toString();
    NodeWindow& win = **w;
    for (int r = 0; r < win.size(); ++r) {
        EXPECT_GE(win.segmentBytes(r), 1000u * static_cast<std::size_t>(r + 1));
        EXPECT_EQ(win.segmentBytes(r) % 4096, 0u);
        EXPECT_EQ(reinterpret_cast<std::uintptr_t>(win.segment(r)) % 4096, 0u);
    }
    std::memset(win.mySegment(), 0x40 + win.rank(), mine);
    ASSERT_TRUE(win.barrier().isOk());
    bool ok = true;
    for (int r = 0; r < win.size(); ++r) {
        for (std::size_t i = 0; i < 1000u * static_cast<std::size_t>(r + 1); ++i) {
            ok = ok && win.segment(r)[i] == static_cast<std::byte>(0x40 + r);
        }
    }
    EXPECT_TRUE(allRanks(ok)) << "a rank read another rank's segment wrong";
    EXPECT_EQ(win.totalBytes(), [&] {
        std::size_t t = 0;
        for (int r = 0; r < win.size(); ++r) t += win.segmentBytes(r);
        return t;
    }());
}

// A node index in node rank 0's segment and `slots` pages of `page_bytes` per rank after it.
struct NodeFixture {
    std::unique_ptr<NodeWindow> win;
    std::unique_ptr<NodePageIndex> index;
    std::size_t page_bytes = 0;
    std::size_t index_bytes = 0;
    std::byte* page(int rank, std::uint32_t slot) const {
        return win->segment(rank) + (rank == 0 ? index_bytes : 0) + slot * page_bytes;
    }
};

NodeFixture makeNode(std::uint32_t slots, std::size_t page_bytes, std::chrono::milliseconds lease) {
    NodeFixture f;
    MpiComm node = nodeComm();
    const auto geo = NodePageIndex::geometryFor(64, static_cast<std::uint32_t>(node.size()));
    f.index_bytes = (NodePageIndex::bytesFor(geo) + 4095) / 4096 * 4096;
    f.page_bytes = page_bytes;
    auto w = NodeWindow::create(node, (node.rank() == 0 ? f.index_bytes : 0) + slots * page_bytes);
    EXPECT_TRUE(w.isOk()) << w.status().toString();
    f.win = std::move(w).value();
    if (f.win->rank() == 0) {
        EXPECT_TRUE(NodePageIndex::initialise(f.win->segment(0), f.index_bytes, geo).isOk());
    }
    EXPECT_TRUE(f.win->barrier().isOk());
    auto idx = NodePageIndex::attach(f.win->segment(0), f.index_bytes,
                                     static_cast<std::uint32_t>(f.win->rank()), lease);
    EXPECT_TRUE(idx.isOk()) << idx.status().toString();
    f.index = std::make_unique<NodePageIndex>(std::move(idx).value());
    return f;
}

TEST(NodePageIndex, APagePublishedByOneRankIsPinnedAndCopiedByTheOthers) {
    STRATA_SKIP_BELOW_RANKS(2);
    NodeFixture f = makeNode(8, 4096, std::chrono::milliseconds(10000));
    const int me = f.win->rank();
    // Each rank publishes 8 pages of its own keys; a second publish of a key is refused.
    for (std::uint32_t s = 0; s < 8; ++s) {
        const core::PageKey k = keyOf(100 * me + s);
        fillPage(f.page(me, s), f.page_bytes, k);
        EXPECT_TRUE(f.index->publish(k, {static_cast<std::uint32_t>(me), 0, s, 0}));
        EXPECT_FALSE(f.index->publish(k, {static_cast<std::uint32_t>(me), 0, s, 0}));
    }
    ASSERT_TRUE(f.win->barrier().isOk());
    bool ok = true;
    for (int r = 0; r < f.win->size(); ++r) {
        for (std::uint32_t s = 0; s < 8; ++s) {
            const core::PageKey k = keyOf(100 * r + s);
            ok = ok && f.index->contains(k);
            auto pin = f.index->pin(k);
            ok = ok && pin.has_value() && pin->ref.owner == static_cast<std::uint32_t>(r) &&
                 pin->ref.slot == s && pageIs(f.page(r, s), f.page_bytes, k) &&
                 f.index->stillPinned(*pin);
            if (pin) f.index->unpin(*pin);
        }
    }
    EXPECT_TRUE(allRanks(ok));
    EXPECT_FALSE(f.index->contains(keyOf(999999)));
    ASSERT_TRUE(f.win->barrier().isOk());
    for (std::uint32_t s = 0; s < 8; ++s) EXPECT_TRUE(f.index->retract(keyOf(100 * me + s)));
    ASSERT_TRUE(f.win->barrier().isOk());
    bool gone = true;
    for (int r = 0; r < f.win->size(); ++r) {
        for (std::uint32_t s = 0; s < 8; ++s) gone = gone && !f.index->contains(keyOf(100 * r + s));
    }
    EXPECT_TRUE(allRanks(gone));
    EXPECT_EQ(f.index->stats().retract_waits, 0u);
}

// Node rank 0 evicts and rewrites its 4 slots as fast as it can while the other ranks pin and
// copy its pages: a pinned page is never overwritten under its reader (every copy made under a
// pin that held is the page's bytes), and evictions wait for the pins.
TEST(NodePageIndex, PinsAreRespectedUnderEvictionChurn) {
    STRATA_SKIP_BELOW_RANKS(2);
    constexpr std::uint32_t kSlots = 4;
    constexpr std::uint64_t kPages = 3000;
    NodeFixture f = makeNode(kSlots + 1, 64 * 1024, std::chrono::milliseconds(30000));
    const int me = f.win->rank();
    // Shared progress word: the last page id rank 0 published + 1, and a stop flag (bit 63).
    auto* progress = reinterpret_cast<std::uint64_t*>(f.page(0, kSlots));
    std::atomic_ref<std::uint64_t> latest(*progress);
    ASSERT_TRUE(f.win->barrier().isOk());
    std::uint64_t copies = 0, bad = 0, lapsed = 0;
    if (me == 0) {
        for (std::uint64_t id = 0; id < kPages; ++id) {
            const auto slot = static_cast<std::uint32_t>(id % kSlots);
            if (id >= kSlots) f.index->retract(keyOf(id - kSlots));  // waits for live pins
            fillPage(f.page(0, slot), f.page_bytes, keyOf(id));
            f.index->publish(keyOf(id), {0, 0, slot, 0});
            latest.store(id + 1, std::memory_order_release);
        }
        latest.store(latest.load() | (1ull << 63), std::memory_order_release);
    } else {
        std::vector<std::byte> copy(f.page_bytes);
        std::uint64_t n = 0;
        for (;;) {
            const std::uint64_t l = latest.load(std::memory_order_acquire);
            if (l >> 63) break;
            if (l == 0) {
                std::this_thread::yield();  // rank 0 has not published yet (2 cores, 4 ranks)
                continue;
            }
            // The oldest page still published: the next one rank 0 evicts.
            const std::uint64_t id = l > kSlots ? l - kSlots + (n++ % 2) : l - 1;
            auto pin = f.index->pin(keyOf(id));
            if (!pin) {
                std::this_thread::yield();
                continue;
            }
            // Copy slowly (in 4 KiB steps, yielding) to widen the window for an overwrite.
            const std::byte* src = f.page(0, pin->ref.slot);
            for (std::size_t off = 0; off < f.page_bytes; off += 4096) {
                std::memcpy(copy.data() + off, src + off, 4096);
                if (off % 16384 == 0) std::this_thread::yield();
            }
            const bool held = f.index->stillPinned(*pin);
            f.index->unpin(*pin);
            if (!held) {
                ++lapsed;
                continue;
            }
            ++copies;
            if (!pageIs(copy.data(), f.page_bytes, keyOf(id))) ++bad;
        }
    }
    std::uint64_t figures[4] = {copies, bad, lapsed, f.index->stats().retract_waits};
    MPI_Allreduce(MPI_IN_PLACE, figures, 4, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
    if (me == 0) {
        std::printf("churn: %llu pinned copies, %llu wrong, %llu lapsed, %llu evictions waited\n",
                    static_cast<unsigned long long>(figures[0]),
                    static_cast<unsigned long long>(figures[1]),
                    static_cast<unsigned long long>(figures[2]),
                    static_cast<unsigned long long>(figures[3]));
    }
    EXPECT_GT(figures[0], 0u) << "no reader copied a page: the test proves nothing";
    EXPECT_EQ(figures[1], 0u) << "a page was overwritten while a reader held its pin";
    EXPECT_EQ(figures[2], 0u) << "a 30 s lease lapsed";
    EXPECT_TRUE(f.win->barrier().isOk());
}

// A rank that pins a page and then stops (never unpins, never renews: a stopped or dead rank)
// holds the owner's eviction only until its lease expires; its copy afterwards is not trusted,
// and survivors reclaim a dead owner's entries.
TEST(NodePageIndex, AStoppedRanksPinsExpireAndADeadOwnersPagesAreReclaimed) {
    STRATA_SKIP_BELOW_RANKS(2);
    // Long enough that the pin is still live when rank 0 retracts after a barrier on a loaded
    // machine; retract() then waits out the rest of it.
    const auto lease = std::chrono::milliseconds(2000);
    NodeFixture f = makeNode(2, 4096, lease);
    const int me = f.win->rank();
    const core::PageKey k = keyOf(7);
    if (me == 0) {
        fillPage(f.page(0, 0), f.page_bytes, k);
        ASSERT_TRUE(f.index->publish(k, {0, 0, 0, 0}));
    }
    ASSERT_TRUE(f.win->barrier().isOk());
    std::optional<NodePageIndex::Pin> pin;
    if (me == 1) {
        pin = f.index->pin(k);
        ASSERT_TRUE(pin.has_value());
    }
    ASSERT_TRUE(f.win->barrier().isOk());  // rank 1 holds the pin and stops using it
    if (me == 0) {
        EXPECT_TRUE(f.index->retract(k));  // returns once the stopped rank's lease expired
        EXPECT_EQ(f.index->stats().retract_waits, 1u);
        EXPECT_EQ(f.index->stats().expired_leases, 1u);
        fillPage(f.page(0, 0), f.page_bytes, keyOf(8));  // the slot is reused
    }
    ASSERT_TRUE(f.win->barrier().isOk());
    if (me == 1) {
        EXPECT_FALSE(f.index->stillPinned(*pin)) << "a lapsed pin must not vouch for a copy";
        f.index->unpin(*pin);
    }
    // Rank 1 publishes pages and "dies"; rank 0 reclaims them by rank.
    if (me == 1) {
        for (std::uint64_t i = 0; i < 5; ++i) {
            ASSERT_TRUE(f.index->publish(keyOf(50 + i), {1, 0, 0, 0}));
        }
        ASSERT_TRUE(f.index->pin(keyOf(50)).has_value());  // and leaves a pin behind
    }
    ASSERT_TRUE(f.win->barrier().isOk());
    if (me == 0) {
        EXPECT_TRUE(f.index->contains(keyOf(52)));
        EXPECT_EQ(f.index->reclaimOwner(1), 5u);
        for (std::uint64_t i = 0; i < 5; ++i) EXPECT_FALSE(f.index->contains(keyOf(50 + i)));
    }
    EXPECT_TRUE(f.win->barrier().isOk());
}

// Two DP replicas of one node: rank 0's host pool and the others' live in the window; a page rank 0
// published is a host hit for the others, copied and checksum-verified; a page whose bytes no
// longer match the published checksum is a counted miss, never served.
TEST(NodePageStore, ReplicasServeEachOthersPagesVerified) {
    STRATA_SKIP_BELOW_RANKS(2);
    MpiComm node = nodeComm();
    pools::PoolSpec spec;
    spec.name = "kv";
    spec.kind = pools::PoolKind::kMla;
    spec.num_layers = 3;
    spec.num_buffers = 1;
    spec.row_bytes = 656;
    constexpr std::uint32_t P = 16;
    constexpr std::size_t kTokens = 8 * P;
    const std::size_t pool_bytes = pools::HostPool::bytesFor(spec, kTokens, P);
    ASSERT_GT(pool_bytes, 0u);
    const auto geo = NodePageIndex::geometryFor(64, static_cast<std::uint32_t>(node.size()));
    const std::size_t index_bytes = (NodePageIndex::bytesFor(geo) + 4095) / 4096 * 4096;
    auto w = NodeWindow::create(node, index_bytes + pool_bytes);
    ASSERT_TRUE(allRanks(w.isOk()));
    NodeWindow& win = **w;
    if (win.rank() == 0) {
        ASSERT_TRUE(NodePageIndex::initialise(win.segment(0), index_bytes, geo).isOk());
    }
    ASSERT_TRUE(win.barrier().isOk());
    auto idx =
        NodePageIndex::attach(win.segment(0), index_bytes, static_cast<std::uint32_t>(win.rank()),
                              std::chrono::milliseconds(5000));
    ASSERT_TRUE(idx.isOk());
    auto index = std::make_shared<NodePageIndex>(std::move(idx).value());
    std::vector<const std::byte*> peers;
    for (int r = 0; r < win.size(); ++r) peers.push_back(win.segment(r) + index_bytes);
    auto pool = pools::HostPool::adopt(spec, kTokens, P, kernels::HostLayout::kPageFirst,
                                       win.mySegment() + index_bytes, pool_bytes);
    ASSERT_TRUE(pool.isOk()) << pool.status().toString();
    auto store = io::NodePageStore::create(index, 0, *pool, peers);
    ASSERT_TRUE(store.isOk()) << store.status().toString();
    const std::size_t page_bytes = pool->geometry().bytesPerPage();
    std::vector<core::PageKey> keys;
    for (std::uint64_t i = 0; i < 6; ++i) keys.push_back(keyOf(1000 + i));
    std::vector<std::uint32_t> slots = {0, 1, 2, 3, 4, 5};
    if (win.rank() == 0) {
        for (std::size_t i = 0; i < keys.size(); ++i) {
            fillPage(pool->pageBlob(slots[i]).data(), page_bytes, keys[i]);
        }
        ASSERT_TRUE((*store)->publish(keys, *pool, slots).isOk());
        // A page that changes after it was published (a bug, or a torn write): never served.
        pool->pageBlob(4)[100] ^= std::byte{1};
    }
    ASSERT_TRUE(win.barrier().isOk());
    bool ok = true;
    if (win.rank() != 0) {
        auto present = (*store)->exists(keys);
        ok = ok && present.isOk() && *present == keys.size();
        std::vector<std::uint32_t> mine = {7, 6, 5, 3, 2, 1};  // other slots than the owner's
        auto got = (*store)->get(keys, *pool, mine);
        ok = ok && got.isOk() && *got == 4;  // page 4 fails its checksum: the run stops there
        for (std::size_t i = 0; i < 4; ++i) {
            ok = ok && pageIs(pool->pageBlob(mine[i]).data(), page_bytes, keys[i]);
        }
        const io::NodeStoreStats st = (*store)->nodeStats();
        ok = ok && st.pages_served == 4 && st.checksum_failures == 1 &&
             st.bytes_served == 4 * page_bytes;
    } else {
        const io::NodeStoreStats st = (*store)->nodeStats();
        ok = ok && st.pages_published == keys.size();
    }
    EXPECT_TRUE(allRanks(ok));
    ASSERT_TRUE(win.barrier().isOk());
    if (win.rank() == 0) ASSERT_TRUE((*store)->retract(keys).isOk());
    ASSERT_TRUE(win.barrier().isOk());
    if (win.rank() != 0) {
        auto present = (*store)->exists(keys);
        EXPECT_TRUE(present.isOk() && *present == 0);
    }
    EXPECT_TRUE(win.barrier().isOk());
}

TEST(NodePageStore, CopyWithChecksumIsThePageChecksum) {
    kernels::PoolGeometry g;
    g.num_layers = 5;
    g.num_buffers = 2;
    g.row_bytes = 100;
    g.page_size = 8;
    std::vector<std::byte> src(g.bytesPerPage()), dst(g.bytesPerPage());
    fillPage(src.data(), src.size(), keyOf(3));
    const std::uint64_t sum = io::NodePageStore::copyWithChecksum(g, dst.data(), src.data());
    EXPECT_EQ(sum, pools::pageBytesChecksum(g, src.data()));
    EXPECT_EQ(src, dst);
}

}  // namespace
}  // namespace strata
