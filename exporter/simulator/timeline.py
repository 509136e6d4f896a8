"""Timelines: a resource's phase as segments on the simulator clock, and the horizon up to which
a rendering stays true."""

from __future__ import annotations

from dataclasses import dataclass

# --- timelines ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """From instant ``at`` on, the resource is in ``phase`` (None: it no longer exists)."""

    at: int
    phase: str | None
    reason: str | None = None
    message: str | None = None
    job_id: str | None = None


class Timeline:
    """Segments in time order; the current one is the last that has started."""

    __slots__ = ("segments",)

    def __init__(self, *segments: Segment) -> None:
        self.segments: list[Segment] = list(segments)

    def state(self, now: int) -> tuple[Segment, int | None]:
        """The current segment and the instant of the next change (None when none is planned)."""
        segs = self.segments
        current = segs[0]
        for seg in segs:
            if seg.at > now:
                return current, seg.at
            current = seg
        return current, None

    def replace_from(self, now: int, *segments: Segment) -> None:
        """Drop what was planned after ``now`` and continue with ``segments``."""
        kept = [s for s in self.segments if s.at <= now]
        self.segments = (kept or self.segments[:1]) + list(segments)


class Horizon:
    """Collects the earliest future instant at which a rendering goes stale."""

    __slots__ = ("now", "until")

    def __init__(self, now: int) -> None:
        self.now = now
        self.until: int | None = None

    def note(self, instant: int | None) -> None:
        if (
            instant is not None
            and instant > self.now
            and (self.until is None or instant < self.until)
        ):
            self.until = instant
