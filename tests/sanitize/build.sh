#!/usr/bin/env bash
# Configures (with the given cmake arguments) and builds the AddressSanitizer + UBSan tree that the
# sanitize ctests run from: only the named targets, so no benchmark is built. Incremental: a
# second run rebuilds what changed. Usage: build.sh SOURCE_DIR BUILD_DIR [cmake args...] -- TARGET...
set -euo pipefail
src="$1"; dir="$2"; shift 2
args=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do args+=("$1"); shift; done
[ $# -gt 0 ] && shift
start=$SECONDS
cmake -S "$src" -B "$dir" -G Ninja "${args[@]}" > "$dir.configure.log" 2>&1 || {
    cat "$dir.configure.log"; exit 1; }
cmake --build "$dir" -j "$(nproc 2>/dev/null || echo 2)" --target "$@"
echo "sanitize build: ${#@} targets in $dir, $((SECONDS - start)) s"
