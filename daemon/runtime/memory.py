"""Keep a daemon that runs for months from growing its heap by fragmentation.

Measured with the fault soak (docs/reliability.md): the daemon's live Python objects stay
flat, yet its heap crept up by about a megabyte a minute from two causes, each fixed here.

- glibc gives each thread that allocates its own malloc arena (up to eight per core). The
  globus-sdk executor, the ledger writer and readers are a dozen such threads, and free
  space stranded in one arena cannot serve another: ``limit_malloc_arenas`` caps them.
- Exceptions raised by failed Globus requests (tracebacks, frames, responses) form
  reference cycles. The collector frees those only in full collections, which run once the
  survivors reach a quarter of all long-lived objects, and most long-lived objects are the
  ~80,000 created at start-up (modules, routes, models). Garbage then piles up for
  minutes, and each pile claims fresh memory that Python's allocator seldom gives back.
  ``freeze_startup_objects`` takes the start-up objects out of the collector's work, and
  ``collect_cycles`` runs a full collection on a clock, so a pile is at most a few
  seconds of garbage. Most of those cycles are made inside globus-sdk, requests and
  urllib3 (an exception bound to a name in a frame its own traceback holds), so they
  cannot be avoided at the source.

After each collection ``malloc_trim`` hands free heap pages back to the system: a burst of
large requests (oversized-work campaign) left the daemon's RSS at its peak otherwise.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import time
from typing import Any

from .logs import get_logger

__all__ = ["collect_cycles", "freeze_startup_objects", "limit_malloc_arenas"]

log = get_logger(__name__)

# Seconds between full collections. With the start-up objects frozen one takes about a
# millisecond per 10,000 live objects (docs/reliability.md).
COLLECT_EVERY = 10.0

# From glibc's <malloc.h>.
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (as ``MALLOC_ARENA_MAX`` would); call it before threads
    start. Returns False where there is no glibc ``mallopt`` (e.g. macOS) and nothing
    changed."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))


def freeze_startup_objects() -> int:
    """Collect once, then exempt every object alive now from later collections (they live
    as long as the process). Returns how many were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


async def collect_cycles(every: float = COLLECT_EVERY) -> None:
    """Run a full garbage collection every ``every`` seconds, until cancelled."""
    while True:
        await asyncio.sleep(every)
        start = time.perf_counter()
        found = gc.collect()
        trimmed = _trim()
        log.debug(
            "collected",
            objects=found,
            trimmed=trimmed,
            ms=round((time.perf_counter() - start) * 1e3, 2),
        )


def _malloc_trim() -> Any:
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = _malloc_trim()


def _trim() -> bool:
    """Hand free heap pages back to the system (glibc keeps them otherwise: after a burst
    of large requests, the daemon's RSS stayed at its peak). True if any were."""
    return bool(_MALLOC_TRIM(0)) if _MALLOC_TRIM is not None else False
