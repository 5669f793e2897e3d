#!/usr/bin/env bash
# Issue 17 on a one-GPU machine (the image with PyTorch 2.11 and transformers 5.x): builds libstrata
# and the Python package with CUDA (build-gpu, configured as launch/gpu-bench.sh does, Debian's
# header-only packages carried under .deps/root), then runs the transformers example worker
# (runtime/examples/transformers_worker.py) and the TTFT bench (runtime/bench/ttft.py). Writes to
# $OUT: log.txt (everything, in order), transformers_worker_h200.json, ttft_h200.json, and the
# runs' own output in worker.log and ttft.log. Whole run under 8 minutes (470 s): the worker at most
# 120 s, the bench what is left (at most 330 s); both rewrite their JSON after every model / row, so
# a step cut short by its limit still leaves what it measured.
# Usage: OUT=DIR [TTFT_ARGS=...] [BW=1] [BUDGET=S] launch/gpu/issue17.sh [full|quick|bench|ttft]
#   quick: the bench's --quick, for a first look; bench: the kernel tests (kernels_cuda_test) and
#   the TTFT bench only, no worker; ttft: the Python CUDA test and the TTFT bench. TTFT_ARGS holds the bench's extra arguments; several variants
#   are separated by ';', each run in turn and written to ttft_h200_<n>.json (n from 1).
# Exit: 0 when every step passed its checks, else the first failing step's code.
set -uo pipefail
mode="${1:-full}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${OUT:-$root/out}"
mkdir -p "$out"
cd "$root" || exit 2
exec > >(tee -a "$out/log.txt") 2>&1
start=$(date +%s)
budget=${BUDGET:-560}  # seconds for the whole script (the device call allows 600)
left() { echo $((budget - ($(date +%s) - start))); }
step() { echo "=== $(date -u +%H:%M:%S) (+$(($(date +%s) - start)) s) $*"; }
fail=0
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export CUBLAS_WORKSPACE_CONFIG=:4096:8  # the worker's deterministic algorithms
py="${PYTHON:-python3}"

step "mode $mode"
nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.current,pcie.link.width.current --format=csv
"$py" -c 'import sys, torch, transformers; print("python", sys.version.split()[0], "torch",
torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available(),
"transformers", transformers.__version__)' || { echo "error: $py lacks torch or transformers"; exit 2; }
deps="$root/.deps/root/usr/include"
if [ ! -d "$deps" ]; then
    echo "error: $deps missing: carry .deps (apt-get download libcli11-dev nlohmann-json3-dev"
    echo "libxxhash-dev libtomlplusplus-dev; dpkg -x each .deb .deps/root; see launch/README.md)"
    exit 2
fi

# The library alone, except in bench mode, whose kernel tests need the test tree; the image lacks
# the operations packages (cpp-httplib, cppzmq): STRATA_ENABLE_OPS=OFF.
apps=OFF
[ "$mode" = bench ] && apps=ON
step "configure (apps $apps)"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INCLUDE_PATH="$deps" \
    -DSTRATA_ENABLE_CUDA=ON -DSTRATA_ENABLE_UCX=OFF -DSTRATA_BUILD_APPS="$apps" \
    -DSTRATA_ENABLE_OPS=OFF \
    > "$out/configure.tmp" 2>&1 || {
    tail -40 "$out/configure.tmp"; exit 1; }
grep "strata: CUDA" "$out/configure.tmp"; rm -f "$out/configure.tmp"
targets="strata"
[ "$mode" = bench ] && targets="strata kernels_cuda_test strata-bench strata-run"
step "build $targets"
cmake --build build-gpu -j 16 --target $targets > "$out/build.tmp" 2>&1 || {
    grep -E "error|FAILED" -A3 "$out/build.tmp" | head -60; exit 1; }
rm -f "$out/build.tmp"
export PYTHONPATH="$root/build-gpu/python${PYTHONPATH:+:$PYTHONPATH}"
"$py" -c 'import strata; print("strata", strata.__version__, strata.library_path())' || {
    echo "error: the Python package strata does not import from build-gpu/python"; exit 1; }

if [ "$mode" = bench ]; then
    step "kernels_cuda_test"
    kt=$(find build-gpu -name kernels_cuda_test -type f | head -1)
    timeout -k 10 120 "$kt" > "$out/kernels_cuda.log" 2>&1
    rc=$?
    grep -E "^\[  (PASSED|FAILED) |^\[  FAILED" "$out/kernels_cuda.log"
    echo "kernels_cuda_test exit $rc"
    [ $rc -ne 0 ] && [ $fail -eq 0 ] && fail=$rc
fi

[ "$mode" != bench ] && {
step "python package on CUDA (tests/engine/python/test_cuda.py)"
timeout -k 10 120 "$py" tests/engine/python/test_cuda.py > "$out/python_cuda.log" 2>&1
rc=$?
tail -5 "$out/python_cuda.log"
echo "python_cuda exit $rc"
[ $rc -ne 0 ] && [ $fail -eq 0 ] && fail=$rc
}

[ "$mode" != bench ] && [ "$mode" != ttft ] && {
t=$(( $(left) < 120 ? $(left) : 120 ))
step "transformers worker (at most $t s)"
timeout -k 10 "$t" "$py" runtime/examples/transformers_worker.py \
    --json "$out/transformers_worker_h200.json" > "$out/worker.log" 2>&1
rc=$?
grep -E "^[a-z0-9.-]+: (ok|FAILED)" "$out/worker.log"
echo "worker exit $rc$([ $rc -eq 124 ] && echo ' (timed out)')"
[ $rc -ne 0 ] && { tail -30 "$out/worker.log"; [ $fail -eq 0 ] && fail=$rc; }
}

IFS=';' read -r -a variants <<< "${TTFT_ARGS:-}"
[ ${#variants[@]} -eq 0 ] && variants=("")
[ "${TTFT_ARGS:-}" = none ] && variants=()
n=0
for variant in "${variants[@]}"; do
    n=$((n + 1))
    bench_args=($variant)
    [ "$mode" = quick ] && bench_args+=(--quick)
    json="$out/ttft_h200.json"; log="$out/ttft.log"
    [ ${#variants[@]} -gt 1 ] && { json="$out/ttft_h200_$n.json"; log="$out/ttft_$n.log"; }
    t=$(( ($(left) - 10) / (${#variants[@]} - n + 1) ))
    [ $t -gt 330 ] && t=330
    step "ttft bench ${bench_args[*]} (at most $t s)"
    if [ "$t" -lt 60 ]; then
        echo "error: $t s left, too little for the bench"; [ $fail -eq 0 ] && fail=3; continue
    fi
    timeout -k 10 "$t" "$py" runtime/bench/ttft.py "${bench_args[@]}" --json "$json" > "$log" 2>&1
    rc=$?
    tail -25 "$log"
    echo "ttft exit $rc$([ $rc -eq 124 ] && echo ' (timed out)')"
    [ $rc -ne 0 ] && [ $fail -eq 0 ] && fail=$rc
done
# BW=1 (bench mode): then the default strata-run on the GPU (its transfer line: bytes over the
# copy streams' busy time), strata-bench transfer (the same figure per chunk size; TRANSFER_ARGS)
# and strata-bench overlap (OVERLAP_ARGS), each bounded. TTFT_ARGS=none: no TTFT bench.
if [ "$mode" = bench ] && [ "${BW:-0}" = 1 ]; then
    t=$(( $(left) - 10 )); [ $t -gt 200 ] && t=200
    step "strata-run --backend cuda, default job (at most $t s)"
    if [ "$t" -ge 30 ]; then
        timeout -k 10 "$t" build-gpu/bin/strata-run --backend cuda \
            --report "$out/strata_run_cuda.json" > "$out/strata_run.log" 2>&1
        rc=$?; tail -12 "$out/strata_run.log"; echo "strata-run exit $rc"
        [ $rc -ne 0 ] && [ $fail -eq 0 ] && fail=$rc
    fi
    t=$(( $(left) - 5 )); [ $t -gt 200 ] && t=200
    step "strata-bench transfer (at most $t s)"
    if [ "$t" -ge 30 ]; then
        timeout -k 10 "$t" build-gpu/bin/strata-bench --json "$out/transfer.json" transfer \
            ${TRANSFER_ARGS:-} > "$out/transfer.log" 2>&1
        rc=$?; tail -40 "$out/transfer.log"; echo "transfer exit $rc"
        [ $rc -ne 0 ] && [ $fail -eq 0 ] && fail=$rc
    fi
    t=$(( $(left) - 5 )); [ $t -gt 200 ] && t=200
    step "strata-bench overlap (at most $t s)"
    if [ "$t" -ge 30 ]; then
        timeout -k 10 "$t" build-gpu/bin/strata-bench --json "$out/overlap.json" overlap \
            ${OVERLAP_ARGS:-} > "$out/overlap.log" 2>&1
        rc=$?; tail -20 "$out/overlap.log"; echo "overlap exit $rc"
        [ $rc -ne 0 ] && [ $fail -eq 0 ] && fail=$rc
    fi
fi
ls -l "$out"
step "done, exit $fail"
exit $fail
