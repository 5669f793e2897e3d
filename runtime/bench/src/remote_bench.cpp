// Bench `remote` (run under mpirun with 2 ranks, on one host or across two): page pull bandwidth
// of the remote tier for 64 KiB and 1 MiB pages. Rank 1 publishes the pages of its host pool;
// rank 0 pulls them in batches of 128 with RemotePageStore::get (directory lookup, read requests
// that rank 1's worker answers into rank 0's host pool slots, checksum verification of every
// page). Baselines from the
// same run and transport (UCX_TLS and UCX_NET_DEVICES are inherited):
//   ucx_perftest   - `ucx_perftest -t ucp_get` of the same page size between the two ranks' hosts
//                    (server started by rank 1, client by rank 0; the "overall" bandwidth);
//   shared_memory  - only when both ranks share a host: rank 0 copies the same pages out of a
//                    POSIX shared memory segment that rank 1 filled (the same-host floor).
#include <fcntl.h>
#include <mpi.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "registry.h"
#include "strata/comm/mpi_comm.h"
#include "strata/comm/mpi_context.h"
#include "strata/comm/ucx/transport.h"
#include "strata/core/hash.h"
#include "strata/io/remote_page_store.h"
#include "strata/kernels/backend.h"
#include "strata/pools/host_pool.h"

namespace strata::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::uint32_t kPageTokens = 16;
constexpr std::size_t kBatch = 128;

double secondsSince(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

core::PageKey benchKey(std::size_t page_bytes, std::size_t i) {
    return core::hash128("remote-bench-" + std::to_string(page_bytes) + "-" + std::to_string(i));
}

void fillPage(std::byte* page, std::size_t bytes, std::uint64_t seed) {
    std::uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (std::size_t i = 0; i + 8 <= bytes; i += 8) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        std::memcpy(page + i, &s, 8);
    }
}

Status mpiCheck(int rc, const char* what) {
    if (rc == MPI_SUCCESS) return Status::ok();
    return STRATA_ERROR(StatusCode::kIoError, "{} failed (MPI error {})", what, rc);
}

// Runs `argv` to completion and returns its standard output; kIoError when it cannot start or
// exits non-zero.
Result<std::string> runCapture(const std::vector<std::string>& argv) {
    std::string cmd;
    for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
    FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
    if (p == nullptr) {
        return STRATA_ERROR(StatusCode::kIoError, "cannot run '{}': {}", cmd, std::strerror(errno));
    }
    std::string out;
    char buf[4096];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    const int rc = ::pclose(p);
    if (rc != 0) {
        return STRATA_ERROR(StatusCode::kIoError, "'{}' exited with status {}: {}", cmd, rc,
                            out.substr(out.size() > 2000 ? out.size() - 2000 : 0));
    }
    return out;
}

// The "overall" bandwidth (MB/s) of ucx_perftest's "Final:" line.
Result<double> perftestMbps(const std::string& out) {
    const std::size_t at = out.rfind("Final:");
    if (at == std::string::npos) {
        return STRATA_ERROR(StatusCode::kIoError, "ucx_perftest printed no 'Final:' line: {}",
                            out.substr(out.size() > 1000 ? out.size() - 1000 : 0));
    }
    std::istringstream line(out.substr(at + 6, out.find('\n', at) - at - 6));
    std::vector<double> v;
    for (double x; line >> x;) v.push_back(x);
    if (v.size() < 6) {
        return STRATA_ERROR(StatusCode::kIoError, "cannot parse ucx_perftest line '{}'",
                            line.str());
    }
    return v[5];
}

class RemoteBench final : public Bench {
public:
    void addOptions(CLI::App& app) override {
        app.add_option("--total-mib", total_mib_, "MiB pulled per page size and repeat")
            ->check(CLI::Range(16, 1 << 16));
        app.add_option("--repeats", repeats_, "repeats per size (median reported)")
            ->check(CLI::Range(1, 50));
        app.add_option("--perftest", perftest_, "the ucx_perftest program (ucx-utils)");
        app.add_option("--port", port_, "TCP port of the ucx_perftest server")
            ->check(CLI::Range(1024, 65535));
    }

    Result<BenchReport> run(BenchContext& ctx) override {
        STRATA_ASSIGN_OR_RETURN(comm::MpiContext mpi, comm::MpiContext::create());
        ctx.reporter = mpi.worldRank() == 0;
        if (mpi.worldSize() != 2) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "strata-bench remote needs exactly 2 ranks (mpirun -np 2), got {}",
                                mpi.worldSize());
        }
        rank_ = mpi.worldRank();
        char name[MPI_MAX_PROCESSOR_NAME] = {};
        char peer[MPI_MAX_PROCESSOR_NAME] = {};
        int len = 0;
        MPI_Get_processor_name(name, &len);
        STRATA_RETURN_IF_ERROR(
            mpiCheck(MPI_Sendrecv(name, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, 1 - rank_, 7, peer,
                                  MPI_MAX_PROCESSOR_NAME, MPI_CHAR, 1 - rank_, 7, MPI_COMM_WORLD,
                                  MPI_STATUS_IGNORE),
                     "exchanging host names"));
        server_host_ = rank_ == 0 ? peer : name;
        same_host_ = std::strcmp(name, peer) == 0;
        STRATA_ASSIGN_OR_RETURN(transport_,
                                comm::ucx::UcxTransport::create(comm::MpiComm::world()));
        STRATA_ASSIGN_OR_RETURN(backend_, kernels::Backend::create(kernels::BackendKind::kCpu, {}));
        BenchReport report("remote", "cpu");
        for (std::size_t page_bytes : {std::size_t{64} << 10, std::size_t{1} << 20}) {
            STRATA_ASSIGN_OR_RETURN(BenchRow row, runSize(page_bytes));
            report.addRow(std::move(row));
        }
        report.addNote(fmt::format(
            "goal: strata >= 0.9x ucx_perftest (ucp_get); ranks on {} ({} and {}); UCX_TLS={}",
            same_host_ ? "one host" : "two hosts", name, peer,
            std::getenv("UCX_TLS") ? std::getenv("UCX_TLS") : "(default)"));
        return report;
    }

private:
    Result<BenchRow> runSize(std::size_t page_bytes) {
        const std::size_t pages = (static_cast<std::size_t>(total_mib_) << 20) / page_bytes;
        pools::PoolSpec spec;
        spec.name = "kv";
        spec.kind = pools::PoolKind::kMla;
        spec.num_layers = 1;
        spec.num_buffers = 1;
        spec.row_bytes = page_bytes / kPageTokens;
        STRATA_ASSIGN_OR_RETURN(
            pools::HostPool pool,
            pools::HostPool::create(*backend_, spec, pages * kPageTokens, kPageTokens,
                                    kernels::HostLayout::kPageFirst));
        STRATA_ASSIGN_OR_RETURN(
            auto store, io::RemotePageStore::create(transport_, comm::MpiComm::world(), pool));
        std::vector<core::PageKey> keys(pages);
        std::vector<std::uint32_t> slots(pages);
        for (std::size_t i = 0; i < pages; ++i) {
            keys[i] = benchKey(page_bytes, i);
            slots[i] = static_cast<std::uint32_t>(i);
        }
        if (rank_ == 1) {
            for (std::size_t i = 0; i < pages; ++i) {
                fillPage(pool.pageBlob(static_cast<std::uint32_t>(i)).data(), page_bytes, i);
            }
            STRATA_RETURN_IF_ERROR(store->publish(keys, slots));
        }
        STRATA_RETURN_IF_ERROR(mpiCheck(MPI_Barrier(MPI_COMM_WORLD), "barrier"));
        std::vector<double> strata_gbps;
        std::uint64_t verified = 0;
        Status st;
        if (rank_ == 0) {
            // Directory updates are asynchronous: wait until every key is visible.
            const auto deadline = Clock::now() + std::chrono::seconds(30);
            std::size_t seen = 0;
            while (Clock::now() < deadline) {
                std::size_t n = 0;
                for (std::size_t b = 0; b < pages && n == b; b += kBatch) {
                    const std::size_t count = std::min(kBatch, pages - b);
                    auto r = store->exists(std::span(keys).subspan(b, count));
                    if (!r.isOk()) return r.status();
                    n = b + *r;
                }
                seen = n;
                if (seen == pages) break;
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            }
            if (seen != pages) {
                st = STRATA_ERROR(StatusCode::kUnavailable,
                                  "only {} of {} published pages visible after 30 s", seen, pages);
            }
            for (int rep = 0; st.isOk() && rep < repeats_; ++rep) {
                std::memset(pool.data(), 0, pool.sizeBytes());
                const auto t0 = Clock::now();
                for (std::size_t b = 0; b < pages; b += kBatch) {
                    const std::size_t count = std::min(kBatch, pages - b);
                    auto r = store->get(std::span(keys).subspan(b, count), pool,
                                        std::span(slots).subspan(b, count));
                    if (!r.isOk()) {
                        st = r.status();
                        break;
                    }
                    if (*r != count) {
                        st = STRATA_ERROR(StatusCode::kDataLoss,
                                          "pulled {} of {} pages of batch {} ({} B pages)", *r,
                                          count, b / kBatch, page_bytes);
                        break;
                    }
                }
                if (!st.isOk()) break;
                strata_gbps.push_back(static_cast<double>(pages * page_bytes) / secondsSince(t0) /
                                      1e9);
                std::vector<std::byte> want(page_bytes);
                for (std::size_t i = 0; i < pages; ++i) {
                    fillPage(want.data(), page_bytes, i);
                    if (std::memcmp(want.data(),
                                    pool.pageBlob(static_cast<std::uint32_t>(i)).data(),
                                    page_bytes) != 0) {
                        st = STRATA_ERROR(StatusCode::kDataLoss, "page {} pulled wrong", i);
                        break;
                    }
                    ++verified;
                }
            }
        }
        // Every rank learns the outcome before the store (and its registration) goes away.
        int ok = st.isOk() ? 1 : 0;
        STRATA_RETURN_IF_ERROR(mpiCheck(MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD),
                                        "broadcasting the pull outcome"));
        if (!ok) {
            return st.isOk() ? STRATA_ERROR(StatusCode::kDataLoss, "rank 0 failed its pulls") : st;
        }
        const io::RemoteStoreStats rs = store->remoteStats();
        STRATA_ASSIGN_OR_RETURN(double perftest_mbps, perftest(page_bytes, pages));
        std::optional<double> shm_gbps;
        if (same_host_) {
            STRATA_ASSIGN_OR_RETURN(shm_gbps, sharedMemory(page_bytes, pages, pool));
        }
        BenchRow row;
        row.case_name = fmt::format("page_{}", page_bytes >= (1u << 20) ? "1MiB" : "64KiB");
        row.metric = "pull_gbps";
        row.unit = "GB/s";
        row.higher_is_better = true;
        if (rank_ == 0) {
            std::vector<double> sorted = strata_gbps;
            std::sort(sorted.begin(), sorted.end());
            row.strata = sorted[sorted.size() / 2];
            // ucx_perftest's MB is 2^20 bytes.
            row.baselines.push_back({"ucx_perftest", perftest_mbps * (1 << 20) / 1e9});
            if (shm_gbps) row.baselines.push_back({"shared_memory", *shm_gbps});
            row.extra["page_bytes"] = page_bytes;
            row.extra["pages"] = pages;
            row.extra["batch_pages"] = kBatch;
            row.extra["repeats"] = repeats_;
            row.extra["strata_gbps_each"] = strata_gbps;
            row.extra["pages_verified"] = verified;
            row.extra["checksum_failures"] = rs.checksum_failures;
            row.extra["timeouts"] = rs.timeouts;
            row.extra["ucx_perftest_overall_mb_per_s"] = perftest_mbps;
            row.extra["includes"] =
                "strata: directory lookups, gets into host pool slots, checksum of every page";
        }
        STRATA_RETURN_IF_ERROR(mpiCheck(MPI_Barrier(MPI_COMM_WORLD), "barrier"));
        return row;
    }

    // ucx_perftest ucp_get of page_bytes messages: server on rank 1, client on rank 0. The
    // result (MB/s, 2^20 bytes) is broadcast from rank 0.
    Result<double> perftest(std::size_t page_bytes, std::size_t pages) {
        pid_t server = -1;
        if (rank_ == 1) {
            server = ::fork();
            if (server == 0) {
                const std::string port = std::to_string(port_);
                ::execlp(perftest_.c_str(), perftest_.c_str(), "-p", port.c_str(),
                         static_cast<char*>(nullptr));
                _exit(127);
            }
            if (server < 0) {
                return STRATA_ERROR(StatusCode::kIoError, "fork for ucx_perftest: {}",
                                    std::strerror(errno));
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(500));  // server listening
        }
        STRATA_RETURN_IF_ERROR(mpiCheck(MPI_Barrier(MPI_COMM_WORLD), "barrier"));
        double mbps = 0;
        Status st;
        if (rank_ == 0) {
            const std::size_t iters = std::max<std::size_t>(pages * repeats_, 200);
            auto out =
                runCapture({perftest_, server_host_, "-p", std::to_string(port_), "-t", "ucp_get",
                            "-s", std::to_string(page_bytes), "-n", std::to_string(iters)});
            if (out.isOk()) {
                auto v = perftestMbps(*out);
                if (v.isOk()) mbps = *v;
                st = v.status();
            } else {
                st = out.status();
            }
        }
        if (rank_ == 1) {
            int wstatus = 0;
            const auto deadline = Clock::now() + std::chrono::seconds(60);
            // The server exits after serving one client; do not wait forever for a failed one.
            while (::waitpid(server, &wstatus, WNOHANG) == 0) {
                if (Clock::now() > deadline) {
                    ::kill(server, SIGKILL);
                    ::waitpid(server, &wstatus, 0);
                    break;
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
        }
        int ok = st.isOk() ? 1 : 0;
        double shared[2] = {mbps, static_cast<double>(ok)};
        STRATA_RETURN_IF_ERROR(
            mpiCheck(MPI_Bcast(shared, 2, MPI_DOUBLE, 0, MPI_COMM_WORLD), "broadcast"));
        if (shared[1] == 0) {
            return st.isOk() ? STRATA_ERROR(StatusCode::kIoError, "ucx_perftest failed on rank 0")
                             : st;
        }
        ++port_;  // each server serves one test; a fresh port avoids TIME_WAIT clashes
        return shared[0];
    }

    // Rank 1 writes the pages into a POSIX shared memory segment; rank 0 copies them into its pool.
    Result<double> sharedMemory(std::size_t page_bytes, std::size_t pages,
                                const pools::HostPool& pool) {
        const std::size_t bytes = page_bytes * pages;
        const std::string name = fmt::format("/strata-bench-remote-{}", ::getppid());
        void* map = MAP_FAILED;
        if (rank_ == 1) {
            const int fd = ::shm_open(name.c_str(), O_CREAT | O_RDWR | O_TRUNC, 0600);
            if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
                return STRATA_ERROR(StatusCode::kIoError, "shm_open '{}': {}", name,
                                    std::strerror(errno));
            }
            map = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            ::close(fd);
            if (map == MAP_FAILED) {
                return STRATA_ERROR(StatusCode::kIoError, "mmap '{}': {}", name,
                                    std::strerror(errno));
            }
            for (std::size_t i = 0; i < pages; ++i) {
                fillPage(static_cast<std::byte*>(map) + i * page_bytes, page_bytes, i);
            }
        }
        STRATA_RETURN_IF_ERROR(mpiCheck(MPI_Barrier(MPI_COMM_WORLD), "barrier"));
        double gbps = 0;
        if (rank_ == 0) {
            const int fd = ::shm_open(name.c_str(), O_RDONLY, 0);
            if (fd >= 0) map = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
            if (fd >= 0) ::close(fd);
            if (map != MAP_FAILED) {
                std::vector<double> each;
                for (int rep = 0; rep < repeats_; ++rep) {
                    const auto t0 = Clock::now();
                    for (std::size_t i = 0; i < pages; ++i) {
                        std::memcpy(pool.pageBlob(static_cast<std::uint32_t>(i)).data(),
                                    static_cast<const std::byte*>(map) + i * page_bytes,
                                    page_bytes);
                    }
                    each.push_back(static_cast<double>(bytes) / secondsSince(t0) / 1e9);
                }
                std::sort(each.begin(), each.end());
                gbps = each[each.size() / 2];
            }
        }
        STRATA_RETURN_IF_ERROR(mpiCheck(MPI_Barrier(MPI_COMM_WORLD), "barrier"));
        if (map != MAP_FAILED) ::munmap(map, bytes);
        if (rank_ == 1) ::shm_unlink(name.c_str());
        if (rank_ == 0 && gbps == 0) {
            return STRATA_ERROR(StatusCode::kIoError, "cannot map shared memory '{}'", name);
        }
        return gbps;
    }

    int total_mib_ = 256;
    int repeats_ = 3;
    std::string perftest_ = "ucx_perftest";
    int port_ = 13437;
    int rank_ = 0;
    bool same_host_ = false;
    std::string server_host_;
    std::shared_ptr<comm::ucx::UcxTransport> transport_;
    std::unique_ptr<kernels::Backend> backend_;
};

}  // namespace

std::unique_ptr<Bench> makeRemoteBench() { return std::make_unique<RemoteBench>(); }

}  // namespace strata::bench
