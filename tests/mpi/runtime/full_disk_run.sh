#!/usr/bin/env bash
# strata-run with its storage tier on a 3 MiB tmpfs: the store fills up, writes are dropped with a
# log line, and the run still serves every request with no wrong byte. Needs root (mount).
set -euo pipefail
check="$1"; shift
dir="$(mktemp -d /tmp/strata-fulldisk-XXXXXX)"
cleanup() { umount "$dir" 2>/dev/null || true; rmdir "$dir" 2>/dev/null || true; }
trap cleanup EXIT
if ! mount -t tmpfs -o size=3m tmpfs "$dir"; then
    echo "cannot mount a tmpfs on $dir (this test needs root)" >&2
    exit 1
fi
out="$(mktemp)"
"$@" --storage-dir "$dir" --requests 60 --device-tokens 8192 --host-tokens 16384 --report "$dir.json" > "$out" 2>&1 || {
    cat "$out"; rm -f "$out" "$dir.json"; exit 1; }
python3 - "$dir.json" "$out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
log = open(sys.argv[2]).read()
assert r["pages_mismatched"] == 0, r["pages_mismatched"]
assert r["requests"] == 60, r["requests"]
assert "storage full" in log or "No space left" in log, "no log line about the full disk:\n" + log[-2000:]
print("ok: full storage tier logged, run served", r["requests"], "requests,",
      r["storage"]["pages_written"], "pages stored")
PY
rm -f "$out" "$dir.json"
