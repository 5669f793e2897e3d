#!/usr/bin/env python3
"""Runs a strata-run command line twice (it should carry --deterministic) and checks that the two
JSON reports give the same figures: every count of the report (hit tokens per tier, computed
tokens, rounds, loads, backups, evictions, pages verified, storage pages, per-rank figures ...)
equal, only times, rates and the run's own identity (start time, report path, temporary
directories) allowed to differ. The runs must verify every page (0 mismatched) and reuse from the
device and the host tier, so that the comparison covers the timing-sensitive tiers.

usage: check_deterministic.py -- COMMAND...
"""
import json
import os
import subprocess
import sys
import tempfile

# Keys whose values measure time (or follow from it), or name this run rather than its figures.
TIMING = {"seconds", "round_seconds", "gb_per_s", "mean_us", "p99_us", "elapsed_seconds", "load_wait_seconds",
          "pull_seconds", "start_time"}
IDENTITY = {("config", "report"), ("config", "storage_dir")}


def figures(node, path=()):
    """(path, value) pairs of every leaf that is a figure."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in TIMING or (path + (k,))[:2] in IDENTITY:
                continue
            yield from figures(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from figures(v, path + (i,))
    else:
        yield path, node


def main():
    cmd = sys.argv[1:]
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        sys.exit(__doc__)
    reports = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in (1, 2):
            path = os.path.join(tmp, f"report{run}.json")
            p = subprocess.run(cmd + ["--report", path], capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit(f"run {run}: exit {p.returncode}:\n{(p.stdout + p.stderr)[-4000:]}")
            with open(path) as f:
                reports.append(json.load(f))
    a, b = reports
    errors = []
    if not a.get("deterministic"):
        errors.append("the report does not say deterministic: true (is --deterministic given?)")
    if a["pages_mismatched"] != 0 or a["pages_verified"] == 0:
        errors.append(f"run 1 verified {a['pages_verified']} pages, {a['pages_mismatched']} "
                      f"mismatched")
    if a["hit_tokens"]["device"] == 0 or a["hit_tokens"]["host"] == 0:
        errors.append(f"run 1 has no device or no host hits ({a['hit_tokens']}): the workload "
                      f"does not exercise the tiers whose hits depend on timing")
    fa, fb = dict(figures(a)), dict(figures(b))
    if fa.keys() != fb.keys():
        errors.append(f"the reports have different fields: {sorted(set(fa) ^ set(fb), key=str)}")
    differ = [(k, fa[k], fb[k]) for k in fa if k in fb and fa[k] != fb[k]]
    for k, x, y in differ[:20]:
        errors.append(f"{'.'.join(map(str, k))}: {x} then {y}")
    if errors:
        sys.exit("; ".join(errors))
    print(f"identical figures in both runs ({len(fa)} fields compared): "
          f"hit rate {a['hit_rate']['total']:.4f}, {a['rounds']} rounds, {a['loads']} loads, "
          f"{a['backups']} backups, {a['pages_verified']} pages verified")


if __name__ == "__main__":
    main()
