"""The Python package over CUDA tensors with the "cuda" back end: the engine's pools on the GPU,
a device hit and a host hit with every reused row checked on the device, the loads waited for on
torch's current stream and then on a side stream of the engine's, inserts after that stream's
writes; and strided rows (K and V interleaved per token in one tensor, padded rows) on the current
stream. Skips (exit 77) without a GPU for torch or a CUDA build of Strata."""

import sys

import torch

import strata
from kvmodel import Engine, device_and_host_hits, make_cache

SKIP = 77


def main() -> None:
    if not torch.cuda.is_available():
        print("python cuda: skipped (torch sees no GPU)")
        sys.exit(SKIP)
    with strata.Job(gpus=1) as job:
        assert job.place.device == 0, job.place
        for stream, layout in ((None, "packed"), (torch.cuda.Stream(), "packed"),
                               (None, "interleaved"), (None, "padded")):
            engine = Engine(device="cuda:0", layout=layout)
            try:
                cache = make_cache(job, engine, backend="cuda")
            except strata.StrataError as e:
                if e.code == "not_supported":
                    print(f"python cuda: skipped (Strata without CUDA: {e})")
                    sys.exit(SKIP)
                raise
            with cache:
                device_and_host_hits(cache, engine, stream)
                assert cache.stats().load_pages > 0
            torch.cuda.synchronize()
    print("python cuda: ok (current stream and a side stream; interleaved and padded rows)")


if __name__ == "__main__":
    main()
