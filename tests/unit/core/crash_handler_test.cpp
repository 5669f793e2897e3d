// Issue 15: a crash inside malloc hung the process instead of ending it. UCX's SIGSEGV handler
// calls backtrace_symbols, which calls malloc, which waits for the arena lock that the crashed
// code (or another thread) holds. These death tests crash a child process while another thread of
// it holds the malloc lock, and check that the process dies of the signal.
#include "strata/core/crash_handler.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <semaphore.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <thread>

namespace strata::core {
namespace {

// A hang is a failure, not a stuck test: SIGALRM's default action ends the child after this long.
constexpr unsigned kHangDeadlineS = 60;

sem_t g_lock_held;

// AddressSanitizer replaces glibc's allocator (its malloc_stats() takes no lock and prints
// nothing), so the fixture below cannot hold an allocator lock there: the tests that need it run
// in the ordinary build only.
#if defined(__SANITIZE_ADDRESS__)
#define STRATA_SKIP_WITHOUT_GLIBC_MALLOC() \
    GTEST_SKIP() << "AddressSanitizer replaces glibc malloc: no arena lock to hold"
#else
#define STRATA_SKIP_WITHOUT_GLIBC_MALLOC() (void)0
#endif

// malloc_stats() locks the main arena and, holding it, prints to `stderr`; this thread points
// stderr at a stream whose write posts g_lock_held and then never returns, so the main arena stays
// locked for good. (File descriptor 2, where the crash handler writes, is left alone.)
void holdMallocLockInAnotherThread() {
    sem_init(&g_lock_held, 0, 0);
    cookie_io_functions_t io{};
    io.write = [](void*, const char*, size_t) -> ssize_t {
        sem_post(&g_lock_held);
        for (;;) ::pause();
    };
    FILE* blocking = ::fopencookie(nullptr, "w", io);
    ASSERT_NE(blocking, nullptr);
    std::setvbuf(blocking, nullptr, _IONBF, 0);
    std::thread([blocking] {
        stderr = blocking;
        ::malloc_stats();
    }).detach();
    while (sem_wait(&g_lock_held) != 0) {
    }
}

// Stands in for UCX's handler: it allocates (4 KiB: above the thread cache, so from the arena).
void mallocCallingHandler(int) {
    void* volatile p = std::malloc(4096);  // volatile: the pair cannot be optimised away
    std::free(p);
}

void installMallocCallingHandler() {
    struct sigaction sa {};
    sa.sa_handler = &mallocCallingHandler;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGSEGV, &sa, nullptr);
}

void segfault() {
    volatile int* volatile p = nullptr;  // both volatile: the store cannot be optimised away
    *p = 1;
}

// The fixture really blocks an allocating handler: without Strata's handler the crash hangs (and
// the deadline ends it with SIGALRM). Proves that the tests below exercise the deadlock.
TEST(CrashHandlerDeathTest, AllocatingHandlerHangsWhileAnotherThreadHoldsMallocLock) {
    STRATA_SKIP_WITHOUT_GLIBC_MALLOC();
    EXPECT_EXIT(
        {
            ::alarm(1);
            holdMallocLockInAnotherThread();
            installMallocCallingHandler();
            segfault();
        },
        ::testing::KilledBySignal(SIGALRM), "");
}

TEST(CrashHandlerDeathTest, SegfaultEndsProcessWhileAnotherThreadHoldsMallocLock) {
    STRATA_SKIP_WITHOUT_GLIBC_MALLOC();
    EXPECT_EXIT(
        {
            ::alarm(kHangDeadlineS);
            installMallocCallingHandler();  // installed before, as UCX's and Open MPI's are
            if (!installCrashHandler("crash-test r0").isOk()) std::_Exit(10);
            holdMallocLockInAnotherThread();
            segfault();
        },
        ::testing::KilledBySignal(SIGSEGV),
        "crash-test r0: fatal signal 11 \\(SIGSEGV\\) at address 0x0, pid [0-9]+; backtrace:");
}

// Loads libucs, which installs its error-signal handlers when it loads (UCX_HANDLE_ERRORS=bt, the
// default, whatever the environment says). False when UCX is not installed.
bool loadUcx() {
    ::setenv("UCX_HANDLE_ERRORS", "bt", 1);
    return ::dlopen("libucs.so.0", RTLD_NOW | RTLD_GLOBAL) != nullptr;
}

// The bug as seen: with UCX's handler, a crash while the malloc lock is held hangs.
TEST(CrashHandlerDeathTest, UcxHandlerHangsWhileAnotherThreadHoldsMallocLock) {
    STRATA_SKIP_WITHOUT_GLIBC_MALLOC();
    if (!loadUcx()) GTEST_SKIP() << "libucs.so.0 not installed";
    EXPECT_EXIT(
        {
            ::alarm(2);
            holdMallocLockInAnotherThread();
            segfault();
        },
        ::testing::KilledBySignal(SIGALRM), "");
}

// The same with Strata's handler installed after UCX's: the process dies of the signal.
TEST(CrashHandlerDeathTest, SegfaultEndsProcessWithUcxLoaded) {
    STRATA_SKIP_WITHOUT_GLIBC_MALLOC();
    if (!loadUcx()) GTEST_SKIP() << "libucs.so.0 not installed";
    EXPECT_EXIT(
        {
            ::alarm(kHangDeadlineS);
            struct sigaction before {};
            ::sigaction(SIGSEGV, nullptr, &before);
            if (before.sa_handler == SIG_DFL) std::_Exit(11);  // UCX installed nothing
            if (!installCrashHandler("crash-test ucx").isOk()) std::_Exit(10);
            holdMallocLockInAnotherThread();
            segfault();
        },
        ::testing::KilledBySignal(SIGSEGV), "crash-test ucx: fatal signal 11 \\(SIGSEGV\\)");
}

TEST(CrashHandlerDeathTest, AbortReportsAndEndsWithSigabrt) {
    EXPECT_EXIT(
        {
            ::alarm(kHangDeadlineS);
            if (!installCrashHandler("crash-test abort").isOk()) std::_Exit(10);
            std::abort();
        },
        ::testing::KilledBySignal(SIGABRT),
        "crash-test abort: fatal signal 6 \\(SIGABRT\\), pid [0-9]+; backtrace:");
}

}  // namespace
}  // namespace strata::core
