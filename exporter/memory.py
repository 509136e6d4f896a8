"""Process-wide memory settings.

The exporter parses large responses and renders the exposition in worker threads. glibc gives
each thread that allocates its own malloc arena (up to 8 per core), and memory freed in one arena
is not reused by another: the process's RSS then grows with every cycle that lands on a new arena
(measured at 100 clusters x 100 nodes: peak 380 MB with the default, 250 MB with two arenas, and
half the growth). Two arenas keep the worker threads from fanning out.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging
import os
import sys
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: ``mallopt`` parameter number of ``M_ARENA_MAX`` (glibc's malloc.h).
M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas, unless ``MALLOC_ARENA_MAX`` is set; True when applied.

    Call it early, before threads start. Does nothing off Linux/glibc.
    """
    if not sys.platform.startswith("linux") or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(M_ARENA_MAX, arenas))
    if not applied:
        log.debug("mallopt(M_ARENA_MAX, %d) was refused", arenas)
    return applied


class HeapFreezer:
    """Keeps the cyclic garbage collector off the long-lived heap.

    After each render the collector's data (100,000 node summaries, their phase records, the
    models of clusters, pools, add-ons and jobs) is moved to the permanent generation with
    :func:`gc.freeze`, so that the full collections Python runs on its own only walk what was
    created since: at 500 clusters x 200 nodes each full pass over everything took ~0.3 s with
    the event loop stopped, and a cycle ran several. Objects freed by reference counting (nearly
    all) are freed as before; only garbage in reference cycles among frozen objects waits, until
    every ``thaw_every`` seconds the heap is unfrozen and collected once in full.
    """

    def __init__(
        self, thaw_every: float = 600.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.thaw_every = thaw_every
        self._clock = clock
        self._last_thaw = self._clock()
        self.thaws = 0

    def settle(self) -> None:
        """Freeze what survived so far; first collect everything once, when a thaw is due. Then
        give the memory freed by the cycle back to the system (:func:`trim_malloc`)."""
        now = self._clock()
        if now - self._last_thaw >= self.thaw_every:
            gc.unfreeze()
            gc.collect()
            self._last_thaw = now
            self.thaws += 1
        gc.freeze()
        trim_malloc()


def trim_malloc() -> bool:
    """``malloc_trim(0)``: return glibc's free memory to the system; True when called.

    A cycle frees tens of megabytes of response bodies, parsed JSON and rendered slices that
    glibc would otherwise keep mapped: at 500 clusters x 200 nodes the steady RSS is ~40 MB lower
    with a trim after each render (a few milliseconds). Does nothing off Linux/glibc.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # musl has no malloc_trim
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    trim: Callable[[int], int] = function
    return trim
