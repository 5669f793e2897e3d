// A fatal-signal handler that ends the process, never hangs it: on SIGSEGV, SIGBUS, SIGFPE, SIGILL
// or SIGABRT it writes one line and a raw backtrace to stderr with write(2) and
// backtrace_symbols_fd (no malloc, no stdio: safe while another thread holds the allocator's
// lock), then takes the default action, so that the process dies of the signal and the launcher
// (mpirun, srun) ends the job. Owns a static alternate signal stack. Thread-safety: install from
// one thread at a time (signal dispositions are process-wide); the handler runs on any thread.
#pragma once

#include "strata/core/status.h"

namespace strata::core {

// Installs the handler for the five signals, replacing the handlers installed before it: UCX's
// (installed when libucs loads, with UCX_HANDLE_ERRORS=bt, the default; it calls malloc and so
// deadlocks when the crash happened inside malloc) and Open MPI's (installed by MPI_Init). Call it
// after MPI and UCX are initialised. It goes through libc's own sigaction, so that an interposed
// sigaction (UCX's libucs_signal) cannot refuse it, and checks that the handler is in place.
// `tag` (up to 63 bytes are kept) starts the line the handler writes ("strata-run r3"). The
// calling thread gets an alternate signal stack (unless it has one), so that a stack overflow on
// it is reported too. Warms up backtrace(), whose first call may load libgcc_s and allocate.
// Idempotent. Fails with kInternal naming the signal when one could not be installed.
[[nodiscard]] Status installCrashHandler(const char* tag);

}  // namespace strata::core
