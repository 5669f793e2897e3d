#!/usr/bin/env python3
"""strata-bench tree runs, its flat baseline reaches the tree's hit rate (the bench fails
otherwise), and the JSON report holds every metric for both page sizes, with the tree's metadata
within 128 bytes per cached page (a count, not a timing, so it holds on any machine).

usage: check_tree_bench.py STRATA_BENCH
"""
import json
import os
import subprocess
import sys
import tempfile


def main():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tree.json")
        cmd = [sys.argv[1], "tree", "--repeats", "1", "--json", path]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"{' '.join(cmd)}: exit {p.returncode}\n{p.stdout}{p.stderr}")
        doc = json.load(open(path))
    rows = {(r["case"], r["metric"]): r for r in doc["rows"]}
    errors = []
    for page in (64, 512):
        case = f"page{page}_cap3e+06"
        for metric in ("tree_seconds", "requests_per_s", "block_ops_per_s", "p99_request_us",
                       "metadata_bytes_per_page"):
            r = rows.get((case, metric))
            if r is None:
                errors.append(f"no row {case} {metric}")
            elif not (r["strata"] > 0 and r["baselines"]["flat_lru"] > 0):
                errors.append(f"{case} {metric}: {r['strata']} vs {r['baselines']}")
        r = rows.get((case, "metadata_bytes_per_page"))
        if r is not None and r["strata"] > 128:
            errors.append(f"{case}: {r['strata']:.1f} metadata bytes per page (goal 128)")
        if r is not None and r["extra"]["requests"] != 12031:
            errors.append(f"{case}: {r['extra']['requests']} requests replayed")
    if errors:
        sys.exit("; ".join(errors) + "\n" + p.stdout)
    print(p.stdout)


if __name__ == "__main__":
    main()
