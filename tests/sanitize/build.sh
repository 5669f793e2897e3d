#!/usr/bin/env bash
# Configures (with the given cmake arguments) and builds a second tree that tests run from: the
# AddressSanitizer + UBSan tree (tests/sanitize), the ThreadSanitizer tree (tests/tsan) and the
# clang fuzz tree (tests/fuzz); only the named targets, so no benchmark is built. Incremental: a
# second run rebuilds what changed. Usage: build.sh SOURCE_DIR BUILD_DIR [cmake args...] -- TARGET...
set -euo pipefail
src="$1"; dir="$2"; shift 2
args=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do args+=("$1"); shift; done
[ $# -gt 0 ] && shift
start=$SECONDS
# A tree configured before with another compiler: CMake would delete its cache and configure again
# without the -D arguments (a default tree); start it afresh instead.
for a in "${args[@]}"; do
    case "$a" in
        -DCMAKE_CXX_COMPILER=*)
            if [ -f "$dir/CMakeCache.txt" ] &&
                ! grep -qx "CMAKE_CXX_COMPILER:[A-Z]*=${a#-DCMAKE_CXX_COMPILER=}" "$dir/CMakeCache.txt"; then
                echo "build.sh: $dir was configured with another compiler: configuring afresh"
                rm -rf "$dir/CMakeCache.txt" "$dir/CMakeFiles"
            fi ;;
    esac
done
cmake -S "$src" -B "$dir" -G Ninja "${args[@]}" > "$dir.configure.log" 2>&1 || {
    cat "$dir.configure.log"; exit 1; }
cmake --build "$dir" -j "$(nproc 2>/dev/null || echo 2)" --target "$@"
echo "build.sh: ${#@} targets in $dir, $((SECONDS - start)) s"
