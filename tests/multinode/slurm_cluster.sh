#!/usr/bin/env bash
# A one-node Slurm cluster on this host, made for one test and removed after it: munged, slurmctld
# and slurmd (Debian's slurm-wlm 22.05 and munge) from a slurm.conf generated in a temporary
# directory, with their own munge key and socket, ports, spool, state and log directories, so that a
# system-wide Slurm or munge is neither used nor disturbed. On it: launch/strata.sbatch submitted
# from a directory outside the repository with 2 ranks (--tp 2, the user's own --report) and
# 4 ranks (--tp 2 --cp 2, the template's default report), then `srun --mpi=pmix -n 2 strata-run`:
# each must complete with 0 mismatched pages and 0 divergences over every request. Last, a long
# job cancelled with scancel (as at a time limit: SIGTERM, SIGKILL after KillWait) must end within
# 30 s with a report marked interrupted. Every
# process started here (daemons, job steps, ranks) is stopped on every way out (trap).
# usage: slurm_cluster.sh REPO_ROOT STRATA_RUN
# Needs root (SlurmUser=root), munged, slurmctld, slurmd, sbatch, srun and Slurm's pmix plugin.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 REPO_ROOT STRATA_RUN" >&2
    exit 2
fi
repo="$(cd "$1" && pwd)"
strata_run="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
python=/usr/bin/python3
for tool in munged slurmctld slurmd sbatch srun scontrol squeue scancel sinfo; do
    command -v "$tool" >/dev/null || { echo "FAIL: $tool not found (launch/setup.sh installs slurm-wlm and munge)" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "FAIL: needs root (SlurmUser=root)" >&2; exit 1; }

START_TIMEOUT_S=120  # daemons up and the node idle
JOB_TIMEOUT_S=900    # one job on a loaded 2-core machine (pool zeroing of 4 ranks included)

# What an earlier run killed with SIGKILL (a ctest timeout) left: processes marked with its
# directory (STRATA_SLURM_TEST, below) whose script is gone, and the directory.
remove_orphans() {
    local p dir owner
    for p in /proc/[0-9]*; do
        p="${p#/proc/}"
        dir="$({ tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | sed -n 's/^STRATA_SLURM_TEST=//p' || true)"
        [ -n "$dir" ] || continue
        owner="$(cat "$dir/owner.pid" 2>/dev/null || true)"
        if [ -z "$owner" ] || ! kill -0 "$owner" 2>/dev/null; then
            echo "[slurm_cluster] killing $p, left by an earlier run in $dir"
            kill -KILL "$p" 2>/dev/null || true
            [[ "$dir" == /tmp/slurmtest.* ]] && rm -rf "$dir"
        fi
    done
}
remove_orphans

tmp="$(mktemp -d /tmp/slurmtest.XXXXXX)"
echo $$ >"$tmp/owner.pid"
chmod 755 "$tmp"
export SLURM_CONF="$tmp/slurm.conf"
pids=()

log() { echo "[slurm_cluster $(date +%T)] $*"; }

# The daemons carry STRATA_SLURM_TEST=$tmp in their environment, and so the job steps slurmd
# starts; the jobs get it from sbatch and srun (mark). Not this script and its subshells.
mark=(env "STRATA_SLURM_TEST=$tmp")
# Every such process but the daemons and their helpers (slurmscriptd, a child of slurmctld): job
# steps (slurmstepd, detached from slurmd) and the processes of jobs.
cluster_processes() {
    local p d parent
    for p in /proc/[0-9]*; do
        p="${p#/proc/}"
        parent="$(sed -n 's/^PPid:\t*//p' "/proc/$p/status" 2>/dev/null)"
        for d in "${pids[@]}"; do [ "$p" != "$d" ] && [ "$parent" != "$d" ] || continue 2; done
        if { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -qx "STRATA_SLURM_TEST=$tmp"; then
            echo "$p"
        fi
    done
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ ${#pids[@]} -gt 0 ]; then
        scancel --full --quiet $(squeue -h -o %i 2>/dev/null) 2>/dev/null
        # Jobs end (within KillWait, 30 s), then the daemons stop.
        for _ in $(seq 1 80); do
            [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.5
        done
        # slurmd, slurmctld, then munged (the others authenticate through it until they end).
        for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
            kill "${pids[i]}" 2>/dev/null
            for _ in $(seq 1 20); do
                kill -0 "${pids[i]}" 2>/dev/null || break
                sleep 0.25
            done
        done
        for _ in $(seq 1 40); do
            alive=0
            for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
            [ $alive -eq 0 ] && break
            sleep 0.25
        done
        for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
        left="$(cluster_processes)"
        if [ -n "$left" ]; then
            log "killing leftover job processes: $left"
            kill -KILL $left 2>/dev/null
        fi
    fi
    if [ $rc -ne 0 ]; then
        for f in "$tmp"/log/*; do
            [ -f "$f" ] && { echo "--- $f (tail)"; tail -n 30 "$f"; }
        done
    fi
    rm -rf "$tmp"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# Polls `cmd` every half second until it succeeds or `timeout` seconds have passed.
wait_until() {
    local timeout="$1" what="$2"
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || fail "$what: not within $timeout s"
        sleep 0.5
    done
}

free_ports() {  # two distinct free TCP ports on loopback
    "$python" - <<'EOF'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

mkdir -p "$tmp/munge" "$tmp/state" "$tmp/spool" "$tmp/log" "$tmp/submit" "$tmp/tmp"
chmod 755 "$tmp/munge"  # the socket must be reachable; the key itself is 0400
host="$(hostname -s)"
read -r ctld_port d_port < <(free_ports)

# munge: its own key and socket; AuthInfo points Slurm's commands and daemons at that socket.
dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$tmp/munge/munge.key"
"${mark[@]}" munged --foreground --force --socket="$tmp/munge/munge.sock" --key-file="$tmp/munge/munge.key" \
    --pid-file="$tmp/munge/munged.pid" --log-file="$tmp/log/munged.log" \
    --seed-file="$tmp/munge/munged.seed" >"$tmp/log/munged.out" 2>&1 &
pids+=($!)
wait_until "$START_TIMEOUT_S" "munged socket" test -S "$tmp/munge/munge.sock"

# One node with more CPUs than cores (config_overrides): ranks may outnumber cores, and they
# yield instead of spinning (OMPI_MCA_mpi_yield_when_idle in the template and below).
cat >"$SLURM_CONF" <<EOF
ClusterName=stratatest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge/munge.sock
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool/slurmd-%n
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
KillWait=30
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MailProg=/bin/true
NodeName=$host NodeAddr=127.0.0.1 CPUs=8 RealMemory=1000 State=UNKNOWN
PartitionName=strata Nodes=$host Default=YES MaxTime=INFINITE OverSubscribe=YES State=UP
EOF

"${mark[@]}" slurmctld -D -c -f "$SLURM_CONF" >"$tmp/log/slurmctld.out" 2>&1 &
pids+=($!)
wait_until "$START_TIMEOUT_S" "slurmctld answering" scontrol ping
"${mark[@]}" slurmd -D -f "$SLURM_CONF" -N "$host" >"$tmp/log/slurmd.out" 2>&1 &
pids+=($!)
node_idle() { [ "$(sinfo -h -n "$host" -o %T)" = "idle" ]; }
wait_until "$START_TIMEOUT_S" "node $host idle" node_idle
srun --mpi=list 2>&1 | grep -q pmix || fail "Slurm has no pmix plugin (srun --mpi=list)"
log "cluster up: slurmctld on port $ctld_port, slurmd on $d_port, node $host"

# The runs' temporary storage goes to a private TMPDIR (sbatch and srun pass the environment on).
export TMPDIR="$tmp/tmp"
export OMPI_MCA_mpi_yield_when_idle=1
short_run=(--requests 30 --layers 2 --device-tokens 16384 --host-tokens 32768 --check-consistency)

# Checks a report: every request served, 0 mismatched pages, 0 divergences, the grid asked for.
check_report() {
    local path="$1" ranks="$2" tp="$3" cp="$4"
    [ -s "$path" ] || fail "no report at $path"
    "$python" - "$path" "$ranks" "$tp" "$cp" <<'EOF' || fail "report $path"
import json, sys
path, ranks, tp, cp = sys.argv[1], *map(int, sys.argv[2:])
r = json.load(open(path))
problems = []
if (r["ranks"], r["tp"], r["cp"]) != (ranks, tp, cp):
    problems.append(f"grid: {r['ranks']} ranks tp {r['tp']} cp {r['cp']}, expected {ranks}/{tp}/{cp}")
if r["requests"] != r["requests_planned"] or r["requests"] == 0 or r.get("interrupted"):
    problems.append(f"{r['requests']} of {r['requests_planned']} requests served")
if r["pages_mismatched"] != 0 or r["pages_verified"] == 0:
    problems.append(f"{r['pages_verified']} pages verified, {r['pages_mismatched']} mismatched")
if r["consistency"]["rounds_checked"] == 0 or r["consistency"]["divergences"] != 0:
    problems.append(f"consistency: {r['consistency']}")
if problems:
    sys.exit("; ".join(problems))
print(f"  {path}: {r['requests']} requests, {r['pages_verified']} pages verified, 0 mismatched, "
      f"{r['consistency']['rounds_checked']} rounds checked, 0 divergences")
EOF
}

# Submits the template from the submit directory (not the repository); prints the job id.
submit() {
    (cd "$tmp/submit" && "${mark[@]}" sbatch --parsable "$@")
}

job_state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }

wait_job() {
    local id="$1" deadline=$((SECONDS + JOB_TIMEOUT_S)) state
    while :; do
        state="$(job_state "$id")"
        case "$state" in
            COMPLETED) return 0 ;;
            PENDING | RUNNING | CONFIGURING | COMPLETING | "") ;;
            *)
                cat "$tmp/submit/strata-$id.out" 2>/dev/null | tail -n 40
                fail "job $id ended $state"
                ;;
        esac
        [ $SECONDS -lt $deadline ] || fail "job $id still $state after $JOB_TIMEOUT_S s"
        sleep 1
    done
}

# STRATA_RUN tells the template which binary to run (the build under test, not an install).
export STRATA_RUN="$strata_run"
t0=$SECONDS
log "sbatch -n 2 launch/strata.sbatch --tp 2 --report <own path>"
id2="$(submit -n 2 "$repo/launch/strata.sbatch" --tp 2 --report "$tmp/submit/own-report.json" "${short_run[@]}")"
wait_job "$id2"
check_report "$tmp/submit/own-report.json" 2 2 1
[ ! -e "$tmp/submit/strata-report-$id2.json" ] || fail "the template wrote its default report besides the user's"

# Without STRATA_RUN: the template finds build/bin/strata-run of the repository it lies in (here a
# copy of it in a repository-shaped directory whose build/bin/strata-run is the binary under test).
log "sbatch -n 4 <copy>/launch/strata.sbatch --tp 2 --cp 2 (no STRATA_RUN, the template's report)"
mkdir -p "$tmp/repo/launch" "$tmp/repo/build/bin"
cp "$repo/launch/strata.sbatch" "$tmp/repo/launch/"
ln -s "$strata_run" "$tmp/repo/build/bin/strata-run"
id4="$(cd "$tmp/submit" && env -u STRATA_RUN "${mark[@]}" sbatch --parsable -n 4 \
    "$tmp/repo/launch/strata.sbatch" --tp 2 --cp 2 "${short_run[@]}")"
wait_job "$id4"
if ! command -v strata-run >/dev/null; then
    grep -q "strata.sbatch: $tmp/repo/launch/../build/bin/strata-run on 4 tasks" \
        "$tmp/submit/strata-$id4.out" || fail "job $id4 did not run the repository's strata-run: \
$(grep strata.sbatch "$tmp/submit/strata-$id4.out")"
fi
check_report "$tmp/submit/strata-report-$id4.json" 4 2 2

log "srun --mpi=pmix -n 2 strata-run --tp 2"
(cd "$tmp/submit" && timeout "$JOB_TIMEOUT_S" "${mark[@]}" srun --mpi=pmix -n 2 "$strata_run" --tp 2 \
    --report "$tmp/submit/srun-report.json" "${short_run[@]}") || fail "srun exited $?"
check_report "$tmp/submit/srun-report.json" 2 2 1

# scancel (what a time limit does too): SIGTERM to every task, SIGKILL KillWait (30 s) later. The
# ranks stop at an agreed round and write their report, marked interrupted, well before.
log "sbatch -n 2 --tp 2 (long), scancel once it runs"
idc="$(submit -n 2 "$repo/launch/strata.sbatch" --tp 2 --requests 3000 --layers 2 \
    --device-tokens 16384 --host-tokens 32768 --check-consistency)"
out="$tmp/submit/strata-$idc.out"
deadline=$((SECONDS + JOB_TIMEOUT_S))
until grep -q "progress:" "$out" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || fail "job $idc: no progress line within $JOB_TIMEOUT_S s"
    [ -n "$(job_state "$idc" | grep -E 'PENDING|RUNNING|CONFIGURING')" ] ||
        fail "job $idc ended $(job_state "$idc") before it was cancelled"
    sleep 1
done
cancelled=$SECONDS
scancel "$idc"
report="$tmp/submit/strata-report-$idc.json"
job_gone() { [ -z "$(squeue -h -j "$idc" -o %i 2>/dev/null)" ] && [ -z "$(cluster_processes)" ]; }
if ! (wait_until 30 "job $idc and its processes gone after scancel" job_gone); then
    squeue -j "$idc"
    for p in $(cluster_processes); do ps -o pid,stat,args -p "$p" | tail -n +2; done
    tail -n 30 "$out"
    fail "job $idc: not gone within 30 s of scancel"
fi
took=$((SECONDS - cancelled))
"$python" - "$report" <<'EOF2' || { tail -n 30 "$out"; fail "report of the cancelled job"; }
import json, sys
r = json.load(open(sys.argv[1]))
assert r["interrupted"] is True and r["interrupt_signal"] == "SIGTERM", r["interrupt_signal"]
assert 0 < r["requests"] < r["requests_planned"], (r["requests"], r["requests_planned"])
assert r["pages_mismatched"] == 0 and r["consistency"]["divergences"] == 0
print(f"  {sys.argv[1]}: interrupted by SIGTERM after {r['requests']} of "
      f"{r['requests_planned']} requests, 0 mismatched, 0 divergences")
EOF2
grep -q "tasks 0-1: Exited with exit code 143" "$out" ||
    fail "job $idc: the ranks did not exit with 143 (128 + SIGTERM): $(grep -i exit "$out")"
log "scancel to all processes gone: ${took} s"

left="$(ls -A "$TMPDIR")"
[ -z "$left" ] || fail "temporary directories left in TMPDIR: $left"
log "ok: 4 runs under Slurm in $((SECONDS - t0)) s, TMPDIR clean"
