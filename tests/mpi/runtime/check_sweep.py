#!/usr/bin/env python3
"""strata-run sweep on the Mooncake conversation trace: sweep.csv, sweep.json and sweep.png are
written, the CSV rows match the published LRU hit rates (hit-rate-references.md) within 0.005,
the JSON holds the same rows, and Belady's figure is never below LRU's. With --hide-gnuplot it runs
with a PATH without gnuplot: the CSV and JSON must be written all the same, no sweep.png, and the
output must say that there is no plot because gnuplot is not on PATH.

usage: check_sweep.py [--hide-gnuplot] STRATA_RUN TRACE
"""
import csv
import json
import os
import subprocess
import sys
import tempfile

REFERENCE = {100000: 0.043, 1000000: 0.054, 3000000: 0.139, 10000000: 0.291, 30000000: 0.366,
             50000000: 0.371}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def path_without(tmp, program):
    """A PATH of symlinks to every program of PATH but `program`."""
    bindir = os.path.join(tmp, "bin")
    os.mkdir(bindir)
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            link = os.path.join(bindir, name)
            if name != program and not os.path.lexists(link):
                os.symlink(os.path.join(d, name), link)
    return bindir


def main():
    args = sys.argv[1:]
    hide = args and args[0] == "--hide-gnuplot"
    binary, trace = args[1:3] if hide else args[0:2]
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PATH=path_without(tmp, "gnuplot")) if hide else None
        out = os.path.join(tmp, "out")
        cmd = [binary, "--workload", "mooncake:" + trace, "--page-size", "512",
               "--host-tokens", "0", "--no-storage", "--log-level", "warn", "sweep",
               "--capacities", "1e5,1e6,3e6,1e7,3e7,5e7", "--out-dir", out, "--with-opt"]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode != 0:
            sys.exit(f"{' '.join(cmd)}: exit {p.returncode}\n{p.stdout}{p.stderr}")
        if hide:
            if os.path.exists(os.path.join(out, "sweep.png")):
                errors.append("sweep.png written without gnuplot")
            if "no plot: gnuplot is not on PATH" not in p.stdout + p.stderr:
                errors.append(f"no note that gnuplot is missing:\n{p.stdout}{p.stderr}")
        else:
            with open(os.path.join(out, "sweep.png"), "rb") as f:
                png = f.read()
            if not png.startswith(PNG_SIGNATURE) or len(png) < 1000:
                errors.append(f"sweep.png is not a PNG image ({len(png)} bytes)")
        rows = list(csv.DictReader(open(os.path.join(out, "sweep.csv"))))
        doc = json.load(open(os.path.join(out, "sweep.json")))
    caps = [int(r["capacity_tokens"]) for r in rows]
    if caps != sorted(REFERENCE):
        errors.append(f"CSV capacities {caps}, expected {sorted(REFERENCE)}")
    for r in rows:
        cap, total = int(r["capacity_tokens"]), float(r["hit_rate_total"])
        if cap in REFERENCE and abs(total - REFERENCE[cap]) > 0.005:
            errors.append(f"capacity {cap}: hit rate {total:.4f}, published {REFERENCE[cap]}")
        if abs(float(r["hit_rate_device"]) - total) > 1e-6:
            errors.append(f"capacity {cap}: one tier, but device {r['hit_rate_device']} != total")
        if float(r["hit_rate_opt"]) < total:
            errors.append(f"capacity {cap}: opt {r['hit_rate_opt']} below LRU {total}")
    if len(doc["rows"]) != len(rows):
        errors.append(f"sweep.json has {len(doc['rows'])} rows, sweep.csv {len(rows)}")
    for j, r in zip(doc["rows"], rows):
        if j["capacity_tokens"] != int(r["capacity_tokens"]) or \
                abs(j["hit_rate"]["total"] - float(r["hit_rate_total"])) > 1e-6:
            errors.append(f"sweep.json row {j} differs from the CSV row {r}")
    if doc["page_size"] != 512 or doc["eviction"] != "lru":
        errors.append(f"sweep.json settings: page_size {doc['page_size']}, "
                      f"eviction {doc['eviction']}")
    if errors:
        sys.exit("; ".join(errors))
    print("ok: " + ", ".join(f"{r['capacity_tokens']}: {float(r['hit_rate_total']):.4f} "
                             f"(opt {float(r['hit_rate_opt']):.4f})" for r in rows))


if __name__ == "__main__":
    main()
