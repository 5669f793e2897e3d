"""strata.Cache: one model's KV cache on this rank (strata_cache_*), called from the engine's
scheduler loop:

    cache.step(); for each new request: a = cache.admit(rid, tokens)
    cache.launch_loads(); per layer: cache.wait_layer(rid, layer), compute
    cache.insert(rid); cache.release(rid)
"""

from __future__ import annotations

import ctypes
import dataclasses
from typing import Any, List, Optional, Sequence

import numpy as np

from . import _capi, _lifetime
from ._capi import NO_PAGE, StrataError, invalid
from .job import Job
from .pool import Pool

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


@dataclasses.dataclass(frozen=True)
class PoolInfo:
    """A pool as the Cache holds it: where its device rows are (the engine's tensors, or what
    Strata allocated); layer_ptrs[buffer * layers + layer] are addresses."""

    name: str
    layers: int
    buffers: int
    row_bytes: int
    device_rows: int
    layer_ptrs: List[int]


@dataclasses.dataclass(frozen=True)
class CacheStats:
    rounds: int
    prompt_tokens: int
    cached_tokens: int
    backup_pages: int
    load_pages: int
    device_evicted_pages: int
    host_evicted_pages: int
    remote_pages_pulled: int


@dataclasses.dataclass(frozen=True)
class AdmissionPool:
    """One pool's part of an admission. pages[p]: the device page holding the prompt's tokens
    [p * page_size, (p + 1) * page_size) in this pool's slot space (token t is in slot
    pages[t // page_size] * page_size + t % page_size), strata.NO_PAGE where the pool keeps
    none (a window's pages before its window). A state pool's request slot is state_slot:
    it holds the state at the end of the cached prefix once the loads arrived, and the engine
    leaves there the state at the end of the prompt's last full page; when branch_state_slot is
    not NO_PAGE the engine also leaves there the state at the end of page branch_pages - 1."""

    name: str
    page_size: int
    pages: List[int]
    state_slot: int
    branch_state_slot: int
    branch_pages: int

    def pages_tensor(self, device: Any = None) -> Any:
        """pages as a torch int64 tensor (NO_PAGE stays 0xffffffff)."""
        import torch

        return torch.tensor(self.pages, dtype=torch.int64, device=device)

    def slots(self, start: int = 0, end: Optional[int] = None, device: Any = None) -> Any:
        """The slots of tokens [start, end) as a torch int64 tensor, for indexing the pool's
        rows (a sidecar of tokens_per_row r: its row is slot // r)."""
        import torch

        end = len(self.pages) * self.page_size if end is None else end
        t = torch.arange(start, end, dtype=torch.int64)
        pages = torch.tensor(self.pages, dtype=torch.int64)
        return (pages[t // self.page_size] * self.page_size + t % self.page_size).to(device)


@dataclasses.dataclass(frozen=True)
class Admission:
    """What admit found for a prompt: the engine computes tokens [cached_tokens, prompt_tokens);
    the hits by tier (host_hit_tokens includes storage and remote hits); pools in the order
    of Cache.pools. pages and slots(): the first pool's."""

    request_id: int
    prompt_tokens: int
    cached_tokens: int
    device_hit_tokens: int
    host_hit_tokens: int
    storage_hit_tokens: int
    remote_hit_tokens: int
    pools: List[AdmissionPool]

    @property
    def pages(self) -> List[int]:
        return self.pools[0].pages

    def pool(self, name: str) -> AdmissionPool:
        for p in self.pools:
            if p.name == name:
                return p
        raise KeyError(f"admission of request {self.request_id}: no pool '{name}' (pools: "
                       f"{', '.join(p.name for p in self.pools)})")

    def slots(self, start: int = 0, end: Optional[int] = None, device: Any = None) -> Any:
        return self.pools[0].slots(start, end, device)


def as_tokens(tokens: Any) -> np.ndarray:
    """tokens (a list, tuple, numpy array or torch tensor of ints, one dimension) as a
    contiguous int32 array; values outside int32 are an error, not wrapped."""
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and isinstance(tokens, torch.Tensor):
        if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
            raise invalid(f"tokens: a tensor of {tokens.dtype}, not of integers")
        array = tokens.detach().to("cpu", torch.int64).numpy()
    else:
        array = np.asarray(tokens)
        if array.size == 0:
            array = array.astype(np.int64)
        if array.dtype.kind not in "iu":
            raise invalid(f"tokens: {array.dtype} values, not integers")
    if array.ndim != 1:
        raise invalid(f"tokens: {array.ndim} dimensions (shape {array.shape}), not 1")
    if array.size and (array.min() < _INT32_MIN or array.max() > _INT32_MAX):
        raise invalid("tokens: a value outside int32")
    return np.ascontiguousarray(array, dtype=np.int32)


def _request_id(request_id: Any) -> int:
    if not isinstance(request_id, (int, np.integer)) or isinstance(request_id, bool) or \
            not 0 <= int(request_id) < 2**64:
        raise invalid(f"request id {request_id!r} is not an int in [0, 2**64)")
    return int(request_id)


class Cache(_lifetime.Closable):
    """One model's cache on this rank. Collective to create (every rank of the replica, caches
    in the same order on every rank of the job). `pools`: the engine's Pools (their tensors are
    kept referenced by the Cache; `model` then names the cache's namespace), or None for the
    preset named by `model` ("llama3-8b", ...: `strata-run --list-models`). Arguments left None
    take the C API's defaults (strata_cache_config_init). backend: "cpu" or "cuda". Every
    method raises StrataError on failure."""

    def __init__(self, job: Job, model: Optional[str] = None,
                 pools: Optional[Sequence[Pool]] = None, layers: int = 0, page_size: int = 64,
                 device_tokens: Optional[int] = None, state_slots: int = 0,
                 host_tokens: Optional[int] = None, host_ratio: float = 0.0,
                 backend: str = "cpu", write_policy: Optional[str] = None,
                 eviction: Optional[str] = None, storage_dir: Optional[str] = None,
                 storage_capacity_pages: int = 0, tenant_salt: Optional[str] = None,
                 check_consistency: bool = False, prefetch_policy: Optional[str] = None,
                 prefetch_threshold_tokens: Optional[int] = None,
                 prefetch_timeout_ms: Optional[int] = None, copy_path: Optional[str] = None,
                 host_layout: Optional[str] = None, host_sharing: Optional[str] = None):
        self._handle: Optional[int] = None
        if not isinstance(job, Job):
            raise invalid(f"cache: job must be a strata.Job, not {type(job).__name__}")
        self._job = job
        self._declared = list(pools or [])
        if self._declared and model is None:
            raise invalid("cache: model is needed with declared pools (a name of the cache's "
                          "namespace: caches of different names never share pages)")
        for p in self._declared:
            if not isinstance(p, Pool):
                raise invalid(f"cache: pools must be strata.Pool, not {type(p).__name__}")
            p.check_device(backend, job.place.device)
        for key, value in (("layers", layers), ("page_size", page_size),
                           ("device_tokens", device_tokens), ("state_slots", state_slots),
                           ("host_tokens", host_tokens),
                           ("storage_capacity_pages", storage_capacity_pages),
                           ("prefetch_threshold_tokens", prefetch_threshold_tokens),
                           ("prefetch_timeout_ms", prefetch_timeout_ms)):
            if value is not None and (not isinstance(value, (int, np.integer)) or
                                      isinstance(value, bool) or value < 0):
                raise invalid(f"cache: {key} must be a non-negative int, not {value!r}")
        config = _capi.CacheConfig()
        _capi.lib.strata_cache_config_init(ctypes.byref(config))
        keep: list = []
        if model is not None:
            config.model = model.encode()
        if self._declared:
            decls = (_capi.PoolDecl * len(self._declared))()
            for i, p in enumerate(self._declared):
                decls[i], kept = p.declaration()
                keep.append(kept)
            config.pools = decls
            config.num_pools = len(self._declared)
        config.layers = layers
        config.page_size = page_size
        if device_tokens is not None:
            config.device_tokens = device_tokens
        config.state_slots = state_slots
        if host_tokens is not None:
            config.host_tokens = host_tokens
        config.host_ratio = host_ratio
        config.backend = backend.encode()
        for key, value in (("write_policy", write_policy), ("eviction", eviction),
                           ("storage_dir", storage_dir), ("tenant_salt", tenant_salt),
                           ("prefetch_policy", prefetch_policy), ("copy_path", copy_path),
                           ("host_layout", host_layout), ("host_sharing", host_sharing)):
            if value is not None:
                setattr(config, key, str(value).encode())
        config.storage_capacity_pages = storage_capacity_pages
        config.check_consistency = int(bool(check_consistency))
        if prefetch_threshold_tokens is not None:
            config.prefetch_threshold_tokens = prefetch_threshold_tokens
        if prefetch_timeout_ms is not None:
            config.prefetch_timeout_ms = prefetch_timeout_ms
        handle = ctypes.c_void_p()
        self._check(_capi.lib.strata_cache_create(job.handle, ctypes.byref(config),
                                                  ctypes.byref(handle)))
        self._handle = handle.value
        _lifetime.track_cache(self)
        self._backend = backend
        self._page_size = int(_capi.lib.strata_cache_page_size(self._handle))
        self._pools = [self._pool_info(i)
                       for i in range(_capi.lib.strata_cache_num_pools(self._handle))]

    def _check(self, status: int) -> None:
        self._job._check(status)

    def _h(self) -> int:
        if self._handle is None:
            raise StrataError("failed_precondition", "cache: closed")
        return self._handle

    def _pool_info(self, index: int) -> PoolInfo:
        info = _capi.PoolInfo()
        self._check(_capi.lib.strata_cache_pool_info(self._handle, index, ctypes.byref(info)))
        n = info.layers * info.buffers
        return PoolInfo(name=info.name.decode(), layers=info.layers, buffers=info.buffers,
                        row_bytes=info.row_bytes, device_rows=info.device_rows,
                        layer_ptrs=[info.layer_ptrs[i] or 0 for i in range(n)])

    @property
    def job(self) -> Job:
        return self._job

    @property
    def pools(self) -> List[PoolInfo]:
        return list(self._pools)

    @property
    def page_size(self) -> int:
        return self._page_size

    @property
    def backend(self) -> str:
        return self._backend

    def match(self, tokens: Any) -> int:
        """The reusable prefix of tokens, in tokens (device and host tiers); admits nothing."""
        t = as_tokens(tokens)
        cached = ctypes.c_size_t()
        self._check(_capi.lib.strata_cache_match(self._h(), t.ctypes.data_as(_capi.c_int32_p),
                                                 t.size, ctypes.byref(cached)))
        return cached.value

    def admit(self, request_id: int, tokens: Any, priority: int = 0) -> Admission:
        """Admits a request: reuses its cached prefix (its loads start at launch_loads()) and
        gives it device pages for the rest."""
        rid, t = _request_id(request_id), as_tokens(tokens)
        if not isinstance(priority, (int, np.integer)) or not 0 <= priority < 2**32:
            raise invalid(f"admit: priority {priority!r} is not an int in [0, 2**32)")
        capacity = max(1, -(-t.size // self._page_size))
        arrays = [np.empty(capacity, dtype=np.uint32) for _ in self._pools]
        c_pools = (_capi.AdmissionPool * len(self._pools))()
        for c, a in zip(c_pools, arrays):
            c.pages = a.ctypes.data_as(_capi.c_uint32_p)
            c.capacity = capacity
        adm = _capi.Admission()
        self._check(_capi.lib.strata_cache_admit(
            self._h(), rid, t.ctypes.data_as(_capi.c_int32_p), t.size, priority,
            ctypes.byref(adm), c_pools if self._pools else None))
        pools = [AdmissionPool(name=info.name, page_size=self._page_size,
                               pages=a[:c.num_pages].tolist(), state_slot=c.state_slot,
                               branch_state_slot=c.branch_state_slot,
                               branch_pages=c.branch_pages)
                 for info, c, a in zip(self._pools, c_pools, arrays)]
        return Admission(request_id=rid, prompt_tokens=adm.prompt_tokens,
                         cached_tokens=adm.cached_tokens,
                         device_hit_tokens=adm.device_hit_tokens,
                         host_hit_tokens=adm.host_hit_tokens,
                         storage_hit_tokens=adm.storage_hit_tokens,
                         remote_hit_tokens=adm.remote_hit_tokens, pools=pools)

    def prefetch(self, request_id: int, tokens: Any) -> None:
        """Starts fetching the prompt's pages from storage or peers into the host tier."""
        t = as_tokens(tokens)
        self._check(_capi.lib.strata_cache_prefetch(
            self._h(), _request_id(request_id), t.ctypes.data_as(_capi.c_int32_p), t.size))

    def prefetch_settled(self, request_id: int) -> bool:
        return bool(_capi.lib.strata_cache_prefetch_settled(self._h(), _request_id(request_id)))

    def launch_loads(self) -> None:
        self._check(_capi.lib.strata_cache_launch_loads(self._h()))

    def wait_layer(self, request_id: int, layer: int, stream: Any = None) -> None:
        """Until model layer `layer` of the request's loads is on the device. stream: a
        torch.cuda.Stream or a cudaStream_t as an int, on which the wait is enqueued; None:
        with backend "cuda" torch's current stream, otherwise a blocking wait. (The legacy
        default stream, handle 0, waits blocking.)"""
        if not isinstance(layer, int) or not 0 <= layer < 2**32:
            raise invalid(f"wait_layer: layer {layer!r} is not a model layer index")
        self._check(_capi.lib.strata_cache_wait_layer(
            self._h(), _request_id(request_id), layer, self._stream_handle(stream)))

    def _stream_handle(self, stream: Any, what: str = "wait_layer") -> Optional[int]:
        if stream is None:
            if self._backend != "cuda":
                return None
            import torch

            stream = torch.cuda.current_stream()
        if isinstance(stream, int) and not isinstance(stream, bool):
            return stream or None
        handle = getattr(stream, "cuda_stream", None)
        if not isinstance(handle, int):
            raise invalid(f"{what}: stream must be a torch.cuda.Stream, an int handle or "
                          f"None, not {type(stream).__name__}")
        return handle or None

    def insert(self, request_id: int, stream: Any = None) -> None:
        """The engine has written the request's KV: its new pages join the cache (and their
        backups to the host tier start at the next step). With backend "cuda", the backups wait
        on the device for the work queued so far on `stream` (as in wait_layer: a
        torch.cuda.Stream or an int handle, 0 the legacy default stream; None: torch's current
        stream), so they read what the engine's kernels wrote and the host does not wait. Pass
        stream=False when the engine has synchronised its writes itself."""
        if self._backend == "cuda" and stream is not False:
            self._check(_capi.lib.strata_cache_insert_after(
                self._h(), _request_id(request_id), self._stream_handle(stream, "insert")))
        else:
            self._check(_capi.lib.strata_cache_insert(self._h(), _request_id(request_id)))

    def release(self, request_id: int) -> None:
        """The request is done; its pages stay cached."""
        self._check(_capi.lib.strata_cache_release(self._h(), _request_id(request_id)))

    def abort(self, request_id: int) -> None:
        """The request is dropped before insert."""
        self._check(_capi.lib.strata_cache_abort(self._h(), _request_id(request_id)))

    def step(self) -> None:
        """One agreement round (collective over the replica)."""
        self._check(_capi.lib.strata_cache_step(self._h()))

    def drain(self) -> None:
        """Waits for every transfer and backup in flight."""
        self._check(_capi.lib.strata_cache_drain(self._h()))

    def stats(self) -> CacheStats:
        s = _capi.CacheStats()
        self._check(_capi.lib.strata_cache_stats_get(self._h(), ctypes.byref(s)))
        return CacheStats(**{name: getattr(s, name) for name, _ in s._fields_})

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        """Destroys the cache; the engine's tensors are no longer referenced by it."""
        if self._handle is not None:
            handle, self._handle = self._handle, None
            _lifetime.untrack(self)
            _capi.lib.strata_cache_destroy(handle)
            self._declared = []

    def __repr__(self) -> str:
        names = ", ".join(p.name for p in getattr(self, "_pools", []))
        state = "closed" if self._handle is None else f"page_size {self._page_size}"
        return f"strata.Cache(pools [{names}], {state})"


__all__ = ["Admission", "AdmissionPool", "Cache", "CacheStats", "NO_PAGE", "PoolInfo"]
