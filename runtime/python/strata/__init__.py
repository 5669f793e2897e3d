"""strata: Strata's Python package, a binding over its C API (strata/strata.h) with ctypes.

    import strata
    job = strata.Job()                                   # MPI, the grid (collective)
    kv = strata.Pool("kv", layers=32, buffers=2, tensor=k_v)   # (2, 32, rows, heads, dim)
    cache = strata.Cache(job, model="my-model", pools=[kv], page_size=64)
    cache.step(); a = cache.admit(1, tokens); cache.launch_loads()
    for layer in range(32): cache.wait_layer(1, layer); ...  # compute
    cache.insert(1); cache.release(1)

Every failure raises strata.StrataError (.code, and Strata's message). libstrata is the one
next to the package (the build tree's, or the installed prefix's lib/), or $STRATA_LIBRARY."""

from ._capi import NO_PAGE, StrataError, library_path
from ._capi import lib as _lib
from .cache import Admission, AdmissionPool, Cache, CacheStats, PoolInfo
from .job import Job, RankPlace
from .pool import Pool, dtype_tag


def version() -> str:
    """libstrata's version, "MAJOR.MINOR.PATCH" (strata_version())."""
    return _lib.strata_version().decode()


__version__ = version()

for _cls in (Admission, AdmissionPool, Cache, CacheStats, Job, Pool, PoolInfo, RankPlace,
             StrataError):
    _cls.__module__ = __name__  # strata.StrataError, not strata._capi.StrataError, in tracebacks

__all__ = [
    "Admission", "AdmissionPool", "Cache", "CacheStats", "Job", "NO_PAGE", "Pool", "PoolInfo",
    "RankPlace", "StrataError", "__version__", "dtype_tag", "library_path", "version",
]
