"""Closes what is still open when the interpreter exits: caches first, then jobs, and before
mpi4py finalises MPI (its finalisation runs after Python's atexit handlers), so that no Strata
handle outlives MPI or is destroyed in an arbitrary garbage-collection order."""

from __future__ import annotations

import atexit
import weakref
from typing import Any, TypeVar

_caches: "weakref.WeakSet[Any]" = weakref.WeakSet()
_jobs: "weakref.WeakSet[Any]" = weakref.WeakSet()


_T = TypeVar("_T", bound="Closable")


class Closable:
    """A handle with close(): usable in a with-block, closed when collected (quietly at
    interpreter shutdown, where _close_all has closed it already)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def track_job(job: Any) -> None:
    _jobs.add(job)


def track_cache(cache: Any) -> None:
    _caches.add(cache)


def untrack(obj: Any) -> None:
    _caches.discard(obj)
    _jobs.discard(obj)


@atexit.register
def _close_all() -> None:
    for group in (_caches, _jobs):
        for obj in list(group):
            obj.close()
