#!/usr/bin/env bash
# GPU benches, kernel tests and compute-sanitizer on a GPU machine (header-only packages carried
# under .deps/root, as for gpu-check.sh). Writes at most 8 files to $OUT: log.txt (everything, in
# order), ctest.log, sanitizer.log, transfer.json, overlap.json, nccl.json,
# strata_run_cuda.json, strata_run_tp2.json.
# Usage: OUT=DIR launch/gpu-bench.sh [quick|quick2|full|multi]
#   quick: kernel tests, transfer and overlap benches (with --sweep), sanitizers on kernel tests
#   quick2: quick + (with 2 GPUs) mpirun -np 2 strata-bench nccl
#   full:  + the whole build, ctest and strata-run --backend cuda
#   multi: full + (with 2 GPUs) mpirun -np 2 strata-bench nccl and strata-run --tp 2
set -uo pipefail
mode="${1:-quick}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${OUT:-$root/out}"
mkdir -p "$out"
cd "$root"
log="$out/log.txt"
exec > >(tee -a "$log") 2>&1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
step() { echo "=== $(date -u +%H:%M:%S) $*"; }
step "mode $mode"
nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.current,pcie.link.width.current --format=csv
ngpu=$(nvidia-smi -L | wc -l)
deps="$root/.deps/root/usr/include"
step configure
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INCLUDE_PATH="$deps" \
    -DSTRATA_ENABLE_CUDA=ON -DSTRATA_ENABLE_UCX=OFF -DSTRATA_ENABLE_OPS=OFF > "$out/configure.tmp" 2>&1 || {
    tail -30 "$out/configure.tmp"; exit 1; }
grep "strata: CUDA" "$out/configure.tmp"; rm -f "$out/configure.tmp"
step build
targets="strata-bench kernels_cuda_test"
[ "$mode" != quick ] && [ "$mode" != quick2 ] && targets=""
if [ -n "$targets" ]; then
    cmake --build build-gpu -j 16 --target $targets > build.tmp 2>&1 || {
        grep -E "error|FAILED" -A3 build.tmp | head -60; exit 1; }
else  # keep going past a target that fails (others' work in progress): build what builds
    cmake --build build-gpu -j 16 -- -k 0 > build.tmp 2>&1 || {
        echo "full build had failures:"; grep -E "FAILED|error" build.tmp | head -20; }
fi
rm -f build.tmp
bin=build-gpu/bin
kt=$(find build-gpu -name kernels_cuda_test -type f | head -1)
step kernel tests
"$kt" --gtest_brief=1 2>&1 | tail -15
echo "kernel tests exit ${PIPESTATUS[0]}"
step transfer bench
sweep="--sweep"
$bin/strata-bench --json "$out/transfer.json" transfer $sweep
echo "transfer exit $?"
step overlap bench
$bin/strata-bench --json "$out/overlap.json" overlap $sweep
echo "overlap exit $?"
if { [ "$mode" = multi ] || [ "$mode" = quick2 ]; } && [ "$ngpu" -ge 2 ]; then
    step nccl bench, 2 ranks
    mpirun -np 2 --bind-to none $bin/strata-bench --json "$out/nccl.json" nccl
    echo "nccl exit $?"
fi
step compute-sanitizer memcheck
filter='AllLayouts/*all_p16*:CudaBackend.*'
compute-sanitizer --tool memcheck --leak-check full --error-exitcode 9 "$kt" --gtest_brief=1 \
    --gtest_filter="$filter" > "$out/sanitizer.log" 2>&1
echo "memcheck exit $?"
grep -E "^========= +[^ H]" "$out/sanitizer.log" | sort | uniq -c | sort -rn | head -20
# The NCCL test runs under memcheck with API-error reports off: ncclCommInitRank of this
# machine's NCCL (2.28.3) probes every kernel of its own build with cudaFuncGetAttributes, and
# the ones built for other architectures answer "no kernel image" (4 reports, all inside
# libnccl, none from a Strata call; NCCL ignores them). Memory-access checks stay on.
compute-sanitizer --tool memcheck --report-api-errors no --leak-check full --error-exitcode 9 \
    "$kt" --gtest_brief=1 --gtest_filter='CudaStripedLoad.*' >> "$out/sanitizer.log" 2>&1
echo "memcheck (NCCL test, API errors not reported) exit $?"
step compute-sanitizer racecheck
compute-sanitizer --tool racecheck --racecheck-report all --error-exitcode 9 "$kt" --gtest_brief=1 \
    --gtest_filter='AllLayouts/*all_p16*:CudaBackend.*' >> "$out/sanitizer.log" 2>&1
echo "racecheck exit $?"; grep "RACECHECK SUMMARY" "$out/sanitizer.log"
if [ "$mode" != quick ] && [ "$mode" != quick2 ]; then
    step strata-run cuda
    $bin/strata-run --backend cuda --report "$out/strata_run_cuda.json" 2>&1 | tail -9
    echo "strata-run cuda exit ${PIPESTATUS[0]}"
    if [ "$mode" = multi ] && [ "$ngpu" -ge 2 ]; then
        step strata-run tp2 cuda
        mpirun -np 2 --bind-to none $bin/strata-run --tp 2 --backend cuda --requests 200 \
            --report "$out/strata_run_tp2.json" 2>&1 | tail -9
        echo "strata-run tp2 exit ${PIPESTATUS[0]}"
    fi
    step ctest
    ctest --test-dir build-gpu -j 8 -LE lint --timeout 600 > "$out/ctest.log" 2>&1
    echo "ctest exit $?"; grep -E "tests passed|Failed|\*\*\*" "$out/ctest.log" | tail -12
fi
step done
