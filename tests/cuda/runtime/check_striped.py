#!/usr/bin/env python3
"""Runs strata-run with striped loads on 2 GPUs and checks its JSON report.

usage: check_striped.py [--compare-off] [--expect-pools NAME,...] -- COMMAND...
COMMAND is an mpirun line of strata-run with --striped-loads on; the report goes to a temporary
file (--report is appended). The report must show every page verified with no mismatch (in every
pool), striped loads enabled and striped.pages > 0. With --compare-off the same command runs
again with --striped-loads off (it must verify too) and both load figures are printed.
Without 2 visible GPUs it prints why and exits 77, which ctest reports as skipped.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

SKIP = 77


def visible_gpus():
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    n = sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
    if env is not None and env.strip() != "":
        n = min(n, len([x for x in env.split(",") if x.strip()]))
    return n


def run(cmd, report):
    p = subprocess.run(cmd + ["--report", report], capture_output=True, text=True)
    out = p.stdout + p.stderr
    if p.returncode != 0:
        sys.exit(f"exit {p.returncode}: {' '.join(cmd)}\n{out}")
    return json.load(open(report)), out


def figures(r):
    h2d = r["transfer"]["h2d"]
    s = r["striped"]
    return (f"striped {'on ' if s['enabled'] else 'off'}: {r['pages_verified']} pages verified, "
            f"{r['pages_mismatched']} mismatched; striped.pages {s['pages']} "
            f"({s['bytes'] / 1e6:.1f} MB); h2d {h2d['pages']} pages {h2d['bytes'] / 1e6:.1f} MB "
            f"in {h2d['seconds']:.3f} s of copy time; load_wait_seconds "
            f"{r['load_wait_seconds']:.4f}; elapsed {r['elapsed_seconds']:.2f} s")


def check(r, striped, want_pools):
    errors = []
    if r["pages_mismatched"] != 0:
        errors.append(f"pages_mismatched = {r['pages_mismatched']}")
    if r["pages_verified"] == 0:
        errors.append("pages_verified = 0")
    if r["hit_tokens"]["host"] == 0:
        errors.append("no host hits (nothing was loaded back)")
    for name, p in r.get("pools", {}).items():
        if p["pages_mismatched"] != 0:
            errors.append(f"pool {name}: pages_mismatched = {p['pages_mismatched']}")
    if want_pools:
        got = set(r.get("pools", {}))
        if got != set(want_pools):
            errors.append(f"pools {sorted(got)}, expected {sorted(want_pools)}")
        for name in want_pools:
            if r.get("pools", {}).get(name, {}).get("pages_verified", 0) == 0:
                errors.append(f"pool {name}: no page verified")
    s = r["striped"]
    if striped:
        if not s["enabled"]:
            errors.append(f"striped loads not enabled ({s['off_reason']})")
        if s["pages"] == 0:
            errors.append("striped.pages = 0")
    elif s["enabled"] or s["pages"] != 0:
        errors.append("striped loads ran with --striped-loads off")
    return errors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--compare-off", action="store_true")
    ap.add_argument("--expect-pools", default="")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.command[1:] if a.command and a.command[0] == "--" else a.command
    gpus = visible_gpus()
    if gpus < 2:
        print(f"SKIPPED: striped loads need 2 GPUs, {gpus} visible (nvidia-smi -L)")
        sys.exit(SKIP)
    want_pools = [x for x in a.expect_pools.split(",") if x]
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        r, _ = run(cmd, report)
        errors = check(r, True, want_pools)
        print(figures(r))
        if a.compare_off:
            off_cmd = [("off" if i > 0 and cmd[i - 1] == "--striped-loads" else x)
                       for i, x in enumerate(cmd)]
            r_off, _ = run(off_cmd, report)
            errors += [f"--striped-loads off: {e}" for e in check(r_off, False, want_pools)]
            print(figures(r_off))
    if errors:
        sys.exit("FAILED: " + "; ".join(errors))
    print("OK")


if __name__ == "__main__":
    main()
