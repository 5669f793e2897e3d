// Bench `soak`: a long 4-rank TP2 x CP2 strata-run (jittered completions, the HDF5 storage tier
// with a capacity, every reused byte verified, rank digests compared every round) for
// --duration-s seconds, watched from outside: every --sample-s seconds it reads each rank's
// resident memory (/proc/PID/status VmRSS) and open descriptors (/proc/PID/fd), and the counters
// the ranks write to their metrics files (requests, rounds, pages verified and mismatched, storage
// pages written). It prints one line per sample, then the verdict:
//   - RSS flat: the samples after the warm-up (--warmup-s from the first sample with a request
//     served: setting up, mostly zeroing the pools, is not part of it) split in two halves; for
//     every rank, the largest RSS of the second half is within --rss-tolerance-pct of the largest
//     of the first half;
//   - descriptors flat: likewise, the second half's largest count is at most the first half's
//     plus --fd-slack (bounded caches of open segments fluctuate alike in both halves; a leak
//     grows), and at most --fd-slack of them are files of the storage directory already deleted
//     (an evicted segment held open keeps its blocks: a bounded cache of such handles is flat
//     and still a leak of disk space);
//   - 0 pages mismatched (metrics and final report) and 0 divergences (the run ends with exit 0
//     and its report says 0 divergences over the rounds it checked).
// strata-run is the one beside strata-bench (or --strata-run); the job runs under --mpiexec.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "registry.h"

extern char** environ;

namespace strata::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int kRanks = 4;

struct RankSample {
    double rss_mib = 0;
    int fds = 0;
    int deleted = 0;  // of those, descriptors of unlinked files under the storage directory
};

struct Sample {
    double t = 0;  // seconds since the job started
    std::vector<RankSample> ranks;
    double requests = 0, rounds = 0, verified = 0, mismatched = 0, storage_written = 0;
    double storage_mib = 0;  // bytes of files under the storage directory
};

std::string readFile(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// "VmRSS:   123456 kB" of /proc/PID/status, in MiB; -1 when the process is gone.
double rssMib(int pid) {
    std::ifstream in(fmt::format("/proc/{}/status", pid));
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
    }
    return -1;
}

// Open descriptors of `pid` (-1 when it is gone); `deleted`: those of files under `under` that
// were unlinked (an evicted segment still open keeps its blocks allocated).
int fdCount(int pid, const std::string& under, int* deleted) {
    const std::string fd_dir = fmt::format("/proc/{}/fd", pid);
    DIR* d = ::opendir(fd_dir.c_str());
    if (d == nullptr) return -1;
    int n = 0;
    *deleted = 0;
    while (dirent* e = ::readdir(d)) {
        if (e->d_name[0] == '.') continue;
        ++n;
        std::error_code ec;
        const std::string target = fs::read_symlink(fd_dir + "/" + e->d_name, ec).string();
        if (!ec && target.rfind(under, 0) == 0 && target.ends_with(" (deleted)")) ++*deleted;
    }
    ::closedir(d);
    return n;
}

// The strata-run ranks of the job started as `launcher`: its child processes named strata-run,
// by OMPI_COMM_WORLD_RANK (Open MPI on one host forks the ranks from mpirun itself).
std::map<int, int> findRanks(int launcher) {
    std::map<int, int> ranks;
    DIR* d = ::opendir("/proc");
    if (d == nullptr) return ranks;
    while (dirent* e = ::readdir(d)) {
        const int pid = std::atoi(e->d_name);
        if (pid <= 0) continue;
        const std::string stat = readFile(fmt::format("/proc/{}/stat", pid));
        const auto close = stat.rfind(')');
        if (close == std::string::npos || stat.find("(strata-run)") == std::string::npos) continue;
        std::istringstream rest(stat.substr(close + 2));
        char state = 0;
        int ppid = 0;
        rest >> state >> ppid;
        if (ppid != launcher) continue;
        const std::string env = readFile(fmt::format("/proc/{}/environ", pid));
        const std::string key = std::string("OMPI_COMM_WORLD_RANK=");
        for (std::size_t p = 0; p < env.size(); p = env.find('\0', p) + 1) {
            if (env.compare(p, key.size(), key) == 0) {
                ranks[std::atoi(env.c_str() + p + key.size())] = pid;
                break;
            }
            if (env.find('\0', p) == std::string::npos) break;
        }
    }
    ::closedir(d);
    return ranks;
}

// Sum of the unlabelled-by-tier samples of `name` in a Prometheus text file (0 when absent).
double metricValue(const std::string& text, const std::string& name) {
    double sum = 0;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(name, 0) != 0) continue;
        const char next = line.size() > name.size() ? line[name.size()] : '\0';
        if (next != '{' && next != ' ') continue;
        sum += std::stod(line.substr(line.rfind(' ') + 1));
    }
    return sum;
}

double treeMib(const fs::path& dir) {
    std::error_code ec;
    double bytes = 0;
    for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        std::error_code ec2;
        if (it->is_regular_file(ec2)) bytes += static_cast<double>(it->file_size(ec2));
    }
    return bytes / (1024.0 * 1024.0);
}

std::string selfDir() {
    std::error_code ec;
    return fs::read_symlink("/proc/self/exe", ec).parent_path().string();
}

class SoakBench : public Bench {
public:
    void addOptions(CLI::App& app) override {
        app.add_option("--duration-s", duration_s_, "seconds the job runs")->capture_default_str();
        app.add_option("--warmup-s", warmup_s_,
                       "seconds of warm-up before the first sample the verdict compares with")
            ->capture_default_str();
        app.add_option("--sample-s", sample_s_, "seconds between samples")->capture_default_str();
        app.add_option(
               "--rss-tolerance-pct", rss_tolerance_pct_,
               "RSS flat: second half's max within this % of the first half's (after warm-up)")
            ->capture_default_str();
        app.add_option("--fd-slack", fd_slack_,
                       "descriptors flat: second half's max at most the first half's + this")
            ->capture_default_str();
        app.add_option("--jitter-us", jitter_us_, "strata-run --jitter-us")->capture_default_str();
        app.add_option("--requests", requests_, "requests of one pass (strata-run --requests)")
            ->capture_default_str();
        app.add_option("--device-tokens", device_tokens_, "strata-run --device-tokens")
            ->capture_default_str();
        app.add_option("--host-tokens", host_tokens_, "strata-run --host-tokens")
            ->capture_default_str();
        app.add_option("--storage-tokens", storage_tokens_,
                       "strata-run --storage-tokens (bounds the storage directory)")
            ->capture_default_str();
        app.add_option("--dir", dir_,
                       "working directory (storage, metrics, report, log); default "
                       "a fresh one under TMPDIR, removed at the end");
        app.add_option("--strata-run", strata_run_, "strata-run binary (default: beside this one)");
        app.add_option("--mpiexec", mpiexec_, "MPI launcher")->capture_default_str();
        app.add_option("args", extra_, "more strata-run options (after --)");
    }

    Result<BenchReport> run(BenchContext& ctx) override {
        if (duration_s_ <= 0 || sample_s_ <= 0 || warmup_s_ < 0 || warmup_s_ >= duration_s_) {
            return STRATA_ERROR(StatusCode::kInvalidArgument,
                                "need --duration-s > --warmup-s >= 0 and --sample-s > 0");
        }
        if (strata_run_.empty()) strata_run_ = selfDir() + "/strata-run";
        bool remove_dir = false;
        if (dir_.empty()) {
            const char* tmp = std::getenv("TMPDIR");
            std::string templ = std::string(tmp != nullptr ? tmp : "/tmp") + "/strata-soak-XXXXXX";
            if (::mkdtemp(templ.data()) == nullptr) {
                return STRATA_ERROR(StatusCode::kIoError, "mkdtemp {}: {}", templ,
                                    std::strerror(errno));
            }
            dir_ = templ;
            remove_dir = true;
        }
        fs::create_directories(dir_);
        const fs::path dir(dir_);
        const std::string report_path = (dir / "report.json").string();
        const std::string log_path = (dir / "strata-run.log").string();
        std::vector<std::string> args = {mpiexec_,
                                         "-n",
                                         std::to_string(kRanks),
                                         "--oversubscribe",
                                         "--bind-to",
                                         "none",
                                         strata_run_,
                                         "--tp",
                                         "2",
                                         "--cp",
                                         "2",
                                         "--check-consistency",
                                         "--jitter-us",
                                         std::to_string(jitter_us_),
                                         "--requests",
                                         std::to_string(requests_),
                                         "--duration-s",
                                         fmt::format("{}", duration_s_),
                                         "--storage-dir",
                                         (dir / "storage").string(),
                                         "--device-tokens",
                                         std::to_string(device_tokens_),
                                         "--host-tokens",
                                         std::to_string(host_tokens_),
                                         "--storage-tokens",
                                         std::to_string(storage_tokens_),
                                         "--report",
                                         report_path,
                                         "--metrics-file",
                                         (dir / "metrics-{rank}.prom").string(),
                                         "--metrics-interval-s",
                                         fmt::format("{}", std::min(2.0, sample_s_ / 2)),
                                         "--progress-s",
                                         "60"};
        args.insert(args.end(), extra_.begin(), extra_.end());
        std::string command;
        for (const auto& a : args) command += (command.empty() ? "" : " ") + a;
        std::printf("soak: %s\n  (output in %s)\n", command.c_str(), log_path.c_str());
        std::fflush(stdout);

        if (::geteuid() == 0) {  // Open MPI refuses root without these
            ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
            ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
        }
        ::setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                         0644);
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        pid_t launcher = 0;
        const int rc =
            ::posix_spawnp(&launcher, args[0].c_str(), &fa, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        if (rc != 0) {
            return STRATA_ERROR(StatusCode::kIoError, "cannot start {}: {}", args[0],
                                std::strerror(rc));
        }

        const auto t0 = Clock::now();
        std::map<int, int> ranks;
        std::vector<Sample> samples;
        std::printf("%7s %9s %8s %10s %5s %8s  %-31s  %-19s\n", "t_s", "requests", "rounds",
                    "verified", "mism", "stor_MiB", "RSS MiB r0 r1 r2 r3",
                    "fds r0 r1 r2 r3  unlinked");
        int wstatus = 0;
        bool exited = false;
        auto next = t0 + std::chrono::duration<double>(std::min(sample_s_, 5.0));
        while (!exited) {
            // Wait for the next sample time, noticing the job's end at once.
            while (Clock::now() < next) {
                if (::waitpid(launcher, &wstatus, WNOHANG) == launcher) {
                    exited = true;
                    break;
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            }
            if (exited) break;
            next += std::chrono::duration<double>(sample_s_);
            if (static_cast<int>(ranks.size()) < kRanks) ranks = findRanks(launcher);
            if (static_cast<int>(ranks.size()) < kRanks) continue;  // still starting
            Sample s;
            s.t = std::chrono::duration<double>(Clock::now() - t0).count();
            bool gone = false;
            for (const auto& [rank, pid] : ranks) {
                RankSample r;
                r.rss_mib = rssMib(pid);
                r.fds = fdCount(pid, (dir / "storage").string(), &r.deleted);
                gone = gone || r.rss_mib < 0 || r.fds < 0;
                s.ranks.push_back(r);
            }
            if (gone) continue;  // the job is ending
            for (int rank = 0; rank < kRanks; ++rank) {
                const std::string m =
                    readFile((dir / fmt::format("metrics-{}.prom", rank)).string());
                if (rank == 0) {
                    s.requests = metricValue(m, "strata_requests_total");
                    s.rounds = metricValue(m, "strata_rounds_total");
                }
                s.verified += metricValue(m, "strata_run_verified_pages_total");
                s.mismatched += metricValue(m, "strata_run_mismatched_pages_total");
                s.storage_written += metricValue(m, "strata_storage_written_pages_total");
            }
            s.storage_mib = treeMib(dir / "storage");
            std::string rss, fds;
            int deleted = 0;
            for (const auto& r : s.ranks) {
                rss += fmt::format(" {:7.1f}", r.rss_mib);
                fds += fmt::format(" {:4d}", r.fds);
                deleted += r.deleted;
            }
            fds += fmt::format("  {:3d}", deleted);
            std::printf("%7.0f %9.0f %8.0f %10.0f %5.0f %8.1f  %-31s  %-19s\n", s.t, s.requests,
                        s.rounds, s.verified, s.mismatched, s.storage_mib, rss.c_str(),
                        fds.c_str());
            std::fflush(stdout);
            samples.push_back(std::move(s));
        }
        const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
        const int exit_code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);

        // The final report (summed over ranks by strata-run).
        nlohmann::json report;
        {
            std::ifstream in(report_path);
            if (in) report = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
        }
        const bool have_report = report.is_object();
        auto num = [&](std::initializer_list<const char*> path) -> double {
            const nlohmann::json* j = &report;
            for (const char* k : path) {
                if (!j->is_object() || !j->contains(k)) return -1;
                j = &(*j)[k];
            }
            return j->is_number() ? j->get<double>() : -1;
        };
        const double report_mismatched = num({"pages_mismatched"});
        const double report_verified = num({"pages_verified"});
        const double divergences = num({"consistency", "divergences"});
        const double rounds_checked = num({"consistency", "rounds_checked"});
        const double requests = num({"requests"});

        // The verdict.
        // The warm-up counts from the first sample with a request served (setting up, mostly
        // zeroing the pools, takes minutes on a loaded machine and is not part of the soak).
        double serving_since = -1;
        for (const Sample& s : samples) {
            if (s.requests > 0) {
                serving_since = s.t;
                break;
            }
        }
        std::vector<Sample> post;
        for (const Sample& s : samples) {
            if (serving_since >= 0 && s.t >= serving_since + warmup_s_) post.push_back(s);
        }
        std::vector<std::string> failures;
        double worst_rss_pct = 0;
        int worst_fd_growth = 0;
        if (post.size() < 4) {
            failures.push_back(
                fmt::format("only {} samples after the warm-up (need 4)", post.size()));
        } else {
            // Flat = no growth from the first half of the steady state to the second: a bounded
            // cache (of open segments, of HDF5 chunks) fluctuates within both halves alike.
            const std::size_t half = post.size() / 2;
            for (int rank = 0; rank < kRanks; ++rank) {
                double first_rss = 0, max_rss = 0;
                int first_fds = 0, max_fds = 0, max_unlinked = 0;
                for (std::size_t i = 0; i < post.size(); ++i) {
                    const RankSample& r = post[i].ranks[rank];
                    if (i < half) {
                        first_rss = std::max(first_rss, r.rss_mib);
                        first_fds = std::max(first_fds, r.fds);
                    } else {
                        max_rss = std::max(max_rss, r.rss_mib);
                        max_fds = std::max(max_fds, r.fds);
                        max_unlinked = std::max(max_unlinked, r.deleted);
                    }
                }
                const double pct = 100.0 * (max_rss - first_rss) / first_rss;
                worst_rss_pct = std::max(worst_rss_pct, pct);
                worst_fd_growth = std::max(worst_fd_growth, max_fds - first_fds);
                if (pct > rss_tolerance_pct_) {
                    failures.push_back(
                        fmt::format("rank {} RSS grew {:.1f}% ({:.1f} -> {:.1f} MiB)", rank, pct,
                                    first_rss, max_rss));
                }
                if (max_unlinked > fd_slack_) {
                    failures.push_back(fmt::format(
                        "rank {} held {} deleted storage files open (evicted segments keep "
                        "their blocks)",
                        rank, max_unlinked));
                }
                if (max_fds > first_fds + fd_slack_) {
                    failures.push_back(
                        fmt::format("rank {} descriptors grew {} -> {}", rank, first_fds, max_fds));
                }
            }
        }
        if (exit_code != 0) {
            failures.push_back(fmt::format("strata-run exited {} (see {})", exit_code, log_path));
        }
        if (!have_report) failures.push_back("no report at " + report_path);
        const double last_mismatched = samples.empty() ? 0 : samples.back().mismatched;
        if (report_mismatched != 0 || last_mismatched != 0) {
            failures.push_back(
                fmt::format("{} pages mismatched", std::max(report_mismatched, last_mismatched)));
        }
        if (divergences != 0) failures.push_back(fmt::format("{} divergences", divergences));

        BenchReport out("soak", "cpu");
        auto series = nlohmann::ordered_json::array();
        for (const Sample& s : samples) {
            nlohmann::ordered_json j{{"t_s", s.t},
                                     {"requests", s.requests},
                                     {"rounds", s.rounds},
                                     {"pages_verified", s.verified},
                                     {"pages_mismatched", s.mismatched},
                                     {"storage_pages_written", s.storage_written},
                                     {"storage_mib", s.storage_mib}};
            auto rss = nlohmann::ordered_json::array(), fds = nlohmann::ordered_json::array(),
                 unlinked = nlohmann::ordered_json::array();
            for (const auto& r : s.ranks) {
                rss.push_back(r.rss_mib);
                fds.push_back(r.fds);
                unlinked.push_back(r.deleted);
            }
            j["rss_mib"] = rss;
            j["fds"] = fds;
            j["unlinked_open"] = unlinked;
            series.push_back(j);
        }
        const std::string case_name = "np4_tp2_cp2_storage_jitter";
        auto row = [&](const char* metric, const char* unit, double value) {
            BenchRow r;
            r.case_name = case_name;
            r.metric = metric;
            r.unit = unit;
            r.strata = value;
            return r;
        };
        BenchRow rss_row = row("rss_growth", "%", worst_rss_pct);
        rss_row.extra = {{"rule", fmt::format("per rank: max RSS of the second half of the "
                                              "post-warm-up samples <= max of the first half + {}%",
                                              rss_tolerance_pct_)},
                         {"duration_s", duration_s_},
                         {"elapsed_s", elapsed},
                         {"warmup_s", warmup_s_},
                         {"serving_since_s", serving_since},
                         {"post_warmup_samples", post.size()},
                         {"sample_s", sample_s_},
                         {"jitter_us", jitter_us_},
                         {"requests_per_pass", requests_},
                         {"device_tokens", device_tokens_},
                         {"host_tokens", host_tokens_},
                         {"storage_tokens", storage_tokens_},
                         {"command", command},
                         {"exit_code", exit_code},
                         {"requests", requests},
                         {"pages_verified", report_verified},
                         {"rounds_checked", rounds_checked},
                         {"samples", series}};
        out.addRow(std::move(rss_row));
        BenchRow fd_row = row("fd_growth", "fds", worst_fd_growth);
        fd_row.extra = {{"rule", fmt::format("per rank: max descriptors of the second half of "
                                             "the post-warm-up samples <= max of the first half "
                                             "+ {}",
                                             fd_slack_)}};
        out.addRow(std::move(fd_row));
        out.addRow(row("mismatch", "pages", std::max(report_mismatched, last_mismatched)));
        out.addRow(row("diverge", "count", divergences));
        out.addNote(fmt::format(
            "{:.0f} s ({:.0f} s setting up), {:.0f} requests, {:.0f} pages verified, {:.0f} rounds "
            "checked; rule: after {:.0f} s of warm-up from the first request, each rank's RSS max "
            "over the second half of the {} samples within {}% of the first half's max, "
            "descriptors within +{}",
            elapsed, serving_since, requests, report_verified, rounds_checked, warmup_s_,
            post.size(), rss_tolerance_pct_, fd_slack_));
        out.addNote(failures.empty()
                        ? "verdict: PASS (RSS and descriptors flat, 0 mismatched, "
                          "0 divergences)"
                        : "verdict: FAIL: " + fmt::format("{}", fmt::join(failures, "; ")));
        if (remove_dir && failures.empty()) {
            std::error_code ec;
            fs::remove_all(dir, ec);
        } else {
            out.addNote("kept " + dir_ + " (storage, metrics, report, log)");
        }
        (void)ctx;
        return out;
    }

private:
    double duration_s_ = 600;
    double warmup_s_ = 120;
    double sample_s_ = 10;
    double rss_tolerance_pct_ = 10;
    int fd_slack_ = 4;
    std::uint32_t jitter_us_ = 200;
    std::uint32_t requests_ = 200;
    std::uint64_t device_tokens_ = 16384;
    std::uint64_t host_tokens_ = 65536;
    std::uint64_t storage_tokens_ = 262144;
    std::string dir_;
    std::string strata_run_;
    std::string mpiexec_ = "mpiexec";
    std::vector<std::string> extra_;
};

}  // namespace

std::unique_ptr<Bench> makeSoakBench() { return std::make_unique<SoakBench>(); }

}  // namespace strata::bench
