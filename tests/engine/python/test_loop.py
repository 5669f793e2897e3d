"""An engine's loop through the Python package over CPU torch tensors: a device hit, a host hit
(the device pool overrun by other prompts), and an HDF5 hit in a second process on the same
storage directory; every reused row is compared with torch.equal to what the model wrote."""

import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

import strata
from kvmodel import PAGE, Engine, make_cache, serve, tokens_of

FIRST = tokens_of(1, 5 * PAGE + 3)
BRANCH = tokens_of(4, 6 * PAGE, FIRST)  # shares FIRST's 5 full pages
ENV = dict(os.environ)  # as started: MPI_Init adds variables a second process must not inherit


def first_process(storage: str) -> None:
    job = strata.Job()
    engine = Engine()
    cache = make_cache(job, engine, storage_dir=storage)
    assert [p.name for p in cache.pools] == ["kv", "idx"], cache.pools
    assert cache.page_size == PAGE
    # The Cache reports the engine's own addresses.
    kv, idx = cache.pools
    assert kv.layer_ptrs[1] == engine.kv[0, 1].data_ptr(), "kv layer 1 is not the tensor's"
    assert kv.layer_ptrs[3 + 2] == engine.kv[1, 2].data_ptr(), "V of layer 2 is not the tensor's"
    assert idx.layer_ptrs == [t.data_ptr() for t in engine.idx]
    assert (kv.row_bytes, kv.buffers, kv.layers) == (2 * 8 * 2, 2, 3)

    a = serve(cache, engine, 1, FIRST)
    assert (a.prompt_tokens, a.cached_tokens) == (len(FIRST), 0), a
    assert len(a.pages) == 6 and len(a.pool("idx").pages) == 6
    cache.drain()

    # On the device: the same prompt again reuses its full pages in place (tokens as a tensor).
    assert cache.match(np.array(FIRST, dtype=np.int64)) == 5 * PAGE
    again = serve(cache, engine, 2, torch.tensor(FIRST))
    assert again.device_hit_tokens == 5 * PAGE and again.cached_tokens == 5 * PAGE, again

    # Two unrelated prompts push it off the device; it comes back from the host tier.
    serve(cache, engine, 3, tokens_of(2, 7 * PAGE))
    serve(cache, engine, 4, tokens_of(3, 7 * PAGE))
    cache.drain()
    back = serve(cache, engine, 5, tuple(BRANCH))
    assert back.host_hit_tokens == 5 * PAGE and back.device_hit_tokens == 0, back
    assert back.storage_hit_tokens == 0 and back.cached_tokens == 5 * PAGE, back
    cache.drain()
    stats = cache.stats()
    assert stats.load_pages >= 5 and stats.backup_pages > 0, stats
    assert stats.prompt_tokens == 2 * len(FIRST) + 14 * PAGE + len(BRANCH), stats
    assert stats.cached_tokens == 10 * PAGE, stats
    assert engine.padding_intact(), "bytes written between the engine's layers"
    cache.close()
    job.close()


def second_process(storage: str) -> None:
    """A new process, nothing cached but the HDF5 files: the shared prefix comes from storage."""
    with strata.Job() as job:
        engine = Engine()
        with make_cache(job, engine, storage_dir=storage) as cache:
            hit = serve(cache, engine, 1, BRANCH)
            assert hit.storage_hit_tokens == 5 * PAGE, hit
            assert hit.cached_tokens == 5 * PAGE and hit.host_hit_tokens == 5 * PAGE, hit
            assert engine.padding_intact()
            # And now it is on the device.
            again = serve(cache, engine, 2, BRANCH)
            assert again.device_hit_tokens == 6 * PAGE, again


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--second":
        second_process(sys.argv[2])
        return
    with tempfile.TemporaryDirectory(prefix="strata-py-loop-") as storage:
        first_process(storage)
        subprocess.run([sys.executable, __file__, "--second", storage], env=ENV, check=True,
                       timeout=240)
    print("python loop: ok (device, host and HDF5 hits byte-exact)")


if __name__ == "__main__":
    main()
