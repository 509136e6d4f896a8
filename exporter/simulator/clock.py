"""The simulator's clock: real time plus an offset the control API can move forward.

Every phase transition in the simulated world is computed from this clock, so a test advances time
instead of sleeping. Times are integer nanoseconds since the Unix epoch: the API's Go-style
timestamps carry nanoseconds, and integers keep their trailing digits exact.
"""

from __future__ import annotations

import time

NS = 1_000_000_000


class SimClock:
    """Wall-clock time (or a frozen instant) plus an adjustable offset, in nanoseconds."""

    def __init__(self, start_ns: int | None = None, *, frozen: bool = False) -> None:
        # A frozen clock only moves when advanced: the determinism tests need two worlds to see
        # the very same instant.
        self._frozen = frozen
        self._base = start_ns if start_ns is not None else time.time_ns()
        self._real_at_base = time.time_ns()
        self._offset = 0

    def now_ns(self) -> int:
        if self._frozen:
            return self._base + self._offset
        return self._base + (time.time_ns() - self._real_at_base) + self._offset

    def now(self) -> float:
        """Seconds since the epoch."""
        return self.now_ns() / NS

    @property
    def offset_seconds(self) -> float:
        return self._offset / NS

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += int(seconds * NS)
