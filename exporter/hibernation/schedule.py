"""When a policy wants its clusters awake: pure functions of a policy and instants.

Schedules are worked out in the policy's wall-clock time (naive local datetimes) and only then
turned into instants, which is what makes them DST-correct:

- a wall-clock time that happens twice (the fall-back hour) is taken at its first occurrence, so
  every transition happens exactly once;
- a wall-clock time that does not exist (the spring-forward gap) happens at the first valid instant
  after it (02:30 in Europe/Berlin on the last Sunday of March is 03:00 CEST, 01:00 UTC).

Awake windows become intervals of wall-clock time, merged (``Sat,Sun`` is one weekend, with no
transition at midnight between them), minus holidays (local midnight to midnight); each interval's
start is an ``awake`` transition and its end a ``hibernate`` one. Cron pairs give one transition per
firing; a holiday drops the firings inside it and adds a ``hibernate`` at its start (and an
``awake`` at its end) where the cron schedule would have the cluster awake.

Every instant this module returns is an aware ``datetime`` in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from croniter import croniter

from exporter.hibernation.policy import CronPair, Policy

__all__ = [
    "LOOKBACK",
    "Action",
    "State",
    "Transition",
    "desired_state",
    "next_transitions",
    "resolve_local",
    "transitions",
]

Action = Literal["hibernate", "awake"]
State = Literal["awake", "hibernated"]

#: How far back :func:`desired_state` looks for the transition that set the current state.
LOOKBACK = timedelta(days=8)

_STATE_OF: dict[str, State] = {"awake": "awake", "hibernate": "hibernated"}


@dataclass(frozen=True, order=True)
class Transition:
    at: datetime
    action: Action


def resolve_local(naive: datetime, tz: ZoneInfo) -> datetime:
    """The instant (UTC) of a wall-clock time: first occurrence when it repeats, the first valid
    instant after it when it does not exist."""
    first = naive.replace(tzinfo=tz, fold=0)
    utc = first.astimezone(UTC)
    if utc.astimezone(tz).replace(tzinfo=None) == naive:
        return utc
    # In a gap: fold=1 maps to an instant before the jump, fold=0 to one after; the jump itself is
    # the answer, found by bisection on whole seconds (the tz database has no sub-second jumps).
    lo = int(naive.replace(tzinfo=tz, fold=1).timestamp())
    hi = int(utc.timestamp())
    while lo < hi:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).replace(tzinfo=None) >= naive:
            hi = mid
        else:
            lo = mid + 1
    return datetime.fromtimestamp(lo, UTC)


def _local(at: datetime, tz: ZoneInfo) -> datetime:
    return at.astimezone(tz).replace(tzinfo=None)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _holiday_runs(policy: Policy, first: date, last: date) -> list[tuple[datetime, datetime]]:
    """Maximal runs of consecutive holidays as wall-clock ``[start, end)``."""
    runs: list[tuple[datetime, datetime]] = []
    for day in _days(first, last):
        if not policy.is_holiday(day):
            continue
        start, end = _midnight(day), _midnight(day + timedelta(days=1))
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((start, end))
    return runs


def _window_events(policy: Policy, first: date, last: date) -> list[tuple[datetime, Action]]:
    intervals: list[tuple[datetime, datetime]] = []
    for day in _days(first, last):
        for w in policy.windows:
            if day.weekday() in w.days:
                base = _midnight(day)
                intervals.append(
                    (base + timedelta(minutes=w.start), base + timedelta(minutes=w.end))
                )
    intervals.sort()
    merged: list[tuple[datetime, datetime]] = []
    for start, end in intervals:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    for h_start, h_end in _holiday_runs(policy, first, last):
        clipped: list[tuple[datetime, datetime]] = []
        for start, end in merged:
            if end <= h_start or start >= h_end:
                clipped.append((start, end))
                continue
            if start < h_start:
                clipped.append((start, h_start))
            if end > h_end:
                clipped.append((h_end, end))
        merged = clipped
    events: list[tuple[datetime, Action]] = []
    for start, end in merged:
        events.append((start, "awake"))
        events.append((end, "hibernate"))
    return events


def _cron_events(policy: Policy, first: date, last: date) -> list[tuple[datetime, Action]]:
    begin, stop = _midnight(first), _midnight(last + timedelta(days=1))
    events: list[tuple[datetime, Action]] = []
    for pair in policy.schedules:
        for expr, action in _sides(pair):
            if expr is None:
                continue
            # croniter walks naive datetimes, i.e. the policy's wall clock, with no DST jumps.
            it = croniter(expr, begin - timedelta(seconds=1))
            while (fire := it.get_next(datetime)) < stop:
                events.append((fire, action))
    events.sort()
    runs = _holiday_runs(policy, first, last)
    if not runs:
        return events
    kept = [e for e in events if not any(s <= e[0] < t for s, t in runs)]
    for h_start, h_end in runs:
        # The state the holiday finds (firings at its first instant are dropped with the rest)
        # and the one it ends into, however long ago the cron set them: not only within the
        # asked range, or a short range (one tick) would miss the holiday's transitions.
        if _cron_state(policy, h_start) == "awake":
            kept.append((h_start, "hibernate"))
        if _cron_state(policy, h_end + timedelta(minutes=1)) == "awake":
            kept.append((h_end, "awake"))
    kept.sort()
    return kept


def _sides(pair: CronPair) -> tuple[tuple[str | None, Action], ...]:
    return ((pair.hibernate, "hibernate"), (pair.awake, "awake"))


def _cron_state(policy: Policy, moment: datetime) -> Action:
    """The action of the policy's latest cron firing before ``moment`` (wall clock), however
    far back; at one instant ``hibernate`` wins, as it sorts after ``awake`` in the events. (A
    cron policy has at least one expression, and each fires: the policy's validation.)"""
    latest = max(
        (croniter(expr, moment).get_prev(), action)
        for pair in policy.schedules
        for expr, action in _sides(pair)
        if expr is not None
    )
    return latest[1]


def transitions(policy: Policy, start: datetime, end: datetime) -> list[Transition]:
    """The policy's transitions in ``(start, end]``, sorted; each one exactly once."""
    tz = policy.tz
    # Two days of margin on each side: a window may reach into the next day, and intervals cut at
    # the edge of the computed range must not show up as transitions inside the asked range.
    first = _local(start, tz).date() - timedelta(days=2)
    last = _local(end, tz).date() + timedelta(days=2)
    events = (
        _window_events(policy, first, last) if policy.windows else _cron_events(policy, first, last)
    )
    resolved = [Transition(resolve_local(at, tz), action) for at, action in events]
    if policy.windows:
        # An awake interval, or the time between two, that lies in a DST gap resolves to zero
        # length: it never happens, its two transitions cancel out (the events alternate).
        kept: list[Transition] = []
        for t in resolved:
            if kept and kept[-1].at >= t.at:
                kept.pop()
            else:
                kept.append(t)
        resolved = kept
    out = sorted({t for t in resolved if start < t.at <= end})
    return out


def desired_state(policy: Policy, at: datetime) -> State | None:
    """What the policy wants at ``at``: the state set by its latest transition (or, with none in
    :data:`LOOKBACK`, the windows' verdict); None when a cron policy has said nothing lately."""
    recent = transitions(policy, at - LOOKBACK, at)
    if recent:
        return _STATE_OF[recent[-1].action]
    local = _local(at, policy.tz)
    if policy.is_holiday(local.date()):
        return "hibernated"
    if policy.windows:
        minute = local.hour * 60 + local.minute
        return "awake" if policy.wall_time_awake(local.weekday(), minute) else "hibernated"
    return None


def next_transitions(policy: Policy, after: datetime, horizon: timedelta) -> list[Transition]:
    """Transitions in ``(after, after + horizon]``."""
    return transitions(policy, after, after + horizon)
