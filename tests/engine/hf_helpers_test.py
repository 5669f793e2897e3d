"""The parts of the transformers worker and the TTFT bench that need neither transformers nor a
GPU: a cache tensor as Strata rows and back (per-token K/V, MLA latents, sliding windows,
recurrent states), the bench's kv pool store and gather, the slots of an admission's pages,
reading a cache object's layers, the poisoned copy, the strata-bench JSON report and both
scripts' argument checks. Run with Debian's python3 (torch 1.13); exits 1 on a failure."""

import json
import os
import sys
import tempfile
import types

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "runtime", "examples"))
sys.path.insert(0, os.path.join(ROOT, "runtime", "bench"))

import strata_hf as hf  # noqa: E402
import transformers_worker as worker  # noqa: E402
import ttft  # noqa: E402

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}")


def expect_error(fn, words, what):
    try:
        fn()
    except (hf.HelperError, SystemExit) as e:
        check(all(w in str(e) for w in words) or isinstance(e, SystemExit),
              f"{what}: message {e!s} lacks {words}")
        return
    check(False, f"{what}: no error")


gen = torch.Generator().manual_seed(1)


def rand(*shape, dtype=torch.bfloat16):
    return torch.randn(*shape, generator=gen).to(dtype)


# Rows and back: GQA K/V (bf16), MLA latents of two widths, f32.
for name, tensors in (("gqa", [rand(1, 2, 40, 8), rand(1, 2, 40, 8)]),
                      ("mla", [rand(1, 1, 40, 16), rand(1, 1, 40, 4)]),
                      ("f32", [rand(1, 3, 40, 5, dtype=torch.float32)])):
    rows = hf.tokens_to_rows(tensors)
    check(rows.dtype == torch.uint8 and rows.shape == (40, sum(hf.token_bytes(t)
                                                               for t in tensors)),
          f"{name}: rows shape {tuple(rows.shape)}")
    back = hf.rows_to_tokens(rows, tensors)
    check(all(torch.equal(a, b) for a, b in zip(tensors, back)), f"{name}: round trip")
    # Token t's row holds token t of every tensor.
    check(torch.equal(hf.rows_to_tokens(rows[7:8], [t[..., 7:8, :] for t in tensors])[0],
                      tensors[0][..., 7:8, :]), f"{name}: row 7 is token 7")
    part = hf.tokens_to_rows(tensors, first=30)
    check(torch.equal(part, rows[30:]), f"{name}: tokens from 30")
expect_error(lambda: hf.rows_to_tokens(torch.zeros(5, 64, dtype=torch.uint8),
                                       [rand(1, 2, 5, 8)]), ["64", "32"], "rows too wide")

# A recurrent state: conv (bf16) then recurrent (f32).
state = [rand(1, 12, 4), rand(1, 4, 8, 8, dtype=torch.float32)]
row = hf.state_to_row(state)
check(row.numel() == hf.state_bytes(state) == 12 * 4 * 2 + 4 * 8 * 8 * 4, "state bytes")
check(all(torch.equal(a, b) for a, b in zip(state, hf.row_to_state(row, state))),
      "state round trip")

# Slots of pages, and a missing page.
slots = hf.slots_of([5, 2, 9], 4, 2, 10, "cpu", "kv")
check(slots.tolist() == [22, 23, 8, 9, 10, 11, 36, 37], f"slots {slots.tolist()}")
expect_error(lambda: hf.slots_of([5, hf.NO_PAGE, 9], 4, 0, 12, "cpu", "swa"),
             ["swa", "[1]"], "NO_PAGE")

# The bench's kv pool: store a request's K/V at scattered pages, gather them back.
pool = torch.zeros(2, 3, 64, 2, 8, dtype=torch.bfloat16)
pages = [7, 1, 4, 12, 0]  # page size 4, 18 tokens
s = hf.slots_of(pages, 4, 0, 18, "cpu", "kv")
k, v = rand(1, 2, 18, 8), rand(1, 2, 18, 8)
ttft.store_layer(pool, 1, s, k, v)
gk, gv = ttft.gather_layer(pool, 0, 1, s), ttft.gather_layer(pool, 1, 1, s)
check(torch.equal(gk, k) and torch.equal(gv, v), "bench store / gather round trip")
check(gk.is_contiguous() and gk.shape == k.shape, "gathered K is contiguous, shape of K")
check(torch.equal(pool[0, 1, 7 * 4 + 2], k[0, :, 2]), "token 2 sits in slot 30")
check(int(pool[:, 0].abs().sum()) == 0, "other layers untouched")


# A cache object as transformers 5 keeps it: layer objects with tensor attributes.
class Layer:
    def __init__(self, **tensors):
        self.is_initialized = True
        self.cumulative_length = 0
        for k, t in tensors.items():
            setattr(self, k, t)


P, W = 24, 7  # prefix tokens; a window layer keeps the last 7
ref = types.SimpleNamespace(layers=[
    Layer(recurrent_states=[rand(1, 2, 4, 4, dtype=torch.float32)], conv_states=[rand(1, 6, 3)],
          has_previous_state=[True]),
    Layer(keys=rand(1, 2, W, 8), values=rand(1, 2, W, 8)),
    Layer(keys=rand(1, 2, P, 8), values=rand(1, 2, P, 8)),
    Layer(keys=rand(1, 2, P, 8), values=rand(1, 2, P, 8), empty=torch.zeros(0)),
])
cfg = types.SimpleNamespace(layer_types=["linear_attention", "sliding_attention",
                                         "full_attention", "full_attention"], sliding_window=8)
tensors = hf.cache_layer_tensors(ref, 4)
check([n for n, _ in tensors[0]] == ["conv_states[0]", "recurrent_states[0]"],
      "conv state first, tensors in list attributes")
check([n for n, _ in tensors[3]] == ["keys", "values"], "empty tensors left out")
expect_error(lambda: hf.cache_layer_tensors(ref, 5), ["4 layers", "5"], "layer count")
# States kept per state index in a dict.
dl = hf.cache_layer_tensors(types.SimpleNamespace(layers=[
    Layer(conv_states={0: rand(1, 6, 3)}, recurrent_states={0: rand(1, 2, 4, 4), 1: None})]), 1)
check([n for n, _ in dl[0]] == ["conv_states[0]", "recurrent_states[0]"], "dict attributes")
# Older hybrid caches: per-layer lists.
listed = types.SimpleNamespace(key_cache=[None, rand(1, 2, P, 8)],
                               conv_states=[rand(1, 6, 3), None], layer_types=["a", "b"])
lt = hf.cache_layer_tensors(listed, 2)
check([n for n, _ in lt[0]] == ["conv_states"] and [n for n, _ in lt[1]] == ["key_cache"],
      "per-layer lists")

plan = worker.layer_plan(cfg, tensors, P)
check([e["kind"] for e in plan] == ["state", "window", "kv", "kv"], "layer kinds")
check(plan[1]["tokens"] == W and plan[2]["tokens"] == P, "tokens held")
bad = types.SimpleNamespace(layers=[Layer(keys=rand(1, 2, P - 1, 8))])
expect_error(lambda: worker.layer_plan(types.SimpleNamespace(layer_types=["full_attention"]),
                                       hf.cache_layer_tensors(bad, 1), P),
             ["layer 0", "kv"], "a kv layer short of the prefix")

pools = worker.PoolSet(plan, cfg, "cpu", rows=64, state_rows=4, mla=False)
specs = {sp["name"]: sp for sp in pools.specs}
check(list(specs) == ["kv", "swa", "state"], f"pools {list(specs)}")
check(specs["kv"]["layers"] == [2, 3] and specs["kv"]["tensor"].shape == (1, 2, 64, 64),
      "kv pool")
check(specs["swa"]["window_tokens"] == 8 and specs["swa"]["layers"] == [1], "swa pool")
check(specs["state"]["conv_state_bytes"] == 6 * 3 * 2 and
      specs["state"]["tensor"].shape == (1, 1, 4, 36 + 2 * 4 * 4 * 4), "state pool")


class Adm:
    """An admission as strata.Admission reports one (pages per pool, a state slot)."""

    def __init__(self, pages, state_slot):
        self.pools = {n: types.SimpleNamespace(pages=p, page_size=4, state_slot=state_slot,
                                               branch_state_slot=hf.NO_PAGE)
                      for n, p in pages.items()}

    def pool(self, name):
        return self.pools[name]


kv_pages = [3, 0, 9, 4, 11, 6, 2]
store = Adm({"kv": kv_pages[:6], "swa": [8, 1, 5, 14, 2, 7], "state": []}, 2)
pools.write(store, plan, P)
# A later admission of the prefix and a page more: the window pool has pages for the window's
# trailing pages only (those the prefix's last 7 tokens use), the state is in the request's slot.
later = Adm({"kv": kv_pages, "swa": [hf.NO_PAGE] * 4 + [2, 7, 13], "state": []}, 2)
dest = hf.poisoned_copy(ref)
dt = hf.cache_layer_tensors(dest, 4)
check(all(bool(torch.isnan(t.float()).all()) for layer in dt for _, t in layer),
      "poisoned copy is all NaN")
check(dest.layers[1].cumulative_length == 0 and dest.layers[0].has_previous_state == [True] and
      dest.layers[0] is not ref.layers[0], "poisoned copy keeps metadata, shares nothing")
for e in plan:
    pools.read_layer(later, e, dt, P)
check(all(torch.equal(a, b) for la, lb in zip(tensors, dt) for (_, a), (_, b) in zip(la, lb)),
      "write then read restores every layer bit for bit")
check(all(torch.equal(t, u) for (_, t), (_, u) in zip(tensors[2], hf.cache_layer_tensors(ref, 4)
                                                         [2])), "reference untouched")
expect_error(lambda: pools.read_layer(Adm({"kv": kv_pages, "swa": [hf.NO_PAGE] * 7,
                                           "state": []}, 2), plan[1], dt, P),
             ["swa", "no device page"], "window page missing")
expect_error(lambda: pools.read_layer(Adm({"kv": kv_pages, "swa": [], "state": []},
                                          hf.NO_PAGE), plan[0], dt, P),
             ["state", "slot"], "no state slot")

# The report: strata-bench's JSON shape, NaN as null, the table.
rep = hf.Report("ttft", "cpu")
rep.add_row("p128", "ttft_ms", "ms", False, 10.0, {"recompute": 40.0, "ideal": None},
            {"x": float("nan"), "n": 3})
rep.add_note("goal: met")
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "sub", "r.json")
    rep.write_json(path)
    with open(path) as f:
        j = json.load(f)
check(list(j) == ["bench", "host", "device", "date", "rows"], f"report keys {list(j)}")
r = j["rows"][0]
check(list(r) == ["case", "metric", "unit", "higher_is_better", "strata", "baselines", "extra"],
      f"row keys {list(r)}")
check(r["extra"]["x"] is None and r["baselines"]["recompute"] == 40.0, "NaN as null")
table = rep.table()
check("40.000 (strata 4.00x)" in table and "goal: met" in table, f"table:\n{table}")
check(hf.advantage({"strata": 2.0, "higher_is_better": True}, 1.0) == 2.0, "advantage")

# Timing helper and its arguments.
calls = []
times, last = hf.repeat_ms(lambda: len(calls), "cpu", 3, 2, before=lambda: calls.append(1))
check(len(times) == 3 and len(calls) == 5 and last == 5, "repeat_ms: warm-up, reps, before")
expect_error(lambda: hf.repeat_ms(lambda: 0, "cpu", 0, 0), ["reps"], "reps 0")
# Interleaved: every round runs each case once, in order, before() untimed before its case.
order = []
timed = hf.interleaved_ms([("a", lambda: order.append("a") or len(order), None),
                           ("b", lambda: order.append("b") or len(order),
                            lambda: order.append("before b"))], "cpu", 2, 1)
check(order == ["a", "before b", "b"] * 3, f"interleaved_ms order {order}")
check(len(timed["a"][0]) == 2 and len(timed["b"][0]) == 2 and timed["b"][1] == 9,
      f"interleaved_ms: reps' times and the last result {timed}")
expect_error(lambda: hf.interleaved_ms([("a", lambda: 0, None)], "cpu", 0, 0), ["reps"],
             "interleaved reps 0")
expect_error(lambda: hf.interleaved_ms([("a", lambda: 0, None), ("a", lambda: 0, None)], "cpu",
                                       1, 0), ["differ"], "interleaved duplicate names")

# Arguments.
a = ttft.parse_args([])
check(a.prefixes == [4096, 16384, 32768] and a.suffix == 256 and a.reps == 3 and
      a.shape == "llama3-8b", "ttft defaults")
a = ttft.parse_args(["--device", "cpu"])
check(a.shape == "tiny" and a.prefixes == [256, 512] and a.suffix == 32, "ttft cpu defaults")
a = ttft.parse_args(["--quick", "--prefixes", "512,1024"])
check(a.shape == "quick" and a.prefixes == [512, 1024] and a.reps == 2, "ttft quick")
for bad_args in (["--prefixes", "100"], ["--prefixes", "4k"], ["--reps", "0"]):
    expect_error(lambda: ttft.parse_args(bad_args), [], f"ttft {bad_args}")
a = worker.parse_args(["--device", "cpu", "--models", "gpt-oss,qwen3-next"])
check(a.tiny and a.models == ["gpt-oss", "qwen3-next"], "worker arguments")
for bad_args in (["--models", "gpt2"], ["--prefix", "250"], ["--device-tokens", "100"]):
    expect_error(lambda: worker.parse_args(bad_args), [], f"worker {bad_args}")

print(f"{0 if failures else 1} passed, {1 if failures else 0} failed "
      f"({len(failures)} failed checks)")
sys.exit(1 if failures else 0)
