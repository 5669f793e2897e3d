// The temporary storage directory of a strata-run job without --storage-dir: named after the host
// and process that made it, removed on every way out of the process (return, error, SIGTERM,
// SIGINT, SIGHUP, a clean stop's bound), and, after a SIGKILL, by the next run on that host. Owns
// one process-wide path and a watcher thread, which also turns the first terminating signal into a
// request for a clean stop (armCleanStop, stopSignal). Thread-safety: the functions below may be
// called from any thread.
#pragma once

#include <cstddef>
#include <string>

#include "strata/core/status.h"

namespace strata::app {

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (so in every thread created after it:
// call it first in main, before MPI starts threads) and starts a thread that waits for them; on
// one it removes the owned directory (ownTempStorageDir), then ends the process with that signal's
// default action, unless armCleanStop() was called. Idempotent.
void startTerminationWatcher();

// From now on the first terminating signal only records itself (stopSignal()): the run is expected
// to notice it at its next agreed round, stop, write its report and return. A second signal, or a
// process still alive `bound_s` seconds after the first, ends the process as if not armed
// (directory removed, the signal's default action). Call it where the run starts polling
// stopSignal(); before, a signal ends the process at once.
void armCleanStop(double bound_s);

// The first terminating signal received while armed (SIGTERM, SIGINT or SIGHUP), 0 before one.
int stopSignal() noexcept;

// Makes "<parent>/strata-<host>-<pid>-XXXXXX" (mkdtemp: mode 0700, a fresh name). Fails with
// kIoError naming the parent and errno's text.
Result<std::string> makeTempStorageDir(const std::string& parent);

// From now on this process removes `path` when it ends: at releaseTempStorageDir(), on a
// terminating signal seen by the watcher, or before core::fatal() ends it. Replaces an earlier
// path.
void ownTempStorageDir(const std::string& path);

// Removes the owned directory now (if any) and forgets it. Idempotent; errors are ignored (a
// directory another rank removed first is fine).
void releaseTempStorageDir() noexcept;

// Removes the directories "<parent>/strata-<host>-<pid>-*" of this host whose process <pid> is gone
// (left by runs killed with SIGKILL, or before this cleanup existed). A live or unknown process's
// directory, another host's, and any other name are left alone. Returns how many were removed;
// entries that cannot be read or removed are skipped.
std::size_t removeStaleTempStorageDirs(const std::string& parent);

// This host's name as used in the directory names (gethostname; "localhost" when it fails).
std::string tempStorageHostName();

}  // namespace strata::app
