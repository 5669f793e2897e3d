"""The Strata side of the transformers worker and of the TTFT bench, through libstrata's CPU back
end, without transformers: a cache object laid out as transformers 5 keeps a hybrid model's
(a linear-attention layer's conv and recurrent states in list attributes, a sliding-window layer,
two full-attention layers) is stored into the pools transformers_worker.PoolSet declares for it,
evicted from the device pools, reloaded as a host hit and, in a fresh Cache over the same
directory, as an HDF5 hit; every reloaded tensor must equal the stored one bit for bit. Then the
bench's kv pool (K/V, layer, slot, kv head, dim) in bf16: stored with ttft.store_layer, evicted,
loaded back layer by layer and gathered with ttft.gather_layer. Exits 1 on a failure."""

import os
import sys
import tempfile
import types

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "runtime", "examples"))
sys.path.insert(0, os.path.join(ROOT, "runtime", "bench"))

import strata  # noqa: E402
import strata_hf as hf  # noqa: E402
import transformers_worker as worker  # noqa: E402
import ttft  # noqa: E402

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}")


gen = torch.Generator().manual_seed(3)


def rand(*shape, dtype=torch.bfloat16):
    return torch.randn(*shape, generator=gen).to(dtype)


def tokens(n, base):
    return [base + i * 7 % 1000 for i in range(n)]


class Layer:
    def __init__(self, **tensors):
        self.has_previous_state = [True]
        for k, t in tensors.items():
            setattr(self, k, t)


P, S, PAGE, DEVICE_TOKENS, W = 256, 16, 16, 512, 31
ref = types.SimpleNamespace(layers=[
    Layer(conv_states=[rand(1, 24, 4)], recurrent_states=[rand(1, 4, 8, 8, dtype=torch.float32)]),
    Layer(keys=rand(1, 2, W, 16), values=rand(1, 2, W, 16)),
    Layer(keys=rand(1, 2, P, 16), values=rand(1, 2, P, 16)),
    Layer(keys=rand(1, 2, P, 16), values=rand(1, 2, P, 16)),
])
cfg = types.SimpleNamespace(layer_types=["linear_attention", "sliding_attention",
                                         "full_attention", "full_attention"], sliding_window=32)
L = 4
plan = worker.layer_plan(cfg, hf.cache_layer_tensors(ref, L), P)
pools = worker.PoolSet(plan, cfg, "cpu", DEVICE_TOKENS, state_rows=16, mla=False)
pools.declare(strata)
check([p["name"] for p in pools.describe()] == ["kv", "swa", "state"], "pools declared")
job = strata.Job()
prefix = tokens(P, 100)
prompts = [prefix + tokens(S, 5000), prefix + tokens(S, 6000)]


def equal_to_ref(dest, what):
    got = hf.cache_layer_tensors(dest, L)
    want = hf.cache_layer_tensors(ref, L)
    same = all(torch.equal(a, b) for la, lb in zip(want, got) for (_, a), (_, b) in zip(la, lb))
    check(same and len(got) == len(want), f"{what}: every tensor restored bit for bit")


with tempfile.TemporaryDirectory() as storage:
    def new_cache():
        return strata.Cache(job, model="hf-flow-test", pools=pools.pools, layers=L,
                            page_size=PAGE, device_tokens=DEVICE_TOKENS, state_slots=16,
                            host_tokens=4 * DEVICE_TOKENS, backend="cpu", storage_dir=storage)

    cache = new_cache()
    try:
        pools.store(cache, 1, prefix, plan, P)
        evicted = hf.evict_from_device(cache, 2, DEVICE_TOKENS)
        check(evicted >= P // PAGE, f"evicted {evicted} pages, the prefix has {P // PAGE}")
        dest, counts = pools.reload(cache, 3, prompts[0], plan, ref, P, L)
        check(counts["host_hit_tokens"] == P and counts["cached_tokens"] == P,
              f"host hit {counts}")
        equal_to_ref(dest, "host hit")
        cache.drain()
    finally:
        cache.close()
    cache = new_cache()
    try:
        ms = hf.fetch_from_storage(cache, 4, prompts[1])
        dest, counts = pools.reload(cache, 5, prompts[1], plan, ref, P, L)
        check(counts["storage_hit_tokens"] == P, f"HDF5 hit {counts} after {ms:.1f} ms")
        equal_to_ref(dest, "HDF5 hit")
        cache.drain()
    finally:
        cache.close()
    # A prompt that is not cached: reload refuses it, naming the counts.
    cache = new_cache()
    try:
        try:
            pools.reload(cache, 6, tokens(P + S, 9000), plan, ref, P, L)
            check(False, "an uncached prompt reloaded")
        except hf.HelperError as e:
            check("0 of the 256" in str(e), f"uncached prompt: {e}")
        cache.admit(6, tokens(P + S, 9000))  # the refused request's id is free again
        cache.release(6)
    finally:
        cache.close()

# The bench's kv pool, bf16, two buffers.
layers, heads, dim, rows = 3, 2, 8, 512
kv = torch.zeros(2, layers, rows, heads, dim, dtype=torch.bfloat16)
ref_kv = [(rand(1, heads, P, dim), rand(1, heads, P, dim)) for _ in range(layers)]
with tempfile.TemporaryDirectory() as storage:
    def bench_cache(host_tokens):
        pool = strata.Pool("kv", "kv", layers=layers, buffers=2, tensor=kv)
        return strata.Cache(job, model="ttft-test", pools=[pool], page_size=64,
                            device_tokens=rows, host_tokens=host_tokens, backend="cpu",
                            storage_dir=storage)

    def load_and_gather(cache, rid, prompt):
        adm = cache.admit(rid, prompt)
        cache.launch_loads()
        slots = hf.slots_of(adm.pools[0].pages, 64, 0, P, "cpu", "kv")
        ok = True
        for i, (k, v) in enumerate(ref_kv):
            cache.wait_layer(rid, i)
            ok = ok and torch.equal(ttft.gather_layer(kv, 0, i, slots), k) and \
                torch.equal(ttft.gather_layer(kv, 1, i, slots), v)
        cache.release(rid)
        return adm, ok

    cache = bench_cache(rows)
    try:
        adm = cache.admit(1, prefix)
        slots = hf.slots_of(adm.pools[0].pages, 64, 0, P, "cpu", "kv")
        for i, (k, v) in enumerate(ref_kv):
            ttft.store_layer(kv, i, slots, k, v)
        cache.insert(1)
        cache.release(1)
        cache.drain()
        for rep in range(2):
            hf.evict_from_device(cache, 10 + rep, rows)
            kv.zero_()  # nothing of the prefix is left in the device pool
            adm, ok = load_and_gather(cache, 20 + rep, prompts[0])
            check(adm.host_hit_tokens == P and ok, f"bench host hit {rep}: "
                  f"{adm.host_hit_tokens} tokens, gathered equal: {ok}")
        cache.drain()
    finally:
        cache.close()
    cache = bench_cache(P + S + 64)
    try:
        check(hf.drop_page_cache(storage), "page cache dropped")
        hf.fetch_from_storage(cache, 30, prompts[0])
        kv.zero_()
        adm, ok = load_and_gather(cache, 31, prompts[0])
        check(adm.storage_hit_tokens == P and ok, f"bench HDF5 hit: {adm.storage_hit_tokens} "
              f"tokens, gathered equal: {ok}")
        cache.drain()
    finally:
        cache.close()
    gbps, nbytes = hf.plain_read_gbps(storage)
    check(nbytes > 2 * layers * P * heads * dim * 2 and gbps > 0, f"plain read {nbytes} B")

print(f"{0 if failures else 1} passed, {1 if failures else 0} failed "
      f"({len(failures)} failed checks)")
sys.exit(1 if failures else 0)
