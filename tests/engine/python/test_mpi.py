"""Two ranks under mpirun, one TP2 replica: each rank's K/V shard in its own torch tensors (the
indexer replicated), served through the Python package with a device hit and a host hit, every
reused row checked. `world`: the Job over MPI_COMM_WORLD, MPI initialised by Strata (as when
mpi4py is not installed); `mpi4py`: over an mpi4py communicator the engine made (the world's
ranks in reverse order, so that the Job's ranks show it was adopted)."""

import sys

import strata
from kvmodel import Engine, device_and_host_hits, make_cache


def run(job: strata.Job) -> None:
    place = job.place
    assert place.world_size == 2 and place.tp_size == 2 and place.dp_size == 1, place
    engine = Engine(shard=place.tp_rank)
    with make_cache(job, engine) as cache:
        device_and_host_hits(cache, engine)
        assert cache.stats().rounds >= 5


def main() -> None:
    mode = sys.argv[1]
    if mode == "world":
        sys.modules["mpi4py"] = None  # as without mpi4py: the Job initialises MPI itself
        with strata.Job(tp=2) as job:
            run(job)
            rank = job.place.world_rank
        # MPI that a Job initialised outlives it: a second Job in the same process works.
        with strata.Job(tp=2) as job:
            run(job)
    elif mode == "mpi4py":
        from mpi4py import MPI

        world = MPI.COMM_WORLD
        reversed_comm = world.Split(0, world.size - 1 - world.rank)
        with strata.Job(tp=2, comm=reversed_comm) as job:
            assert job.place.world_rank == world.size - 1 - world.rank, job.place
            run(job)
            rank = world.rank
        reversed_comm.Free()
    else:
        raise SystemExit(f"usage: {sys.argv[0]} world|mpi4py")
    print(f"python mpi ({mode}): rank {rank} ok")


if __name__ == "__main__":
    main()
