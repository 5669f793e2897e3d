#!/usr/bin/env python3
"""A rank of a strata-run job killed with SIGKILL (issue 19's fault matrix).

usage: check_rank_kill.py job-down [--rank R] [--bound S] -- COMMAND...
       check_rank_kill.py restart [--rank R] [--bound S] -- COMMAND...

COMMAND is an mpirun command line of strata-run without --requests, --duration-s, --report or
--storage-dir (the script adds them; the jobs to kill run with --duration-s 3600); it runs with TMPDIR set to a fresh private directory, in a session of
its own.

job-down: once rank 0 logged progress, SIGKILL to world rank R (default 2). The whole job must end
within S seconds (default 30) with a non-zero exit code, its output must name rank R, and no
process of the job may be left: none of the ranks' pids, nothing in the job's process group.

restart: the job runs with its storage tier in a directory kept across runs; once segments were
written and a segment is being written (a .tmp file in the directory), SIGKILL to world rank R
(default 1); the job must go down as above. Then the same command runs again on the same directory
(fewer requests of the same workload): it must exit 0 with 0 mismatched pages and 0 divergences,
and serve storage hits from what the killed job wrote (its pages were acknowledged: a torn one must
be a counted checksum failure, never a served byte).
"""
import argparse
import json
import os
import re
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from job_run import Run, children  # noqa: E402

START_TIMEOUT_S = 240  # pool zeroing of 4 ranks on a loaded 2-core machine


def world_rank(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for var in f.read().split(b"\0"):
                if var.startswith(b"OMPI_COMM_WORLD_RANK="):
                    return int(var.split(b"=", 1)[1])
    except OSError:
        pass
    return None


def alive(pid):
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def group_members(pgid):
    """Live processes of process group `pgid`."""
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(name))
    return members


def files_under(d, suffix):
    out = []
    for root, _, files in os.walk(d):
        out += [os.path.join(root, f) for f in files if f.endswith(suffix)]
    return out


def fail(msg, run=None):
    sys.exit(f"FAIL: {msg}\n--- output (tail) ---\n{run.text()[-4000:] if run else ''}")


def ranks_of(run, n_min):
    """{world rank: pid} of the launcher's children, once at least n_min are known (10 s)."""
    deadline = time.monotonic() + 10
    while True:
        ranks = {}
        for pid in children(run.proc.pid):
            r = world_rank(pid)
            if r is not None:
                ranks[r] = pid
        if len(ranks) >= n_min or time.monotonic() > deadline:
            return ranks
        time.sleep(0.1)


def kill_and_expect_down(run, rank, bound, before_kill=None):
    """SIGKILL to world rank `rank` (once rank 0 logged progress and `before_kill` returned
    true); the job must end within `bound` s, naming the rank, leaving no process behind."""
    if not run.wait_for("progress:", START_TIMEOUT_S):
        run.finish(1)
        fail(f"no progress line within {START_TIMEOUT_S} s (exit {run.proc.returncode})", run)
    ranks = ranks_of(run, rank + 1)
    if rank not in ranks:
        fail(f"world rank {rank} not found among the launcher's children {ranks}", run)
    if before_kill is not None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not before_kill():
            if run.proc.poll() is not None or time.monotonic() > deadline:
                fail("the moment to kill never came (job ended or timed out)", run)
            time.sleep(0.01)
    watched = set(ranks.values())
    for pid in list(watched):
        watched.update(children(pid))
    sent = time.monotonic()
    os.kill(ranks[rank], signal.SIGKILL)
    rc = run.finish(bound + 30)
    took = time.monotonic() - sent
    if rc is None:
        fail(f"the job was still running {bound + 30} s after rank {rank}'s SIGKILL", run)
    if rc == 0:
        fail(f"the job exited 0 although rank {rank} was killed", run)
    if took > bound:
        fail(f"the job took {took:.1f} s to end, more than {bound} s", run)
    if not re.search(rf"rank {rank}\b|\[r{rank}\]", run.text()):
        fail(f"the output does not name rank {rank}", run)
    # Whatever is left must be gone at once: the launcher has exited.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = [p for p in watched if alive(p)] + group_members(run.proc.pid)
        if not left:
            break
        time.sleep(0.1)
    if left:
        fail(f"processes left after the job ended: {sorted(set(left))}", run)
    return rc, took


def check_job_down(args, cmd, env, work):
    # --duration-s: a job that runs until killed (a huge --requests would be generated first).
    run = Run(cmd + ["--requests", "60", "--duration-s", "3600", "--report",
                     os.path.join(work, "report.json")], env)
    rc, took = kill_and_expect_down(run, args.rank, args.bound)
    print(f"ok: SIGKILL to rank {args.rank}: the job ended (exit {rc}) after {took:.1f} s, "
          f"naming rank {args.rank}; no process left")


def check_restart(args, cmd, env, work):
    storage = os.path.join(work, "storage")
    report = os.path.join(work, "report.json")
    first = Run(cmd + ["--requests", "200", "--duration-s", "3600", "--storage-dir", storage,
                       "--report", report], env)

    def writing():
        # Segments already renamed in place, and one being written now.
        return len(files_under(storage, ".h5")) >= 4 and files_under(storage, ".tmp")

    rc, took = kill_and_expect_down(first, args.rank, args.bound, writing)
    segments = len(files_under(storage, ".h5"))
    if os.path.exists(report):
        fail("the killed job wrote a report", first)
    second = Run(cmd + ["--requests", "100", "--storage-dir", storage, "--report", report], env)
    rc2 = second.finish(START_TIMEOUT_S + 300)
    if rc2 != 0:
        fail(f"the restarted job exited {rc2}", second)
    with open(report) as f:
        r = json.load(f)
    if r["pages_mismatched"] != 0 or r["consistency"]["divergences"] != 0:
        fail(f"restart: {r['pages_mismatched']} mismatched pages, "
             f"{r['consistency']['divergences']} divergences", second)
    storage_hits = r["hit_tokens"]["storage"]
    if storage_hits <= 0 or r["storage"]["pages_read"] <= 0:
        fail(f"restart: no storage hits ({storage_hits} tokens, {r['storage']['pages_read']} "
             f"pages read) from the {segments} segments the killed job left", second)
    if files_under(storage, ".tmp") and not segments:
        fail("restart: nothing but temporary files", second)
    print(f"ok: SIGKILL to rank {args.rank} while writing: job down (exit {rc}) after {took:.1f} "
          f"s with {segments} segments on disk; the restart on the same directory served "
          f"{storage_hits} storage hit tokens ({r['storage']['pages_read']} pages read, "
          f"{r['storage']['checksum_failures']} checksum failures counted), "
          f"{r['pages_verified']} pages verified, 0 mismatched")


def main():
    if "--" not in sys.argv:
        sys.exit(__doc__)
    split = sys.argv.index("--")
    p = argparse.ArgumentParser(usage=__doc__)
    p.add_argument("mode", choices=["job-down", "restart"])
    p.add_argument("--rank", type=int)
    p.add_argument("--bound", type=float, default=30.0)
    args = p.parse_args(sys.argv[1:split])
    if args.rank is None:
        args.rank = 2 if args.mode == "job-down" else 1
    with tempfile.TemporaryDirectory() as work:
        tmp = os.path.join(work, "tmp")
        os.mkdir(tmp)
        env = dict(os.environ, TMPDIR=tmp)
        cmd = sys.argv[split + 1:]
        if args.mode == "job-down":
            check_job_down(args, cmd, env, work)
        else:
            check_restart(args, cmd, env, work)


if __name__ == "__main__":
    main()
