#!/usr/bin/env bash
# Installs Strata's dependencies from Debian's packages (idempotent, non-interactive), then
# configures and builds. Usage: launch/setup.sh [--build-dir DIR] [--no-build] [cmake args...]
# Safe to run again: apt is skipped when every package is present, cmake rebuilds incrementally.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${STRATA_BUILD_DIR:-$root/build}"
do_build=1
cmake_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --build-dir) build_dir="$2"; shift 2 ;;
        --no-build) do_build=0; shift ;;
        *) cmake_args+=("$1"); shift ;;
    esac
done

packages=(
    build-essential cmake ninja-build pkg-config git
    openmpi-bin libopenmpi-dev libucx-dev ucx-utils
    libhdf5-dev hdf5-tools
    libspdlog-dev libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev
    libcli11-dev libtomlplusplus-dev nlohmann-json3-dev libxxhash-dev
    clang-format iproute2 python3 gnuplot-nox
    python3-torch python3-numpy python3-mpi4py
    # the metrics endpoint (runtime/src/metrics_server.cpp) and its ctest (a real Prometheus)
    libcpp-httplib-dev prometheus
    # KV events: the ZeroMQ publisher of strata-run (runtime/) and its ctest's subscriber
    cppzmq-dev libzmq3-dev python3-zmq python3-msgpack
    # tests/multinode/slurm_cluster.sh (label slurm): a one-node Slurm cluster of its own; the
    # pmix plugin for srun --mpi=pmix comes with slurm-wlm-basic-plugins
    slurm-wlm munge
    # HMAC-SHA-256 of the remote tier's control messages (comm/ucx/src/message_auth.cpp)
    libssl-dev
    # tests/fuzz (label fuzz): the libFuzzer targets, built with Debian's clang 14
    clang
    libfuzzer-14-dev
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing packages (${missing[*]}); run this script as root" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

[ "$do_build" -eq 1 ] || exit 0

jobs="$(nproc 2>/dev/null || echo 2)"
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
    # The operations packages are installed above: require them (a later argument may override).
    cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DSTRATA_ENABLE_OPS=ON "${cmake_args[@]}"
elif [ ${#cmake_args[@]} -gt 0 ]; then
    cmake "$build_dir" "${cmake_args[@]}"
fi
cmake --build "$build_dir" -j "$jobs"
