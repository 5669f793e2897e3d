#include "strata/app/temp_storage.h"

#include <fmt/format.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

namespace strata::app {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kPrefix = "strata-";

std::mutex g_mutex;
std::string g_owned;  // guarded by g_mutex; empty when this process owns no directory
bool g_watching = false;
std::atomic<int> g_stop_signal{0};     // the first terminating signal, once one came
std::atomic<double> g_stop_bound{-1};  // armCleanStop()'s bound in seconds; < 0: not armed

sigset_t terminationSignals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    return set;
}

void removeQuietly(const std::string& path) {
    std::error_code ec;
    fs::remove_all(path, ec);
}

// Removes the owned directory and ends the process as `sig` would have without the watcher.
[[noreturn]] void endBySignal(int sig) {
    std::string path;
    {
        std::lock_guard<std::mutex> lock(g_mutex);
        path.swap(g_owned);
    }
    if (!path.empty()) {
        removeQuietly(path);
        std::fprintf(stderr, "strata-run: %s: removed temporary storage directory %s\n",
                     strsignal(sig), path.c_str());
    }
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    ::sigaction(sig, &dfl, nullptr);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, sig);
    pthread_sigmask(SIG_UNBLOCK, &only, nullptr);
    ::raise(sig);  // delivered to this thread, whose mask now lets it through: the process ends
    std::_Exit(128 + sig);
}

// Waits for a terminating signal. Armed (armCleanStop), the first one asks the run for a clean
// stop; a second one, or no exit within the bound, ends the process. Not armed, the first one
// ends it at once.
void watch() {
    const sigset_t set = terminationSignals();
    int sig = 0;
    while (sigwait(&set, &sig) != 0) {
    }
    const double bound = g_stop_bound.load();
    if (bound < 0) endBySignal(sig);
    g_stop_signal.store(sig);
    std::fprintf(stderr,
                 "strata-run: %s: stopping at the next agreed round (a second signal, or no exit "
                 "within %g s, ends the process at once)\n",
                 strsignal(sig), bound);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(bound);
    for (;;) {
        const double rest =
            std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
        if (rest <= 0) break;
        timespec left{};
        left.tv_sec = static_cast<time_t>(rest);
        left.tv_nsec = static_cast<long>((rest - static_cast<double>(left.tv_sec)) * 1e9);
        const int second = sigtimedwait(&set, nullptr, &left);
        if (second > 0) endBySignal(second);
        if (errno == EAGAIN) break;  // the bound passed; EINTR: wait for the rest
    }
    std::fprintf(stderr, "strata-run: no clean stop within %g s: ending the process\n", bound);
    endBySignal(sig);
}

// Parses "strata-<host>-<pid>-<suffix>": the host may contain '-', the pid and the mkdtemp suffix
// do not.
bool parseName(std::string_view name, std::string_view* host, pid_t* pid) {
    if (name.substr(0, kPrefix.size()) != kPrefix) return false;
    name.remove_prefix(kPrefix.size());
    const std::size_t suffix = name.rfind('-');
    if (suffix == std::string_view::npos || suffix == 0) return false;
    const std::size_t pid_at = name.rfind('-', suffix - 1);
    if (pid_at == std::string_view::npos || pid_at == 0) return false;
    const std::string_view digits = name.substr(pid_at + 1, suffix - pid_at - 1);
    long value = 0;
    const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (ec != std::errc() || ptr != digits.data() + digits.size() || value <= 0) return false;
    *host = name.substr(0, pid_at);
    *pid = static_cast<pid_t>(value);
    return true;
}

}  // namespace

void startTerminationWatcher() {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (g_watching) return;
    const sigset_t set = terminationSignals();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    // Detached: it lives until the process ends, blocked in sigwait.
    std::thread(watch).detach();
    g_watching = true;
}

void armCleanStop(double bound_s) { g_stop_bound.store(bound_s < 0 ? 0 : bound_s); }

int stopSignal() noexcept { return g_stop_signal.load(std::memory_order_relaxed); }

std::string tempStorageHostName() {
    char name[256] = {};
    if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
    std::string host(name);
    for (char& c : host) {
        if (c == '/') c = '_';
    }
    return host;
}

Result<std::string> makeTempStorageDir(const std::string& parent) {
    std::string templ = (fs::path(parent) /
                         fmt::format("{}{}-{}-XXXXXX", kPrefix, tempStorageHostName(), ::getpid()))
                            .string();
    if (::mkdtemp(templ.data()) == nullptr) {
        return STRATA_ERROR(StatusCode::kIoError,
                            "cannot create a temporary storage directory in {}: {}", parent,
                            std::strerror(errno));
    }
    return templ;
}

void ownTempStorageDir(const std::string& path) {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_owned = path;
}

void releaseTempStorageDir() noexcept {
    std::string path;
    {
        std::lock_guard<std::mutex> lock(g_mutex);
        path.swap(g_owned);
    }
    if (!path.empty()) removeQuietly(path);
}

std::size_t removeStaleTempStorageDirs(const std::string& parent) {
    const std::string host = tempStorageHostName();
    std::vector<fs::path> stale;
    std::error_code ec;
    for (fs::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        std::string_view dir_host;
        pid_t pid = 0;
        if (!parseName(name, &dir_host, &pid) || dir_host != host) continue;
        std::error_code type_ec;
        if (it->is_symlink(type_ec) || !it->is_directory(type_ec)) continue;
        // ESRCH: no such process. Success or EPERM (another user's live process): alive.
        if (::kill(pid, 0) == 0 || errno != ESRCH) continue;
        stale.push_back(it->path());
    }
    std::size_t removed = 0;
    for (const fs::path& p : stale) {
        std::error_code rm_ec;
        fs::remove_all(p, rm_ec);
        if (!rm_ec) ++removed;
    }
    return removed;
}

}  // namespace strata::app
