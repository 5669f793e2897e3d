#!/bin/bash
# Round-watchdog regression tests (issue 15 item 3): a 4-rank TP2 x CP2 job in which world rank 2
# stops itself (SIGSTOP) at round 20 (see round_watchdog_prog.cpp).
#   abort: the job must go down (non-zero exit) well within 60 s, and the log must name world rank
#          2 with its grid coordinates and the round it did not arrive at.
#   warn:  the job must warn (naming world rank 2) at least twice, then complete (exit 0) once rank
#          0 resumed rank 2.
# Usage: expect_round_timeout.sh MPIEXEC PROGRAM abort|warn
set -u
mpiexec=$1 program=$2 mode=$3
out=$(mktemp)
cleanup() {
    # A stopped rank left behind by a failure: kill it (never anything else).
    pid=$(sed -n 's/^world rank 2 (pid \([0-9]*\)) stops itself.*/\1/p' "$out" | head -1)
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    rm -f "$out"
}
trap cleanup EXIT
start=$(date +%s)
timeout --kill-after=5 60 "$mpiexec" -n 4 --oversubscribe --bind-to none "$program" "$mode" \
    >"$out" 2>&1
rc=$?
elapsed=$(( $(date +%s) - start ))
cat "$out"
echo "--- exit code $rc after ${elapsed}s"
fail() { echo "FAIL: $*"; exit 1; }
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then fail "the job hung (killed by timeout after 60 s)"; fi
grep -q 'world rank 2 (pid [0-9]*) stops itself before round 20' "$out" ||
    fail "rank 2 did not stop itself (the test did not run its fault)"
named='did not arrive: world rank 2 (tp 0, cp 1, pp 0, dp 0) on host'
if [ "$mode" = abort ]; then
    [ "$rc" -ne 0 ] || fail "the job exited 0 although rank 2 never answered"
    grep -q "agreement of round 20 has waited .* $named" "$out" ||
        fail "the log does not name world rank 2 and round 20"
    grep -q 'stopping the job' "$out" || fail "the log does not say the job is stopped"
    echo "PASS: job went down (exit $rc) in ${elapsed}s, naming world rank 2 and round 20"
else
    [ "$rc" -eq 0 ] || fail "the job failed (exit $rc) although rank 2 was resumed"
    warnings=$(grep -c "agreement of round 20 has waited .* $named.*still waiting" "$out")
    [ "$warnings" -ge 2 ] || fail "expected at least 2 warnings naming world rank 2, got $warnings"
    grep -q 'the agreement of round 20 completed after' "$out" || fail "no completion message"
    [ "$(grep -c 'all 60 rounds agreed' "$out")" -eq 4 ] || fail "not every rank finished"
    echo "PASS: $warnings warnings named world rank 2, then the job completed in ${elapsed}s"
fi
