"""Pools whose rows do not follow each other, through the Python package over CPU torch tensors:
K and V interleaved per token in one tensor (layers, rows, 2, heads, dim), declared as its view
K = t[:, :, 0], V = t[:, :, 1] (tensor=t.permute(2, 0, 1, 3, 4): a slot stride of two rows, a
buffer stride of one), and as buffers * layers tensors (each a slot stride of two rows); and rows
padded to a larger stride. Each serves a device hit, a host hit and an HDF5 hit (a second Cache
on the same storage directory), every reused row compared with torch.equal, and no padding byte
is ever written. Overlapping strides are refused, naming the axis."""

import tempfile
import time

import torch

import strata
from kvmodel import (DIM, FIRST, FIRST_PAGES, HEADS, LAYERS, PAGE, Engine, device_and_host_hits,
                     make_cache, serve, tokens_of)


def storage_hit(job: strata.Job, layout: str, storage: str) -> None:
    """A fresh engine and Cache: the shared prefix comes back from HDF5 into strided rows."""
    engine = Engine(layout=layout)
    tokens = tokens_of(5, (FIRST_PAGES + 1) * PAGE + 5, FIRST)
    with make_cache(job, engine, storage_dir=storage) as cache:
        assert cache.match(tokens) == 0
        cache.prefetch(1, tokens)
        deadline = time.monotonic() + 120
        while not cache.prefetch_settled(1):
            assert time.monotonic() < deadline, "the prefetch did not settle in 120 s"
            cache.step()
            time.sleep(0.001)
        hit = serve(cache, engine, 1, tokens)
        assert hit.storage_hit_tokens == FIRST_PAGES * PAGE, hit
        assert hit.cached_tokens == FIRST_PAGES * PAGE, hit
        again = serve(cache, engine, 2, tokens)
        assert again.device_hit_tokens == (FIRST_PAGES + 1) * PAGE, again
        cache.drain()
    assert engine.padding_intact(), f"{layout}: bytes written outside the rows"


def serve_layout(layout: str) -> None:
    engine = Engine(layout=layout)
    kv = engine.pools()[0]
    row = HEADS * DIM * 2
    if layout == "interleaved":
        assert (kv.slot_stride, kv.buffer_stride) == (2 * row, row), kv.__dict__
    else:
        assert kv.slot_stride > row and kv.row_bytes == row, kv.__dict__
    with tempfile.TemporaryDirectory(prefix=f"strata-py-{layout}-") as storage:
        with strata.Job() as job:
            with make_cache(job, engine, storage_dir=storage) as cache:
                device_and_host_hits(cache, engine)
                cache.drain()
            storage_hit(job, layout, storage)
    print(f"python strided: {layout} ok")


def per_layer_tensors() -> None:
    """tensors=: one tensor per (buffer, layer), each K = t[l, :, 0] or V = t[l, :, 1] of the
    interleaved tensor: strided rows through layer pointers."""
    engine = Engine(layout="interleaved")
    ts = [engine.kv[b, layer] for b in range(2) for layer in range(LAYERS)]
    pools = [strata.Pool("kv", layers=LAYERS, buffers=2, tensors=ts), engine.pools()[1]]
    assert pools[0].slot_stride == 2 * HEADS * DIM * 2
    with strata.Job() as job, strata.Cache(job, model="python-test-model", pools=pools,
                                           page_size=PAGE, device_tokens=engine.rows,
                                           host_tokens=128 * PAGE,
                                           check_consistency=True) as cache:
        device_and_host_hits(cache, engine)
    print("python strided: per-layer tensors ok")


def refused() -> None:
    """Strides whose rows would overlap are named (the package checks before the C API)."""
    t = torch.zeros(LAYERS, 64, 2, HEADS, DIM, dtype=torch.bfloat16)
    # A slot stride of one row with the two buffers one row apart: V of slot s is K of slot s+1.
    bad = t.view(LAYERS, 128, HEADS, DIM)[:, :127].unfold(1, 2, 1)  # (L, 126, H, D, 2)
    overlapping = bad.permute(4, 0, 1, 2, 3)  # buffers, layers, rows, heads, dim
    try:
        strata.Pool("kv", layers=LAYERS, buffers=2, tensor=overlapping)
    except strata.StrataError as e:
        assert e.code == "invalid_argument" and "buffer stride" in str(e), e
        assert "overlap" in str(e), e
    else:
        raise AssertionError("overlapping K and V rows were accepted")


def main() -> None:
    refused()
    for layout in ("interleaved", "padded"):
        serve_layout(layout)
    per_layer_tensors()
    print("python strided: ok (interleaved K/V and padded rows, device, host and HDF5 hits)")


if __name__ == "__main__":
    main()
