"""Giving memory back after a big run (issue 18).

A run over a 600,000-record upstream allocates a few GB of small objects. Once they are garbage,
CPython returns whole arenas to the C allocator, but glibc keeps freed pages mapped (in the heap
of each thread that allocated them) until it is told to trim: the server stayed at 3.7 GB idle
after such a run. Worse, a few thousand survivors pin whole 1 MiB pymalloc arenas: the run's
parse caches keep strings of the upstream's records as their keys, scattered over every arena the
parse filled. :func:`return_memory` empties those caches, collects, then asks glibc to give the
free pages back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Callable

from stockade.conda.records import spec_problem, version_problem
from stockade.policies.licenses import family_alternatives

#: Upstream records from which a run gives memory back when it ends. Below, what it allocated is
#: small and a full garbage collection (of the whole process's heap) would cost more than it
#: returns: a few hundred milliseconds in a process holding much, after every small run.
BIG_RUN = 20_000
#: Caches a run fills with strings of the upstream's records (their keys pin memory).
RUN_CACHES = (spec_problem, version_problem, family_alternatives)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def return_memory() -> bool:
    """Empty the run's caches, collect garbage and trim the C heap; whether it could be trimmed."""
    for cache in RUN_CACHES:
        cache.cache_clear()
    gc.collect()
    trim = _malloc_trim()
    return bool(trim is not None and trim(0))


def after_run(upstream_records: int) -> bool:
    """At the end of a run over ``upstream_records``: give the memory back if the run was big
    (:data:`BIG_RUN`); whether it did."""
    return upstream_records >= BIG_RUN and return_memory()
