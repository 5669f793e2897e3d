"""An engine's loop through the Python package over CPU torch tensors: a device hit, a host hit
(the device pool overrun by other prompts), and an HDF5 hit in a second process on the same
storage directory (prefetch, step until settled, admit); every reused row is compared with
torch.equal to what the model wrote."""

import os
import subprocess
import sys
import tempfile
import time

import strata
from kvmodel import (BRANCH, FIRST, FIRST_PAGES, PAGE, Engine, device_and_host_hits, make_cache,
                     serve, tokens_of)

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
    assert (kv.row_bytes, kv.buffers, kv.layers, kv.device_rows) == (32, 2, 3, engine.rows)

    device_and_host_hits(cache, engine)
    stats = cache.stats()
    assert stats.load_pages >= FIRST_PAGES and stats.backup_pages > 0, stats
    assert stats.prompt_tokens == 2 * len(FIRST) + 40 * PAGE + len(BRANCH), stats
    assert stats.cached_tokens == 2 * FIRST_PAGES * PAGE, stats
    cache.close()
    job.close()


def preset() -> None:
    """No pools declared: a preset's, allocated by Strata, whose addresses the Cache reports."""
    with strata.Job() as job, strata.Cache(job, model="deepseek-v3.2", layers=2,
                                           device_tokens=4096, host_tokens=8192) as cache:
        assert [p.name for p in cache.pools] == ["kv", "indexer"], cache.pools
        assert cache.page_size == 64
        kv = cache.pools[0]
        assert kv.layers == 2 and kv.device_rows >= 4096 and all(kv.layer_ptrs), kv
        assert serve_preset(cache) == 0


def serve_preset(cache: strata.Cache) -> int:
    tokens = tokens_of(11, 130)
    cache.step()
    a = cache.admit(1, tokens)
    cache.launch_loads()
    cache.insert(1)
    cache.release(1)
    assert cache.match(tokens) == 128, "the two full pages are cached"
    return a.cached_tokens


def second_process(storage: str) -> None:
    """A new process, nothing cached but the HDF5 files: the shared prefix comes from storage."""
    tokens = tokens_of(5, (FIRST_PAGES + 1) * PAGE + 5, FIRST)
    with strata.Job() as job:
        engine = Engine()
        # Above the threshold of the prefetch, no prefetch starts: nothing comes from storage.
        with make_cache(job, engine, storage_dir=storage,
                        prefetch_threshold_tokens=len(tokens)) as cache:
            cache.prefetch(1, tokens)
            assert cache.prefetch_settled(1), "no prefetch was to start"
            cache.step()
            miss = serve(cache, engine, 1, tokens)
            assert miss.cached_tokens == 0 and miss.storage_hit_tokens == 0, miss
        with make_cache(job, engine, storage_dir=storage) as cache:
            assert cache.match(tokens) == 0  # neither on the device nor in host memory
            cache.prefetch(1, tokens)
            deadline = time.monotonic() + 120
            while not cache.prefetch_settled(1):
                assert time.monotonic() < deadline, "the prefetch did not settle in 120 s"
                cache.step()
                time.sleep(0.001)
            hit = serve(cache, engine, 1, tokens)
            assert hit.storage_hit_tokens == FIRST_PAGES * PAGE, hit
            assert hit.cached_tokens == hit.host_hit_tokens == FIRST_PAGES * PAGE, hit
            assert engine.padding_intact()
            # And now it is on the device.
            again = serve(cache, engine, 2, tokens)
            assert again.device_hit_tokens == (FIRST_PAGES + 1) * PAGE, again


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--second":
        second_process(sys.argv[2])
        return
    preset()
    with tempfile.TemporaryDirectory(prefix="strata-py-loop-") as storage:
        first_process(storage)
        subprocess.run([sys.executable, __file__, "--second", storage], env=ENV, check=True,
                       timeout=240)
    print("python loop: ok (device, host and HDF5 hits byte-exact)")


if __name__ == "__main__":
    main()
