"""Closes what is still open when the interpreter exits: caches first, then jobs, and before
mpi4py finalises MPI (its finalisation runs after Python's atexit handlers), so that no Strata
handle outlives MPI or is destroyed in an arbitrary garbage-collection order."""

from __future__ import annotations

import atexit
import weakref
from typing import Any

_caches: "weakref.WeakSet[Any]" = weakref.WeakSet()
_jobs: "weakref.WeakSet[Any]" = weakref.WeakSet()


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
