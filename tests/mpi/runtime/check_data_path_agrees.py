#!/usr/bin/env python3
"""The data path agrees with the metadata replay (issue 19): strata-run on the first requests of a
trace with --data verify --deterministic (the real controller, every byte moved and checked) and
with --data none (block_replay) must give the same hit tokens per tier (device, host, storage),
the same prompt tokens, and the data path must verify every page it reused.

Both runs take the same options (COMMON); the replay adds --replay-rules engine, under which it
counts hits as the data path does: the last token of a prompt is always computed, so a hit covers
at most the full pages before it, and only full pages are cached (the simulators' rules, the
replay's default, count a partial last page and a whole-prompt hit). Every tier must have hits,
so that the comparison covers all three.

Regression (issue 19): the data path served no storage hits at all here (0 against the replay's
184,320 tokens): its prefetch grafted fetched pages only below a cached prefix ending at the root
or a host-resident node, which under write_back excludes every prefix cached on the device.

usage: check_data_path_agrees.py STRATA_RUN COMMON_OPTION...
"""
import json
import os
import subprocess
import sys
import tempfile
import time


def run(cmd, report):
    start = time.monotonic()
    p = subprocess.run(cmd + ["--report", report], capture_output=True, text=True, timeout=600)
    took = time.monotonic() - start
    if p.returncode != 0:
        sys.exit(f"exit {p.returncode} after {took:.1f} s: {' '.join(cmd)}\n"
                 f"{(p.stdout + p.stderr)[-4000:]}")
    with open(report) as f:
        return json.load(f), took


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    strata_run, common = sys.argv[1], sys.argv[2:]
    with tempfile.TemporaryDirectory() as tmp:
        data, data_s = run([strata_run, *common, "--data", "verify", "--deterministic",
                            "--storage-dir", os.path.join(tmp, "store")],
                           os.path.join(tmp, "verify.json"))
        replay, replay_s = run([strata_run, *common, "--data", "none", "--replay-rules", "engine"],
                               os.path.join(tmp, "none.json"))
    print(f"data path ({data_s:.1f} s): prompt {data['prompt_tokens']}, hits {data['hit_tokens']}, "
          f"{data['pages_verified']} pages verified, {data['pages_mismatched']} mismatched")
    print(f"replay    ({replay_s:.1f} s): prompt {replay['prompt_tokens']}, "
          f"hits {replay['hit_tokens']}")
    errors = []
    if data["pages_mismatched"] != 0 or data["pages_verified"] == 0:
        errors.append(f"the data path verified {data['pages_verified']} pages, "
                      f"{data['pages_mismatched']} mismatched")
    if data["requests"] != replay["rounds"]:
        errors.append(f"requests: data path {data['requests']}, replay {replay['rounds']}")
    if data["prompt_tokens"] != replay["prompt_tokens"]:
        errors.append(f"prompt tokens: data path {data['prompt_tokens']}, replay "
                      f"{replay['prompt_tokens']}")
    for tier in ("device", "host", "storage"):
        d, r = data["hit_tokens"][tier], replay["hit_tokens"][tier]
        if d != r:
            errors.append(f"{tier} hit tokens: data path {d}, replay {r} (difference {d - r})")
        if d == 0:
            errors.append(f"no {tier} hits: the sizes do not exercise that tier")
    if data["hit_tokens"].get("remote", 0) != 0:
        errors.append(f"remote hits {data['hit_tokens']['remote']} in a one-rank run")
    if errors:
        print("FAIL:\n  " + "\n  ".join(errors))
        return 1
    print("the data path and the replay agree on every tier")
    return 0


if __name__ == "__main__":
    sys.exit(main())
