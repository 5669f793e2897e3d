"""strata.Pool: one pool of the engine (strata_pool_decl), over the engine's torch tensors or
allocated by Strata. The tensors' shape, strides, dtype and device are checked against the
declaration here (and the device against the Cache's back end when the Cache is made), so a
mismatch is an error naming the pool and what differs, never a silent misread."""

from __future__ import annotations

import ctypes
import math
from typing import Any, List, Optional, Sequence, Tuple, Union

from . import _capi
from ._capi import invalid

POOL_TYPES = {"kv": 0, "sidecar": 1, "window": 2, "state": 3}
TP_SHARDING = {"per_rank": 0, "replicated": 1}
CP_SHARDING = {"replicated": 0, "per_rank": 1}

# torch dtype name -> Strata's dtype tag. Tags are part of the cache's namespace.
_TAGS = {
    "bfloat16": "bf16", "float16": "f16", "float32": "f32", "float64": "f64",
    "float8_e4m3fn": "fp8", "float8_e5m2": "fp8_e5m2",
    "uint8": "u8", "int8": "i8", "int16": "i16", "int32": "i32", "int64": "i64", "bool": "bool",
}
# Other spellings a declaration may use for a tensor's dtype.
_ALIASES = {"fp16": "f16", "fp32": "f32", "fp64": "f64", "fp8_e4m3": "fp8"}


def dtype_tag(dtype: Any) -> str:
    """Strata's tag of a torch dtype: torch.bfloat16 -> "bf16", torch.float16 -> "f16",
    torch.float32 -> "f32", torch.uint8 -> "u8", ..."""
    name = str(dtype).replace("torch.", "")
    if name not in _TAGS:
        raise invalid(f"no Strata dtype tag for {dtype}")
    return _TAGS[name]


def _tag_matches(declared: str, tensor_tag: str) -> bool:
    if _ALIASES.get(declared, declared) == tensor_tag:
        return True
    # FP8 kept in byte tensors (torch without float8 dtypes): any fp8 tag over u8/i8.
    return tensor_tag in ("u8", "i8") and declared.startswith("fp8")


def _nonneg_int(pool: str, key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise invalid(f"pool '{pool}': {key} must be a non-negative int, not {value!r}")
    return value


class Pool:
    """One pool the engine declares.

    type: "kv" (per-token rows; the first pool is the anchor whose slots sidecars use),
    "sidecar" (rows in the slots of `indices_of`, one per `tokens_per_row` tokens), "window"
    (sliding-window K/V of `window_tokens`) or "state" (one row per request: Mamba / linear
    attention state, `conv_state_bytes` of conv state at the start of each row).
    layers: the model layers it has (an int n for 0..n-1, or ascending ints). buffers: 2 for
    separate K and V, 1 for one row. tp: "per_rank" (heads split over TP ranks) or "replicated";
    cp: "replicated" or "per_rank".

    Memory: `tensor`, ONE torch tensor whose leading dims are (buffers, layers, rows) (the
    buffers dim may be left out when buffers == 1) and whose trailing dims are one row; or
    `tensors`, buffers * layers tensors of shape (rows, ...), [buffer * layers + layer]; or
    neither: Strata allocates the rows (read their addresses from Cache.pools). row_bytes and
    dtype are derived from the tensors when not given (a given one must match). A row must be
    contiguous; the slot, layer and buffer strides are the tensor's, and rows need not follow
    each other: K and V interleaved per token, t of shape (layers, rows, 2, heads, dim), is
    tensor=t.permute(2, 0, 1, 3, 4) (K = t[:, :, 0], V = t[:, :, 1]), a slot stride of two rows;
    a padded row's padding is never written. The Cache keeps a reference to the tensors for its
    lifetime.

    Raises StrataError("invalid_argument") naming the pool and the mismatch."""

    def __init__(self, name: str, type: str = "kv", *, layers: Union[int, Sequence[int]],
                 buffers: int = 1, row_bytes: Optional[int] = None, dtype: Optional[str] = None,
                 tp: str = "per_rank", cp: str = "replicated", indices_of: Optional[str] = None,
                 tokens_per_row: int = 1, window_tokens: int = 0, conv_state_bytes: int = 0,
                 tensor: Any = None, tensors: Optional[Sequence[Any]] = None):
        if not isinstance(name, str) or not name:
            raise invalid(f"pool: name must be a non-empty str, not {name!r}")
        self.name = name
        for key, value, table in (("type", type, POOL_TYPES), ("tp", tp, TP_SHARDING),
                                  ("cp", cp, CP_SHARDING)):
            if value not in table:
                raise invalid(f"pool '{name}': {key} '{value}' is not one of "
                              f"{', '.join(table)}")
        self.type, self.tp, self.cp = type, tp, cp
        if isinstance(layers, int) and not isinstance(layers, bool):
            layers = range(layers)
        self.layers: Tuple[int, ...] = tuple(_nonneg_int(name, "layers", l) for l in layers)
        self.buffers = _nonneg_int(name, "buffers", buffers)
        self.indices_of = indices_of
        self.tokens_per_row = _nonneg_int(name, "tokens_per_row", tokens_per_row)
        self.window_tokens = _nonneg_int(name, "window_tokens", window_tokens)
        self.conv_state_bytes = _nonneg_int(name, "conv_state_bytes", conv_state_bytes)
        if tensor is not None and tensors is not None:
            raise invalid(f"pool '{name}': give tensor or tensors, not both")
        self.tensor = tensor
        self.tensors: Optional[List[Any]] = list(tensors) if tensors is not None else None
        self.rows = 0
        self.base: Optional[int] = None
        self.layer_ptrs: Optional[List[int]] = None
        self.slot_stride = self.layer_stride = self.buffer_stride = 0
        self.device: Any = None
        derived_row_bytes, derived_tag = None, None
        if tensor is not None:
            derived_row_bytes, derived_tag = self._adopt_tensor(tensor)
        elif self.tensors is not None:
            derived_row_bytes, derived_tag = self._adopt_tensors(self.tensors)
        if row_bytes is None:
            if derived_row_bytes is None:
                raise invalid(f"pool '{name}': row_bytes is needed when Strata allocates the "
                              f"pool (no tensor)")
            row_bytes = derived_row_bytes
        row_bytes = _nonneg_int(name, "row_bytes", row_bytes)
        if derived_row_bytes is not None and row_bytes != derived_row_bytes:
            raise invalid(f"pool '{name}': row_bytes {row_bytes} but a row of the tensor is "
                          f"{derived_row_bytes} bytes")
        self.row_bytes = row_bytes
        if dtype is None:
            dtype = derived_tag or "bf16"
        elif derived_tag is not None and not _tag_matches(dtype, derived_tag):
            raise invalid(f"pool '{name}': dtype '{dtype}' but the tensor is {derived_tag}")
        self.dtype = dtype

    # -- tensors ---------------------------------------------------------------------------

    def _row_of(self, t: Any, lead: int, what: str) -> Tuple[int, int]:
        """Checks that dims [lead:] of t form one contiguous row; returns (row bytes, tag)."""
        import torch

        if not isinstance(t, torch.Tensor):
            raise invalid(f"pool '{self.name}': {what} must be a torch.Tensor, not "
                          f"{type(t).__name__}")
        if t.layout != torch.strided:
            raise invalid(f"pool '{self.name}': {what} must be strided (dense), not {t.layout}")
        tag = dtype_tag(t.dtype)
        size = t.element_size()
        expected = 1
        for dim in reversed(range(lead, t.dim())):
            if t.shape[dim] != 1 and t.stride(dim) != expected:
                raise invalid(f"pool '{self.name}': a row of {what} is not contiguous (shape "
                              f"{tuple(t.shape)}, strides {tuple(t.stride())}: dim {dim} has "
                              f"stride {t.stride(dim)}, not {expected})")
            expected *= t.shape[dim]
        return math.prod(t.shape[lead:]) * size, tag

    def _adopt_tensor(self, t: Any) -> Tuple[int, str]:
        import torch

        if not isinstance(t, torch.Tensor):
            raise invalid(f"pool '{self.name}': tensor must be a torch.Tensor, not "
                          f"{type(t).__name__}")
        nl, shape = len(self.layers), tuple(t.shape)
        if self.buffers > 1 or (t.dim() >= 3 and shape[0] == 1 and shape[1] == nl):
            lead, want = 3, f"(buffers={self.buffers}, layers={nl}, rows, ...)"
            ok = t.dim() >= 3 and shape[0] == self.buffers and shape[1] == nl
        else:
            lead, want = 2, f"(layers={nl}, rows, ...) or (1, {nl}, rows, ...)"
            ok = t.dim() >= 2 and shape[0] == nl
        if not ok:
            raise invalid(f"pool '{self.name}': tensor shape {shape} does not start with {want}")
        row_bytes, tag = self._row_of(t, lead, "the tensor")
        size = t.element_size()
        self.rows = shape[lead - 1]
        self.slot_stride = t.stride(lead - 1) * size
        self.layer_stride = t.stride(lead - 2) * size
        self.buffer_stride = t.stride(0) * size if lead == 3 else 0
        for key in ("slot_stride", "layer_stride", "buffer_stride"):
            if getattr(self, key) < 0:
                raise invalid(f"pool '{self.name}': negative {key.replace('_', ' ')}")
        self._check_disjoint([("slot", self.rows, self.slot_stride),
                              ("layer", nl, self.layer_stride),
                              ("buffer", self.buffers if lead == 3 else 1, self.buffer_stride)],
                             row_bytes, "the tensor's")
        self.base = t.data_ptr()
        self.device = t.device
        return row_bytes, tag

    def _adopt_tensors(self, ts: List[Any]) -> Tuple[int, str]:
        want = self.buffers * len(self.layers)
        if len(ts) != want:
            raise invalid(f"pool '{self.name}': {len(ts)} tensors, not buffers * layers = "
                          f"{want}")
        first = ts[0]
        row_bytes, tag = self._row_of(first, 1, "tensors[0]")
        for i, t in enumerate(ts):
            self._row_of(t, 1, f"tensors[{i}]")
            for key in ("shape", "dtype", "device"):
                if getattr(t, key) != getattr(first, key):
                    raise invalid(f"pool '{self.name}': tensors[{i}] has {key} "
                                  f"{getattr(t, key)}, tensors[0] {getattr(first, key)}")
            if t.dim() < 1 or t.stride(0) != first.stride(0):
                raise invalid(f"pool '{self.name}': tensors[{i}] has strides "
                              f"{tuple(t.stride())}, tensors[0] {tuple(first.stride())}")
        self.rows = first.shape[0]
        self.slot_stride = first.stride(0) * first.element_size()
        self._check_disjoint([("slot", self.rows, self.slot_stride)], row_bytes, "each tensor's")
        self.layer_ptrs = [t.data_ptr() for t in ts]
        self.device = first.device
        return row_bytes, tag

    def _check_disjoint(self, axes: List[Tuple[str, int, int]], row_bytes: int,
                        what: str) -> None:
        """Rows must not overlap (the rule of the C++ side): the axes (name, count, stride in
        bytes), taken from the smallest stride up, each step at least over the bytes the smaller
        ones span. So a layer's rows may lie a slot stride apart with other bytes between them
        (K and V interleaved per token: buffer stride = row bytes, slot stride = 2 rows; padded
        rows), and layers and buffers may nest either way."""
        span = row_bytes
        for name, count, stride in sorted(axes, key=lambda a: a[2]):
            if count <= 1:
                continue
            if stride < span:
                raise invalid(f"pool '{self.name}': {what} {name} stride {stride} bytes is "
                              f"below the {span} bytes its smaller axes span: rows overlap "
                              f"(strides: slot {self.slot_stride}, layer {self.layer_stride}, "
                              f"buffer {self.buffer_stride} bytes; a row is {row_bytes})")
            span += stride * (count - 1)

    def check_device(self, backend: str, device: int) -> None:
        """The tensors are where the back end reads them: CPU tensors for "cpu", CUDA tensors on
        the rank's GPU (`device`, -1: any) for "cuda"."""
        if self.device is None:
            return
        if backend == "cpu" and self.device.type != "cpu":
            raise invalid(f"pool '{self.name}': tensor on {self.device}, but backend 'cpu' "
                          f"needs CPU tensors")
        if backend == "cuda":
            if self.device.type != "cuda":
                raise invalid(f"pool '{self.name}': tensor on {self.device}, but backend "
                              f"'cuda' needs CUDA tensors")
            if device >= 0 and self.device.index != device:
                raise invalid(f"pool '{self.name}': tensor on {self.device}, but this rank's "
                              f"device is cuda:{device}")

    # -- the C declaration -----------------------------------------------------------------

    def declaration(self) -> Tuple[_capi.PoolDecl, list]:
        """The strata_pool_decl, and the objects that must stay alive while it is used."""
        decl = _capi.PoolDecl()
        _capi.lib.strata_pool_decl_init(ctypes.byref(decl))
        keep: list = []
        decl.name = self.name.encode()
        decl.type = POOL_TYPES[self.type]
        if self.indices_of is not None:
            decl.indices_of = self.indices_of.encode()
        decl.tokens_per_row = self.tokens_per_row
        decl.window_tokens = self.window_tokens
        layers = (ctypes.c_uint32 * len(self.layers))(*self.layers)
        keep.append(layers)
        decl.layers = ctypes.cast(layers, _capi.c_uint32_p)
        decl.num_layers = len(self.layers)
        decl.buffers = self.buffers
        decl.row_bytes = self.row_bytes
        decl.conv_state_bytes = self.conv_state_bytes
        decl.dtype = self.dtype.encode()
        decl.tp = TP_SHARDING[self.tp]
        decl.cp = CP_SHARDING[self.cp]
        if self.base is not None:
            decl.base = self.base
        if self.layer_ptrs is not None:
            ptrs = (ctypes.c_void_p * len(self.layer_ptrs))(*self.layer_ptrs)
            keep.append(ptrs)
            decl.layer_ptrs = ctypes.cast(ptrs, ctypes.POINTER(ctypes.c_void_p))
        decl.rows = self.rows
        decl.slot_stride = self.slot_stride
        decl.layer_stride = self.layer_stride
        decl.buffer_stride = self.buffer_stride
        return decl, keep

    def __repr__(self) -> str:
        memory = ("tensor" if self.tensor is not None else
                  "tensors" if self.tensors is not None else "allocated")
        return (f"strata.Pool({self.name!r}, {self.type!r}, layers={len(self.layers)}, "
                f"buffers={self.buffers}, row_bytes={self.row_bytes}, dtype={self.dtype!r}, "
                f"{memory})")
