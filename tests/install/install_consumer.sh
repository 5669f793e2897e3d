#!/usr/bin/env bash
# The installed tree as an engine's project sees it: `cmake --install` into a fresh prefix, which is
# then moved elsewhere (the tree is relocatable); the files the package promises; libstrata's
# soname and exported symbols (only Strata's public API); each public header compiles alone; and a
# small engine (consumer/) built against it twice, through find_package(Strata) and through
# pkg-config, runs a Job and a Cache over its own pool; and the same engine in C (main_c.c, C11,
# through pkg-config) over the C API, whose functions libstrata exports; and the Python package,
# imported from the moved tree. Usage: install_consumer.sh BUILD SOURCE WORK
set -euo pipefail
build=$1 source=$2 work=$3
rm -rf "$work"
mkdir -p "$work"
fail() { echo "install_consumer: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$work/installed" > "$work/install.log"
mv "$work/installed" "$work/prefix"
p=$work/prefix

for f in include/strata/strata.h include/strata/strata.hpp include/strata/status.h include/strata/export.h \
         include/strata/pool_decl.h include/strata/version.h lib/libstrata.so \
         lib/cmake/Strata/StrataConfig.cmake lib/cmake/Strata/StrataConfigVersion.cmake \
         lib/cmake/Strata/StrataTargets.cmake lib/pkgconfig/strata.pc bin/strata-run; do
    [ -e "$p/$f" ] || fail "missing $f"
done
ls "$p"/lib/libstrata.so.*.*.* > /dev/null 2>&1 || fail "no versioned libstrata.so.X.Y.Z"
soname=$(readelf -d "$p/lib/libstrata.so" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[[ $soname =~ ^libstrata\.so\.[0-9]+$ ]] || fail "soname is '$soname', not libstrata.so.<major>"
[ -e "$p/lib/$soname" ] || fail "no $soname link"

# Exported symbols (functions, data, typeinfo): Strata's public namespace only, never an internal
# one, nor anything else linked in (libstdc++ instances, a static CUDA runtime).
exported=$(nm -D --defined-only -C "$p/lib/libstrata.so" | awk '$2 != "A" { $1 = ""; $2 = ""; print }' |
    sed 's/^ *//; s/^\(typeinfo name for\|typeinfo for\|vtable for\) //')
[ -n "$exported" ] || fail "libstrata exports no function"
bad=$(grep -Ev '^ *(strata::|strata_)' <<< "$exported" || true)
[ -z "$bad" ] || fail "exported outside namespace strata: $(head -5 <<< "$bad")"
bad=$(grep -E '^ *strata::(core|kernels|pools|io|comm|controller|runtime|app)::' <<< "$exported" || true)
[ -z "$bad" ] || fail "internal symbols exported: $(head -5 <<< "$bad")"
for sym in 'strata::Job::create' 'strata::Cache::create' 'strata::Cache::admit' 'strata::version()'; do
    grep -qF "$sym" <<< "$exported" || fail "$sym is not exported"
done
# The C API's functions, by their C names.
for sym in strata_job_create strata_cache_admit strata_version; do
    grep -qE "^${sym}(@+STRATA_[0-9]+)?$" <<< "$exported" || fail "$sym (the C API) is not exported"
done

# Each installed header compiles on its own, and includes only the standard library and the other
# installed headers (no MPI, CUDA, UCX, HDF5, JSON or logging header).
# strata.h, the C API, compiles as C11 too and may include C's <stddef.h> and <stdint.h>.
echo '#include "strata/strata.h"' | cc -std=c11 -pedantic -fsyntax-only -Wall -Werror \
    -I "$p/include" -x c - || fail "strata.h does not compile alone as C11"
for h in "$p"/include/strata/*.h "$p"/include/strata/*.hpp; do
    echo "#include \"strata/$(basename "$h")\"" |
        c++ -std=c++20 -fsyntax-only -Wall -Werror -I "$p/include" -x c++ - ||
        fail "$(basename "$h") does not compile alone"
    while read -r inc; do
        case $(basename "$h"):$inc in
            strata.h:\<stddef.h\> | strata.h:\<stdint.h\>) ;;
            *:\<*/*\> | *:\<*.h\>) fail "$(basename "$h") includes $inc" ;;
            *:\<*\>) ;;
            *:\"strata/*\") [ -e "$p/include/${inc//\"/}" ] || fail "$(basename "$h") includes $inc, not installed" ;;
            *) fail "$(basename "$h") includes $inc" ;;
        esac
    done < <(sed -n 's/^ *# *include *\([<"][^>"]*[>"]\).*/\1/p' "$h")
done

# The engine's project through find_package(Strata).
cmake -S "$source/tests/install/consumer" -B "$work/consumer-cmake" -DCMAKE_PREFIX_PATH="$p" \
    -DCMAKE_BUILD_TYPE=Release > "$work/consumer-cmake.log" || fail "configure: $(cat "$work/consumer-cmake.log")"
cmake --build "$work/consumer-cmake" > "$work/consumer-build.log" 2>&1 || fail "build: $(cat "$work/consumer-build.log")"
"$work/consumer-cmake/consumer"

# The same through pkg-config.
flags=$(PKG_CONFIG_PATH="$p/lib/pkgconfig" pkg-config --cflags --libs strata)
c++ -std=c++20 -O1 "$source/tests/install/consumer/main.cpp" -o "$work/consumer-pc" $flags \
    -Wl,-rpath,"$p/lib" || fail "pkg-config build failed (flags: $flags)"
"$work/consumer-pc"

# The same engine in C, over the C API, through pkg-config.
cc -std=c11 -pedantic -Wall -Werror -O1 "$source/tests/install/consumer/main_c.c" \
    -o "$work/consumer-c" $flags -Wl,-rpath,"$p/lib" || fail "C consumer build failed (flags: $flags)"
"$work/consumer-c"

# The Python package (runtime/python): in Debian's layout under the moved prefix, importable by
# Debian's python3 with only PYTHONPATH set, loading the prefix's own libstrata, of its version.
py=$p/lib/python3/dist-packages
[ -f "$py/strata/__init__.py" ] || fail "missing lib/python3/dist-packages/strata"
want=$(sed -n 's/^#define STRATA_VERSION "\(.*\)"$/\1/p' "$p/include/strata/version.h")
got=$(cd "$work" && env -u STRATA_LIBRARY PYTHONPATH="$py" /usr/bin/python3 -c \
    'import os, strata; print(strata.__version__, os.path.realpath(strata.library_path()))') ||
    fail "python3 -c 'import strata' failed in the moved tree"
[ "$got" = "$want $(realpath "$p/lib/$soname")" ] ||
    fail "import strata: '$got', not version $want from $p/lib/$soname"

echo "install_consumer: ok ($soname, $(wc -l <<< "$exported") exported symbols)"
