"""A real decoder (model.py) served over Strata: prompts that share a prefix get its K/V and
recurrent state from Strata (a device hit, a host hit, a branch point, and in a second process an
HDF5 hit) and compute only the suffix on top. Checks, for every request:
- Strata's admission is the hit the case expects (so that a test cannot pass by recomputing);
- the suffix logits are bit-identical (torch.equal) to the model's own cache path in this process
  (the prefix computed by the model into its own tensors, then the same suffix computation);
- the argmax of the last position equals a full recompute of the whole prompt in one pass.

Usage: decoder_test.py --model dense|hybrid --phase tiers|hdf5 --storage DIR
  tiers: a fresh storage directory; device, host and branch hits (and the HDF5 files written).
  hdf5: a fresh process on the directory tiers left: prefetch, then a storage hit.
Under mpiexec -np 2 the model runs TP2 (heads and MLP split, all-reduce after the output and down
projections) and every rank checks its own logits.
"""
import argparse
import os
import shutil
import sys
import time

import strata
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import CONFIGS, PAGE, Comm, Decoder, Memory, Tables  # noqa: E402

DEVICE_TOKENS = 40 * PAGE  # two prompts of 21 pages overrun it
STATE_SLOTS = 4
HOST_TOKENS = 256 * PAGE
OWN_ROWS = 32 * PAGE
PREFIX = 18 * PAGE  # >= 256 tokens: the storage tier prefetches only that much
BRANCH = 10 * PAGE


def tokens_of(seed, n, vocab, prefix=()):
    g = torch.Generator().manual_seed(seed)
    return list(prefix) + torch.randint(0, vocab, (n - len(prefix),), generator=g).tolist()


class Failure(AssertionError):
    pass


def expect(cond, what):
    if not cond:
        raise Failure(what)


def pages_of(pool):
    return [None if p == strata.NO_PAGE else p for p in pool.pages]


def slot_of(value):
    return None if value == strata.NO_PAGE else value


def tables_of(adm, mem):
    """The request's Tables from Strata's admission of its pools (strata_pools' names)."""
    t = Tables(kv_pages=pages_of(adm.pool("kv")))
    if mem.window is not None:
        t.window_pages = pages_of(adm.pool("swa"))
    if mem.state is not None:
        s = adm.pool("rec")
        t.state_slot = slot_of(s.state_slot)
        t.branch_state_slot = slot_of(s.branch_state_slot)
        t.branch_pages = s.branch_pages if t.branch_state_slot is not None else 0
    return t


def strata_pools(mem, cfg):
    pools = [strata.Pool("kv", "kv", layers=mem.full_layers, buffers=2, tensor=mem.kv,
                         tp="per_rank")]
    if mem.window is not None:
        pools.append(strata.Pool("swa", "window", layers=mem.window_layers, buffers=2,
                                 tensor=mem.window, window_tokens=cfg.window, tp="per_rank"))
    if mem.state is not None:
        pools.append(strata.Pool("rec", "state", layers=mem.rec_layers, buffers=1,
                                 tensor=mem.state, conv_state_bytes=mem.conv_state_bytes,
                                 tp="per_rank"))
    return pools


class Server:
    def __init__(self, cfg, comm, storage_dir):
        self.cfg = cfg
        self.comm = comm
        self.model = Decoder(cfg, comm)
        self.mem = Memory(cfg, comm.size, DEVICE_TOKENS, STATE_SLOTS)
        self.own = Memory(cfg, comm.size, OWN_ROWS, 1)
        self.job = strata.Job(tp=comm.size, comm=comm.mpi, log_level="warn")
        self.cache = strata.Cache(self.job, model=f"decoder-{cfg.name}",
                                  pools=strata_pools(self.mem, cfg), page_size=PAGE,
                                  device_tokens=DEVICE_TOKENS, state_slots=STATE_SLOTS,
                                  host_tokens=HOST_TOKENS, storage_dir=storage_dir,
                                  backend="cpu")
        self.next_id = 1
        self.checked = 0

    def log(self, msg):
        print(f"[rank {self.comm.rank}] {msg}", flush=True)

    def serve(self, tokens, name, prefetch=False, check=True):
        """Serves one prompt: admit, load, compute the suffix over Strata's rows, insert. Returns
        (admission, tables, suffix logits)."""
        cache = self.cache
        req = self.next_id
        self.next_id += 1
        # The earlier requests' backups finish first, so that their pages can be evicted now: an
        # admission that needs them would otherwise fail (resource_exhausted) until they have.
        cache.drain()
        cache.step()
        if prefetch:
            cache.prefetch(req, tokens)
            deadline = time.monotonic() + 120
            while not cache.prefetch_settled(req):
                expect(time.monotonic() < deadline, f"{name}: prefetch did not settle in 120 s")
                cache.step()
                time.sleep(0.002)
        adm = cache.admit(req, tokens)
        cache.launch_loads()
        tables = tables_of(adm, self.mem)
        c = adm.cached_tokens
        expect(c % PAGE == 0 and c < len(tokens), f"{name}: cached_tokens {c} of {len(tokens)}")
        logits = self.model.prefill(self.mem, tables, tokens, c, len(tokens),
                                    wait=lambda layer: cache.wait_layer(req, layer))
        cache.insert(req)
        cache.release(req)
        if check:
            self.check(name, tokens, c, logits)
        self.log(f"{name}: {len(tokens)} tokens, cached {c} (device {adm.device_hit_tokens}, "
                 f"host {adm.host_hit_tokens}, storage {adm.storage_hit_tokens})"
                 f"{', checked' if check else ''}")
        return adm, tables, logits

    def check(self, name, tokens, cached, logits):
        """The model's own cache path and a full recompute, in this process."""
        n = len(tokens)
        own = Tables.contiguous(n)
        if cached:
            self.model.prefill(self.own, own, tokens, 0, cached)
        mine = self.model.prefill(self.own, own, tokens, cached, n)
        expect(torch.equal(logits, mine),
               f"{name}: suffix logits over Strata's prefix differ from the model's own cache "
               f"path (max |diff| {(logits - mine).abs().max().item():.3g})")
        full = self.model.prefill(self.own, Tables.contiguous(n), tokens, 0, n, chunk=1 << 30)
        expect(int(full[-1].argmax()) == int(logits[-1].argmax()),
               f"{name}: argmax {int(logits[-1].argmax())} but a full recompute gives "
               f"{int(full[-1].argmax())}")
        self.checked += 1


def run_tiers(srv):
    cfg = srv.cfg
    V = cfg.vocab
    hybrid = srv.mem.state is not None
    prefix = tokens_of(100, PREFIX, V)
    # A: the prefix and 5 more tokens, computed whole; its last full page ends the prefix, so
    # the state there is kept too.
    a, _, _ = srv.serve(tokens_of(101, PREFIX + 5, V, prefix), "A (cold)")
    expect(a.cached_tokens == 0, f"A: cached {a.cached_tokens} on a fresh cache")
    # B: the prefix from the device.
    b, _, _ = srv.serve(tokens_of(102, PREFIX + 37, V, prefix), "B (device hit)")
    expect(b.device_hit_tokens == PREFIX and b.cached_tokens == PREFIX,
           f"B: device hit {b.device_hit_tokens}, cached {b.cached_tokens}, expected {PREFIX}")
    # Other prompts overrun the device pool (and the state slots).
    for i in range(3):
        srv.serve(tokens_of(200 + i, PREFIX + 37, V), f"filler {i}", check=False)
    # C: the prefix from the host tier.
    c, _, _ = srv.serve(tokens_of(103, PREFIX + 21, V, prefix), "C (host hit)")
    expect(c.host_hit_tokens == PREFIX and c.device_hit_tokens == 0 and
           c.cached_tokens == PREFIX,
           f"C: host hit {c.host_hit_tokens}, device hit {c.device_hit_tokens}, cached "
           f"{c.cached_tokens}, expected a host hit of {PREFIX}")
    # D branches off the prefix at page BRANCH / PAGE. The dense model reuses those pages; the
    # hybrid one has no state there yet: it computes all of D and leaves the state at the branch
    # point in the slot Strata names, which E then reuses.
    d, dt, _ = srv.serve(tokens_of(104, BRANCH + 40, V, prefix[:BRANCH]), "D (branch)")
    if hybrid:
        expect(d.cached_tokens == 0 and dt.branch_state_slot is not None and
               dt.branch_pages == BRANCH // PAGE,
               f"D: cached {d.cached_tokens}, branch slot {dt.branch_state_slot}, branch pages "
               f"{dt.branch_pages}; expected 0, a slot and {BRANCH // PAGE}")
    else:
        expect(d.cached_tokens == BRANCH, f"D: cached {d.cached_tokens}, expected {BRANCH}")
    e, _, _ = srv.serve(tokens_of(105, BRANCH + 23, V, prefix[:BRANCH]), "E (after the branch)")
    expect(e.device_hit_tokens == BRANCH and e.cached_tokens == BRANCH,
           f"E: device hit {e.device_hit_tokens}, cached {e.cached_tokens}, expected {BRANCH}")
    srv.cache.drain()


def run_hdf5(srv):
    V = srv.cfg.vocab
    prefix = tokens_of(100, PREFIX, V)
    f, _, _ = srv.serve(tokens_of(106, PREFIX + 30, V, prefix), "F (HDF5 hit)", prefetch=True)
    expect(f.storage_hit_tokens == PREFIX and f.cached_tokens == PREFIX,
           f"F: storage hit {f.storage_hit_tokens}, cached {f.cached_tokens}, expected "
           f"{PREFIX} from the files of the first process")
    srv.cache.drain()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=sorted(CONFIGS), required=True)
    ap.add_argument("--phase", choices=["tiers", "hdf5"], required=True)
    ap.add_argument("--storage", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    mpi = None
    if int(os.environ.get("OMPI_COMM_WORLD_SIZE", os.environ.get("PMI_SIZE", "1"))) > 1:
        from mpi4py import MPI

        mpi = MPI.COMM_WORLD
    comm = Comm(mpi)
    if args.phase == "tiers" and comm.rank == 0:
        shutil.rmtree(args.storage, ignore_errors=True)
        os.makedirs(args.storage)
    if mpi is not None:
        mpi.Barrier()
    if args.phase == "hdf5":
        expect(os.path.isdir(args.storage) and os.listdir(args.storage),
               f"{args.storage} holds no files: run the tiers phase first")
    started = time.monotonic()
    srv = Server(CONFIGS[args.model], comm, args.storage)
    (run_tiers if args.phase == "tiers" else run_hdf5)(srv)
    srv.log(f"{args.model} {args.phase} tp{comm.size}: {srv.checked} requests bit-identical to "
            f"the own cache path, argmax equal to a recompute ({time.monotonic() - started:.1f} s)")


if __name__ == "__main__":
    try:
        main()
    except BaseException as error:  # noqa: BLE001 - under mpiexec, the other rank must stop too
        if isinstance(error, SystemExit) and not error.code:
            raise
        print(f"FAILED: {type(error).__name__}: {error}", flush=True)
        if "mpi4py.MPI" in sys.modules:
            sys.modules["mpi4py.MPI"].COMM_WORLD.Abort(1)
        sys.exit(1)
