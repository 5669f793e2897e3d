"""Helpers that the transformers example worker (transformers_worker.py) and the TTFT bench
(runtime/bench/ttft.py) share: importing strata and transformers with a clear error, the
strata-bench JSON report, timing, the byte rows a cache tensor becomes in a Strata pool and back,
reading what a transformers cache object holds, and the Strata calls around a cached prefix
(store it, evict it from the device pool, fetch it from the HDF5 tier).

Nothing here imports transformers; strata and torch are imported when first needed, so the pure
parts are testable without them (tests/engine/hf_helpers_test.py).
Thread-safety: none; one thread, like an engine's scheduler loop."""

from __future__ import annotations

import datetime
import json
import os
import socket
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

NO_PAGE = 0xFFFFFFFF


class HelperError(RuntimeError):
    """A precondition of the worker or the bench that does not hold, with what to do about it."""


def import_strata() -> Any:
    try:
        import strata  # noqa: PLC0415
    except ImportError as e:
        raise HelperError(
            f"cannot import the Python package strata ({e}): put the build tree's package on "
            f"PYTHONPATH (BUILD/python, made by `cmake --build BUILD --target strata`), or "
            f"install it with `cmake --install BUILD --prefix P`") from e
    return strata


def import_transformers() -> Any:
    try:
        import transformers  # noqa: PLC0415
    except ImportError as e:
        raise HelperError(f"cannot import transformers ({e}): this needs Hugging Face "
                          f"transformers 5.x (the GPU machine's image has it)") from e
    return transformers


# -- the strata-bench JSON report ------------------------------------------------------------


def iso_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch  # noqa: PLC0415

        return torch.cuda.get_device_name(torch.device(device))
    return "cpu"


class Report:
    """strata-bench's result format (runtime/bench/src/report.h), written from Python:
    {"bench","host","device","date","rows":[{"case","metric","unit","higher_is_better",
    "strata","baselines":{...},"extra":{...}}]}."""

    def __init__(self, bench: str, device: str):
        self.bench, self.device = bench, device
        self.host, self.date = socket.gethostname(), iso_now()
        self.rows: List[Dict[str, Any]] = []
        self.notes: List[str] = []

    def add_row(self, case: str, metric: str, unit: str, higher_is_better: bool,
                strata: Optional[float], baselines: Dict[str, Optional[float]],
                extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        row = {"case": case, "metric": metric, "unit": unit,
               "higher_is_better": bool(higher_is_better), "strata": strata,
               "baselines": dict(baselines), "extra": dict(extra or {})}
        self.rows.append(row)
        return row

    def add_note(self, note: str) -> None:
        self.notes.append(note)

    def to_json(self) -> Dict[str, Any]:
        return {"bench": self.bench, "host": self.host, "device": self.device,
                "date": self.date, "rows": self.rows}

    def write_json(self, path: str) -> None:
        write_json(path, self.to_json())

    def table(self) -> str:
        names: List[str] = []
        for r in self.rows:
            names += [n for n in r["baselines"] if n not in names]
        width = max([4] + [len(r["case"]) for r in self.rows])
        head = f"{'case':<{width}}  {'metric':<8}  {'unit':<5}  {'strata':>10}"
        head += "".join(f"  {n:>28}" for n in names)
        out = [f"{self.bench} on {self.host} ({self.device}), {self.date}", head,
               "-" * len(head)]
        for r in self.rows:
            line = (f"{r['case']:<{width}}  {r['metric']:<8}  {r['unit']:<5}  "
                    f"{fmt_num(r['strata']):>10}")
            for n in names:
                b = r["baselines"].get(n)
                cell = "-" if b is None else f"{fmt_num(b)} (strata {fmt_x(advantage(r, b))})"
                line += f"  {cell:>28}"
            out.append(line)
        return "\n".join(out + self.notes) + "\n"


def advantage(row: Dict[str, Any], baseline: Optional[float]) -> Optional[float]:
    """How many times better Strata is than `baseline` in the row's direction (> 1: better)."""
    s = row["strata"]
    if s is None or baseline is None:
        return None
    if row["higher_is_better"]:
        return s / baseline if baseline else None
    return baseline / s if s else None


def fmt_num(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.3f}"


def fmt_x(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.2f}x"


def finite(obj: Any) -> Any:
    """obj with every NaN or infinite float replaced by None (JSON has neither)."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def write_json(path: str, obj: Any) -> None:
    """Writes obj as indented JSON (NaN and infinities as null); an error names the path."""
    obj = finite(obj)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, allow_nan=False)
            f.write("\n")
    except (OSError, ValueError) as e:
        raise HelperError(f"cannot write {path}: {e}") from e


# -- timing -----------------------------------------------------------------------------------


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch  # noqa: PLC0415

        torch.cuda.synchronize()


def time_ms(fn: Callable[[], Any], device: str) -> Tuple[float, Any]:
    """Runs fn once from an idle device to its last kernel's end: (milliseconds, its result)."""
    synchronize(device)
    t0 = time.perf_counter()
    result = fn()
    synchronize(device)
    return (time.perf_counter() - t0) * 1e3, result


def repeat_ms(fn: Callable[[], Any], device: str, reps: int, warmup: int,
              before: Optional[Callable[[], None]] = None) -> Tuple[List[float], Any]:
    """warmup + reps runs of fn, each after before() (untimed); the reps' times and the last
    result."""
    if reps < 1 or warmup < 0:
        raise HelperError(f"reps {reps} must be >= 1 and warmup {warmup} >= 0")
    times, result = [], None
    for i in range(warmup + reps):
        if before is not None:
            before()
        ms, result = time_ms(fn, device)
        if i >= warmup:
            times.append(ms)
    return times, result


def interleaved_ms(cases: Sequence[Tuple[str, Callable[[], Any], Optional[Callable[[], None]]]],
                   device: str, reps: int, warmup: int) -> Dict[str, Tuple[List[float], Any]]:
    """warmup + reps rounds, each running every case (name, fn, before) once in the given order
    (before() untimed): a drift of the machine (clocks, a neighbour) then weighs on every case
    alike instead of on whichever ran at that time. Per case: the reps' times and the last result."""
    if reps < 1 or warmup < 0:
        raise HelperError(f"reps {reps} must be >= 1 and warmup {warmup} >= 0")
    names = [name for name, _, _ in cases]
    if len(set(names)) != len(names):
        raise HelperError(f"case names must differ: {names}")
    out: Dict[str, Tuple[List[float], Any]] = {name: ([], None) for name in names}
    for i in range(warmup + reps):
        for name, fn, before in cases:
            if before is not None:
                before()
            ms, result = time_ms(fn, device)
            times = out[name][0]
            if i >= warmup:
                times.append(ms)
            out[name] = (times, result)
    return out


def median(values: Sequence[float]) -> Optional[float]:
    return statistics.median(values) if values else None


# -- a cache tensor as Strata rows ------------------------------------------------------------
# A per-token tensor has its tokens on dim -2 ((batch 1, heads, tokens, dim), as transformers'
# caches keep K, V and MLA latents); one Strata row of a token is the bytes of that token in
# every tensor of the layer, one tensor after the other. A state (one per request) is the bytes
# of all its tensors, one after the other.


def token_bytes(t: Any) -> int:
    """Bytes of one token of a per-token tensor (tokens on dim -2)."""
    if t.dim() < 2 or t.shape[-2] == 0:
        raise HelperError(f"a per-token tensor needs tokens on dim -2, not shape {tuple(t.shape)}")
    return t.numel() // t.shape[-2] * t.element_size()


def tokens_to_rows(tensors: Sequence[Any], first: int = 0, count: Optional[int] = None) -> Any:
    """(count, row bytes) uint8: tokens [first, first + count) of every tensor, row by row."""
    import torch  # noqa: PLC0415

    parts = []
    for t in tensors:
        n = t.shape[-2] - first if count is None else count
        x = t.narrow(-2, first, n).movedim(-2, 0).reshape(n, -1).contiguous()
        parts.append(x.view(torch.uint8))
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


def rows_to_tokens(rows: Any, like: Sequence[Any]) -> List[Any]:
    """The inverse of tokens_to_rows for tensors shaped like `like` (their token count is rows'):
    views in the layout of `like` ((..., tokens, dim)), in the dtype of each."""
    out, offset = [], 0
    n = rows.shape[0]
    for t in like:
        if t.shape[-2] != n:
            raise HelperError(f"{n} rows for a tensor of {t.shape[-2]} tokens")
        per = token_bytes(t)
        chunk = rows[:, offset:offset + per].contiguous().view(t.dtype)
        moved = (n,) + tuple(t.movedim(-2, 0).shape[1:])
        out.append(chunk.reshape(moved).movedim(0, -2))
        offset += per
    if offset != rows.shape[1]:
        raise HelperError(f"rows of {rows.shape[1]} bytes for tensors of {offset} bytes a token")
    return out


def state_bytes(tensors: Sequence[Any]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def state_to_row(tensors: Sequence[Any]) -> Any:
    import torch  # noqa: PLC0415

    parts = [t.contiguous().reshape(-1).view(torch.uint8) for t in tensors]
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def row_to_state(row: Any, like: Sequence[Any]) -> List[Any]:
    out, offset = [], 0
    for t in like:
        n = t.numel() * t.element_size()
        out.append(row[offset:offset + n].contiguous().view(t.dtype).reshape(t.shape))
        offset += n
    if offset != row.numel():
        raise HelperError(f"a state row of {row.numel()} bytes for tensors of {offset} bytes")
    return out


def slots_of(pages: Sequence[int], page_size: int, first: int, end: int, device: Any,
             what: str) -> Any:
    """The slots of tokens [first, end) (slot = page * page_size + offset) as an int64 tensor on
    `device`; a token whose page is NO_PAGE is an error naming `what`."""
    import torch  # noqa: PLC0415

    need = range(first // page_size, (end + page_size - 1) // page_size)
    missing = [p for p in need if p >= len(pages) or pages[p] == NO_PAGE]
    if missing:
        raise HelperError(f"{what}: no device page for prompt pages {missing[:8]} (tokens "
                          f"[{first}, {end}))")
    t = torch.arange(first, end, dtype=torch.int64)
    p = torch.tensor(list(pages), dtype=torch.int64)
    return (p[t // page_size] * page_size + t % page_size).to(device)


# -- what a transformers cache holds ----------------------------------------------------------


def _tensor_attrs(obj: Any) -> List[Tuple[str, Any]]:
    """The object's non-empty tensor attributes (public, of one dimension or more), and the
    tensors in its list, tuple and dict
    attributes (as "name[i]": transformers 5's linear-attention layers keep their conv and
    recurrent states per state index)."""
    import torch  # noqa: PLC0415

    seen, out = set(), []

    def add(name: str, value: Any) -> None:
        # Private attributes and scalars are the layer's settings (GPT-OSS's sliding window
        # size as a 0-dim tensor), not what it caches.
        if name.startswith("_") or not isinstance(value, torch.Tensor) or value.dim() == 0:
            return
        if value.numel() > 0 and id(value) not in seen:
            seen.add(id(value))
            out.append((name, value))

    for name, value in vars(obj).items():
        if isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                add(f"{name}[{i}]", v)
        elif isinstance(value, dict):
            for k, v in value.items():
                add(f"{name}[{k}]", v)
        else:
            add(name, value)
    return out


def _order(items: List[Tuple[str, Any]]) -> List[Tuple[str, Any]]:
    # Conv states first (a state pool's row starts with its conv state), then by name.
    return sorted(items, key=lambda kv: (0 if "conv" in kv[0] else 1, kv[0]))


def cache_layer_tensors(cache: Any, num_layers: int) -> List[List[Tuple[str, Any]]]:
    """The non-empty tensors of each model layer in a transformers cache object, as (attribute,
    tensor), conv states first then by name: the layer objects of `cache.layers` (transformers
    5), or per-layer lists held by the cache (key_cache, conv_states, ... of older hybrid
    caches). Raises naming the cache's type when neither is found."""
    import torch  # noqa: PLC0415

    layers = getattr(cache, "layers", None)
    if isinstance(layers, (list, tuple)) and layers and not isinstance(layers[0], torch.Tensor):
        if len(layers) != num_layers:
            raise HelperError(f"{type(cache).__name__} has {len(layers)} layers, the model "
                              f"{num_layers}")
        return [_order(_tensor_attrs(layer)) for layer in layers]
    lists = {name: value for name, value in vars(cache).items()
             if isinstance(value, (list, tuple)) and len(value) == num_layers
             and any(isinstance(x, torch.Tensor) for x in value)}
    if not lists:
        raise HelperError(f"cannot find the per-layer tensors of {type(cache).__name__} (no "
                          f"`layers` and no per-layer lists)")
    out = []
    for i in range(num_layers):
        items = [(name, lst[i]) for name, lst in lists.items()
                 if isinstance(lst[i], torch.Tensor) and lst[i].numel() > 0]
        out.append(_order(items))
    return out


def poisoned_copy(cache: Any) -> Any:
    """A deep copy of a cache object (same layer objects, metadata and tensor shapes, dtypes and
    strides) whose every tensor is filled with NaN (floating) or -1 (integer): a destination
    into which a loaded prefix is written, and where a part left unwritten cannot pass a
    bit-identity check."""
    import copy  # noqa: PLC0415

    import torch  # noqa: PLC0415

    clone = copy.deepcopy(cache)
    stack, seen = [clone], set()
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            obj.fill_(float("nan") if obj.is_floating_point() else -1)
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            stack.extend(vars(obj).values())
    return clone


# -- Strata around a prefix -------------------------------------------------------------------


def filler_tokens(count: int, seed: int = 987654321) -> List[int]:
    """Tokens that share no page with the prompts: ids from 2**30 up, beyond any model's
    vocabulary (Strata hashes any int32)."""
    import random  # noqa: PLC0415

    rng = random.Random(seed)
    return [(1 << 30) + rng.randrange(1 << 30) for _ in range(count)]


def evict_from_device(cache: Any, request_id: int, device_tokens: int) -> int:
    """Evicts every unlocked page of the device pools (their host copies stay) by admitting a
    request as large as the device pool and releasing it without insert; returns how many pages
    were evicted. Drains first: backups and loads done, so no page is dropped or busy."""
    cache.drain()
    before = cache.stats().device_evicted_pages
    cache.admit(request_id, filler_tokens(device_tokens))
    cache.release(request_id)
    cache.step()
    return cache.stats().device_evicted_pages - before


def fetch_from_storage(cache: Any, request_id: int, tokens: Sequence[int]) -> float:
    """Starts the prompt's prefetch from the storage tier and waits for it (drain: the reads
    into host memory and their joining the cache); returns the milliseconds it took."""
    t0 = time.perf_counter()
    cache.prefetch(request_id, tokens)
    cache.drain()
    ms = (time.perf_counter() - t0) * 1e3
    if not cache.prefetch_settled(request_id):
        raise HelperError(f"request {request_id}: its prefetch has not settled after drain()")
    return ms


def drop_page_cache(directory: str) -> bool:
    """Writes back and drops the OS page cache of every file under `directory` (fsync, then
    POSIX_FADV_DONTNEED: no root needed), so that the next read comes from the disk. False when
    the platform refuses."""
    ok = True
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                ok = False
                continue
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except (OSError, AttributeError):
                ok = False
            finally:
                os.close(fd)
    return ok


def plain_read_gbps(directory: str, chunk_bytes: int = 8 << 20) -> Tuple[float, int]:
    """Reads every file under `directory` once, sequentially, after dropping their page cache:
    (GB/s, bytes): the file system's own rate, beside which the HDF5 hit's reads are judged."""
    drop_page_cache(directory)
    buf = bytearray(chunk_bytes)
    view = memoryview(buf)
    total = 0
    t0 = time.perf_counter()
    for root, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "rb", buffering=0) as f:
                while True:
                    n = f.readinto(view)
                    if not n:
                        break
                    total += n
    seconds = time.perf_counter() - t0
    return (total / seconds / 1e9 if seconds > 0 else 0.0), total
