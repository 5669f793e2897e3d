"""Two workers that are not an MPI job: processes spawned by this test, joined by
torch.distributed with the gloo back end (init_method file:// in a temporary directory), one TP2
replica. Each hands Strata its decision all-reduce as `agree_min` over dist.all_reduce(op=MIN):
the workers agree, hit on the device and from the host tier with every row checked, and a
failing collective (the callable raising on both workers) fails the round with a StrataError
whose cause is the callable's exception, without a crash."""

import os
import subprocess
import sys
import tempfile

import torch.distributed as dist

import strata
from kvmodel import Engine, device_and_host_hits, make_cache


class AgreeMin:
    """The engine's collective: MIN over the gloo group, counting its calls; fails on demand."""

    def __init__(self):
        self.calls = 0
        self.fail = False

    def __call__(self, values) -> None:
        self.calls += 1
        if self.fail:
            raise RuntimeError("the engine's collective is down")
        dist.all_reduce(values, op=dist.ReduceOp.MIN)


def worker(rank: int, init_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    agree = AgreeMin()
    job = strata.Job(tp=2, agree_min=agree, rank=rank, world_size=2)
    assert (job.place.world_rank, job.place.tp_rank, job.place.tp_size) == (rank, rank, 2)
    engine = Engine(shard=rank)
    cache = make_cache(job, engine)
    device_and_host_hits(cache, engine)
    assert agree.calls > 0, "Strata never called agree_min"

    # Both workers' collective fails in the same round: the round fails, nothing crashes.
    dist.barrier()
    agree.fail = True
    try:
        cache.step()
    except strata.StrataError as e:
        assert isinstance(e.__cause__, RuntimeError), repr(e.__cause__)
        assert "the engine's collective is down" in str(e), e
    else:
        raise AssertionError("a failing agree_min did not fail the round")
    cache.close()
    job.close()
    dist.barrier()
    dist.destroy_process_group()
    print(f"worker {rank}: ok ({agree.calls} agree_min calls)")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        worker(int(sys.argv[2]), sys.argv[3])
        return
    env = dict(os.environ)
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    with tempfile.TemporaryDirectory(prefix="strata-py-dist-") as tmp:
        init_file = os.path.join(tmp, "init")
        workers = [subprocess.Popen([sys.executable, __file__, "--worker", str(r), init_file],
                                    env=env) for r in range(2)]
        try:
            codes = [w.wait(timeout=240) for w in workers]
        finally:
            for w in workers:
                if w.poll() is None:
                    w.kill()
        assert codes == [0, 0], f"worker exit codes {codes}"
    print("python torch.distributed: ok")


if __name__ == "__main__":
    main()
