#!/usr/bin/env bash
# Builds and checks Strata on a GPU machine whose image lacks Debian's header-only packages: they
# are carried unpacked under .deps/root (see launch/README.md). Writes logs and reports to $OUT.
# Usage: OUT=/some/dir launch/gpu-check.sh
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${OUT:-$root/out}"
mkdir -p "$out"
cd "$root"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt" 2>&1
deps="$root/.deps/root/usr/include"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INCLUDE_PATH="$deps" \
    -DSTRATA_ENABLE_CUDA=ON -DSTRATA_ENABLE_UCX=OFF -DSTRATA_ENABLE_OPS=OFF > "$out/configure.log" 2>&1 || {
    tail -40 "$out/configure.log"; exit 1; }
cmake --build build-gpu -j 16 > "$out/build.log" 2>&1 || { grep -E "error" "$out/build.log" | head -40; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
# strata_run_mooncake_sweep plots with gnuplot, which this image lacks (and it has no network to
# install it): that test fails here for that reason only, so it is left out when gnuplot is absent.
exclude=()
if ! command -v gnuplot > /dev/null 2>&1; then
    echo "gnuplot not found: excluding strata_run_mooncake_sweep from ctest (it needs gnuplot)"
    exclude=(-E '^strata_run_mooncake_sweep$')
fi
ctest --test-dir build-gpu -j 8 -LE lint "${exclude[@]}" --timeout 600 > "$out/ctest.log" 2>&1
echo "ctest exit $?"; grep -E "tests passed|Failed|Skipped" "$out/ctest.log" | tail -8
grep -c "Skipped" "$out/ctest.log" | sed 's/^/skipped tests: /'
./build-gpu/bin/strata-run --backend cuda --report "$out/strata_run_cuda.json" > "$out/strata_run_cuda.txt" 2>&1
echo "strata-run cuda exit $?"; tail -9 "$out/strata_run_cuda.txt"
./build-gpu/bin/strata-run --backend cuda --model deepseek-v3 --layers 8 --write-policy write_back \
    --host-layout layer_first --report "$out/strata_run_cuda_mla.json" > "$out/strata_run_cuda_mla.txt" 2>&1
echo "strata-run cuda mla exit $?"; tail -9 "$out/strata_run_cuda_mla.txt"
sd="$(mktemp -d /tmp/strata-gpu-storage-XXXXXX)"
for run in 1 2; do
    ./build-gpu/bin/strata-run --backend cuda --storage-dir "$sd" --requests 150 \
        --report "$out/strata_run_cuda_storage_$run.json" > "$out/strata_run_cuda_storage.txt" 2>&1
    echo "strata-run cuda storage run $run exit $?"
    grep -E "hit rate|verify|storage:" "$out/strata_run_cuda_storage.txt"
done
rm -rf "$sd"
# Hybrid models on the CUDA back end: every pool verified through device, host and storage (run
# twice on one storage directory), Mamba checkpoints copied device to device.
for spec in qwen3-next:8 gpt-oss:4 deepseek-v4:4; do
    model="${spec%%:*}"; layers="${spec##*:}"
    sd="$(mktemp -d /tmp/strata-gpu-hybrid-XXXXXX)"
    for run in 1 2; do
        ./build-gpu/bin/strata-run --backend cuda --model "$model" --layers "$layers" \
            --storage-dir "$sd" --requests 150 --report "$out/strata_run_cuda_${model}_$run.json" \
            > "$out/strata_run_cuda_${model}_$run.txt" 2>&1
        echo "strata-run cuda $model run $run exit $?"
        grep -E "hit rate|verif|storage:|pool" "$out/strata_run_cuda_${model}_$run.txt" | head -12
    done
    rm -rf "$sd"
done
# Striped loads (2 or more GPUs): 2 ranks of one TP group, replicated MLA (and indexer) pools
# loaded a stripe per GPU plus an NCCL all-gather, against the same run with striped loads off.
gpus="$(nvidia-smi -L 2> /dev/null | grep -c '^GPU ')"
if [ "${gpus:-0}" -ge 2 ]; then
    for spec in deepseek-v3:8 deepseek-v3.2:8; do
        model="${spec%%:*}"; layers="${spec##*:}"
        for mode in on off; do
            mpirun -np 2 --bind-to none ./build-gpu/bin/strata-run --tp 2 --backend cuda \
                --model "$model" --layers "$layers" --requests 200 --striped-loads "$mode" \
                --report "$out/strata_run_np2_${model}_striped_$mode.json" \
                > "$out/strata_run_np2_${model}_striped_$mode.txt" 2>&1
            echo "strata-run np2 $model striped $mode exit $?"
            grep -E "h2d|striped|verif|pool " "$out/strata_run_np2_${model}_striped_$mode.txt" | head -8
        done
    done
else
    echo "striped loads: skipped, ${gpus:-0} GPU(s) (needs 2)"
fi
