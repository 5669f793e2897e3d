#!/usr/bin/env python3
"""An example worker: Hugging Face transformers models on Strata. For each model, built from a
small config with random weights (nothing is downloaded):

1. the prefix's cache as the model made it (a prefill with use_cache=True) is read layer by
   layer, and Strata pools are declared to match what it holds: a "kv" pool for full-attention
   layers (K and V, or the MLA latent: one row per token of every tensor the layer keeps), a
   "swa" window pool for sliding-window layers (the tokens the layer keeps), a "state" pool for
   linear-attention / Mamba layers (conv state first, then the recurrent state);
2. the prefix is stored into Strata from that cache (admit, the rows written at the admission's
   slots, insert), evicted from Strata's device pools, and reloaded for a later request
   (host hit): Strata's loads are written, layer by layer after wait_layer, into a copy of the
   cache whose every tensor was first poisoned with NaN;
3. a fresh Cache over the same storage directory reloads it for another request (HDF5 hit);
4. checks: the suffix's logits over the reloaded cache bit-identical (torch.equal) to the logits
   over transformers' own cache, and the last token's argmax equal to a full recompute's.
   Models with a recurrent state compute the suffix token by token (the cached decode path;
   their multi-token path may restart the state).

Each model runs on its own: one that fails reports its error and the others go on. Prints a JSON
summary per model, writes them all with --json, exits 1 when a model failed.

  python3 runtime/examples/transformers_worker.py --json worker.json [--models llama,gpt-oss]
  python3 runtime/examples/transformers_worker.py --device cpu     # tiny configs, CPU back end
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import shutil
import sys
import tempfile
import time
import traceback
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import strata_hf as hf  # noqa: E402

# name: (config class, model class, config, the --device cpu / --tiny overrides)
MODELS: Dict[str, Tuple[str, str, Dict[str, Any], Dict[str, Any]]] = {
    # Llama-3-8B's widths (GQA, 32 query / 8 KV heads of 128), 4 of its 32 layers.
    "llama3-8b": ("LlamaConfig", "LlamaForCausalLM", dict(
        vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=4,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128,
        max_position_embeddings=8192, tie_word_embeddings=False), dict(
        vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32)),
    # MLA with DeepSeek-V3's latent (kv_lora_rank 512 + rope 64: 576 per token), MoE from layer 1.
    "deepseek-v3": ("DeepseekV3Config", "DeepseekV3ForCausalLM", dict(
        vocab_size=2048, hidden_size=512, intermediate_size=1024, moe_intermediate_size=256,
        num_hidden_layers=4, first_k_dense_replace=1, n_routed_experts=8, n_shared_experts=1,
        num_experts_per_tok=2, n_group=1, topk_group=1, num_attention_heads=8,
        num_key_value_heads=8, q_lora_rank=256, kv_lora_rank=512, qk_rope_head_dim=64,
        qk_nope_head_dim=128, v_head_dim=128, max_position_embeddings=4096,
        tie_word_embeddings=False), dict(
        vocab_size=512, hidden_size=128, intermediate_size=256, moe_intermediate_size=64,
        num_hidden_layers=2, n_routed_experts=4, num_attention_heads=4, num_key_value_heads=4,
        q_lora_rank=64, kv_lora_rank=64, qk_rope_head_dim=16, qk_nope_head_dim=32,
        v_head_dim=32)),
    # Sliding-window layers (window 128) between full layers, MoE.
    "gpt-oss": ("GptOssConfig", "GptOssForCausalLM", dict(
        vocab_size=2048, hidden_size=512, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=2, head_dim=64, num_local_experts=4,
        num_experts_per_tok=2, sliding_window=128,
        layer_types=["sliding_attention", "full_attention"] * 2, max_position_embeddings=4096,
        tie_word_embeddings=False, attn_implementation="eager"), dict(
        vocab_size=512, hidden_size=128, intermediate_size=128, num_attention_heads=4,
        head_dim=32, sliding_window=32)),
    # Gated delta net (conv + recurrent state) in 3 of 4 layers, full attention in the 4th, MoE.
    "qwen3-next": ("Qwen3NextConfig", "Qwen3NextForCausalLM", dict(
        vocab_size=2048, hidden_size=512, intermediate_size=1024, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=2, head_dim=64, linear_num_key_heads=4,
        linear_num_value_heads=8, linear_key_head_dim=64, linear_value_head_dim=64,
        linear_conv_kernel_dim=4, num_experts=8, num_experts_per_tok=2,
        moe_intermediate_size=256, shared_expert_intermediate_size=256, decoder_sparse_step=1,
        mlp_only_layers=[], layer_types=["linear_attention"] * 3 + ["full_attention"],
        max_position_embeddings=4096, tie_word_embeddings=False),
        dict(vocab_size=512, hidden_size=128, intermediate_size=256, num_attention_heads=4,
             head_dim=32, linear_num_key_heads=2, linear_num_value_heads=4,
             linear_key_head_dim=32, linear_value_head_dim=32, moe_intermediate_size=64,
             shared_expert_intermediate_size=64)),
}
MAX_PARAMS = 4e9  # a config whose overrides did not take would build a full-size model
KINDS = {"full_attention": "kv", "attention": "kv", "sliding_attention": "window",
         "chunked_attention": "window"}  # any other layer type keeps a state


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS),
                   help=f"comma-separated, of {', '.join(MODELS)} (default: all)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--tiny", action="store_true", help="tiny configs (default with cpu)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="model dtype (default float32: the argmax check is then not a "
                   "near-tie of rounding; bit-identity holds in either)")
    p.add_argument("--prefix", type=int, default=256, help="prefix tokens (a page multiple)")
    p.add_argument("--suffix", type=int, default=16, help="suffix tokens")
    p.add_argument("--page-size", type=int, default=16)
    p.add_argument("--device-tokens", type=int, default=1024, help="Strata's device pool")
    p.add_argument("--json", metavar="PATH", help="write every model's summary here")
    p.add_argument("--storage-dir", help="parent of the per-model HDF5 directories (default: "
                   "a temporary one, removed at the end)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-deterministic", action="store_true",
                   help="leave torch's deterministic algorithms off (on by default: two runs of "
                   "the same suffix then use the same reduction order)")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown or not args.models:
        p.error(f"--models: unknown {unknown} (known: {', '.join(MODELS)})")
    if args.device == "cpu":
        args.tiny = True
    if args.page_size < 1 or args.prefix < args.page_size or args.prefix % args.page_size:
        p.error(f"--prefix {args.prefix} must be a positive multiple of --page-size "
                f"{args.page_size}")
    if args.suffix < 1:
        p.error("--suffix must be >= 1")
    if args.device_tokens < args.prefix + args.suffix + args.page_size:
        p.error(f"--device-tokens {args.device_tokens} cannot hold a prompt of "
                f"{args.prefix + args.suffix} tokens and a page more")
    return args


def build_model(tf: Any, name: str, device: str, dtype: Any, tiny: bool, seed: int) -> Any:
    import torch

    cfg_name, model_name, base, small = MODELS[name]
    for cls in (cfg_name, model_name):
        if not hasattr(tf, cls):
            raise hf.HelperError(f"transformers {tf.__version__} has no {cls}")
    kwargs = dict(base, **(small if tiny else {}))
    if "layer_types" in kwargs:
        kwargs["layer_types"] = kwargs["layer_types"][:kwargs["num_hidden_layers"]]
    cfg = getattr(tf, cfg_name)(**kwargs)
    for key in ("num_hidden_layers", "hidden_size", "vocab_size"):
        if getattr(cfg, key, None) != kwargs[key]:
            raise hf.HelperError(f"{cfg_name} took {key}={getattr(cfg, key, None)}, not "
                                 f"{kwargs[key]}")
    cls = getattr(tf, model_name)
    with torch.device("meta"):
        params = sum(p.numel() for p in cls(cfg).parameters())
    if params > MAX_PARAMS:
        raise hf.HelperError(f"{model_name} from this config has {params / 1e9:.1f}B "
                             f"parameters: the small config did not take")
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = cls(cfg)
    finally:
        torch.set_default_dtype(previous)
    return model.eval(), params


# -- what each layer keeps, and the pools that hold it ----------------------------------------


def layer_plan(cfg: Any, tensors: List[List[Tuple[str, Any]]], prefix: int) -> List[Dict]:
    """Per model layer: its kind (kv, window, state or none), its tensors and, for per-token
    kinds, the tokens it holds. Raises naming the layer when a tensor does not fit its kind."""
    types = getattr(cfg, "layer_types", None)
    plan = []
    for i, items in enumerate(tensors):
        kind = KINDS.get(types[i], "state") if types else "kv"
        if not items:
            kind = "none"
        shapes = [(n, tuple(t.shape), str(t.dtype).replace("torch.", "")) for n, t in items]
        entry = {"layer": i, "kind": kind, "tensors": shapes, "items": items, "tokens": 0}
        if kind in ("kv", "window"):
            held = {t.shape[-2] if t.dim() >= 2 else -1 for _, t in items}
            if len(held) != 1 or min(held) < 1 or (kind == "kv" and held != {prefix}) or \
                    max(held) > prefix:
                raise hf.HelperError(f"layer {i} ({kind}): tensors {shapes} do not hold "
                                     f"{'the prefix' if kind == 'kv' else 'a window'} of "
                                     f"{prefix} tokens on dim -2")
            entry["tokens"] = held.pop()
        plan.append(entry)
    return plan


class PoolSet:
    """The engine's pools for one model: uint8 tensors (1, layers, rows, row bytes) on the
    model's device, declared to Strata (declare()) as "kv", "swa" and "state" pools as the
    layers need."""

    def __init__(self, plan: List[Dict], cfg: Any, device: str, rows: int, state_rows: int,
                 mla: bool):
        import torch

        self.device = device
        self.groups: Dict[str, Dict[str, Any]] = {}
        self.specs: List[Dict[str, Any]] = []
        self.pools: List[Any] = []
        for kind, name in (("kv", "kv"), ("window", "swa"), ("state", "state")):
            layers = [e for e in plan if e["kind"] == kind]
            if not layers:
                continue
            tensors = [[t for _, t in e["items"]] for e in layers]
            if kind == "state":
                sizes = {hf.state_bytes(ts) for ts in tensors}
                conv = {sum(t.numel() * t.element_size() for n, t in e["items"] if "conv" in n)
                        for e in layers}
            else:
                sizes = {sum(hf.token_bytes(t) for t in ts) for ts in tensors}
                conv = {0}
            if len(sizes) != 1 or len(conv) != 1:
                raise hf.HelperError(f"{kind} layers {[e['layer'] for e in layers]} keep rows "
                                     f"of different sizes {sorted(sizes)}")
            row_bytes, n = sizes.pop(), len(layers)
            t = torch.zeros((1, n, state_rows if kind == "state" else rows, row_bytes),
                            dtype=torch.uint8, device=device)
            kw: Dict[str, Any] = {}
            if kind == "window":
                kw["window_tokens"] = getattr(cfg, "sliding_window", None) or \
                    layers[0]["tokens"] + 1
            if kind == "state":
                kw["conv_state_bytes"] = conv.pop()
            tp = "replicated" if kind == "kv" and mla else "per_rank"
            self.specs.append(dict(name=name, type=kind, layers=[e["layer"] for e in layers],
                                   buffers=1, tensor=t, tp=tp, **kw))
            self.groups[kind] = {"name": name, "tensor": t, "layers": layers,
                                 "index": {e["layer"]: j for j, e in enumerate(layers)}}
        if "kv" not in self.groups:
            raise hf.HelperError("no full-attention layer: Strata's first pool is the kv anchor")

    def declare(self, strata: Any) -> List[Any]:
        """The strata.Pool of each pool (kv first: the anchor)."""
        self.pools = [strata.Pool(s["name"], s["type"], **{k: v for k, v in s.items()
                                                           if k not in ("name", "type")})
                      for s in self.specs]
        return self.pools

    def describe(self) -> List[Dict[str, Any]]:
        return [{"name": p.name, "type": p.type, "layers": list(p.layers),
                 "row_bytes": p.row_bytes, "rows": p.rows, "dtype": p.dtype, "tp": p.tp,
                 "window_tokens": p.window_tokens, "conv_state_bytes": p.conv_state_bytes}
                for p in self.pools]

    def _where(self, adm: Any, kind: str, prefix: int, held: int) -> Any:
        g = self.groups[kind]
        ap = adm.pool(g["name"])
        if kind == "state":
            if ap.state_slot == hf.NO_PAGE:
                raise hf.HelperError("the admission gave the state pool no request slot")
            if ap.branch_state_slot != hf.NO_PAGE:
                raise hf.HelperError("the admission asks for a branch state this worker "
                                     "does not keep")
            return ap.state_slot
        return hf.slots_of(ap.pages, ap.page_size, prefix - held, prefix, self.device, g["name"])

    def write(self, adm: Any, plan: List[Dict], prefix: int) -> None:
        """The prefix's cache, as plan holds it, into the admission's slots."""
        for kind, g in self.groups.items():
            for e in g["layers"]:
                j, ts = g["index"][e["layer"]], [t for _, t in e["items"]]
                where = self._where(adm, kind, prefix, e["tokens"])
                if kind == "state":
                    g["tensor"][0, j, where] = hf.state_to_row(ts)
                else:
                    g["tensor"][0, j].index_copy_(0, where, hf.tokens_to_rows(ts))

    def read(self, cache: Any, rid: int, adm: Any, dest: List[List[Tuple[str, Any]]],
             plan: List[Dict], prefix: int) -> None:
        """Layer by layer, as the model would: wait for the layer's loads, then copy its rows
        into the destination cache's tensors (dest: cache_layer_tensors of it)."""
        for e in plan:
            if e["kind"] != "none":
                cache.wait_layer(rid, e["layer"])
                self.read_layer(adm, e, dest, prefix)

    def read_layer(self, adm: Any, e: Dict, dest: List[List[Tuple[str, Any]]],
                   prefix: int) -> None:
        kind = e["kind"]
        g = self.groups[kind]
        j, like = g["index"][e["layer"]], [t for _, t in dest[e["layer"]]]
        w = self._where(adm, kind, prefix, e["tokens"])
        if kind == "state":
            parts = hf.row_to_state(g["tensor"][0, j, w], like)
        else:
            parts = hf.rows_to_tokens(g["tensor"][0, j].index_select(0, w), like)
        for d, s in zip(like, parts):
            d.copy_(s)


    def store(self, cache: Any, rid: int, tokens: List[int], plan: List[Dict],
              prefix: int) -> None:
        """The prefix's cache (plan) into Strata as request rid of the prefix's tokens: admit,
        the rows at its slots, insert (after the device has written them), release, drain."""
        adm = cache.admit(rid, tokens)
        if adm.cached_tokens:
            cache.release(rid)
            raise hf.HelperError(f"a fresh prefix hit {adm.cached_tokens} tokens")
        self.write(adm, plan, prefix)
        hf.synchronize(self.device)  # Strata's backups read what torch's stream wrote
        cache.insert(rid)
        cache.release(rid)
        cache.drain()

    def reload(self, cache: Any, rid: int, tokens: List[int], plan: List[Dict], like: Any,
               prefix: int, L: int) -> Tuple[Any, Dict[str, int]]:
        """Admits a prompt that starts with the stored prefix and writes Strata's rows of it,
        layer by layer after each wait_layer, into a poisoned copy of the cache object `like`;
        returns that copy and the admission's counts. Raises when the prefix is not all hit."""
        adm = cache.admit(rid, tokens)
        counts = {"cached_tokens": adm.cached_tokens, "host_hit_tokens": adm.host_hit_tokens,
                  "storage_hit_tokens": adm.storage_hit_tokens,
                  "device_hit_tokens": adm.device_hit_tokens}
        try:
            if adm.cached_tokens != prefix:
                raise hf.HelperError(f"{adm.cached_tokens} of the {prefix} prefix tokens "
                                     f"cached ({counts})")
            cache.launch_loads()
            dest = hf.poisoned_copy(like)
            self.read(cache, rid, adm, hf.cache_layer_tensors(dest, L), plan, prefix)
            hf.synchronize(self.device)  # the copies are done before the pages go back
        finally:
            cache.release(rid)
        return dest, counts


# -- one model --------------------------------------------------------------------------------


def suffix_logits(model: Any, cache: Any, suffix: Any, token_by_token: bool) -> Any:
    """The suffix's logits (suffix tokens, vocab) over `cache` (which the call extends)."""
    import torch

    if not token_by_token:
        return model(input_ids=suffix[None], past_key_values=cache, use_cache=True).logits[0]
    out = [model(input_ids=suffix[None, i:i + 1], past_key_values=cache,
                 use_cache=True).logits[0, -1] for i in range(suffix.shape[0])]
    return torch.stack(out)


def compare(logits: Any, own: Any, recompute_last: Any) -> Dict[str, Any]:
    import torch

    last = logits[-1].float()
    top2 = recompute_last.float().topk(2).values
    return {"logits_equal_transformers": bool(torch.equal(logits, own)),
            "argmax_equal_recompute": int(last.argmax()) == int(recompute_last.argmax()),
            "max_abs_diff_recompute": float((last - recompute_last.float()).abs().max()),
            "recompute_top2_margin": float(top2[0] - top2[1])}


def run_model(name: str, args: argparse.Namespace, job: Any, strata: Any, tf: Any,
              storage_root: str) -> Dict[str, Any]:
    import torch

    cuda = args.device == "cuda"
    dev = "cuda:0" if cuda else "cpu"
    dtype = getattr(torch, args.dtype)
    P, S, page = args.prefix, args.suffix, args.page_size
    res: Dict[str, Any] = {"model": name, "ok": False, "error": None, "dtype": args.dtype,
                           "prefix_tokens": P, "suffix_tokens": S, "page_size": page}
    t_start = time.perf_counter()
    model, res["params"] = build_model(tf, name, dev, dtype, args.tiny, args.seed)
    cfg = model.config
    res["class"] = type(model).__name__
    L = cfg.num_hidden_layers
    gen = torch.Generator().manual_seed(args.seed + 7)
    prefix, sfx_host, sfx_hdf5 = (torch.randint(0, cfg.vocab_size, (n,), generator=gen).to(dev)
                                  for n in (P, S, S))
    storage = os.path.join(storage_root, name)
    os.makedirs(storage, exist_ok=True)
    with torch.no_grad():
        ref = model(input_ids=prefix[None], use_cache=True).past_key_values
        plan = layer_plan(cfg, hf.cache_layer_tensors(ref, L), P)
        res["cache"] = {"type": type(ref).__name__,
                        "layers": [{k: e[k] for k in ("layer", "kind", "tensors", "tokens")}
                                   for e in plan]}
        token_by_token = any(e["kind"] == "state" for e in plan)
        res["suffix_mode"] = "token by token" if token_by_token else "one forward"
        prompts = {"host": torch.cat([prefix, sfx_host]), "hdf5": torch.cat([prefix, sfx_hdf5])}
        sfx = {"host": sfx_host, "hdf5": sfx_hdf5}
        own = {k: suffix_logits(model, copy.deepcopy(ref), sfx[k], token_by_token) for k in sfx}
        recompute = {k: model(input_ids=p[None], use_cache=False).logits[0, -1]
                     for k, p in prompts.items()}
        state_rows = 16
        pools = PoolSet(plan, cfg, dev, args.device_tokens, state_rows,
                        mla=name.startswith("deepseek"))
        pools.declare(strata)
        res["pools"] = pools.describe()
        has_state = "state" in pools.groups

        def new_cache() -> Any:
            return strata.Cache(job, model=f"hf-{name}", pools=pools.pools, layers=L,
                                page_size=page, device_tokens=args.device_tokens,
                                state_slots=state_rows if has_state else 0,
                                host_tokens=4 * args.device_tokens,
                                backend="cuda" if cuda else "cpu", storage_dir=storage)

        def reload(cache: Any, rid: int, which: str) -> Dict[str, Any]:
            dest, out = pools.reload(cache, rid, prompts[which].tolist(), plan, ref, P, L)
            logits = suffix_logits(model, dest, sfx[which], token_by_token)
            out.update(compare(logits, own[which], recompute[which]))
            return out

        def case(name: str, fn: Any) -> None:
            # The host and HDF5 hits are independent: one failing still runs the other.
            try:
                res[name] = fn()
            except Exception as e:  # noqa: BLE001 - reported in the summary
                res[name] = {"error": f"{type(e).__name__}: {e}",
                             "traceback": traceback.format_exc()}
                res["error"] = res["error"] or f"{name}: {type(e).__name__}: {e}"

        def host_hit(cache: Any) -> Dict[str, Any]:
            evicted = hf.evict_from_device(cache, 2, args.device_tokens)
            return dict(reload(cache, 3, "host"), evicted_pages=evicted)

        def hdf5_hit(cache: Any) -> Dict[str, Any]:
            read_ms = hf.fetch_from_storage(cache, 4, prompts["hdf5"].tolist())
            return dict(reload(cache, 5, "hdf5"), read_ms=read_ms)

        cache = new_cache()
        try:
            pools.store(cache, 1, prefix.tolist(), plan, P)
            case("host_hit", lambda: host_hit(cache))
            cache.drain()
            res["stats"] = dataclasses.asdict(cache.stats())
        finally:
            cache.close()
        cache = new_cache()
        try:
            case("hdf5_hit", lambda: hdf5_hit(cache))
            cache.drain()
        finally:
            cache.close()
    checks = [res["host_hit"].get("host_hit_tokens") == P,
              res["hdf5_hit"].get("storage_hit_tokens") == P]
    for name in ("host_hit", "hdf5_hit"):
        checks += [res[name].get("logits_equal_transformers") is True,
                   res[name].get("argmax_equal_recompute") is True]
    res["ok"] = all(checks)
    res["seconds"] = time.perf_counter() - t_start
    return res


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        import torch

        tf = hf.import_transformers()
        strata = hf.import_strata()
        if args.device == "cuda" and not torch.cuda.is_available():
            raise hf.HelperError("--device cuda but torch sees no GPU (use --device cpu)")
        if not args.no_deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        job = strata.Job(gpus=1 if args.device == "cuda" else 0)
    except hf.HelperError as e:
        print(f"transformers_worker: {e}", file=sys.stderr)
        return 2
    own_root = args.storage_dir is None
    root = tempfile.mkdtemp(prefix="strata-worker-") if own_root else args.storage_dir
    summary: Dict[str, Any] = {
        "worker": "transformers", "host": __import__("socket").gethostname(),
        "device": hf.device_name("cuda:0" if args.device == "cuda" else "cpu"),
        "date": hf.iso_now(), "torch": torch.__version__, "transformers": tf.__version__,
        "strata": strata.__version__, "models": []}
    try:
        for name in args.models:
            if not own_root and os.path.isdir(os.path.join(root, name)):
                shutil.rmtree(os.path.join(root, name))
            try:
                res = run_model(name, args, job, strata, tf, root)
            except Exception as e:  # noqa: BLE001 - reported; the other models go on
                res = {"model": name, "ok": False, "error": f"{type(e).__name__}: {e}",
                       "traceback": traceback.format_exc()}
            summary["models"].append(res)
            summary["ok"] = all(m["ok"] for m in summary["models"])
            print(hf.json.dumps(hf.finite(res), indent=1, default=str), flush=True)
            if args.json:  # after every model: a run cut short leaves what it did
                hf.write_json(args.json, hf.json.loads(hf.json.dumps(summary, default=str)))
            if args.device == "cuda":
                torch.cuda.empty_cache()
    finally:
        if own_root:
            shutil.rmtree(root, ignore_errors=True)
    for m in summary["models"]:
        print(f"{m['model']}: {'ok' if m['ok'] else 'FAILED'}"
              f"{'' if m.get('error') is None else ' (' + m['error'] + ')'}")
    return 0 if summary["models"] and all(m["ok"] for m in summary["models"]) else 1


if __name__ == "__main__":
    sys.exit(main())
