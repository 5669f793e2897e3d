"""The engine of the Python package's tests: pools in torch tensors it owns (K/V rows of 2 heads x
8 dims in bf16 on 3 layers, with padding between layers; layout "interleaved" keeps K and V per
token in one tensor, "padded" pads every row; an fp8 indexer sidecar in byte tensors,
one per layer, on layers 1 and 2) and the KV a real model would write: each row depends on the
whole prefix up to its token (and on the TP shard for per-rank pools), so a row loaded for the
wrong prefix, position, layer or shard differs. Values are small integers, exact in bf16. And the
requests every test serves: a device hit, then a host hit once other prompts overran the device
pool (device_and_host_hits)."""

from __future__ import annotations

import contextlib
from typing import List, Sequence

import numpy as np
import torch

import strata

PAGE = 16
DEVICE_TOKENS = 32 * PAGE
HOST_TOKENS = 128 * PAGE
LAYERS = 3
HEADS, DIM = 2, 8
IDX_LAYERS = (1, 2)
IDX_BYTES = 20
PAD = 0x5A
ROW_PAD = 8  # elements of padding after each K/V row of the "padded" layout
_M64 = (1 << 64) - 1


def _mix_int(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _mix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def tokens_of(seed: int, n: int, prefix: Sequence[int] = ()) -> List[int]:
    """n tokens: `prefix`, then pseudo-random ones from seed."""
    out = list(prefix)
    while len(out) < n:
        seed = _mix_int(seed)
        out.append(seed % 50000)
    return out


def _digests(tokens: Sequence[int]) -> np.ndarray:
    d, h = np.empty(len(tokens), dtype=np.uint64), 0
    for i, t in enumerate(tokens):
        h = _mix_int(h ^ int(t))
        d[i] = h
    return d


def row_values(tokens: Sequence[int], positions: torch.Tensor, salt: int,
               width: int) -> np.ndarray:
    """[len(positions), width] values in [0, 256) of the rows of those positions."""
    pos = positions.numpy().astype(np.uint64)
    h = _digests(tokens)[positions.numpy()] ^ np.uint64(salt) ^ (pos << np.uint64(8))
    h = _mix(h)[:, None] + np.arange(width, dtype=np.uint64)[None, :]
    return (_mix(h) % np.uint64(256)).astype(np.int64)


class Engine:
    """The engine's memory and what it writes and checks there."""

    def __init__(self, shard: int = 0, rows: int = DEVICE_TOKENS, pad_rows: int = 5,
                 device: str = "cpu", layout: str = "packed"):
        self.shard, self.rows, self.device = shard, rows, torch.device(device)
        self.layout = layout
        full = dict(dtype=torch.bfloat16, device=self.device)
        if layout == "packed":  # (buffers, layers, rows, heads, dim), rows padded between layers
            self.kv_block = torch.full((2, LAYERS, rows + pad_rows, HEADS, DIM), float(PAD), **full)
            self.kv = self.kv_block[:, :, :rows]
        elif layout == "interleaved":  # K and V per token: (layers, rows, 2, heads, dim)
            self.kv_block = torch.full((LAYERS, rows + pad_rows, 2, HEADS, DIM), float(PAD), **full)
            self.kv = self.kv_block[:, :rows].permute(2, 0, 1, 3, 4)  # slot stride: two rows
        elif layout == "padded":  # each row padded by ROW_PAD elements (and rows between layers)
            self.kv_block = torch.full((2, LAYERS, rows + pad_rows, HEADS * DIM + ROW_PAD),
                                       float(PAD), **full)
            self.kv = self.kv_block[:, :, :rows, :HEADS * DIM].view(2, LAYERS, rows, HEADS, DIM)
        else:
            raise ValueError(f"layout {layout!r}")
        self.idx = [torch.full((rows, IDX_BYTES), PAD, dtype=torch.uint8, device=self.device)
                    for _ in IDX_LAYERS]

    def pools(self) -> List[strata.Pool]:
        return [
            strata.Pool("kv", layers=LAYERS, buffers=2, tensor=self.kv),
            strata.Pool("idx", "sidecar", indices_of="kv", layers=IDX_LAYERS, dtype="fp8",
                        tp="replicated", tensors=self.idx),
        ]

    def _expected(self, tokens: Sequence[int], positions: torch.Tensor):
        kv = torch.empty(2, LAYERS, len(positions), HEADS, DIM, dtype=torch.bfloat16)
        for b in range(2):
            for layer in range(LAYERS):
                salt = (1 << 56) | (b << 48) | (layer << 40) | self.shard
                v = row_values(tokens, positions, salt, HEADS * DIM) - 128
                kv[b, layer] = torch.from_numpy(v).view(-1, HEADS, DIM).to(torch.bfloat16)
        idx = [torch.from_numpy(row_values(tokens, positions, (2 << 56) | (layer << 40),
                                        IDX_BYTES)).to(torch.uint8) for layer in IDX_LAYERS]
        return kv.to(self.device), [t.to(self.device) for t in idx]

    def write(self, a: strata.Admission, tokens: Sequence[int], start: int, end: int) -> None:
        """Computes the rows of positions [start, end) into the pools (the model's forward)."""
        if end <= start:
            return
        positions = torch.arange(start, end)
        kv, idx = self._expected(tokens, positions)
        slots = a.pool("kv").slots(start, end, self.device)
        self.kv[:, :, slots] = kv
        idx_slots = a.pool("idx").slots(start, end, self.device)
        for t, want in zip(self.idx, idx):
            t[idx_slots] = want

    def check(self, a: strata.Admission, tokens: Sequence[int], end: int) -> None:
        """The rows of positions [0, end) hold what the model wrote for this prefix."""
        if end == 0:
            return
        positions = torch.arange(0, end)
        kv, idx = self._expected(tokens, positions)
        got = self.kv[:, :, a.pool("kv").slots(0, end, self.device)]
        assert torch.equal(got, kv), f"request {a.request_id}: K/V rows differ"
        idx_slots = a.pool("idx").slots(0, end, self.device)
        for layer, t, want in zip(IDX_LAYERS, self.idx, idx):
            assert torch.equal(t[idx_slots], want), \
                f"request {a.request_id}: indexer rows of layer {layer} differ"

    def padding_intact(self) -> bool:
        """No byte outside the rows was written: rows past the pool's, and padded rows' tails."""
        if self.layout == "interleaved":
            pads = [self.kv_block[:, self.rows:]]
        elif self.layout == "padded":
            pads = [self.kv_block[:, :, self.rows:], self.kv_block[..., HEADS * DIM:]]
        else:
            pads = [self.kv_block[:, :, self.rows:]]
        return all(torch.equal(p, torch.full_like(p, float(PAD))) for p in pads)


def serve(cache: strata.Cache, engine: Engine, rid: int, tokens: Sequence[int],
          stream=None) -> strata.Admission:
    """One request through the scheduler loop; every reused row is checked. With a CUDA stream,
    the loads are waited for and the rows read and written on it."""
    cache.step()
    a = cache.admit(rid, tokens)
    cache.launch_loads()
    with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
        for layer in range(LAYERS):
            cache.wait_layer(rid, layer, stream)
        engine.check(a, tokens, a.cached_tokens)
        engine.write(a, tokens, a.cached_tokens, len(tokens))
        cache.insert(rid)  # with backend "cuda": after the current stream's writes
    cache.release(rid)
    return a


# The shared prefix: 17 full pages, at least the 256 tokens below which Strata starts no prefetch
# from storage (so a later process can hit it there).
FIRST_PAGES = 17
FIRST = tokens_of(1, FIRST_PAGES * PAGE + 3)
BRANCH = tokens_of(4, (FIRST_PAGES + 2) * PAGE, FIRST)  # shares FIRST's full pages


def device_and_host_hits(cache: strata.Cache, engine: Engine,
                         stream=None) -> List[strata.Admission]:
    """FIRST; FIRST again (a device hit, tokens as a tensor); two unrelated prompts of 20 pages
    each, which push FIRST off the device pool; BRANCH (a host hit, tokens as a tuple)."""
    first = serve(cache, engine, 1, FIRST, stream)
    assert (first.prompt_tokens, first.cached_tokens) == (len(FIRST), 0), first
    assert len(first.pages) == FIRST_PAGES + 1 and len(first.pool("idx").pages) == FIRST_PAGES + 1
    cache.drain()
    assert cache.match(np.array(FIRST, dtype=np.int64)) == FIRST_PAGES * PAGE
    again = serve(cache, engine, 2, torch.tensor(FIRST), stream)
    assert again.device_hit_tokens == FIRST_PAGES * PAGE, again
    assert again.cached_tokens == FIRST_PAGES * PAGE, again
    for rid, seed in ((3, 2), (4, 3)):  # drained: pages still being backed up stay on the device
        serve(cache, engine, rid, tokens_of(seed, 20 * PAGE), stream)
        cache.drain()
    back = serve(cache, engine, 5, tuple(BRANCH), stream)
    assert back.host_hit_tokens == FIRST_PAGES * PAGE and back.device_hit_tokens == 0, back
    assert back.storage_hit_tokens == 0 and back.cached_tokens == FIRST_PAGES * PAGE, back
    cache.drain()
    assert engine.padding_intact(), "bytes written between the engine's layers"
    return [first, again, back]


def make_cache(job: strata.Job, engine: Engine, **kwargs) -> strata.Cache:
    return strata.Cache(job, model="python-test-model", pools=engine.pools(), page_size=PAGE,
                        device_tokens=DEVICE_TOKENS, host_tokens=HOST_TOKENS,
                        check_consistency=True, **kwargs)
