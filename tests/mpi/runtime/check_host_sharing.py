#!/usr/bin/env python3
"""Runs strata-run with --host-sharing off and node (same arguments) and checks the node-wide host
tier through the two JSON reports.

usage: check_host_sharing.py --tp N [--copies-off C] [--expect-written-once]
                             [--expect-cross-replica] -- COMMAND...
COMMAND is the strata-run command line (mpiexec ... strata-run ARGS); --host-sharing and --report
are appended. Both runs must verify every page they load (0 mismatched) and show no divergence.
With sharing: host.sharing is "node", one copy per replicated page (--copies-off C: the run
without sharing must report C), and at most the unshared bytes per node (strictly fewer when
--copies-off > 1). --expect-written-once: the runs are deterministic and every pool replicated
across the TP group, so the device->host bytes with sharing are those without divided by TP
(each replicated page is written once per node) while the host->device bytes are equal (every
rank still loads it). --expect-cross-replica: the sharing run served cross-replica host hits
(host.cross_replica_hit_pages > 0, hit_tokens.remote > 0) with no checksum failure.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


def run(cmd, sharing, tmp):
    report = os.path.join(tmp, f"report-{sharing}.json")
    full = cmd + ["--host-sharing", sharing, "--report", report]
    p = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        sys.exit(f"FAIL: {' '.join(full)} exited {p.returncode}\n{p.stdout[-4000:]}")
    with open(report) as f:
        r = json.load(f)
    print(f"--- host sharing {sharing}: {json.dumps(r['host'])}")
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tp", type=int, required=True)
    ap.add_argument("--copies-off", type=float, default=None)
    ap.add_argument("--expect-written-once", action="store_true")
    ap.add_argument("--expect-cross-replica", action="store_true")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.command[1:] if a.command and a.command[0] == "--" else a.command
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        off = run(cmd, "off", tmp)
        node = run(cmd, "node", tmp)
    for name, r in (("off", off), ("node", node)):
        if r["pages_verified"] <= 0:
            errors.append(f"{name}: no page verified")
        if r["pages_mismatched"] != 0:
            errors.append(f"{name}: {r['pages_mismatched']} pages mismatched")
        if r["consistency"]["divergences"] != 0:
            errors.append(f"{name}: {r['consistency']['divergences']} divergences")
        if r["host"]["sharing"] != name:
            errors.append(f"{name}: host.sharing is {r['host']['sharing']!r}")
    h_off, h_node = off["host"], node["host"]
    if h_node["copies_per_replicated_page"] != 1:
        errors.append(f"node: {h_node['copies_per_replicated_page']} copies per replicated page")
    if a.copies_off is not None and h_off["copies_per_replicated_page"] != a.copies_off:
        errors.append(f"off: {h_off['copies_per_replicated_page']} copies per replicated page, "
                      f"expected {a.copies_off}")
    if h_node["bytes_per_node_unshared"] != h_off["bytes_per_node"]:
        errors.append(f"node: unshared bytes {h_node['bytes_per_node_unshared']} differ from the "
                      f"bytes without sharing {h_off['bytes_per_node']}")
    if h_node["bytes_per_node"] > h_off["bytes_per_node"] + (1 << 20):
        errors.append(f"node: {h_node['bytes_per_node']} bytes per node, more than "
                      f"{h_off['bytes_per_node']} without sharing")
    if (a.copies_off or 1) > 1 and h_node["bytes_per_node"] >= h_off["bytes_per_node"]:
        errors.append(f"node: {h_node['bytes_per_node']} bytes per node, not fewer than "
                      f"{h_off['bytes_per_node']} without sharing")
    if a.expect_written_once:
        d_off = off["transfer"]["d2h"]["bytes"]
        d_node = node["transfer"]["d2h"]["bytes"]
        if d_off == 0 or d_node * a.tp != d_off:
            errors.append(f"d2h bytes: {d_node} with sharing x tp {a.tp} != {d_off} without "
                          "(a replicated page must be written once per node)")
        if node["transfer"]["h2d"]["bytes"] != off["transfer"]["h2d"]["bytes"]:
            errors.append(f"h2d bytes: {node['transfer']['h2d']['bytes']} with sharing, "
                          f"{off['transfer']['h2d']['bytes']} without (every rank loads)")
        if node["transfer"]["h2d"]["bytes"] == 0:
            errors.append("no host hit was loaded: the test proves nothing")
    if a.expect_cross_replica:
        if h_node["cross_replica_hit_pages"] <= 0 or node["hit_tokens"]["remote"] <= 0:
            errors.append(f"node: no cross-replica host hit (pages "
                          f"{h_node['cross_replica_hit_pages']}, tokens "
                          f"{node['hit_tokens']['remote']})")
        if h_node["checksum_failures"] != 0:
            errors.append(f"node: {h_node['checksum_failures']} checksum failures")
    if errors:
        sys.exit("FAIL:\n  " + "\n  ".join(errors))
    print("OK")


if __name__ == "__main__":
    main()
