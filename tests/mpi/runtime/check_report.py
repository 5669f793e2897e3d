#!/usr/bin/env python3
"""Runs a strata-run command line and checks its JSON report (or its failure).

usage: check_report.py [--expect-host-hits] [--expect-remote-hits] [--ranks N] [--tp N] [--cp N] [--pp N] [--dp N]
                       [--expect-fail REGEX [--expect-rc N]] [--expect-output REGEX] [--twice]
                       [--expect-pools NAME,...] [--partial-pools NAME,...] [--no-report]
                       [--private-tmpdir [--plant-stale]] -- COMMAND...
The report goes to a temporary file (--report is appended to the command, unless --no-report).
With --twice the command runs two times on one fresh --storage-dir, and the second report must
show storage hits and host hits from a prefetch of stored pages (storage.pages_read > 0). With
--private-tmpdir the command runs with TMPDIR set to a fresh directory, which must hold no strata-*
entry afterwards (the run removed its temporary storage directory, whether it failed or not);
with --plant-stale it first holds the directory of a dead strata-run on this host, which the run
must remove as a run killed with SIGKILL leaves it.
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--expect-host-hits", action="store_true")
    ap.add_argument("--expect-remote-hits", action="store_true",
                    help="the remote tier must have served hits: hit_tokens.remote and "
                         "remote.pages_pulled > 0, no rejected message")
    ap.add_argument("--expect-fail")
    ap.add_argument("--expect-rc", type=int, default=None,
                    help="with --expect-fail: the exit code the failure must have")
    ap.add_argument("--no-report", action="store_true",
                    help="do not append --report (the command names its own)")
    ap.add_argument("--private-tmpdir", action="store_true",
                    help="run with a fresh TMPDIR and fail if a strata-* entry is left in it")
    ap.add_argument("--plant-stale", action="store_true",
                    help="with --private-tmpdir: put a dead process's temporary storage there")
    ap.add_argument("--twice", action="store_true")
    ap.add_argument("--expect-pools", default=None,
                    help="comma-separated pool names the report must list, each verified on every "
                         "page with no mismatch")
    ap.add_argument("--partial-pools", default="",
                    help="comma-separated pools of --expect-pools that keep only some pages of a "
                         "prefix (a sliding window, a Mamba state at the prefix's end): each must "
                         "have verified pages, at most as many as the job")
    ap.add_argument("--expect-output", default=None,
                    help="the command must exit 0 with output matching this regex (no report)")
    ap.add_argument("--expect-hit-rate", type=float, default=None,
                    help="total hit rate within 0.005 of this value")
    ap.add_argument("--hide-program", default=None,
                    help="run with a PATH that holds every program of PATH but this one")
    for k in ("ranks", "tp", "cp", "pp", "dp"):
        ap.add_argument("--" + k, type=int, default=None)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.command[1:] if a.command and a.command[0] == "--" else a.command
    env = None
    with tempfile.TemporaryDirectory() as tmp:
        if a.hide_program:
            # MPI start-up still finds its helpers (orted) on the reduced PATH.
            bindir = os.path.join(tmp, "bin")
            os.mkdir(bindir)
            for d in os.environ.get("PATH", "").split(os.pathsep):
                if not os.path.isdir(d):
                    continue
                for name in os.listdir(d):
                    link = os.path.join(bindir, name)
                    if name != a.hide_program and not os.path.lexists(link):
                        os.symlink(os.path.join(d, name), link)
            env = dict(os.environ, PATH=bindir)
        report = os.path.join(tmp, "report.json")
        report_args = [] if a.no_report else ["--report", report]
        if a.private_tmpdir:
            private_tmp = os.path.join(tmp, "tmp")
            os.mkdir(private_tmp)
            env = dict(env if env is not None else os.environ, TMPDIR=private_tmp)
            if a.plant_stale:
                dead = subprocess.Popen(["true"])
                dead.wait()  # its pid names no process now
                stale = os.path.join(private_tmp,
                                     f"strata-{socket.gethostname()}-{dead.pid}-Stale1")
                os.makedirs(os.path.join(stale, "r0"))
                open(os.path.join(stale, "r0", "segment.h5"), "w").close()

        def leftovers():
            if not a.private_tmpdir:
                return []
            return [n for n in os.listdir(private_tmp) if n.startswith("strata-")]
        if a.expect_output:
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            out = p.stdout + p.stderr
            if p.returncode != 0:
                sys.exit(f"exit {p.returncode}:\n{out}")
            if not re.search(a.expect_output, out, re.S):
                sys.exit(f"output does not match /{a.expect_output}/:\n{out}")
            print("output as expected")
            return
        if a.twice:
            cmd = cmd + ["--storage-dir", os.path.join(tmp, "storage")]
            first = subprocess.run(cmd + ["--report", report], capture_output=True, text=True)
            if first.returncode != 0:
                sys.exit(f"first run: exit {first.returncode}:\n{first.stdout + first.stderr}")
            r1 = json.load(open(report))
            if r1["storage"]["pages_written"] == 0:
                sys.exit("first run stored no page")
        p = subprocess.run(cmd + report_args, capture_output=True, text=True, env=env)
        out = p.stdout + p.stderr
        if leftovers():
            sys.exit(f"temporary storage left in TMPDIR: {leftovers()} (exit {p.returncode}):\n"
                     f"{out[-3000:]}")
        if a.expect_fail:
            if p.returncode == 0:
                sys.exit(f"expected a failure, got exit 0:\n{out}")
            if a.expect_rc is not None and p.returncode != a.expect_rc:
                sys.exit(f"expected exit {a.expect_rc}, got {p.returncode}:\n{out}")
            if not re.search(a.expect_fail, out):
                sys.exit(f"failure message does not match /{a.expect_fail}/:\n{out}")
            # A bad option or configuration (exit 2) is the user's: its message names what is
            # wrong, not where in Strata's sources the check sits.
            location = re.search(r"\([A-Za-z0-9_.+-]+\.(cpp|h|cu):[0-9]+\)", out)
            if p.returncode == 2 and location:
                sys.exit(f"user error shows a source location {location.group(0)}:\n{out}")
            print(f"failed as expected (exit {p.returncode})")
            return
        if p.returncode != 0:
            sys.exit(f"exit {p.returncode}:\n{out}")
        r = json.load(open(report))
    errors = []

    def need(cond, what):
        if not cond:
            errors.append(what)

    h = r["hit_tokens"]
    metadata_only = "none" in cmd and "--data" in cmd
    need(r["pages_mismatched"] == 0, f"pages_mismatched = {r['pages_mismatched']}")
    if not metadata_only:
        need(r["pages_verified"] > 0, "pages_verified = 0")
    if a.expect_hit_rate is not None:
        got = r["hit_rate"]["total"]
        need(abs(got - a.expect_hit_rate) <= 0.005,
             f"hit rate {got:.4f}, expected {a.expect_hit_rate} within 0.005")
    need(h["device"] > 0, "no device hits")
    if a.expect_host_hits:
        need(h["host"] > 0, "no host hits")
    need(r["prompt_tokens"] == r["computed_tokens"] + h["device"] + h["host"] + h["remote"]
         + h["storage"], "prompt_tokens != computed + hits")
    for k in ("ranks", "tp", "cp", "pp", "dp"):
        v = getattr(a, k)
        if v is not None:
            need(r[k] == v, f"{k} = {r[k]}, expected {v}")
    c = r["consistency"]
    need(c["divergences"] == 0, f"consistency.divergences = {c['divergences']}")
    if "--check-consistency" in cmd:
        need(c["rounds_checked"] > 0, "no consistency rounds checked")
    if not metadata_only:
        need(r["sync"]["rounds"] > 0, "sync.rounds = 0")
    need(r["storage"]["checksum_failures"] == 0, "checksum failures")
    if a.expect_remote_hits:
        rm = r["remote"]
        need(rm["enabled"], "remote tier not enabled")
        need(h["remote"] > 0, "no remote hits")
        need(rm["pages_pulled"] > 0 and rm["bytes"] > 0, "remote.pages_pulled = 0")
        need(rm["rejected_messages"] == 0, f"remote.rejected_messages = {rm['rejected_messages']}")
    if a.twice:
        need(h["storage"] > 0, "no storage hits in the second run")
        need(r["storage"]["pages_read"] > 0, "no page read from storage in the second run")
    pools = r.get("pools", {})
    for name, p in pools.items():
        need(p["pages_mismatched"] == 0, f"pool {name}: pages_mismatched = {p['pages_mismatched']}")
    if a.expect_pools is not None:
        want = a.expect_pools.split(",")
        partial = set(filter(None, a.partial_pools.split(",")))
        need(partial <= set(want), f"partial pools {sorted(partial)} not in {sorted(want)}")
        need(set(pools) == set(want), f"pools {sorted(pools)}, expected {sorted(want)}")
        for name in want:
            p = pools.get(name, {"pages_verified": 0})
            if name in partial:
                need(0 < p["pages_verified"] <= r["pages_verified"],
                     f"pool {name}: {p['pages_verified']} pages verified, the job "
                     f"{r['pages_verified']} (expected some, at most the job's)")
            else:
                need(p["pages_verified"] == r["pages_verified"] > 0,
                     f"pool {name}: {p['pages_verified']} pages verified, the job "
                     f"{r['pages_verified']}")
    if errors:
        sys.exit("report check failed: " + "; ".join(errors) + "\n" + out[-3000:])
    hr = r["hit_rate"]
    per_pool = ", ".join(f"{n} {p['pages_verified']}/{p['pages_mismatched']}"
                         for n, p in pools.items())
    print(f"ok: {r['requests']} requests, hit rate {hr['total']:.3f} (device {hr['device']:.3f}, "
          f"host {hr['host']:.3f}, storage {hr['storage']:.3f}, remote {hr['remote']:.3f}), "
          f"{r['pages_verified']} pages verified, {c['rounds_checked']} rounds checked, "
          f"{c['divergences']} divergences; pools verified/mismatched: {per_pool}")


if __name__ == "__main__":
    main()
