// The temporary storage directory of a strata-run job without --storage-dir: named after the host
// and process that made it, removed on every way out of the process (return, error, SIGTERM,
// SIGINT), and, after a SIGKILL, by the next run on that host. Owns one process-wide path and a
// watcher thread. Thread-safety: the functions below may be called from any thread.
#pragma once

#include <cstddef>
#include <string>

#include "strata/core/status.h"

namespace strata::app {

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (so in every thread created after it:
// call it first in main, before MPI starts threads) and starts a thread that waits for them; on
// one it removes the owned directory (ownTempStorageDir), then ends the process with that signal's
// default action. Idempotent.
void startTerminationWatcher();

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
