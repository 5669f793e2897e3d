#!/usr/bin/env python3
"""Multi-tier metadata replay: the hit rates of the device, host and storage tiers add up to the
hit rate of one tier of the summed capacity (within 0.01), and every tier serves hits.

usage: check_tier_split.py STRATA_RUN TRACE PAGE_SIZE DEVICE HOST STORAGE
"""
import json
import os
import subprocess
import sys
import tempfile


def replay(binary, trace, page, tmp, name, *tiers):
    report = os.path.join(tmp, name + ".json")
    cmd = [binary, "--workload", "mooncake:" + trace, "--page-size", page, "--data", "none",
           "--log-level", "warn", "--report", report, *tiers]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)}: exit {p.returncode}\n{p.stdout}{p.stderr}")
    return json.load(open(report))


def main():
    binary, trace, page, device, host, storage = sys.argv[1:7]
    total = str(int(device) + int(host) + int(storage))
    with tempfile.TemporaryDirectory() as tmp:
        split = replay(binary, trace, page, tmp, "split", "--device-tokens", device,
                       "--host-tokens", host, "--storage-tokens", storage)
        one = replay(binary, trace, page, tmp, "one", "--device-tokens", total,
                     "--host-tokens", "0", "--no-storage")
    rate, h = split["hit_rate"], split["hit_tokens"]
    errors = []
    for tier in ("device", "host", "storage"):
        if h[tier] <= 0:
            errors.append(f"no {tier} hits")
    tier_sum = rate["device"] + rate["host"] + rate["storage"]
    if abs(tier_sum - rate["total"]) > 1e-9:
        errors.append(f"tier rates sum to {tier_sum}, total says {rate['total']}")
    if split["prompt_tokens"] != split["computed_tokens"] + h["device"] + h["host"] + h["storage"]:
        errors.append("prompt_tokens != computed + hits")
    one_rate = one["hit_rate"]["total"]
    if one["hit_tokens"]["host"] or one["hit_tokens"]["storage"]:
        errors.append("the one-tier run reports host or storage hits")
    if abs(tier_sum - one_rate) > 0.01:
        errors.append(f"tiers sum to {tier_sum:.4f}, one tier of {total} tokens gives "
                      f"{one_rate:.4f} (more than 0.01 apart)")
    line = (f"device {device} + host {host} + storage {storage}: {rate['device']:.4f} + "
            f"{rate['host']:.4f} + {rate['storage']:.4f} = {tier_sum:.4f}; one tier of {total}: "
            f"{one_rate:.4f}")
    if errors:
        sys.exit(line + "\n" + "; ".join(errors))
    print("ok: " + line)


if __name__ == "__main__":
    main()
