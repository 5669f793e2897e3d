#!/usr/bin/env python3
"""strata-run on bad trace inputs: each is a non-zero exit with a message naming the file, the
place and what is wrong, printed even with --log-level off (issue 19); and the inputs that load
with a warning (a directory with a .JSON file and other entries, requests out of time order) say
so at warn, and --requests N replays the first N requests under --data none.

usage: check_bad_inputs.py STRATA_RUN
"""
import json
import os
import re
import subprocess
import sys
import tempfile

failures = []
STRAY_REPORT = os.path.join(tempfile.gettempdir(), f"strata-bad-inputs-{os.getpid()}.json")


def run(strata_run, args, timeout=120):
    if "--report" not in args:  # never the default, strata-report.json in the working directory
        args = [*args, "--report", STRAY_REPORT]
    p = subprocess.run([strata_run, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def check(name, ok, detail):
    print(("ok   " if ok else "FAIL ") + name)
    if not ok:
        failures.append(name)
        print("     " + detail.replace("\n", "\n     "))


REPLAY = ["--data", "none", "--page-size", "64", "--device-tokens", "4096", "--host-tokens", "0",
          "--no-storage"]

MC_ROW = '{{"timestamp": {t}, "input_length": 600, "output_length": 1, "hash_ids": [{a}, {b}]}}\n'
KV_ONE = '{"block_size": 64, "requests": [{"t": 0, "in": 128, "out": 1, "hash_ids": [1, 2]}]}'


def main():
    strata_run = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        def write(name, text):
            path = os.path.join(tmp, name)
            with open(path, "w") as f:
                f.write(text)
            return path

        # name, workload, file text, regex the output must match (the path is checked too)
        bad = [
            ("empty mooncake", "mooncake", "empty.jsonl", "",
             r"empty\.jsonl: the file is empty \(0 bytes\)"),
            ("blank mooncake", "mooncake", "blank.jsonl", "\n   \n\t\n",
             r"blank\.jsonl: the file holds only whitespace \(7 bytes\)"),
            ("empty kvtester", "kvtester", "empty.json", "",
             r"empty\.json: the file is empty \(0 bytes\)"),
            ("blank kvtester", "kvtester", "blank.json", "  \n ",
             r"blank\.json: the file holds only whitespace \(4 bytes\)"),
            ("kvtester without requests", "kvtester", "none.json",
             '{"block_size": 64, "requests": []}',
             r"none\.json: /requests: is empty: a trace file needs at least one request"),
            ("truncated kvtester", "kvtester", "cut.json", KV_ONE[:60],
             r"cut\.json: not valid JSON at byte 60 \(line 1, column 61\), the end of the file: "
             r"truncated\?: syntax error.*unexpected end of input"),
            ("truncated mooncake line", "mooncake", "cut.jsonl",
             MC_ROW.format(t=1, a=1, b=2) + MC_ROW.format(t=2, a=1, b=2)[:30],
             r"cut\.jsonl:2: not a valid JSON object at column 31 \(the end of the line: "
             r"truncated\?\)"),
        ]
        for name, kind, fname, text, want in bad:
            path = write(fname, text)
            for level in ("off", "info"):
                rc, out = run(strata_run, [*REPLAY, "--workload", f"{kind}:{path}",
                                           "--log-level", level])
                check(f"{name} (--data none, --log-level {level}): rc != 0 and the message",
                      rc != 0 and re.search(re.escape(tmp) + ".*" + want, out) is not None,
                      f"rc {rc}, want /{want}/; output:\n{out[-2000:]}")
        # The data path loads the trace the same way, and fails the same way.
        rc, out = run(strata_run, ["--workload", f"mooncake:{write('e2.jsonl', '')}",
                                   "--page-size", "64", "--device-tokens", "4096",
                                   "--host-tokens", "8192", "--no-storage", "--log-level", "off"])
        check("empty mooncake (--data verify, --log-level off)",
              rc != 0 and re.search(r"e2\.jsonl: the file is empty", out) is not None,
              f"rc {rc}; output:\n{out[-2000:]}")

        # A directory: trace_0100.JSON is loaded; the others are listed at warn with the reason.
        d = os.path.join(tmp, "dir")
        os.mkdir(d)
        os.mkdir(os.path.join(d, "sub"))
        with open(os.path.join(d, "trace_0001.json"), "w") as f:
            f.write(KV_ONE)
        with open(os.path.join(d, "trace_0100.JSON"), "w") as f:
            f.write('{"block_size": 64, "requests": [{"t": 1, "in": 128, "out": 1, '
                    '"hash_ids": [1, 2]}, {"t": 2, "in": 64, "out": 1, "hash_ids": [3]}]}')
        with open(os.path.join(d, "README.txt"), "w") as f:
            f.write("notes")
        report = os.path.join(tmp, "dir.json")
        rc, out = run(strata_run, [*REPLAY, "--workload", f"kvtester:{d}", "--log-level", "warn",
                                   "--report", report])
        rounds = json.load(open(report))["rounds"] if rc == 0 else None
        check("directory: .JSON loaded (3 requests), skipped entries listed at warn",
              rc == 0 and rounds == 3 and re.search(
                  r"\[warning\].*loaded 2 \.json files, skipped 2: README\.txt: does not end in "
                  r"\.json; sub: a directory", out) is not None,
              f"rc {rc}, rounds {rounds}; output:\n{out[-2000:]}")

        # Requests out of time order: replayed, with a warning naming the count and the first.
        rows = "".join(MC_ROW.format(t=t, a=i, b=i + 100) for i, t in enumerate([5, 9, 7, 8, 1]))
        rc, out = run(strata_run, [*REPLAY, "--workload", f"mooncake:{write('order.jsonl', rows)}",
                                   "--log-level", "warn"])
        check("mooncake out of order: warned with the count and the first line",
              rc == 0 and re.search(r"\[warning\].*order\.jsonl: 2 line\(s\) have a timestamp earlier"
                                    r".*first .*order\.jsonl:3 \(timestamp 7 after 9\)", out)
              is not None, f"rc {rc}; output:\n{out[-2000:]}")

        # --requests N under --data none: the first N requests, else the whole trace.
        rows = "".join(MC_ROW.format(t=i, a=i % 3, b=i) for i in range(10))
        path = write("ten.jsonl", rows)
        for extra, want in ((["--requests", "4"], 4), ([], 10)):
            report = os.path.join(tmp, "n.json")
            rc, out = run(strata_run, [*REPLAY, "--workload", f"mooncake:{path}",
                                       "--log-level", "warn", "--report", report, *extra])
            got = json.load(open(report)) if rc == 0 else {}
            check(f"--data none {' '.join(extra) or '(no --requests)'}: {want} requests replayed",
                  rc == 0 and got.get("rounds") == want and got.get("prompt_tokens") == 600 * want,
                  f"rc {rc}, report rounds {got.get('rounds')} prompt_tokens "
                  f"{got.get('prompt_tokens')}; output:\n{out[-2000:]}")

    if os.path.exists(STRAY_REPORT):
        os.remove(STRAY_REPORT)
    if failures:
        print(f"{len(failures)} check(s) failed: {failures}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
