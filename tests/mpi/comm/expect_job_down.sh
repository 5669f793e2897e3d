#!/bin/bash
# Runs a 2-rank job in which rank 1 dies, and checks that the whole job goes down (non-zero exit)
# within 30 s and that its output names the rank that died.
# Usage: expect_job_down.sh MPIEXEC PROGRAM MODE
set -u
mpiexec=$1 program=$2 mode=$3
out=$(mktemp)
trap 'rm -f "$out"' EXIT
start=$(date +%s)
timeout --kill-after=5 30 "$mpiexec" -n 2 --oversubscribe --bind-to none "$program" "$mode" \
    >"$out" 2>&1
rc=$?
elapsed=$(( $(date +%s) - start ))
cat "$out"
echo "--- exit code $rc after ${elapsed}s"
if [ "$rc" -eq 0 ]; then echo "FAIL: the job exited 0 although rank 1 died"; exit 1; fi
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && [ "$elapsed" -ge 30 ]; then
    echo "FAIL: the job hung (killed by timeout after 30 s)"; exit 1
fi
if ! grep -Eq 'rank 1[^0-9]|\[r1\]' "$out"; then
    echo "FAIL: the output does not name rank 1"; exit 1
fi
echo "PASS: job went down (exit $rc) in ${elapsed}s and names rank 1"
