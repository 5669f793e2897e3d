#include "strata/core/crash_handler.h"

#include <dlfcn.h>
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>

namespace strata::core {
namespace {

using SigactionFn = int (*)(int, const struct sigaction*, struct sigaction*);

constexpr int kFatalSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
constexpr int kMaxFrames = 64;
// If writing the backtrace blocks (dladdr takes the dynamic loader's lock), SIGALRM's default
// action ends the process after this long.
constexpr unsigned kReportDeadlineS = 10;

// Everything the handler reads is set before it is installed and never freed.
char g_tag[64] = "strata";
SigactionFn g_sigaction = nullptr;
std::atomic<bool> g_reporting{false};
alignas(16) char g_alt_stack[1 << 16];

// libc's sigaction. UCX can interpose sigaction() (libucs_signal, or libucs built with its
// override) and then silently keeps its own handler for the signals it claims; libc's symbol
// installs ours whatever is loaded.
SigactionFn libcSigaction() noexcept {
    if (void* libc = ::dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD)) {
        void* f = ::dlsym(libc, "sigaction");
        ::dlclose(libc);  // NOLOAD took a reference to the loaded libc; libc stays
        if (f != nullptr) return reinterpret_cast<SigactionFn>(f);
    }
    return &::sigaction;
}

// ---- async-signal-safe output: write(2) only ---------------------------------------------------

void writeAll(const char* p, std::size_t n) noexcept {
    while (n > 0) {
        const ssize_t w = ::write(STDERR_FILENO, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return;
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
}

void writeText(const char* s) noexcept { writeAll(s, std::strlen(s)); }

void writeNumber(std::uint64_t v, unsigned base) noexcept {
    char buf[24];
    std::size_t i = sizeof buf;
    do {
        buf[--i] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v != 0 && i > 0);
    writeAll(buf + i, sizeof buf - i);
}

const char* signalName(int sig) noexcept {
    switch (sig) {
        case SIGSEGV:
            return "SIGSEGV";
        case SIGBUS:
            return "SIGBUS";
        case SIGFPE:
            return "SIGFPE";
        case SIGILL:
            return "SIGILL";
        case SIGABRT:
            return "SIGABRT";
        default:
            return "signal";
    }
}

void setDefault(int sig) noexcept {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    g_sigaction(sig, &dfl, nullptr);
}

void onFatalSignal(int sig, siginfo_t* info, void* /*context*/) {
    const int saved_errno = errno;
    // SA_RESETHAND restored the default already; set it again in case something re-installed a
    // handler meanwhile. The raise below (pending until this handler returns) or the faulting
    // instruction, executed again, then ends the process.
    setDefault(sig);
    // One report per process: a second crashing thread (or a crash in here) just dies.
    if (!g_reporting.exchange(true)) {
        setDefault(SIGALRM);
        sigset_t alarm_only;
        sigemptyset(&alarm_only);
        sigaddset(&alarm_only, SIGALRM);
        pthread_sigmask(SIG_UNBLOCK, &alarm_only, nullptr);
        ::alarm(kReportDeadlineS);

        writeText("\n");
        writeText(g_tag);
        writeText(": fatal signal ");
        writeNumber(static_cast<std::uint64_t>(sig), 10);
        writeText(" (");
        writeText(signalName(sig));
        writeText(")");
        if (info != nullptr && info->si_code > 0 && sig != SIGABRT) {  // raised by the kernel
            writeText(" at address 0x");
            writeNumber(reinterpret_cast<std::uintptr_t>(info->si_addr), 16);
        }
        writeText(", pid ");
        writeNumber(static_cast<std::uint64_t>(::getpid()), 10);
        writeText("; backtrace:\n");
        void* frames[kMaxFrames];
        const int n = ::backtrace(frames, kMaxFrames);
        ::backtrace_symbols_fd(frames, n, STDERR_FILENO);
    }
    errno = saved_errno;
    ::raise(sig);
}

void useAltStack() noexcept {
    stack_t current{};
    if (::sigaltstack(nullptr, &current) == 0 && (current.ss_flags & SS_DISABLE) == 0) return;
    stack_t ss{};
    ss.ss_sp = g_alt_stack;
    ss.ss_size = sizeof g_alt_stack;
    ss.ss_flags = 0;
    ::sigaltstack(&ss, nullptr);  // without one a stack overflow just dies unreported
}

}  // namespace

Status installCrashHandler(const char* tag) {
    if (g_sigaction == nullptr) g_sigaction = libcSigaction();
    if (tag != nullptr) {
        std::strncpy(g_tag, tag, sizeof g_tag - 1);
        g_tag[sizeof g_tag - 1] = '\0';
    }
    void* warm[2];
    (void)::backtrace(warm, 2);
    useAltStack();
    for (const int sig : kFatalSignals) {
        struct sigaction sa {};
        sa.sa_sigaction = &onFatalSignal;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
        sigemptyset(&sa.sa_mask);
        if (g_sigaction(sig, &sa, nullptr) != 0) {
            return STRATA_ERROR(StatusCode::kInternal, "cannot install the handler of {}: {}",
                                signalName(sig), std::strerror(errno));
        }
        struct sigaction now {};
        if (g_sigaction(sig, nullptr, &now) != 0 || (now.sa_flags & SA_SIGINFO) == 0 ||
            now.sa_sigaction != &onFatalSignal) {
            return STRATA_ERROR(StatusCode::kInternal, "the handler of {} did not stay installed",
                                signalName(sig));
        }
    }
    return Status::ok();
}

}  // namespace strata::core
