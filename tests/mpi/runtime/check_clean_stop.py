#!/usr/bin/env python3
"""A strata-run job stopped by a signal, or failing, leaves a report and no temporary directory.

usage: check_clean_stop.py stop [--signal TERM|INT] [--to rank|launcher] [--bound S] -- COMMAND...
       check_clean_stop.py fail --expect-rc N --expect-text TEXT -- COMMAND...

COMMAND is an mpirun (or a single strata-run) command line; the script appends
`--report <private dir>/report.json` and runs it with TMPDIR set to a fresh private directory.

stop: once rank 0 logged progress (every rank is in its request loop, where a signal asks for a
clean stop), sends the signal either to the last rank started by the launcher (only that rank gets
it: the others must learn of it through the per-round agreement) or to the launcher (mpirun, which
passes SIGTERM on to every rank after odls_base_sigkill_timeout seconds, and SIGKILL as many
seconds later: this script sets 10). The
job must exit with 128 + the signal (mpirun signalled itself: 1) within S seconds of it (default 25: under Slurm's KillWait of
30 s), having written a valid JSON report with "interrupted": true, the signal's name, fewer requests
than planned, 0 mismatched pages and 0 divergences.

fail: the job must exit with code N, print TEXT, and leave no report.

Both: TMPDIR holds no strata-* entry afterwards (the storage tier's temporary directory is gone).
"""
import argparse
import json
import os
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from job_run import Run, children  # noqa: E402

START_TIMEOUT_S = 240  # pool zeroing of 4 ranks on a loaded 2-core machine


def leftovers(tmp):
    return [n for n in os.listdir(tmp) if n.startswith("strata-")]


def fail(msg, run):
    sys.exit(f"FAIL: {msg}\n--- output (tail) ---\n{run.text()[-4000:] if run else ''}")


def check_stop(args, cmd, env, tmp, report):
    sig = getattr(signal, "SIG" + args.signal)
    env["OMPI_MCA_odls_base_sigkill_timeout"] = "10"
    run = Run(cmd, env)
    if not run.wait_for("progress:", START_TIMEOUT_S):
        run.finish(1)
        fail(f"no progress line within {START_TIMEOUT_S} s (exit {run.proc.returncode})", run)
    if args.to == "launcher":
        target = run.proc.pid
    else:
        ranks = children(run.proc.pid)
        if not ranks:
            fail("the launcher has no child process to signal", run)
        target = ranks[-1]
    sent = time.monotonic()
    os.kill(target, sig)
    rc = run.finish(args.bound + 30)
    took = time.monotonic() - sent
    if rc is None:
        fail(f"the job was still running {args.bound + 30} s after {args.signal}: killed", run)
    # mpirun, once signalled itself, exits 1 whatever its ranks returned (Open MPI 4.1); otherwise
    # it passes on the first non-zero exit code of a rank.
    expected = {128 + sig, 1} if args.to == "launcher" else {128 + sig}
    if rc not in expected:
        fail(f"exit code {rc}, expected {sorted(expected)} (128 + SIG{args.signal})", run)
    if took > args.bound:
        fail(f"the job took {took:.1f} s to stop, more than {args.bound} s", run)
    try:
        with open(report) as f:
            r = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"no valid JSON report at {report}: {e}", run)
    if r.get("interrupted") is not True or r.get("interrupt_signal") != "SIG" + args.signal:
        fail(f"report: interrupted={r.get('interrupted')!r}, "
             f"interrupt_signal={r.get('interrupt_signal')!r}", run)
    if not 0 < r["requests"] < r["requests_planned"]:
        fail(f"report: {r['requests']} of {r['requests_planned']} requests: expected some, "
             f"not all", run)
    if r["pages_mismatched"] != 0 or r["consistency"]["divergences"] != 0:
        fail(f"report: {r['pages_mismatched']} mismatched pages, "
             f"{r['consistency']['divergences']} divergences", run)
    if "interrupted: SIG" + args.signal not in run.text():
        fail("the summary does not say the run was interrupted", run)
    left = leftovers(tmp)
    if left:
        fail(f"temporary directories left in TMPDIR: {left}", run)
    print(f"ok: SIG{args.signal} to the {args.to}: exit {rc} after {took:.1f} s, "
          f"{r['requests']} of {r['requests_planned']} requests, report valid, TMPDIR clean")


def check_fail(args, cmd, env, tmp, report):
    run = Run(cmd, env)
    rc = run.finish(START_TIMEOUT_S)
    if rc is None:
        fail(f"the job was still running after {START_TIMEOUT_S} s: killed", run)
    if rc != args.expect_rc:
        fail(f"exit code {rc}, expected {args.expect_rc}", run)
    if args.expect_text not in run.text():
        fail(f"the output does not contain {args.expect_text!r}", run)
    if os.path.exists(report):
        fail(f"a failed run wrote a report at {report}", run)
    left = leftovers(tmp)
    if left:
        fail(f"temporary directories left in TMPDIR: {left}", run)
    print(f"ok: exit {rc}, {args.expect_text!r} printed, TMPDIR clean")


def main():
    if "--" not in sys.argv:
        sys.exit(__doc__)
    split = sys.argv.index("--")
    p = argparse.ArgumentParser(usage=__doc__)
    p.add_argument("mode", choices=["stop", "fail"])
    p.add_argument("--signal", default="TERM", choices=["TERM", "INT"])
    p.add_argument("--to", default="rank", choices=["rank", "launcher"])
    p.add_argument("--bound", type=float, default=25.0)
    p.add_argument("--expect-rc", type=int)
    p.add_argument("--expect-text")
    args = p.parse_args(sys.argv[1:split])
    if args.mode == "fail" and (args.expect_rc is None or not args.expect_text):
        sys.exit("fail mode needs --expect-rc and --expect-text")
    with tempfile.TemporaryDirectory() as work:
        tmp = os.path.join(work, "tmp")
        os.mkdir(tmp)
        report = os.path.join(work, "report.json")
        cmd = sys.argv[split + 1:] + ["--report", report]
        env = dict(os.environ, TMPDIR=tmp)
        if args.mode == "stop":
            check_stop(args, cmd, env, tmp, report)
        else:
            check_fail(args, cmd, env, tmp, report)


if __name__ == "__main__":
    main()
