#!/usr/bin/env python3
"""strata-run's KV events, as a router would consume them, checked against the run's report.

usage: check_kv_events.py [--layout map|array] [--publishers N] -- COMMAND...
Runs COMMAND (strata-run, or mpirun ... strata-run) with --kv-events tcp://127.0.0.1:* (the
publisher binds a free port and logs it), --kv-events-wait-ms (it waits for this subscriber before
its first batch), a topic and a report in a temporary directory. Subscribes with python3-zmq as
soon as the port is logged, decodes every message with python3-msgpack into vLLM's structs
(KVEventBatch of BlockStored / BlockRemoved / AllBlocksCleared, both the map layout of vLLM's
current structs and the array_like one), and checks: three frames (topic, 8-byte big-endian
sequence, payload), sequences 0.. without a gap from each of exactly N publishers (DP ranks), an
AllBlocksCleared first, the fields of each event, no page stored twice in a medium or removed from
a medium that does not hold it, every parent stored before, token_ids a whole number of pages, and
the counts per kind and medium equal to the report's kv_events (nothing dropped).
"""
import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import threading

import msgpack
import zmq

STORED_FIELDS = ["type", "block_hashes", "parent_block_hash", "token_ids", "block_size",
                 "lora_id", "medium", "lora_name"]
REMOVED_FIELDS = ["type", "block_hashes", "medium"]
MEDIA = ("GPU", "CPU", "DISK")


def fail(msg, log=""):
    sys.exit(f"FAIL: {msg}\n{log[-4000:]}")


def as_event(raw, layout):
    """One event as a dict of vLLM's field names, checking its layout."""
    if layout == "map":
        if not isinstance(raw, dict):
            fail(f"event is not a map: {raw!r}")
        kind = raw.get("type")
        want = {"BlockStored": STORED_FIELDS, "BlockRemoved": REMOVED_FIELDS,
                "AllBlocksCleared": ["type"]}.get(kind)
        if want is None or list(raw.keys()) != want:
            fail(f"event fields {list(raw.keys())} are not those of vLLM's {kind}")
        return raw
    if not isinstance(raw, list) or not raw:
        fail(f"event is not an array: {raw!r}")
    want = {"BlockStored": STORED_FIELDS, "BlockRemoved": REMOVED_FIELDS,
            "AllBlocksCleared": ["type"]}.get(raw[0])
    if want is None or len(raw) != len(want):
        fail(f"array event {raw[:1]} has {len(raw)} elements")
    return dict(zip(want, raw))


def as_batch(raw, layout):
    if layout == "map":
        if not isinstance(raw, dict) or list(raw.keys()) != ["ts", "events", "data_parallel_rank"]:
            fail(f"batch is not vLLM's KVEventBatch map: {str(raw)[:200]}")
        return raw["ts"], raw["events"], raw["data_parallel_rank"]
    if not isinstance(raw, list) or len(raw) != 3:
        fail(f"batch is not an array of [ts, events, dp_rank]: {str(raw)[:200]}")
    return raw[0], raw[1], raw[2]


class Subscriber:
    def __init__(self):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.setsockopt(zmq.RCVHWM, 0)  # keep all until the reader starts: no drop here
        self.messages = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while True:
            if poller.poll(200):
                self.messages.append(self.sock.recv_multipart())
            elif self.stop.is_set():
                return  # the run ended and nothing came for 200 ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layout", default="map", choices=["map", "array"])
    ap.add_argument("--publishers", type=int, default=1)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        sys.exit(__doc__)
    topic = b"strata-kv"
    with tempfile.TemporaryDirectory() as tmp:
        report_path = os.path.join(tmp, "report.json")
        cmd = cmd + ["--kv-events", "tcp://127.0.0.1:*", "--kv-events-wait-ms", "120000",
                     "--kv-events-layout", args.layout, "--kv-events-topic", topic.decode(),
                     "--report", report_path]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sub = Subscriber()
        log = []
        endpoints = []
        for line in proc.stdout:
            log.append(line)
            m = re.search(r"kv events: replica \d+ publishes on (tcp://\S+)", line)
            if m:
                endpoints.append(m.group(1))
                sub.sock.connect(m.group(1))
                if len(endpoints) == args.publishers:
                    sub.thread.start()
                    break
        log.append(proc.stdout.read())
        rc = proc.wait()
        text = "".join(log)
        if rc != 0:
            fail(f"the run exited {rc}", text)
        if len(endpoints) != args.publishers:
            fail(f"{len(endpoints)} publishers logged their endpoint, expected {args.publishers}",
                 text)
        sub.stop.set()
        sub.thread.join(60)
        with open(report_path) as f:
            report = json.load(f)

    kv = report["kv_events"]
    if not kv["enabled"] or kv["publishers"] != args.publishers:
        fail(f"report kv_events: enabled {kv['enabled']}, publishers {kv['publishers']}")
    if kv["dropped_batches"] != 0:
        fail(f"{kv['dropped_batches']} batches dropped with a subscriber reading")
    page_size = report["config"]["page_size"]

    seqs = collections.defaultdict(list)
    held = collections.defaultdict(lambda: collections.defaultdict(set))  # dp -> medium -> hashes
    ever = collections.defaultdict(set)
    stored = collections.Counter()
    removed = collections.Counter()
    stored_events = collections.Counter()
    removed_events = collections.Counter()
    cleared = 0
    events = 0
    with_tokens = 0
    for frames in sub.messages:
        if len(frames) != 3 or frames[0] != topic or len(frames[1]) != 8:
            fail(f"message is not [topic, 8-byte sequence, payload]: {[len(f) for f in frames]}")
        ts, evs, dp = as_batch(msgpack.unpackb(frames[2], raw=False), args.layout)
        if not isinstance(ts, float) or not isinstance(dp, int):
            fail(f"batch ts {ts!r} or data_parallel_rank {dp!r} has the wrong type")
        seqs[dp].append(int.from_bytes(frames[1], "big"))
        for raw in evs:
            e = as_event(raw, args.layout)
            events += 1
            if e["type"] == "AllBlocksCleared":
                if seqs[dp] != [0] or raw is not evs[0]:
                    fail("AllBlocksCleared is not the first event of a publisher")
                cleared += 1
                continue
            medium = e["medium"]
            if medium not in MEDIA:
                fail(f"unknown medium {medium!r}")
            hashes = e["block_hashes"]
            if not hashes or not all(isinstance(h, int) and 0 <= h < 2**64 for h in hashes):
                fail(f"block hashes are not unsigned 64-bit integers: {hashes[:4]}")
            tier = held[dp][medium]
            if e["type"] == "BlockRemoved":
                for h in hashes:
                    if h not in tier:
                        fail(f"BlockRemoved of {h:#x} from {medium}, which does not hold it")
                    tier.remove(h)
                removed[medium] += len(hashes)
                removed_events[medium] += 1
                continue
            if e["block_size"] != page_size or e["lora_id"] is not None or e["lora_name"] is not None:
                fail(f"BlockStored block_size {e['block_size']} (page size {page_size}), lora "
                     f"{e['lora_id']!r} {e['lora_name']!r}")
            parent = e["parent_block_hash"]
            if parent is not None and parent not in ever[dp]:
                fail(f"BlockStored's parent {parent:#x} was never stored")
            tokens = e["token_ids"]
            if tokens:
                with_tokens += 1
                if len(tokens) != page_size * len(hashes):
                    fail(f"{len(tokens)} token_ids for {len(hashes)} pages of {page_size}")
            for h in hashes:
                if medium != "DISK" and h in tier:
                    fail(f"BlockStored of {h:#x} in {medium}, which already holds it")
                tier.add(h)
                ever[dp].add(h)
            stored[medium] += len(hashes)
            stored_events[medium] += 1

    if sorted(seqs) != list(range(args.publishers)):
        fail(f"batches came from DP ranks {sorted(seqs)}, expected 0..{args.publishers - 1}")
    for dp, s in seqs.items():
        if s != list(range(len(s))):
            fail(f"DP rank {dp}: sequence numbers are not 0..{len(s) - 1} in order: {s[:10]}")
    got = {"batches": sum(len(s) for s in seqs.values()), "events": events, "cleared": cleared,
           "stored_pages": dict(stored), "removed_pages": dict(removed),
           "stored_events": dict(stored_events), "removed_events": dict(removed_events)}
    for key, value in got.items():
        want = kv[key]
        if isinstance(want, dict):
            want = {m: n for m, n in want.items() if n}
        if value != want:
            fail(f"received {key} {value}, the report says {want}")
    if cleared != args.publishers:
        fail(f"{cleared} AllBlocksCleared for {args.publishers} publishers")
    # The run moved pages through every tier: the events say so, and match what the report says
    # the tiers did (per replica: every rank of a replica holds the same pages).
    ranks_per_replica = report["ranks"] // max(1, args.publishers)
    for medium in MEDIA:
        if not stored[medium]:
            fail(f"no page stored in {medium}")
    if report["evictions"]["device_pages"] and not removed["GPU"]:
        fail("device evictions but no BlockRemoved from GPU")
    if removed["GPU"] * ranks_per_replica != report["evictions"]["device_pages"]:
        fail(f"{removed['GPU']} pages removed from GPU, the report evicted "
             f"{report['evictions']['device_pages']} over {ranks_per_replica} ranks a replica")
    if not with_tokens:
        fail("no BlockStored carried its tokens")
    print(f"ok: {got['batches']} batches, {events} events ({args.layout}); stored {dict(stored)}, "
          f"removed {dict(removed)}; {with_tokens} stores with tokens")


if __name__ == "__main__":
    main()
