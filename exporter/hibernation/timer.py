"""The hibernation timer: ticks at the next transition, not at the next cluster collection.

It sleeps until the next scheduled transition of any governed cluster (or the end of a keep
override), at most ``TIMER_MAX_WAIT`` seconds, and ticks then with the clusters last seen: a
transition is acted on within a second of its time, and a collection that hangs does not hold
hibernation up. With a state another process may write (``watch``), it sleeps in slices of at
most ``STATE_POLL`` seconds and takes in that process's changes between them; a change ends the
wait early (an override's end may now come sooner).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

#: The controller's logger: its parts log as the controller always has.
log = logging.getLogger("exporter.hibernation.controller")

__all__ = ["STATE_POLL", "TIMER_MAX_WAIT", "Timer"]

#: Longest sleep of the timer between two looks at the schedule (policies and overrides change).
TIMER_MAX_WAIT = 30.0
#: Longest sleep of the timer between two looks at a state file another process may write.
STATE_POLL = 2.0


class Timer:
    """``due(now)``: the next instant with something to do; ``tick()``: do it (False when it
    could not run yet); ``reload()``: take in another process's changes (True when any)."""

    def __init__(
        self,
        *,
        due: Callable[[float], float | None],
        tick: Callable[[], Awaitable[None]],
        reload: Callable[[], bool],
        watch: Callable[[], bool],
        clock: Callable[[], float],
        sleep: Callable[[], Callable[[float], Awaitable[None]]],
    ) -> None:
        self.due = due
        self.tick = tick
        self.reload = reload
        self.watch = watch
        self.clock = clock
        self.sleep = sleep  # read at each wait: tests swap the controller's sleep

    async def run(self) -> None:
        """Forever: wait for the next due instant (at most ``TIMER_MAX_WAIT``), then tick."""
        while True:
            due = self.due(self.clock())
            # The clock read again: working out the schedule takes time of its own.
            left = None if due is None else due - self.clock()
            await self.wait(TIMER_MAX_WAIT if left is None else min(TIMER_MAX_WAIT, max(0.0, left)))
            try:
                await self.tick()
            except Exception:  # the timer must outlive any one tick
                log.exception("hibernation: a scheduled tick failed")

    async def wait(self, seconds: float) -> None:
        if not self.watch():
            await self.sleep()(seconds)
            return
        slices = max(1, math.ceil(seconds / STATE_POLL))
        for _ in range(slices):
            await self.sleep()(seconds / slices)
            if self.reload():
                return
