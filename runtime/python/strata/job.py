"""strata.Job: the process's set-up (MPI or the engine's own collective, the grid of
TP x CP x PP x DP ranks, the remote tier), over strata_job_create. One per process; Caches are
made from it."""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
from typing import Any, Callable, Optional

import numpy as np

from . import _capi, _lifetime
from ._capi import StrataError, invalid

AgreeMin = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True)
class RankPlace:
    """Where this rank is in the Job's grid (strata_rank_place). device: the GPU it binds to,
    -1 for none."""

    world_rank: int
    world_size: int
    tp_rank: int
    tp_size: int
    cp_rank: int
    cp_size: int
    pp_rank: int
    pp_size: int
    dp_rank: int
    dp_size: int
    local_rank: int
    device: int


def _array_for_callback(values: Any, count: int) -> Any:
    """Strata's int64 values as an array the callable reduces in place: a torch tensor sharing
    the memory when torch is importable (what torch.distributed takes), else a numpy array."""
    if count == 0:
        array = np.empty(0, dtype=np.int64)
    else:
        array = np.ctypeslib.as_array(values, shape=(count,))
    try:
        import torch
    except ImportError:
        return array
    return torch.from_numpy(array)


def _keep_mpi_for_the_process() -> None:
    """mpi4py, when installed, initialises MPI at import and finalises it at exit (after the
    caches and jobs still open, see _lifetime), and Strata adopts MPI as initialised; without
    mpi4py, the first Job initialises MPI and it stays initialised until the process exits."""
    try:
        importlib.import_module("mpi4py.MPI")  # for its MPI_Init
    except ImportError:
        pass  # then the first Job initialises MPI


class Job(_lifetime.Closable):
    """The process's Strata job. Collective: every rank of the communicator (or every worker of
    the agree_min group) creates it together.

    tp, cp, pp: the grid (DP = ranks / (tp * cp * pp)). gpus: GPUs per node (local rank r binds
    GPU r % gpus), 0 for none. comm: an mpi4py communicator the engine already has (its
    py2f() handle is adopted), or None for MPI_COMM_WORLD. remote: "off", "on" or "auto".
    round_timeout_s (0: none) and on_round_timeout ("abort" or "warn"): the deadline of one
    agreement round of a replica. log_level: trace, debug, info, warn, error, off.

    Workers that are not an MPI job (torch.distributed processes) pass agree_min, rank and
    world_size (and local_rank for the GPU binding): agree_min(values) reduces an int64 array of
    the replica's round decision in place with element-wise MIN over every rank of the replica,
    e.g. `lambda t: torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)`. It gets
    a CPU torch.Tensor (a numpy array when torch is not installed) that shares Strata's memory.
    An exception inside it fails the round: the Strata call raises StrataError, with the
    exception as its __cause__. Ranks are laid out DP x CP x TP with TP fastest; pp must be 1
    and remote "off".

    MPI lives as long as the process (mpi4py's, when it is installed, or initialised by the
    first Job), so Jobs can be made one after another.

    Raises StrataError (code "invalid_argument" for bad options)."""

    def __init__(self, tp: int = 1, cp: int = 1, pp: int = 1, gpus: int = 0, comm: Any = None,
                 remote: str = "off", round_timeout_s: float = 120.0,
                 on_round_timeout: str = "abort", log_level: str = "info",
                 agree_min: Optional[AgreeMin] = None, rank: Optional[int] = None,
                 world_size: Optional[int] = None, local_rank: int = 0):
        self._handle: Optional[int] = None
        self._callback_error: Optional[BaseException] = None
        self._agree_min = agree_min
        self._agree_min_c = None
        options = _capi.JobOptions()
        _capi.lib.strata_job_options_init(ctypes.byref(options))
        for key, value in (("tp", tp), ("cp", cp), ("pp", pp), ("gpus", gpus),
                           ("local_rank", local_rank)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise invalid(f"job: {key} must be an int, not {type(value).__name__}")
            setattr(options, key, value)
        if comm is not None:
            if agree_min is not None:
                raise invalid("job: comm and agree_min exclude each other (an MPI job, or "
                              "workers that agree through agree_min)")
            if not hasattr(comm, "py2f"):
                raise invalid(f"job: comm must be an mpi4py communicator (with py2f()), not "
                              f"{type(comm).__name__}")
            options.mpi_comm = comm.py2f()
        if agree_min is not None:
            if not callable(agree_min):
                raise invalid(f"job: agree_min must be callable, not {type(agree_min).__name__}")
            if rank is None or world_size is None:
                raise invalid("job: agree_min needs rank and world_size (this worker's place)")
            options.rank = rank
            options.world_size = world_size
            self._agree_min_c = _capi.AGREE_MIN_FN(self._agree)
            options.agree_min = self._agree_min_c
        elif rank is not None or world_size is not None:
            raise invalid("job: rank and world_size are for workers that agree through "
                          "agree_min; an MPI job takes them from its communicator")
        if agree_min is None:
            _keep_mpi_for_the_process()
        strings = {"remote": remote, "on_round_timeout": on_round_timeout,
                   "log_level": log_level}
        for key, value in strings.items():
            if not isinstance(value, str):
                raise invalid(f"job: {key} must be a str, not {type(value).__name__}")
            setattr(options, key, value.encode())
        options.round_timeout_s = float(round_timeout_s)
        handle = ctypes.c_void_p()
        self._check(_capi.lib.strata_job_create(ctypes.byref(options), ctypes.byref(handle)))
        self._handle = handle.value
        _lifetime.track_job(self)
        place = _capi.RankPlace()
        self._check(_capi.lib.strata_job_place(self._handle, ctypes.byref(place)))
        self._place = RankPlace(**{name: getattr(place, name) for name, _ in place._fields_})

    def _agree(self, values: Any, count: int, _user: Any) -> int:
        # Called from C: nothing may escape (an exception here would be printed and ignored).
        try:
            self._agree_min(_array_for_callback(values, count))
            return 0
        except BaseException as error:  # noqa: BLE001 - reported by the failing call
            self._callback_error = error
            return 1

    def _check(self, status: int) -> None:
        """Raises the StrataError of a non-OK status (with agree_min's exception as cause)."""
        cause, self._callback_error = self._callback_error, None
        if status == _capi.STATUS_OK:
            if cause is not None and not isinstance(cause, Exception):
                raise cause
            return
        if cause is not None and not isinstance(cause, Exception):
            raise cause  # KeyboardInterrupt, SystemExit: not Strata's failure
        raise _capi.error_of(status, cause) from cause

    @property
    def handle(self) -> int:
        """The strata_job* as an int (for other bindings over the C API)."""
        if self._handle is None:
            raise StrataError("failed_precondition", "job: closed")
        return self._handle

    @property
    def place(self) -> RankPlace:
        return self._place

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        """Destroys the job (collective). Caches made from it keep it alive until they close."""
        if self._handle is not None:
            handle, self._handle = self._handle, None
            _lifetime.untrack(self)
            _capi.lib.strata_job_destroy(handle)

    def __repr__(self) -> str:
        p = self._place if self._handle is not None else None
        where = (f"rank {p.world_rank}/{p.world_size}, tp {p.tp_rank}/{p.tp_size}"
                 if p else "closed")
        return f"strata.Job({where})"
