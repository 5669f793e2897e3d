#!/usr/bin/env python3
"""Runs a multi-rank command again and again under CPU load, stopping and resuming its ranks at
random moments, and fails on the first run that does not exit 0.

usage: stress.py [--runs N] [--load K] [--stop-ms MIN,MAX] [--gap-ms MIN,MAX] [--no-stops]
                 [--seed S] [--name PROG] -- COMMAND...

Each run starts COMMAND in a process group of its own. While it runs, K busy processes keep the
CPUs loaded, and a chaos thread picks, after a random gap, one running process named PROG (default
strata-run) among COMMAND's descendants, stops it (SIGSTOP) for a random time and resumes it
(SIGCONT); --no-stops leaves the load alone. COMMAND checks its own outcome (e.g. check_report.py: rc 0, 0 mismatched pages, 0
divergences, no rejected message); a run that exits non-zero, or is killed by a signal, fails the
stress with its output and the seed and stop times that led to it. Stopped processes are always
resumed, also when the run fails.
"""
import argparse
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time


def busy(stop_at):
    while time.monotonic() < stop_at:
        pass


def descendants(root, name):
    """Pids of processes called `name` whose ancestry includes `root`."""
    parent = {}
    comm = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses.
        close = s.rfind(")")
        comm[int(d)] = s[s.find("(") + 1:close]
        parent[int(d)] = int(s[close + 2:].split()[1])
    out = []
    for pid, c in comm.items():
        if c != name[:15]:
            continue
        p = pid
        while p > 1 and p != root:
            p = parent.get(p, 1)
        if p == root:
            out.append(pid)
    return out


def signal_pid(pid, sig):
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def chaos(proc, rng, a, events, done):
    while not done.wait(rng.uniform(*a.gap_ms) / 1000):
        pids = descendants(proc.pid, a.name)
        if not pids:
            continue
        pid = rng.choice(sorted(pids))
        stop_s = rng.uniform(*a.stop_ms) / 1000
        t0 = time.monotonic()
        if not signal_pid(pid, signal.SIGSTOP):
            continue
        try:
            done.wait(stop_s)
        finally:
            signal_pid(pid, signal.SIGCONT)
        events.append(f"pid {pid} stopped {time.monotonic() - t0:.2f} s")


def ms_range(text):
    lo, hi = (float(x) for x in text.split(","))
    if not 0 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"'{text}': expected MIN,MAX with 0 <= MIN <= MAX")
    return lo, hi


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--load", type=int, default=2, help="busy processes while the runs go on")
    ap.add_argument("--stop-ms", type=ms_range, default=(200.0, 2500.0))
    ap.add_argument("--gap-ms", type=ms_range, default=(500.0, 4000.0))
    ap.add_argument("--no-stops", action="store_true", help="load only: stop no process")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--name", default="strata-run")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.command[1:] if a.command and a.command[0] == "--" else a.command
    if not cmd:
        ap.error("no command")
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 31)
    print(f"stress: seed {seed}, {a.runs} runs, load {a.load}", flush=True)
    rng = random.Random(seed)
    for run in range(1, a.runs + 1):
        stop_at = time.monotonic() + 3600
        burners = [multiprocessing.Process(target=busy, args=(stop_at,), daemon=True)
                   for _ in range(a.load)]
        for b in burners:
            b.start()
        events = []
        done = threading.Event()
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        th = threading.Thread(target=chaos, args=(proc, rng, a, events, done), daemon=True)
        if not a.no_stops:
            th.start()
        out, _ = proc.communicate()
        done.set()
        if not a.no_stops:
            th.join()
        for b in burners:
            b.terminate()
            b.join()
        took = time.monotonic() - t0
        print(f"stress: run {run}: exit {proc.returncode} in {took:.1f} s, "
              f"{len(events)} stops: {'; '.join(events) or 'none'}", flush=True)
        if proc.returncode != 0:
            print(out)
            sys.exit(f"stress: run {run} failed (exit {proc.returncode}); seed {seed}")
    print(f"stress: {a.runs} runs passed")


if __name__ == "__main__":
    main()
