// MPI tests of the remote tier: authenticated messages, bit-exact pulls, directory churn that never
// serves a stale page, a stopped peer (SIGSTOP) that costs timeouts and misses and then recovers,
// and a process outside the job whose messages are rejected and whose UCX puts write nothing,
// while the job keeps serving.
#include <gtest/gtest.h>
#include <mpi.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <numeric>
#include <thread>

#include <fmt/format.h>

#include "remote_test_util.h"
#include "strata/testing/mpi_test_util.h"

extern char** environ;

namespace strata::io::testing {
namespace {

using comm::MpiComm;
using comm::ucx::Clock;
using comm::ucx::TransportOptions;
using comm::ucx::UcxTransport;
using std::chrono::milliseconds;
using strata::testing::allRanks;
using strata::testing::worldRank;
using strata::testing::worldSize;

std::vector<std::uint32_t> iotaPages(std::uint32_t first, std::uint32_t n) {
    std::vector<std::uint32_t> v(n);
    std::iota(v.begin(), v.end(), first);
    return v;
}

// Runs the UCX process outside the job (tests/mpi/remote/foreign_sender.cpp) against this rank's
// worker, with `args` after the worker address, and expects it to exit 0.
void runForeignProcess(const UcxTransport& t, std::vector<std::string> args) {
    std::string hex;
    for (std::byte b : t.workerAddress()) hex += fmt::format("{:02x}", static_cast<int>(b));
    std::string prog = STRATA_FOREIGN_SENDER;
    args.insert(args.begin(), hex);
    std::vector<char*> argv{prog.data()};
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t child = 0;
    ASSERT_EQ(::posix_spawn(&child, prog.c_str(), nullptr, nullptr, argv.data(), environ), 0);
    int wstatus = 0;
    ASSERT_EQ(::waitpid(child, &wstatus, 0), child);
    EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) << "status " << wstatus;
}

// Pulls two published pages (ids id0, id1) into host pages 10 and 11, retrying for up to 10 s,
// and checks their bytes. True when both arrived.
bool pullTwoExact(RemotePageStore& s, pools::HostPool& pool, const std::vector<PageKey>& keys,
                  std::uint64_t id0, std::uint64_t id1) {
    std::size_t n = 0;
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < deadline && (n = *s.get(keys, pool, iotaPages(10, 2))) < 2) {
    }
    EXPECT_EQ(n, 2u);
    EXPECT_EQ(takePage(pool, 10), patternOf(pool, id0));
    EXPECT_EQ(takePage(pool, 11), patternOf(pool, id1));
    return n == 2;
}

TEST(UcxTransport, EveryRankHearsEveryOtherRankAuthenticated) {
    auto t = makeTransport();
    ASSERT_TRUE(allRanks(t != nullptr));
    std::atomic<int> heard{0};
    std::atomic<int> wrong{0};
    ASSERT_TRUE(t->setHandler(5, [&](int src, std::span<const std::byte> p) {
                     if (p.size() != sizeof(int)) wrong++;
                     int v = 0;
                     std::memcpy(&v, p.data(), sizeof(v));
                     if (v != src * 1000 + worldRank()) wrong++;
                     heard++;
                     t->notifyWaiters();
                 }).isOk());
    MPI_Barrier(MPI_COMM_WORLD);
    for (int r = 0; r < worldSize(); ++r) {
        if (r == worldRank()) continue;
        const int v = worldRank() * 1000 + r;
        EXPECT_TRUE(t->send(r, 5, std::as_bytes(std::span<const int>(&v, 1))).isOk());
    }
    EXPECT_TRUE(t->waitUntil([&] { return heard.load() == worldSize() - 1; },
                             Clock::now() + std::chrono::seconds(10)));
    EXPECT_EQ(wrong.load(), 0);
    EXPECT_EQ(t->send(worldRank(), 5, {}).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(t->send(worldSize(), 5, {}).code(), StatusCode::kInvalidArgument);
    MPI_Barrier(MPI_COMM_WORLD);
    t->clearHandler(5);
    const auto s = t->stats();
    EXPECT_EQ(s.messages_rejected, 0u);
    EXPECT_EQ(s.messages_accepted, static_cast<std::uint64_t>(worldSize() - 1));
}

// Regression (issue 15): a read that timed out closed the endpoint to its peer while another
// thread was sending on it, and the sender crashed in ucp_am_send_nbx (this test aborted 3 runs of
// 3 at np3 before the fix, in an unbounded version). Here every rank times out up to 200 reads
// towards its neighbour as fast as it can (deadline now, no back-off) while two threads send
// control messages to the same neighbour. No rank may crash, no legitimate message may be rejected,
// and afterwards a read is served bit-exact.
TEST(UcxTransport, TimeoutsWhileOtherThreadsSendNeverCrash) {
    STRATA_SKIP_BELOW_RANKS(2);
    TransportOptions to;
    to.peer_backoff = milliseconds(0);
    auto t = makeTransport(to);
    ASSERT_TRUE(allRanks(t != nullptr));
    std::vector<std::byte> memory(64 * 1024);
    for (std::size_t i = 0; i < memory.size(); ++i) {
        memory[i] =
            static_cast<std::byte>((i * 131 + static_cast<std::size_t>(worldRank())) & 0xff);
    }
    auto region = t->exposeRegion(MpiComm::world(), memory, {});
    ASSERT_TRUE(allRanks(region.isOk())) << region.status().toString();
    std::atomic<std::uint64_t> heard{0};
    ASSERT_TRUE(t->setHandler(6, [&](int, std::span<const std::byte>) { heard++; }).isOk());
    MPI_Barrier(MPI_COMM_WORLD);  // every rank handles channel 6 before anyone sends
    const int peer = (worldRank() + 1) % worldSize();
    std::vector<std::byte> landing(memory.size());
    std::vector<comm::ucx::GetOp> ops;
    for (std::size_t off = 0; off < memory.size(); off += 4096) {
        ops.push_back({off, landing.data() + off, 4096});
    }
    const comm::ucx::PeerGets gets[] = {{peer, ops}};
    const auto until = Clock::now() + milliseconds(1500);
    std::atomic<std::uint64_t> sent{0};
    std::vector<std::thread> senders;
    for (int k = 0; k < 2; ++k) {
        senders.emplace_back([&] {
            const std::uint64_t v = 42;
            while (Clock::now() < until) {
                if (t->send(peer, 6, std::as_bytes(std::span(&v, 1))).isOk()) sent++;
                std::this_thread::yield();
            }
        });
    }
    // At most 200 timed-out reads: each leaves its 16 replies queued at the holder (a timeout
    // keeps the endpoint), and an unbounded loop queued gigabytes there on a loaded machine, so
    // that the final read below waited behind them.
    std::uint64_t timeouts = 0;
    for (int k = 0; k < 200 && Clock::now() < until; ++k) {
        const auto st = t->get(*region, gets, Clock::now());
        if (st[0].code() == StatusCode::kTimeout) timeouts++;
    }
    for (auto& th : senders) th.join();
    MPI_Barrier(MPI_COMM_WORLD);
    // The neighbour is healthy: a read with a real deadline is served exactly.
    bool served = false;
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    while (!served && Clock::now() < deadline) {
        std::fill(landing.begin(), landing.end(), std::byte{0});
        served = t->get(*region, gets, Clock::now() + std::chrono::seconds(5))[0].isOk();
    }
    EXPECT_TRUE(served);
    for (std::size_t i = 0; served && i < landing.size(); ++i) {
        ASSERT_EQ(landing[i],
                  static_cast<std::byte>((i * 131 + static_cast<std::size_t>(peer)) & 0xff))
            << "byte " << i;
    }
    MPI_Barrier(MPI_COMM_WORLD);
    t->clearHandler(6);
    const auto s = t->stats();
    std::printf("rank %d: %llu timeouts, %llu messages sent, %llu heard, %llu reconnects\n",
                worldRank(), static_cast<unsigned long long>(timeouts),
                static_cast<unsigned long long>(sent.load()),
                static_cast<unsigned long long>(heard.load()),
                static_cast<unsigned long long>(s.reconnects));
    EXPECT_GT(timeouts, 0u);
    EXPECT_GE(s.timeouts, timeouts);
    EXPECT_GT(sent.load(), 0u);
    EXPECT_EQ(s.messages_rejected, 0u);
}

class RoundTrip : public ::testing::TestWithParam<kernels::HostLayout> {};

TEST_P(RoundTrip, PagesOfEveryPeerArriveBitExact) {
    STRATA_SKIP_BELOW_RANKS(2);
    auto t = makeTransport();
    ASSERT_TRUE(allRanks(t != nullptr));
    auto backend = cpuBackend();
    // Different capacities per rank: layer_first offsets depend on the holder's capacity.
    const std::uint32_t pages = 24 + 4 * static_cast<std::uint32_t>(worldRank());
    auto pool = makePool(*backend, pages, GetParam());
    auto store = RemotePageStore::create(t, MpiComm::world(), pool, {});
    ASSERT_TRUE(allRanks(store.isOk())) << store.status().toString();
    auto& s = **store;
    EXPECT_TRUE(s.capabilities().zero_copy);

    constexpr std::uint32_t kPages = 10;
    const auto id = [](int rank, std::uint32_t i) { return std::uint64_t(rank) * 100 + i; };
    std::vector<PageKey> mine;
    for (std::uint32_t i = 0; i < kPages; ++i) {
        putPage(pool, i + 2, patternOf(pool, id(worldRank(), i)));
        mine.push_back(keyOf(id(worldRank(), i)));
    }
    ASSERT_EQ(*s.set(mine, pool, iotaPages(2, kPages)), kPages);
    MPI_Barrier(MPI_COMM_WORLD);
    // Directory updates are asynchronous: wait until the next rank's pages are all listed.
    const int from = (worldRank() + 1) % worldSize();
    std::vector<PageKey> theirs;
    for (std::uint32_t i = 0; i < kPages; ++i) theirs.push_back(keyOf(id(from, i)));
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    std::size_t listed = 0;
    while (Clock::now() < deadline && (listed = *s.exists(theirs)) < kPages) {
    }
    EXPECT_EQ(listed, kPages);
    const auto dst = iotaPages(pages - kPages, kPages);  // the top of this rank's pool
    ASSERT_EQ(*s.get(theirs, pool, dst), kPages);
    for (std::uint32_t i = 0; i < kPages; ++i) {
        EXPECT_EQ(takePage(pool, dst[i]), patternOf(pool, id(from, i))) << "page " << i;
    }
    // A key nobody published ends the run.
    std::vector<PageKey> with_gap = theirs;
    with_gap[3] = keyOf(999999);
    EXPECT_EQ(*s.exists(with_gap), 3u);
    EXPECT_EQ(*s.get(with_gap, pool, dst), 3u);
    // Retracted pages are no longer listed (once the owner has the update).
    MPI_Barrier(MPI_COMM_WORLD);
    ASSERT_TRUE(s.retract(mine).isOk());
    MPI_Barrier(MPI_COMM_WORLD);
    const auto deadline2 = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < deadline2 && *s.exists(std::span(theirs).first(1)) != 0) {
    }
    EXPECT_EQ(*s.exists(std::span(theirs).first(1)), 0u);

    const auto r = s.remoteStats();
    EXPECT_GE(r.pages_pulled, kPages + 3);
    EXPECT_EQ(r.checksum_failures, 0u);
    EXPECT_EQ(r.rejected_messages, 0u);
    EXPECT_EQ(s.stats().pages_read, r.pages_pulled);
    EXPECT_EQ(s.get(theirs, pool, iotaPages(0, kPages - 1)).status().code(),
              StatusCode::kInvalidArgument);
    MPI_Barrier(MPI_COMM_WORLD);
}

INSTANTIATE_TEST_SUITE_P(Layouts, RoundTrip,
                         ::testing::Values(kernels::HostLayout::kLayerFirst,
                                           kernels::HostLayout::kPageFirst,
                                           kernels::HostLayout::kPageFirstDirect));

TEST(RemoteStore, PoolsOfDifferentShapesAreRefusedOnEveryRank) {
    STRATA_SKIP_BELOW_RANKS(2);
    auto t = makeTransport();
    ASSERT_TRUE(allRanks(t != nullptr));
    auto backend = cpuBackend();
    auto pool =
        makePool(*backend, 8, kernels::HostLayout::kPageFirst, worldRank() == 1 ? 128 : 256);
    auto store = RemotePageStore::create(t, MpiComm::world(), pool, {});
    EXPECT_EQ(store.status().code(), StatusCode::kInvalidArgument);
    MPI_Barrier(MPI_COMM_WORLD);
}

// Rank 1 keeps overwriting its slots for a while (retract, rewrite row by row, publish) while every
// other rank pulls keys at random. Slot s alternates between keys s and s + kSlots, so stale
// directory entries and torn pulls really happen; whatever is served must be the key's exact bytes.
TEST(RemoteStore, ChurnNeverServesAWrongByte) {
    STRATA_SKIP_BELOW_RANKS(2);
    auto t = makeTransport();
    ASSERT_TRUE(allRanks(t != nullptr));
    auto backend = cpuBackend();
    constexpr std::uint32_t kSlots = 6, kKeys = 2 * kSlots;
    auto pool = makePool(*backend, 16, kernels::HostLayout::kLayerFirst);
    RemoteStoreOptions o;
    o.timeout = milliseconds(2000);
    auto store = RemotePageStore::create(t, MpiComm::world(), pool, o);
    ASSERT_TRUE(allRanks(store.isOk()));
    auto& s = **store;
    const std::uint64_t seed = std::random_device{}();
    if (worldRank() == 0) std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Request done;
    std::uint64_t served = 0, wrong = 0;
    if (worldRank() == 1) {
        const auto end = Clock::now() + milliseconds(1500);
        std::uint32_t i = 0;
        for (; Clock::now() < end; ++i) {
            const std::uint32_t slot = i % kSlots;
            if (i >= kSlots) {
                ASSERT_TRUE(s.retract(std::vector{keyOf((i - kSlots) % kKeys)}).isOk());
            }
            putPage(pool, slot, patternOf(pool, i % kKeys));
            ASSERT_TRUE(s.publish(std::vector{keyOf(i % kKeys)}, std::vector{slot}).isOk());
            std::this_thread::yield();
        }
        std::printf("[r1] churn: %u rewrites\n", i);
        MPI_Ibarrier(MPI_COMM_WORLD, &done);
        MPI_Wait(&done, MPI_STATUS_IGNORE);
    } else {
        MPI_Ibarrier(MPI_COMM_WORLD, &done);
        std::mt19937_64 rng(seed + static_cast<std::uint64_t>(worldRank()));
        int finished = 0;
        const std::uint32_t dst = 15;
        auto pullOne = [&](std::uint64_t id) {
            auto n = s.get(std::vector{keyOf(id)}, pool, std::vector{dst});
            ASSERT_TRUE(n.isOk());
            if (*n == 1) {
                ++served;
                if (takePage(pool, dst) != patternOf(pool, id)) ++wrong;
            }
        };
        while (!finished) {
            pullOne(rng() % kKeys);
            MPI_Test(&done, &finished, MPI_STATUS_IGNORE);
        }
        EXPECT_GT(served, 0u);
        EXPECT_EQ(wrong, 0u);
        const auto r = s.remoteStats();
        std::printf("[r%d] churn: %llu served, %llu checksum failures, %llu lookups\n", worldRank(),
                    static_cast<unsigned long long>(served),
                    static_cast<unsigned long long>(r.checksum_failures),
                    static_cast<unsigned long long>(r.lookups));
    }
    MPI_Barrier(MPI_COMM_WORLD);
}

char procState(pid_t pid) {
    std::ifstream f(fmt::format("/proc/{}/stat", pid));
    std::string line;
    std::getline(f, line);
    const auto close = line.rfind(')');
    return close == std::string::npos || close + 2 >= line.size() ? '?' : line[close + 2];
}

// Rank 0 stops rank 1 (the directory owner of the keys it wants): the calls cost a bounded timeout
// and miss; after SIGCONT the same pages are served, exactly.
TEST(RemoteStore, StoppedPeerCostsTimeoutsAndMissesThenRecovers) {
    STRATA_SKIP_BELOW_RANKS(2);
    // Rank 0 signals rank 1 by pid: both must be on one host (same pid namespace).
    char name[MPI_MAX_PROCESSOR_NAME] = {};
    int len = 0;
    MPI_Get_processor_name(name, &len);
    char name1[MPI_MAX_PROCESSOR_NAME] = {};
    if (worldRank() == 1) std::memcpy(name1, name, sizeof(name));
    MPI_Bcast(name1, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, 1, MPI_COMM_WORLD);
    int same = std::strcmp(name, name1) == 0 ? 1 : 0;
    MPI_Bcast(&same, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (!same) GTEST_SKIP() << "ranks 0 and 1 are on different hosts: cannot SIGSTOP by pid";
    TransportOptions to;
    // Generous times: CI machines are oversubscribed, and the back-off must outlast any stall
    // between the timed-out call and the next one.
    to.peer_backoff = milliseconds(4000);
    auto t = makeTransport(to);
    ASSERT_TRUE(allRanks(t != nullptr));
    auto backend = cpuBackend();
    auto pool = makePool(*backend, 16, kernels::HostLayout::kPageFirst);
    RemoteStoreOptions o;
    o.timeout = milliseconds(1000);
    auto store = RemotePageStore::create(t, MpiComm::world(), pool, o);
    ASSERT_TRUE(allRanks(store.isOk()));
    auto& s = **store;
    std::vector<PageKey> keys;
    std::vector<std::uint64_t> ids;
    for (std::uint64_t id = 5000; keys.size() < 4; ++id) {
        if (s.directoryOwner(keyOf(id)) == 1) {
            keys.push_back(keyOf(id));
            ids.push_back(id);
        }
    }
    if (worldRank() == 1) {
        for (std::uint32_t i = 0; i < keys.size(); ++i) putPage(pool, i, patternOf(pool, ids[i]));
        ASSERT_TRUE(s.publish(keys, iotaPages(0, 4)).isOk());
    }
    int pid = static_cast<int>(::getpid());
    std::vector<int> pids(static_cast<std::size_t>(worldSize()));
    MPI_Allgather(&pid, 1, MPI_INT, pids.data(), 1, MPI_INT, MPI_COMM_WORLD);
    MPI_Barrier(MPI_COMM_WORLD);
    if (worldRank() == 0) {
        const auto dst = iotaPages(8, 4);
        ASSERT_EQ(*s.get(keys, pool, dst), 4u);  // reachable: served
        ASSERT_EQ(::kill(pids[1], SIGSTOP), 0);
        const auto stop_deadline = Clock::now() + std::chrono::seconds(10);
        while (procState(pids[1]) != 'T' && Clock::now() < stop_deadline) {
            std::this_thread::yield();
        }
        ASSERT_EQ(procState(pids[1]), 'T');
        const auto before = s.remoteStats();
        const auto t0 = Clock::now();
        EXPECT_EQ(*s.get(keys, pool, dst), 0u);
        const auto t1 = Clock::now();
        EXPECT_EQ(*s.exists(keys), 0u);  // backing off: fails fast
        const auto t2 = Clock::now();
        const auto after = s.remoteStats();
        EXPECT_GE(after.timeouts, before.timeouts + 1);
        EXPECT_LT(t1 - t0, milliseconds(4000));  // bounded by the 1 s timeout, not a hang
        EXPECT_LT(t2 - t1, milliseconds(500));   // backing off: no second 1 s wait
        std::printf(
            "stopped peer: miss after %lld ms, then %lld ms while backing off\n",
            static_cast<long long>(std::chrono::duration_cast<milliseconds>(t1 - t0).count()),
            static_cast<long long>(std::chrono::duration_cast<milliseconds>(t2 - t1).count()));
        ASSERT_EQ(::kill(pids[1], SIGCONT), 0);
        std::memset(pool.data(), 0, pool.sizeBytes());
        std::size_t n = 0;
        const auto deadline = Clock::now() + std::chrono::seconds(15);
        while (Clock::now() < deadline && (n = *s.get(keys, pool, dst)) < keys.size()) {
            std::this_thread::sleep_for(milliseconds(20));
        }
        EXPECT_EQ(n, keys.size());
        for (std::uint32_t i = 0; i < keys.size(); ++i) {
            EXPECT_EQ(takePage(pool, dst[i]), patternOf(pool, ids[i])) << "page " << i;
        }
    }
    MPI_Barrier(MPI_COMM_WORLD);
}

// A UCX process outside the job sends forged and malformed messages to rank 0: each is dropped
// and counted, and rank 0 keeps serving the job.
TEST(RemoteStore, ForeignProcessMessagesAreRejectedAndTheJobKeepsServing) {
    STRATA_SKIP_BELOW_RANKS(2);
    auto t = makeTransport();
    ASSERT_TRUE(allRanks(t != nullptr));
    auto backend = cpuBackend();
    auto pool = makePool(*backend, 16, kernels::HostLayout::kPageFirst);
    auto store = RemotePageStore::create(t, MpiComm::world(), pool, {});
    ASSERT_TRUE(allRanks(store.isOk()));
    auto& s = **store;
    const std::vector<PageKey> keys{keyOf(7001), keyOf(7002)};
    if (worldRank() == 1) {
        putPage(pool, 0, patternOf(pool, 7001));
        putPage(pool, 1, patternOf(pool, 7002));
        ASSERT_TRUE(s.publish(keys, iotaPages(0, 2)).isOk());
    }
    MPI_Barrier(MPI_COMM_WORLD);
    bool ok = true;
    if (worldRank() == 0) {
        runForeignProcess(*t, {});
        ok = t->waitUntil([&] { return t->stats().messages_rejected >= 3; },
                          Clock::now() + std::chrono::seconds(10));
        const auto st = t->stats();
        EXPECT_EQ(st.messages_rejected, 3u);
        EXPECT_EQ(st.rejected_malformed, 1u);
        EXPECT_EQ(st.rejected_forged, 2u);
        EXPECT_EQ(s.remoteStats().rejected_messages, 3u);
        // Still serving: pulls from rank 1 work and are exact.
        ok &= pullTwoExact(s, pool, keys, 7001, 7002);
    }
    EXPECT_TRUE(allRanks(ok));
    MPI_Barrier(MPI_COMM_WORLD);
}

// A UCX process outside the job tries to overwrite rank 0's exposed pool with UCX RMA (a put,
// with a key of its own: the job publishes none) and to read it back. The transport's context has
// no RMA feature, so UCX drops both: not one byte of the pool changes, rank 0 keeps running, and
// rank 1 still pulls rank 0's pages bit-exact. (With RMA enabled, UCX 1.13 over tcp and shared
// memory writes the bytes, whatever protection the key was registered with.)
TEST(RemoteStore, ForeignPutsNeverWriteIntoAPool) {
    STRATA_SKIP_BELOW_RANKS(2);
    auto t = makeTransport();
    ASSERT_TRUE(allRanks(t != nullptr));
    auto backend = cpuBackend();
    auto pool = makePool(*backend, 16, kernels::HostLayout::kPageFirst);
    auto store = RemotePageStore::create(t, MpiComm::world(), pool, {});
    ASSERT_TRUE(allRanks(store.isOk()));
    auto& s = **store;
    const std::vector<PageKey> keys{keyOf(8001), keyOf(8002)};
    bool ok = true;
    if (worldRank() == 0) {
        putPage(pool, 0, patternOf(pool, 8001));
        putPage(pool, 1, patternOf(pool, 8002));
        ASSERT_TRUE(s.publish(keys, iotaPages(0, 2)).isOk());
        const std::vector<std::byte> before(pool.data(), pool.data() + pool.sizeBytes());
        runForeignProcess(*t, {"put", std::to_string(reinterpret_cast<std::uintptr_t>(pool.data())),
                               std::to_string(2 * pool.geometry().bytesPerPage())});
        // Let the worker handle whatever arrived, then compare every byte of the pool.
        t->waitUntil([] { return false; }, Clock::now() + milliseconds(500));
        std::size_t changed = 0;
        for (std::size_t i = 0; i < before.size(); ++i) changed += before[i] != pool.data()[i];
        EXPECT_EQ(changed, 0u) << "a foreign put changed bytes of the pool";
        ok = changed == 0;
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (worldRank() == 1) ok = pullTwoExact(s, pool, keys, 8001, 8002);
    EXPECT_TRUE(allRanks(ok));
    MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace
}  // namespace strata::io::testing
