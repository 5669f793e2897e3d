#!/usr/bin/env bash
# strata-run with --storage-dir on a read-only file system (a tmpfs mounted ro: root ignores
# permission bits, a read-only mount it cannot): the run must stop before serving anything, with
# exit 1 and an error naming the directory and "Read-only file system". Needs root (mount).
# Usage: readonly_storage_run.sh CHECK_REPORT_PY STRATA_RUN
set -euo pipefail
check="$1" run="$2"
dir="$(mktemp -d /tmp/strata-rofs-XXXXXX)"
cleanup() { umount "$dir" 2>/dev/null || true; rmdir "$dir" 2>/dev/null || true; }
trap cleanup EXIT
if ! mount -t tmpfs -o size=1m,ro tmpfs "$dir"; then
    echo "cannot mount a read-only tmpfs on $dir (this test needs root)" >&2
    exit 1
fi
# Both a directory to create under the mount and the mount itself.
python3 "$check" --expect-rc 1 --expect-fail "$dir/strata.*Read-only file system" -- \
    "$run" --storage-dir "$dir/strata" --requests 5 --device-tokens 4096 --host-tokens 8192
python3 "$check" --expect-rc 1 --expect-fail "$dir.*Read-only file system" -- \
    "$run" --storage-dir "$dir" --requests 5 --device-tokens 4096 --host-tokens 8192
echo "ok: a read-only storage directory is a clear error naming it"
