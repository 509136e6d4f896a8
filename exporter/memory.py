"""Process-wide tuning: the cyclic garbage collector and glibc's malloc, in one place.

The composition root calls :func:`apply_process_tuning` once at start-up, before threads start.
Each knob is on by default and switched off by an environment variable (``off``, ``false``,
``no`` or ``0``; ``on``, ``true``, ``yes`` or ``1`` switch it on):

``CCE_EXPORTER_TUNING_GC``
    The cyclic collector is paused while a large response is parsed and while the exposition is
    rendered (:func:`gc_paused`), and the long-lived heap is moved to the permanent generation
    after each render (:class:`HeapFreezer`). Both build or keep hundreds of thousands of objects
    that form no reference cycles; without the pause the collector walks the long-lived heap
    again and again for nothing.
``CCE_EXPORTER_TUNING_MALLOC_ARENAS``
    glibc's malloc arenas are capped at two (:func:`limit_malloc_arenas`). glibc gives each
    thread that allocates its own arena (up to 8 per core), and memory freed in one arena is not
    reused by another: the process's RSS then grows with every cycle that lands on a new arena.
    ``MALLOC_ARENA_MAX``, when set, wins.
``CCE_EXPORTER_TUNING_MALLOC_TRIM``
    Memory freed by a cycle (response bodies, decoded JSON, rendered slices) is given back to the
    system after each render (:func:`trim_malloc`, glibc's ``malloc_trim``) instead of staying
    mapped.

The knobs that need glibc do nothing elsewhere (musl, macOS). docs/performance.md has what each
one measured.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

__all__ = [
    "TUNING_VARIABLES",
    "HeapFreezer",
    "Tuning",
    "apply_process_tuning",
    "gc_paused",
    "limit_malloc_arenas",
    "trim_malloc",
    "tuning",
]

#: ``mallopt`` parameter number of ``M_ARENA_MAX`` (glibc's malloc.h).
M_ARENA_MAX = -8

_ON = frozenset({"on", "true", "yes", "1"})
_OFF = frozenset({"off", "false", "no", "0"})


@dataclass(frozen=True, slots=True)
class Tuning:
    """Which knobs are on (see the module docstring)."""

    gc: bool = True
    malloc_arenas: bool = True
    malloc_trim: bool = True


#: Environment variable of each :class:`Tuning` field.
TUNING_VARIABLES: dict[str, str] = {
    "gc": "CCE_EXPORTER_TUNING_GC",
    "malloc_arenas": "CCE_EXPORTER_TUNING_MALLOC_ARENAS",
    "malloc_trim": "CCE_EXPORTER_TUNING_MALLOC_TRIM",
}

_current = Tuning()


def tuning() -> Tuning:
    """The knobs in force: all on until :func:`apply_process_tuning` says otherwise."""
    return _current


def _switch(env: Mapping[str, str], variable: str) -> bool:
    raw = env.get(variable)
    if raw is None or not raw.strip():
        return True
    value = raw.strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    log.warning(
        "%s=%r is neither on nor off (on, off, true, false, yes, no, 1, 0); keeping it on",
        variable,
        raw[:40],
    )
    return True


def apply_process_tuning(env: Mapping[str, str] | None = None) -> Tuning:
    """Read the knobs from ``env`` (default: the process environment) and apply them.

    Call it once at start-up, before threads start. A value that is neither on nor off is
    logged (WARNING) and the knob stays on. Returns the knobs in force.
    """
    global _current
    source = os.environ if env is None else env
    _current = Tuning(**{name: _switch(source, var) for name, var in TUNING_VARIABLES.items()})
    if _current.malloc_arenas:
        limit_malloc_arenas(env=source)
    return _current


def _libc_function(name: str) -> Callable[..., int] | None:
    """A glibc function by name, or None off Linux or where the C library lacks it (musl)."""
    if not sys.platform.startswith("linux"):
        return None
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    try:
        function: Callable[..., int] = getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError):
        return None
    return function


def limit_malloc_arenas(arenas: int = 2, *, env: Mapping[str, str] | None = None) -> bool:
    """Cap glibc's malloc arenas, unless ``MALLOC_ARENA_MAX`` is set; True when applied.

    Call it early, before threads start. Does nothing off Linux/glibc.
    """
    if (os.environ if env is None else env).get("MALLOC_ARENA_MAX"):
        return False
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]  # type: ignore[attr-defined]
    mallopt.restype = ctypes.c_int  # type: ignore[attr-defined]
    applied = bool(mallopt(M_ARENA_MAX, arenas))
    if not applied:
        log.debug("mallopt(M_ARENA_MAX, %d) was refused", arenas)
    return applied


def trim_malloc() -> bool:
    """``malloc_trim(0)``: return glibc's free memory to the system; True when called.

    Does nothing off Linux/glibc, or when ``CCE_EXPORTER_TUNING_MALLOC_TRIM`` is off.
    """
    trim = _malloc_trim()
    if trim is None or not _current.malloc_trim:
        return False
    trim(0)
    return True


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    function = _libc_function("malloc_trim")
    if function is not None:
        function.argtypes = [ctypes.c_size_t]  # type: ignore[attr-defined]
        function.restype = ctypes.c_int  # type: ignore[attr-defined]
    return function


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector, re-entrant and across threads.

    For work that allocates many objects forming no cycles next to a large long-lived heap
    (parsing a large list, rendering the exposition). The collector is re-enabled when the last
    pauser leaves, if it was enabled when the first one came. Does nothing when
    ``CCE_EXPORTER_TUNING_GC`` is off.
    """
    global _gc_pausers, _gc_was_enabled
    if not _current.gc:
        yield
        return
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


class HeapFreezer:
    """Keeps the cyclic garbage collector off the long-lived heap.

    After each render the collector's data (the node summaries, their phase records, the models
    of clusters, pools, add-ons and jobs) is moved to the permanent generation with
    :func:`gc.freeze`, so that the full collections Python runs on its own only walk what was
    created since. Objects freed by reference counting (nearly all) are freed as before; only
    garbage in reference cycles among frozen objects waits, until every ``thaw_every`` seconds
    the heap is unfrozen and collected once in full. With ``CCE_EXPORTER_TUNING_GC`` off nothing
    is frozen (the malloc trim still runs).
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
        if _current.gc:
            now = self._clock()
            if now - self._last_thaw >= self.thaw_every:
                gc.unfreeze()
                gc.collect()
                self._last_thaw = now
                self.thaws += 1
            gc.freeze()
        trim_malloc()
