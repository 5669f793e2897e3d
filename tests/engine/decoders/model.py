"""Small real decoders in torch (float32, CPU) whose KV and recurrent state live in paged tensors.

Two models, random weights from a fixed seed:
- dense: token embedding, RMSNorm, GQA attention with RoPE, SwiGLU MLP, LM head.
- hybrid: the same blocks, but some layers hold a recurrent state instead of K/V (a gated
  delta-rule recurrence behind a causal depthwise conv, as gated delta net / Mamba: a conv state
  and a temporal state per request), some attend over a sliding window of WINDOW tokens, the
  rest over the whole prefix.

With tensor parallelism the attention heads, the recurrent heads and the MLP's hidden units are
split over the ranks; the output projection and the MLP's down projection are followed by an
all-reduce (mpi4py). Every rank builds the whole model from the seed and keeps its slice.

Memory is what an engine owns: a kv tensor (2, full layers, rows, kv heads, head dim), a window
tensor of the same shape over the window layers, and a state tensor (1, recurrent layers, slots,
row) whose row is the conv state followed by the temporal state. A request's Tables say where
its tokens' rows are (a page per PAGE tokens) and which state slot it works in. Prefill runs in
chunks of one page, so that a token's K/V and the state at a page's end do not depend on how
much of the prompt was computed together; attention reads K/V by gathering the request's slots,
whoever wrote them (the model, or a cache that loaded them).
"""
from dataclasses import dataclass, field

import torch

PAGE = 16


@dataclass(frozen=True)
class Config:
    name: str
    kinds: tuple  # per layer: "full", "window" or "recurrent"
    vocab: int = 512
    dim: int = 64
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 16
    ffn: int = 128
    window: int = 32  # tokens a window layer's query sees, itself included
    rec_heads: int = 4
    rec_head_dim: int = 16
    conv_kernel: int = 4
    rope_theta: float = 10000.0
    eps: float = 1e-6
    seed: int = 1234

    def layers_of(self, kind):
        return [i for i, k in enumerate(self.kinds) if k == kind]


DENSE = Config("dense", ("full",) * 4)
HYBRID = Config("hybrid", ("recurrent", "window", "full", "recurrent", "window", "full"))
CONFIGS = {c.name: c for c in (DENSE, HYBRID)}


class Comm:
    """The tensor-parallel group: rank, size and an in-place sum (mpi4py), or one rank."""

    def __init__(self, mpi_comm=None):
        self.mpi = mpi_comm
        self.rank = 0 if mpi_comm is None else mpi_comm.Get_rank()
        self.size = 1 if mpi_comm is None else mpi_comm.Get_size()

    def all_reduce(self, t):
        if self.size > 1:
            from mpi4py import MPI

            t = t.contiguous()
            self.mpi.Allreduce(MPI.IN_PLACE, t.numpy(), op=MPI.SUM)
        return t


def _shard(t, dim, rank, size):
    n = t.shape[dim]
    if n % size:
        raise ValueError(f"dimension {dim} of size {n} does not split over {size} ranks")
    return t.narrow(dim, rank * (n // size), n // size).contiguous()


class Weights:
    """The model's weights from cfg.seed, this rank's slice of every split matrix."""

    def __init__(self, cfg, rank=0, size=1):
        g = torch.Generator().manual_seed(cfg.seed)

        def w(*shape, fan_in=None):
            scale = (fan_in or shape[0]) ** -0.5
            return torch.randn(*shape, generator=g) * scale

        def norm(n):
            return 1.0 + 0.1 * torch.randn(n, generator=g)

        def split(t, dim=1):  # this rank's heads (columns) or their rows in an output matrix
            return _shard(t, dim, rank, size)

        d, hd = cfg.dim, cfg.head_dim
        C = cfg.rec_heads * cfg.rec_head_dim
        self.embed = torch.randn(cfg.vocab, d, generator=g)
        self.layers = []
        for kind in cfg.kinds:
            L = {"attn_norm": norm(d), "mlp_norm": norm(d)}
            if kind == "recurrent":
                # q, k, v channels (3C) through the conv; a gate z (C); decay and write strength
                # per head. Split by head: each rank keeps its heads' channels.
                qkv = w(d, 3, cfg.rec_heads, cfg.rec_head_dim)
                conv = 0.5 * torch.randn(cfg.conv_kernel, 3, cfg.rec_heads, cfg.rec_head_dim,
                                         generator=g)
                L["in_qkv"] = split(qkv, 2).reshape(d, -1)
                L["conv"] = split(conv, 2).reshape(cfg.conv_kernel, -1)
                L["in_z"] = split(w(d, C))
                L["in_a"] = split(w(d, cfg.rec_heads))
                L["in_b"] = split(w(d, cfg.rec_heads))
                L["out"] = split(w(C, d), dim=0)
            else:
                L["wq"] = split(w(d, cfg.heads * hd))
                L["wk"] = split(w(d, cfg.kv_heads * hd))
                L["wv"] = split(w(d, cfg.kv_heads * hd))
                L["wo"] = split(w(cfg.heads * hd, d), dim=0)
            L["gate"] = split(w(d, cfg.ffn))
            L["up"] = split(w(d, cfg.ffn))
            L["down"] = split(w(cfg.ffn, d), dim=0)
            self.layers.append(L)
        self.final_norm = norm(d)
        self.lm_head = w(d, cfg.vocab)


@dataclass
class Tables:
    """Where a request's rows are: a device page per PAGE tokens of each pool (None where a pool
    has none), its state slot, and where to leave the state at a branch point."""

    kv_pages: list
    window_pages: list = field(default_factory=list)
    state_slot: int = None
    branch_state_slot: int = None
    branch_pages: int = 0

    @staticmethod
    def contiguous(tokens, state_slot=0):
        pages = list(range((tokens + PAGE - 1) // PAGE))
        return Tables(kv_pages=pages, window_pages=list(pages), state_slot=state_slot)


def slots_of(pages, positions):
    """The token slots of positions under a page table (one shared gather for every path)."""
    table = torch.tensor([-1 if p is None else p for p in pages], dtype=torch.long)
    page = table[positions // PAGE]
    if bool((page < 0).any()):
        raise RuntimeError(f"positions {positions.tolist()} reach a page the request does not hold")
    return page * PAGE + positions % PAGE


class Memory:
    """The engine's paged tensors for one rank: kv, window and state (see the module's text)."""

    def __init__(self, cfg, tp_size, rows, state_slots):
        self.cfg = cfg
        self.rows = rows
        self.kv_heads = cfg.kv_heads // tp_size
        self.rec_heads = cfg.rec_heads // tp_size
        self.full_layers = cfg.layers_of("full")
        self.window_layers = cfg.layers_of("window")
        self.rec_layers = cfg.layers_of("recurrent")
        kv_shape = (rows, self.kv_heads, cfg.head_dim)
        self.kv = torch.zeros(2, len(self.full_layers), *kv_shape)
        self.window = (torch.zeros(2, len(self.window_layers), *kv_shape)
                       if self.window_layers else None)
        c = self.rec_heads * cfg.rec_head_dim
        self.conv_numel = (cfg.conv_kernel - 1) * 3 * c
        self.temporal_numel = self.rec_heads * cfg.rec_head_dim * cfg.rec_head_dim
        self.state = (torch.zeros(1, len(self.rec_layers), state_slots,
                                  self.conv_numel + self.temporal_numel)
                      if self.rec_layers else None)

    @property
    def conv_state_bytes(self):
        return self.conv_numel * 4

    def pool_of(self, layer):
        """(tensor, pool layer index, which page table) of an attention layer."""
        if layer in self.full_layers:
            return self.kv, self.full_layers.index(layer), "kv_pages"
        return self.window, self.window_layers.index(layer), "window_pages"

    def read_state(self, layer, slot):
        row = self.state[0, self.rec_layers.index(layer), slot]
        d = self.cfg.rec_head_dim
        conv = row[: self.conv_numel].view(self.cfg.conv_kernel - 1, -1).clone()
        temporal = row[self.conv_numel:].view(self.rec_heads, d, d).clone()
        return conv, temporal

    def write_state(self, layer, slot, conv, temporal):
        row = self.state[0, self.rec_layers.index(layer), slot]
        row[: self.conv_numel] = conv.reshape(-1)
        row[self.conv_numel:] = temporal.reshape(-1)

    def copy_state(self, src, dst):
        self.state[0, :, dst] = self.state[0, :, src]


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rope(x, positions, theta):
    """Rotary embedding of x (T, heads, head_dim) at absolute positions (T,)."""
    half = x.shape[-1] // 2
    freq = theta ** (-torch.arange(half, dtype=torch.float32) / half)
    angle = positions.to(torch.float32)[:, None] * freq[None, :]
    cos, sin = angle.cos()[:, None, :], angle.sin()[:, None, :]
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


class Decoder:
    """The model on one rank: weights, its group, and prefill over an engine's Memory."""

    def __init__(self, cfg, comm=None):
        self.cfg = cfg
        self.comm = comm or Comm()
        self.w = Weights(cfg, self.comm.rank, self.comm.size)

    def attention(self, L, layer, h, positions, mem, tables):
        cfg = self.cfg
        T = h.shape[0]
        hq = cfg.heads // self.comm.size
        q = rope((h @ L["wq"]).view(T, hq, cfg.head_dim), positions, cfg.rope_theta)
        k = rope((h @ L["wk"]).view(T, -1, cfg.head_dim), positions, cfg.rope_theta)
        v = (h @ L["wv"]).view(T, -1, cfg.head_dim)
        pool, li, which = mem.pool_of(layer)
        pages = getattr(tables, which)
        mine = slots_of(pages, positions)
        pool[0, li, mine] = k
        pool[1, li, mine] = v
        end = int(positions[-1]) + 1
        start = 0 if which == "kv_pages" else max(0, int(positions[0]) - cfg.window + 1)
        context = torch.arange(start, end)
        slots = slots_of(pages, context)
        K = pool[0, li].index_select(0, slots).repeat_interleave(hq // k.shape[1], dim=1)
        V = pool[1, li].index_select(0, slots).repeat_interleave(hq // k.shape[1], dim=1)
        scores = torch.einsum("thd,lhd->htl", q, K) * cfg.head_dim ** -0.5
        allowed = context[None, :] <= positions[:, None]
        if which == "window_pages":
            allowed &= context[None, :] > positions[:, None] - cfg.window
        scores = scores.masked_fill(~allowed[None], float("-inf"))
        out = torch.einsum("htl,lhd->thd", scores.softmax(-1), V)
        return out.reshape(T, -1) @ L["wo"]

    def recurrent(self, L, layer, h, mem, slot):
        cfg = self.cfg
        T = h.shape[0]
        d = cfg.rec_head_dim
        heads = mem.rec_heads
        conv_state, S = mem.read_state(layer, slot)
        x = torch.cat([conv_state, h @ L["in_qkv"]], dim=0)
        K = cfg.conv_kernel
        u = x[0:T] * L["conv"][0]
        for j in range(1, K):
            u = u + x[j:j + T] * L["conv"][j]
        u = torch.nn.functional.silu(u).view(T, 3, heads, d)
        q = u[:, 0] * d ** -0.5
        k = torch.nn.functional.normalize(u[:, 1], dim=-1)
        v = u[:, 2]
        decay = torch.sigmoid(h @ L["in_a"])
        beta = torch.sigmoid(h @ L["in_b"])
        ys = []
        for t in range(T):
            # Delta rule: replace what S holds for key k_t by v_t, with strength beta_t.
            held = torch.einsum("hk,hkv->hv", k[t], S)
            S = decay[t][:, None, None] * S + beta[t][:, None, None] * torch.einsum(
                "hk,hv->hkv", k[t], v[t] - held)
            ys.append(torch.einsum("hk,hkv->hv", q[t], S))
        mem.write_state(layer, slot, x[-(K - 1):], S)
        y = torch.stack(ys).reshape(T, -1) * torch.nn.functional.silu(h @ L["in_z"])
        return y @ L["out"]

    def forward_chunk(self, mem, tables, tokens, positions, wait=None):
        """Logits (T, vocab) of tokens at positions; their K/V and the state go into mem."""
        cfg = self.cfg
        x = self.w.embed[tokens]
        for layer, (kind, L) in enumerate(zip(cfg.kinds, self.w.layers)):
            if wait is not None:
                wait(layer)
            h = rms_norm(x, L["attn_norm"], cfg.eps)
            if kind == "recurrent":
                a = self.recurrent(L, layer, h, mem, tables.state_slot)
            else:
                a = self.attention(L, layer, h, positions, mem, tables)
            x = x + self.comm.all_reduce(a)
            h = rms_norm(x, L["mlp_norm"], cfg.eps)
            m = (torch.nn.functional.silu(h @ L["gate"]) * (h @ L["up"])) @ L["down"]
            x = x + self.comm.all_reduce(m)
        return rms_norm(x, self.w.final_norm, cfg.eps) @ self.w.lm_head

    def prefill(self, mem, tables, tokens, start, end, wait=None, chunk=PAGE):
        """Computes tokens[start:end] (start a page boundary) over what mem holds before start,
        in chunks ending at page boundaries; returns their logits. The state slot is left with
        the state at the end of the last full page, the branch slot (if any) with the state at
        the end of page branch_pages - 1. wait(layer), if given, runs before each layer of the
        first chunk (Strata's wait_layer). chunk: a multiple of PAGE; a full recompute passes
        one chunk for the whole prompt (its state slot then keeps no page-end state)."""
        if start % PAGE:
            raise ValueError(f"prefill starts at {start}, not a page boundary")
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        recurrent = bool(mem.rec_layers)
        slot = tables.state_slot
        branch = (tables.branch_pages * PAGE
                  if recurrent and tables.branch_state_slot is not None else None)
        if recurrent and start == 0:
            mem.state[0, :, slot] = 0
        out = []
        s = start
        while s < end:
            if s == branch:
                mem.copy_state(slot, tables.branch_state_slot)
            e = min(end, (s // chunk + 1) * chunk)
            # A chunk that ends inside a page: its state is not kept (the slot keeps the state at
            # the end of the last full page).
            partial = recurrent and e % PAGE != 0
            if partial:
                saved = mem.state[0, :, slot].clone()
            out.append(self.forward_chunk(mem, tables, tokens[s:e], torch.arange(s, e),
                                          wait if s == start else None))
            if partial:
                mem.state[0, :, slot] = saved
            s = e
        if end == branch:
            mem.copy_state(slot, tables.branch_state_slot)
        return torch.cat(out)
