"""The hibernation controller: acts on policy transitions, overrides and requests, safely.

Edge-triggered with catch-up
    Each :meth:`HibernationController.tick` looks, per governed cluster, for the latest policy
    transition in ``(max(handled, now - catch_up), now]``, where ``handled`` is the instant of the
    last transition already dealt with. So each transition is acted on once; a cluster a person
    woke by hand between transitions is left alone until the next one; a transition missed while
    the exporter was down is caught up on start-up only if it is within the catch-up window.

Its own timer
    :meth:`HibernationController.start_timer` runs the ticks on a timer of their own: it sleeps
    until the next scheduled transition of any governed cluster (or the end of a keep override),
    at most ``TIMER_MAX_WAIT`` seconds, and ticks then with the clusters it last saw. A transition
    is acted on within a second of its time, not at the next cluster collection, and a
    collection that hangs does not hold hibernation up. Cluster collections still feed it fresh
    lists (:meth:`on_collect`).

Precedence
    A temporary override (keep awake / keep hibernated until T, skip the next transition) beats an
    exclusion, which beats the policy. When a keep-override expires and the policy then wants the
    other state, its expiry counts as a transition. Overrides live in the state file.

Safety
    Only clusters one policy selects are touched; a cluster two policies select is reported and
    left alone. Hibernate only from ``Available``, awake only from ``Hibernation``; any other
    phase -> ``skipped`` with the reason. At most ``max_in_flight`` actions per target. After the
    call the cluster is polled to the target phase with a timeout; a failure (API error, wake-up
    refused for lack of capacity, timeout) is retried with exponential backoff up to
    ``max_attempts``, with the phase checked again before every call, then given up: counted
    ``failed`` and logged with the API's reason. An action is recorded in the state (and the state
    saved) before it is started or reported, so a restart never repeats it; an action cut short by a
    shutdown (its ``in_flight`` record left behind) is resolved after the restart by reading the
    cluster's phase (following it while it is still in transit), and its result recorded. A
    requested change that cannot be saved (:class:`StateNotSaved`) is refused and undone, so a
    hook answers 503 rather than a success that a restart would forget. ``dry_run`` (per policy
    or global) computes, logs and counts ``dry_run`` and calls nothing that changes a cluster.

Metrics (a private registry, :attr:`HibernationController.registry`)::

    cce_hibernation_policy_info{project_id,cluster_id,cluster,policy,timezone,dry_run} 1
    cce_hibernation_desired_state{...,state="awake"} 0
    cce_hibernation_desired_state{...,state="hibernated"} 1
    cce_hibernation_next_transition_timestamp_seconds{...,action="awake"} 1.8e9
    cce_hibernation_override_until_timestamp_seconds{...,state="awake"} 1.8e9
    cce_hibernation_actions_total{...,action="hibernate",result="success"} 3
    cce_hibernation_action_duration_seconds_bucket{action="hibernate",le="300.0"} 3
    cce_cluster_hibernated_seconds_total{project_id,cluster_id,cluster} 86400
    cce_hibernation_estimated_savings_total{...,currency="EUR"} 7.2
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter.cce.errors import CCEError, RateLimited
from exporter.cce.models import Cluster
from exporter.collect.statefile import clean_hibernation
from exporter.hibernation.notify import Notifier
from exporter.hibernation.policy import Conflict, Match, PolicyFile, match_policies
from exporter.hibernation.schedule import (
    Action,
    State,
    Transition,
    desired_state,
    next_transitions,
    transitions,
)
from exporter.limits import truncate_label

log = logging.getLogger(__name__)

__all__ = [
    "ACTIONS",
    "ClusterAPI",
    "ControllerTarget",
    "HibernationController",
    "MemoryStateStore",
    "Outcome",
    "ServiceStateStore",
    "StateNotSaved",
    "StateStore",
]

ACTIONS: tuple[Action, ...] = ("hibernate", "awake")
#: The phase an action needs, the phase it goes through, the phase it ends in.
SOURCE = {"hibernate": "Available", "awake": "Hibernation"}
TRANSIT = {"hibernate": "Hibernating", "awake": "Awaking"}
TARGET = {"hibernate": "Hibernation", "awake": "Available"}
STATE_OF: dict[str, State] = {"hibernate": "hibernated", "awake": "awake"}
ACTION_FOR: dict[str, Action] = {"hibernated": "hibernate", "awake": "awake"}
RESULTS = ("success", "failed", "skipped", "dry_run")
HISTORY = 20
#: Longest sleep of the timer between two looks at the schedule (policies and overrides change).
TIMER_MAX_WAIT = 30.0
#: How far ahead the timer looks for the next transition.
TIMER_HORIZON = timedelta(days=2)
#: Longest gap between two observations still counted as time in ``Hibernation``.
OBSERVATION_CAP = 3600.0

Result = Literal["started", "success", "failed", "skipped", "dry_run", "not_found"]


class ClusterAPI(Protocol):
    """What the controller needs of :class:`exporter.cce.client.CCEClient`."""

    async def list_clusters(self) -> list[Cluster]: ...
    async def get_cluster(self, cluster_id: str) -> Cluster: ...
    async def hibernate(self, cluster_id: str) -> str | None: ...
    async def awake(self, cluster_id: str) -> str | None: ...


class StateStore(Protocol):
    """Where the controller keeps its state (a JSON-able dict)."""

    def load(self) -> Any: ...
    def save(self, value: Any) -> None: ...


class StateNotSaved(Exception):
    """The state could not be written (the message says why); the change was not made."""


class MemoryStateStore:
    def __init__(self, value: Any = None) -> None:
        self.value = value
        self.saves = 0

    def load(self) -> Any:
        return self.value

    def save(self, value: Any) -> None:
        import json

        # A round trip through JSON, as the state file does, so tests see what a restart sees.
        self.value = json.loads(json.dumps(value))
        self.saves += 1


class ServiceStateStore:
    """A section of the exporter service's state file, written through at once: an action is on
    disk before the API is called."""

    def __init__(self, service: Any, section: str = "hibernation") -> None:
        self.service = service
        self.section = section

    def load(self) -> Any:
        return self.service.state_section(self.section)

    def save(self, value: Any) -> None:
        self.service.set_state_section(self.section, value)
        if self.service.save_state() is False:
            raise StateNotSaved(getattr(self.service, "last_save_error", None) or "not written")


@dataclass
class ControllerTarget:
    name: str
    client: ClusterAPI
    project_id: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    result: Result
    cluster_id: str
    action: str
    cluster: str = ""
    reason: str = ""
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "cluster_id": self.cluster_id,
            "cluster": self.cluster,
            "action": self.action,
            "reason": self.reason,
        }


class _Failure(Exception):
    """An attempt that did not end in the target phase; the message is the reason."""


def _ts(at: datetime) -> float:
    return at.timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _iso(ts: float) -> str:
    return _dt(ts).isoformat().replace("+00:00", "Z")


def _wrong_phase(phase: str, action: str) -> str:
    return f"the cluster is {phase or 'in an unknown phase'}; {action} needs {SOURCE[action]}"


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class HibernationController:
    """See the module docstring. ``clock`` returns epoch seconds; ``sleep`` waits (both
    injectable: tests drive a simulated month with them)."""

    def __init__(
        self,
        policy_file: PolicyFile,
        targets: Sequence[ControllerTarget],
        *,
        store: StateStore | None = None,
        dry_run: bool = False,
        registry: CollectorRegistry | None = None,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.policy_file = policy_file
        self.options = policy_file.controller
        self.targets = {t.name: t for t in targets}
        self.store = store if store is not None else MemoryStateStore()
        self.dry_run = dry_run
        self.clock = clock
        self.sleep = sleep
        self.notifier = notifier
        if notifier is None and policy_file.notify.webhooks:
            self.notifier = Notifier(
                policy_file.notify.webhooks, timeout=policy_file.notify.timeout_seconds
            )
        self.registry = registry if registry is not None else CollectorRegistry()
        self.duration = Histogram(
            "cce_hibernation_action_duration_seconds",
            "Seconds from the hibernate/awake API call to the cluster reaching the target phase.",
            ["action"],
            buckets=(30, 60, 120, 180, 300, 600, 900, 1200, 1800, 3600),
            registry=self.registry,
        )
        self.registry.register(_HibernationCollector(self))
        self._slots = {name: asyncio.Semaphore(self.options.max_in_flight) for name in self.targets}
        self._tasks: set[asyncio.Task[Outcome]] = set()
        self._timer: asyncio.Task[None] | None = None
        self._listed: set[str] = set()  # targets whose clusters were seen at least once
        self._active: set[str] = set()  # cluster keys with an action running
        self.clusters: dict[tuple[str, str], Cluster] = {}
        self.matches: dict[tuple[str, str], Match] = {}
        self.conflicts: list[Conflict] = []
        self._reported_conflicts: set[tuple[str, str]] = set()
        self.actions: dict[tuple[tuple[str, str], str, str], float] = {}
        self.hibernated_seconds: dict[tuple[str, str], float] = {}
        self.savings: dict[tuple[str, str], float] = {}
        self._observed: dict[tuple[str, str], tuple[float, str]] = {}
        self._snapshot: list[Metric] = []
        # Validated entry by entry: a mistyped entry is dropped (one WARNING), never fatal.
        self.state: dict[str, Any] = clean_hibernation(self.store.load(), "hibernation state")

    # --- keys, lookups --------------------------------------------------------------------------

    @staticmethod
    def key(target: str, cluster_id: str) -> str:
        return f"{target}/{cluster_id}"

    def find(self, cluster_id_or_name: str) -> tuple[str, Cluster] | None:
        """The known cluster with this ID (or, failing that, this name)."""
        for (target, cid), cluster in self.clusters.items():
            if cid == cluster_id_or_name:
                return target, cluster
        for (target, _), cluster in self.clusters.items():
            if cluster.name == cluster_id_or_name:
                return target, cluster
        return None

    def _save(self, *, strict: bool = False) -> None:
        """Save the state; with ``strict``, raise :class:`StateNotSaved` when it cannot be
        written (else the store has logged it, and the next save tries again)."""
        try:
            self.store.save(self.state)
        except StateNotSaved:
            if strict:
                raise

    # --- observing ------------------------------------------------------------------------------

    async def refresh(
        self, clusters: Mapping[str, Sequence[Cluster]] | None = None
    ) -> dict[str, str]:
        """Take in cluster lists (``{target: clusters}``; listed through the API for targets not
        given) and match them against the policies. Returns ``{target: error}`` for listings
        that failed (those targets keep their last known clusters)."""
        errors: dict[str, str] = {}
        given = dict(clusters or {})
        for name, target in self.targets.items():
            if name in given:
                continue
            try:
                given[name] = await target.client.list_clusters()
            except CCEError as exc:
                errors[name] = _reason(exc)
                log.warning("hibernation: cannot list the clusters of %s: %s", name, exc)
        for name, items in given.items():
            if name not in self.targets:
                continue
            self._listed.add(name)
            for key in [k for k in self.clusters if k[0] == name]:
                del self.clusters[key]
            for cluster in items:
                if cluster.id:
                    self.clusters[(name, cluster.id)] = cluster
        self.matches, self.conflicts = match_policies(
            self.policy_file,
            ((t, cid, c.name or "") for (t, cid), c in self.clusters.items()),
        )
        for conflict in self.conflicts:
            ident = (conflict.target, conflict.cluster_id)
            if ident not in self._reported_conflicts:
                self._reported_conflicts.add(ident)
                log.error("hibernation policy conflict: %s", conflict.message())
        self._observe_phases()
        return errors

    def _observe_phases(self) -> None:
        now = self.clock()
        pricing = self.policy_file.pricing
        for ident in self.matches:
            cluster = self.clusters[ident]
            previous = self._observed.get(ident)
            if previous is not None and previous[1] == "Hibernation":
                seconds = min(max(0.0, now - previous[0]), OBSERVATION_CAP)
                self.hibernated_seconds[ident] = self.hibernated_seconds.get(ident, 0.0) + seconds
                price = (
                    pricing.control_plane_per_hour.get(cluster.spec.flavor or "")
                    if pricing
                    else None
                )
                if price is not None:
                    self.savings[ident] = self.savings.get(ident, 0.0) + seconds / 3600 * price
            self._observed[ident] = (now, cluster.phase or "")

    # --- the tick -------------------------------------------------------------------------------

    async def tick(self, clusters: Mapping[str, Sequence[Cluster]] | None = None) -> list[Outcome]:
        """Refresh, expire overrides, and start the actions due now. Returns the outcomes of the
        actions decided in this tick (``started`` for those now running in the background)."""
        await self.refresh(clusters)
        self._resolve_interrupted()
        now = self.clock()
        outcomes: list[Outcome] = []
        for ident, match in sorted(self.matches.items()):
            outcome = self._due(ident, match, now)
            if outcome is not None:
                outcomes.append(outcome)
        self._expire_overrides(now)
        self._rebuild_snapshot(now)
        return outcomes

    # --- the timer ------------------------------------------------------------------------------

    def next_due(self, now: float) -> float | None:
        """The next instant after ``now`` at which a tick has something to do: a transition of
        a policy that governs a cluster, or the end of a keep override."""
        due: float | None = None
        seen: set[str] = set()
        for match in self.matches.values():
            if match.excluded or match.policy.name in seen:
                continue
            seen.add(match.policy.name)
            upcoming = next_transitions(match.policy, _dt(now), TIMER_HORIZON)
            if upcoming:
                at = _ts(upcoming[0].at)
                due = at if due is None else min(due, at)
        for override in self.state["overrides"].values():
            until = override.get("until") if isinstance(override, dict) else None
            if isinstance(until, int | float) and until > now:
                due = float(until) if due is None else min(due, float(until))
        return due

    def start_timer(self, ready: Callable[[], bool] | None = None) -> asyncio.Task[None]:
        """Run :meth:`run_timer` in the background (stopped by :meth:`close`)."""
        if self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(
                self.run_timer(ready), name="hibernation-timer"
            )
        return self._timer

    async def run_timer(self, ready: Callable[[], bool] | None = None) -> None:
        """Sleep until the next transition (at most ``TIMER_MAX_WAIT``), then tick with the
        clusters last seen; forever. ``ready``: whether this replica may act (the leader gate).
        A tick never lists clusters itself for a target already seen, so a hanging API does not
        hold the timer."""
        while True:
            due = self.next_due(self.clock())
            # The clock read again: working out the schedule takes time of its own.
            left = None if due is None else due - self.clock()
            wait = TIMER_MAX_WAIT if left is None else min(TIMER_MAX_WAIT, max(0.0, left))
            await self.sleep(wait)
            if not self._listed or (ready is not None and not ready()):
                continue  # the first cluster collection starts things; a follower waits
            known: dict[str, list[Cluster]] = {name: [] for name in self._listed}
            for (name, _), cluster in self.clusters.items():
                if name in known:
                    known[name].append(cluster)
            try:
                await self.tick(known)
            except Exception:  # the timer must outlive any one tick
                log.exception("hibernation: a scheduled tick failed")

    async def on_collect(self, target: Any, resource: str) -> None:
        """The service's ``after_collect`` hook: tick with the cluster list just collected."""
        if resource != "clusters":
            return
        name = target.config.name
        await self.tick({name: list(target.collector.state.clusters)})

    def _due(self, ident: tuple[str, str], match: Match, now: float) -> Outcome | None:
        key = self.key(*ident)
        handled = float(self.state["handled"].get(key, 0.0))
        since = max(handled, now - self.options.catch_up_seconds)
        override = self.state["overrides"].get(key)
        due: Transition | None = None
        found = transitions(match.policy, _dt(since), _dt(now))
        if found:
            due = found[-1]
        if override and override.get("kind") == "keep" and override.get("until") is not None:
            until = float(override["until"])
            if since < until <= now:
                # The override ended: the policy's wish at that moment becomes due, if it
                # differs from what the override kept (and no later transition says otherwise).
                wanted = desired_state(match.policy, _dt(until))
                if (
                    wanted
                    and wanted != override.get("state")
                    and (due is None or _ts(due.at) < until)
                ):
                    due = Transition(_dt(until), ACTION_FOR[wanted])
        if due is None:
            return None
        at = _ts(due.at)
        self.state["handled"][key] = at
        if match.excluded:
            self._save()
            log.info(
                "hibernation: %s of %s at %s not done: the cluster is excluded by policy %r",
                due.action,
                match.cluster,
                due.at.isoformat(),
                match.policy.name,
            )
            return None
        if override:
            kind = override.get("kind")
            if kind == "skip" and float(override.get("created", 0)) < at:
                del self.state["overrides"][key]
                return self._record_skip(
                    ident, match, due.action, "skipped on request (skip override)"
                )
            if (
                kind == "keep"
                and override.get("state") != STATE_OF[due.action]
                and (override.get("until") is None or float(override["until"]) > now)
            ):
                return self._record_skip(
                    ident,
                    match,
                    due.action,
                    f"override keeps it {override.get('state')} until "
                    f"{_iso(float(override['until'])) if override.get('until') else 'removed'}",
                )
        self._save()
        late = now - at
        log.info(
            "hibernation: %s %s (policy %r, transition at %s%s)",
            due.action,
            match.cluster,
            match.policy.name,
            due.at.isoformat(),
            f", caught up {late:.0f}s late" if late > 120 else "",
        )
        return self._start(ident, due.action, source="policy", dry_run=match.policy.dry_run)

    def _record_skip(
        self, ident: tuple[str, str], match: Match, action: str, reason: str
    ) -> Outcome:
        self._count(ident, action, "skipped")
        self._history(ident, action, "skipped", reason, "policy")
        self._save()
        log.info("hibernation: %s of %s skipped: %s", action, match.cluster, reason)
        return Outcome("skipped", ident[1], action, match.cluster, reason)

    def _expire_overrides(self, now: float) -> None:
        expired = [
            k
            for k, o in self.state["overrides"].items()
            if o.get("until") is not None and float(o["until"]) <= now
        ]
        for k in expired:
            log.info("hibernation: override of %s expired", k)
            del self.state["overrides"][k]
        if expired:
            self._save()

    # --- overrides ------------------------------------------------------------------------------

    def _governed(self, cluster_id: str) -> tuple[tuple[str, str], Match] | str:
        found = self.find(cluster_id)
        if found is None:
            return f"cluster {cluster_id!r} is not known"
        ident = (found[0], found[1].id or "")
        for conflict in self.conflicts:
            if (conflict.target, conflict.cluster_id) == ident:
                return conflict.message()
        match = self.matches.get(ident)
        if match is None:
            return f"no policy selects cluster {found[1].name!r}; it is never acted on"
        return ident, match

    def set_override(
        self, cluster_id: str, state: State | None, until: datetime | None, reason: str = ""
    ) -> str | None:
        """Keep a cluster ``state`` until ``until`` (``state=None``: skip the next transition).
        Returns an error message, or None."""
        governed = self._governed(cluster_id)
        if isinstance(governed, str):
            return governed
        ident, _ = governed
        now = self.clock()
        if until is not None and _ts(until) <= now:
            return "'until' is in the past"
        key = self.key(*ident)
        previous = self.state["overrides"].get(key)
        self.state["overrides"][key] = {
            "kind": "skip" if state is None else "keep",
            "state": state,
            "until": None if until is None else _ts(until),
            "reason": reason[:200],
            "created": now,
        }
        try:
            self._save(strict=True)
        except StateNotSaved:
            # Not on disk, so not made: a restart would forget it without a word.
            if previous is None:
                del self.state["overrides"][key]
            else:
                self.state["overrides"][key] = previous
            raise
        self._rebuild_snapshot(now)
        return None

    def clear_override(self, cluster_id: str) -> bool:
        found = self.find(cluster_id)
        if found is None:
            return False
        key = self.key(found[0], found[1].id or "")
        removed = self.state["overrides"].pop(key, None)
        if removed is not None:
            try:
                self._save(strict=True)
            except StateNotSaved:
                self.state["overrides"][key] = removed
                raise
            self._rebuild_snapshot(self.clock())
        return removed is not None

    # --- requested actions ----------------------------------------------------------------------

    async def request(
        self,
        cluster_id: str,
        action: Action,
        *,
        until: datetime | None = None,
        reason: str = "",
        source: str = "hook",
        dry_run: bool = False,
        wait: bool = False,
        progress: Callable[[str], None] | None = None,
        force: bool = False,
    ) -> Outcome:
        """One action now (hooks, Alertmanager, the CLI), under the same safety rules; with
        ``until``, also an override keeping the resulting state until then. ``force`` (the
        command line's ``--force``): also a cluster no policy selects, as a one-off."""
        if self.find(cluster_id) is None:
            await self.refresh()
        found = self.find(cluster_id)
        if found is None:
            return Outcome(
                "not_found", cluster_id, action, reason=f"cluster {cluster_id!r} is not known"
            )
        governed = self._governed(cluster_id)
        name = found[1].name or ""
        if isinstance(governed, str):
            ident = (found[0], found[1].id or "")
            if not force:
                log.warning(
                    "hibernation: %s of %s refused (%s): %s", action, cluster_id, source, governed
                )
                return Outcome("skipped", ident[1], action, name, governed)
            if until is not None:
                why = "--until needs a cluster a policy selects (an override of a cluster no "
                why += "policy governs would never be read)"
                return Outcome("skipped", ident[1], action, name, why)
            policy_dry_run = False
        else:
            ident, match = governed
            name = match.cluster
            policy_dry_run = match.policy.dry_run
        with contextlib.suppress(CCEError):
            # A fresh phase, so that the answer to the request is right (the run checks again).
            self.clusters[ident] = await self.targets[ident[0]].client.get_cluster(ident[1])
        dry_run = dry_run or self.dry_run or policy_dry_run
        if not dry_run:
            # An action whose record cannot be written is not started (StateNotSaved).
            self._save(strict=True)
        if until is not None and not dry_run:
            error = self.set_override(ident[1], STATE_OF[action], until, reason)
            if error:
                return Outcome("skipped", ident[1], action, name, error)
        log.info(
            "hibernation: %s of %s requested by %s%s%s",
            action,
            name,
            source,
            f" ({reason})" if reason else "",
            " (forced: no policy selects it)" if isinstance(governed, str) else "",
        )
        outcome = self._start(ident, action, source=source, dry_run=dry_run, progress=progress)
        if wait and outcome.result == "started":
            return await self._task_for(ident)
        return outcome

    def _task_for(self, ident: tuple[str, str]) -> asyncio.Task[Outcome]:
        for task in self._tasks:
            if task.get_name() == self.key(*ident):
                return task
        raise LookupError(ident)

    # --- running actions ------------------------------------------------------------------------

    def _start(
        self,
        ident: tuple[str, str],
        action: Action,
        *,
        source: str,
        dry_run: bool,
        progress: Callable[[str], None] | None = None,
    ) -> Outcome:
        cluster = self.clusters[ident]
        name = cluster.name or ident[1]
        if dry_run or self.dry_run:
            self._count(ident, action, "dry_run")
            self._history(ident, action, "dry_run", "dry run: nothing called", source)
            self._save()
            log.info("hibernation: [dry run] would %s %s", action, name)
            return Outcome("dry_run", ident[1], action, name, "dry run: nothing called", True)
        key = self.key(*ident)
        if key in self._active:
            reason = "another action on this cluster is still running"
            self._count(ident, action, "skipped")
            log.info("hibernation: %s of %s skipped: %s", action, name, reason)
            return Outcome("skipped", ident[1], action, name, reason)
        phase = cluster.phase or ""
        if phase == TARGET[action] or (phase != SOURCE[action] and phase != TRANSIT[action]):
            # Known from the last listing: no need to call anything (checked again before acting).
            why = (
                f"the cluster is already {phase}"
                if phase == TARGET[action]
                else _wrong_phase(phase, action)
            )
            self._count(ident, action, "skipped")
            self._history(ident, action, "skipped", why, source)
            self._save()
            log.info("hibernation: %s of %s skipped: %s", action, name, why)
            return Outcome("skipped", ident[1], action, name, why)
        self._active.add(key)
        task = asyncio.get_running_loop().create_task(
            self._run(ident, action, source, progress), name=key
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return Outcome("started", ident[1], action, name)

    async def _run(
        self,
        ident: tuple[str, str],
        action: Action,
        source: str,
        progress: Callable[[str], None] | None,
    ) -> Outcome:
        key = self.key(*ident)
        name = self.clusters[ident].name or ident[1]
        target = self.targets[ident[0]]
        try:
            async with self._slots[ident[0]]:
                result, reason = await self._attempts(ident, target, action, name, progress)
        except asyncio.CancelledError:
            self._active.discard(key)
            raise
        except Exception as exc:  # the boundary of a background task: log, count, keep going
            log.exception("hibernation: %s of %s crashed", action, name)
            result, reason = "failed", _reason(exc)
        return self._finish(ident, action, result, reason, source)

    def _finish(
        self, ident: tuple[str, str], action: str, result: str, reason: str, source: str
    ) -> Outcome:
        key = self.key(*ident)
        cluster = self.clusters.get(ident)
        name = (cluster.name if cluster else None) or ident[1]
        self._active.discard(key)
        self.state["in_flight"].pop(key, None)
        self._count(ident, action, result)
        self._history(ident, action, result, reason, source)
        self._save()  # on disk before it is reported
        level = logging.WARNING if result == "failed" else logging.INFO
        log.log(
            level,
            "hibernation: %s of %s: %s%s",
            action,
            name,
            result,
            f" ({reason})" if reason else "",
        )
        self._notify("after", ident, action, result, reason, source)
        return Outcome(result, ident[1], action, name, reason)  # type: ignore[arg-type]

    # --- actions cut short by a shutdown ----------------------------------------------------------

    def _resolve_interrupted(self) -> None:
        """Start resolving every ``in_flight`` record no running action owns: left behind by a
        shutdown during the action (the call may or may not have reached CCE)."""
        for key, entry in list(self.state["in_flight"].items()):
            if key in self._active:
                continue
            name, _, cid = key.partition("/")
            ident = (name, cid)
            if name not in self.targets or name not in self._listed:
                continue  # not known yet; a later tick resolves it
            action = entry.get("action")
            if ident not in self.clusters:
                self._finish(
                    ident,
                    action,
                    "failed",
                    "interrupted by a shutdown; the cluster is gone",
                    "restart",
                )
                continue
            self._active.add(key)
            task = asyncio.get_running_loop().create_task(
                self._resolve(ident, action, float(entry.get("started", 0.0))), name=key
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _resolve(self, ident: tuple[str, str], action: Action, started: float) -> Outcome:
        key = self.key(*ident)
        target = self.targets[ident[0]]
        try:
            try:
                cluster = await target.client.get_cluster(ident[1])
            except CCEError as exc:
                # Unknown for now: the record stays, and the next tick asks again.
                self._active.discard(key)
                log.info(
                    "hibernation: cannot resolve the interrupted %s of %s yet: %s", action, key, exc
                )
                return Outcome("skipped", ident[1], action, reason=_reason(exc))
            phase = cluster.phase or ""
            if phase == TARGET[action]:
                result, reason = "success", f"interrupted by a shutdown; {phase} after the restart"
            elif phase == TRANSIT[action]:
                try:
                    await self._follow(target, ident[1], action, started, None)
                    result, reason = "success", "interrupted by a shutdown; followed to the end"
                except _Failure as exc:
                    result, reason = "failed", f"interrupted by a shutdown; then {exc}"
            else:
                result = "failed"
                reason = f"interrupted by a shutdown; the cluster is {phase or 'in no phase'}"
        except asyncio.CancelledError:
            self._active.discard(key)
            raise
        return self._finish(ident, action, result, reason, "restart")

    async def _attempts(
        self,
        ident: tuple[str, str],
        target: ControllerTarget,
        action: Action,
        name: str,
        progress: Callable[[str], None] | None,
    ) -> tuple[str, str]:
        cid = ident[1]
        key = self.key(*ident)
        last_reason = ""
        last_error: BaseException | None = None
        for attempt in range(1, self.options.max_attempts + 1):
            if attempt > 1:
                await self.sleep(self._backoff(attempt, last_error))
            last_error = None
            try:
                cluster = await target.client.get_cluster(cid)
            except CCEError as exc:
                last_error, last_reason = exc, f"reading the cluster failed: {_reason(exc)}"
                continue
            phase = cluster.phase or ""
            if phase == TARGET[action]:
                return (
                    ("success", "")
                    if attempt > 1
                    else ("skipped", f"the cluster is already {phase}")
                )
            started = self.clock()
            if phase != TRANSIT[action]:
                if phase != SOURCE[action]:
                    why = _wrong_phase(phase, action)
                    return (
                        ("skipped", why)
                        if attempt == 1
                        else ("failed", f"{last_reason}; then {why}")
                    )
                self.state["in_flight"][key] = {
                    "action": action,
                    "started": started,
                    "attempt": attempt,
                }
                self._save()  # recorded before the call: a restart will not call again blindly
                if attempt == 1:
                    self._notify("before", ident, action, "started", "", "")
                try:
                    job = await (
                        target.client.hibernate(cid)
                        if action == "hibernate"
                        else target.client.awake(cid)
                    )
                except CCEError as exc:
                    last_error, last_reason = exc, _reason(exc)
                    log.warning(
                        "hibernation: %s of %s, attempt %d/%d: %s",
                        action,
                        name,
                        attempt,
                        self.options.max_attempts,
                        last_reason,
                    )
                    continue
                if job:
                    log.info("hibernation: %s of %s runs as CCE job %s", action, name, job)
            try:
                await self._follow(target, cid, action, started, progress)
            except _Failure as exc:
                last_error, last_reason = exc, str(exc)
                log.warning(
                    "hibernation: %s of %s, attempt %d/%d: %s",
                    action,
                    name,
                    attempt,
                    self.options.max_attempts,
                    last_reason,
                )
                continue
            self.duration.labels(action).observe(max(0.0, self.clock() - started))
            return "success", ""
        return "failed", f"gave up after {self.options.max_attempts} attempts: {last_reason}"

    def _backoff(self, attempt: int, error: BaseException | None) -> float:
        wait = self.options.retry_backoff_seconds * 2.0 ** (attempt - 2)
        if isinstance(error, RateLimited) and error.retry_after:
            wait = max(wait, float(error.retry_after))
        return wait

    async def _follow(
        self,
        target: ControllerTarget,
        cid: str,
        action: Action,
        started: float,
        progress: Callable[[str], None] | None,
    ) -> None:
        deadline = started + self.options.action_timeout_seconds
        seen_transit = False
        last = ""
        while True:
            await self.sleep(self.options.poll_seconds)
            try:
                cluster = await target.client.get_cluster(cid)
            except CCEError as exc:
                # One failed read is not a failed action: keep following until the deadline.
                log.debug("hibernation: reading %s failed while following: %s", cid, exc)
                cluster = None
            if cluster is not None:
                phase = cluster.phase or ""
                if progress is not None and phase != last:
                    progress(phase)
                last = phase
                if phase == TARGET[action]:
                    return
                if phase == TRANSIT[action]:
                    seen_transit = True
                elif phase == SOURCE[action] and (
                    seen_transit or "fail" in (cluster.status.reason or "").lower()
                ):
                    why = " ".join(p for p in (cluster.status.reason, cluster.status.message) if p)
                    raise _Failure(
                        f"the cluster went back to {phase}" + (f": {why}" if why else "")
                    )
                elif phase not in (SOURCE[action], TRANSIT[action]):
                    why = " ".join(p for p in (cluster.status.reason, cluster.status.message) if p)
                    raise _Failure(f"the cluster went to {phase}" + (f": {why}" if why else ""))
            if self.clock() >= deadline:
                raise _Failure(
                    f"not {TARGET[action]} {self.options.action_timeout_seconds:g}s after the call"
                    f" (last phase {last or 'unknown'})"
                )

    async def wait_idle(self) -> None:
        """Wait for every running action (tests, the CLI, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self.notifier is not None:
            await self.notifier.drain()

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(BaseException):
                await self._timer
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self.notifier is not None:
            await self.notifier.aclose()
        self._save()

    # --- bookkeeping ----------------------------------------------------------------------------

    def _count(self, ident: tuple[str, str], action: str, result: str) -> None:
        k = (ident, action, result)
        self.actions[k] = self.actions.get(k, 0.0) + 1

    def _history(
        self, ident: tuple[str, str], action: str, result: str, reason: str, source: str
    ) -> None:
        key = self.key(*ident)
        entries = self.state["history"].setdefault(key, [])
        entries.append(
            {
                "at": self.clock(),
                "action": action,
                "result": result,
                "reason": reason[:500],
                "source": source,
            }
        )
        del entries[:-HISTORY]

    def _notify(
        self, when: str, ident: tuple[str, str], action: str, result: str, reason: str, source: str
    ) -> None:
        if self.notifier is None:
            return
        cluster = self.clusters.get(ident)
        self.notifier.notify(
            {
                "event": f"{action}.{when}",
                "target": ident[0],
                "cluster_id": ident[1],
                "cluster": (cluster.name if cluster else None) or "",
                "action": action,
                "result": result,
                "reason": reason,
                "source": source,
                "at": _iso(self.clock()),
            }
        )

    # --- plan -----------------------------------------------------------------------------------

    def plan(self, days: float = 7, now: float | None = None) -> dict[str, Any]:
        """Every governed cluster with its policy, phase, desired state, override and next
        transitions (a skip override marks the transition it will skip)."""
        now = self.clock() if now is None else now
        horizon = timedelta(days=days)
        rows = []
        for ident, match in sorted(self.matches.items()):
            key = self.key(*ident)
            override = self.state["overrides"].get(key)
            nxt = next_transitions(match.policy, _dt(now), horizon)
            skip_at = None
            if override and override.get("kind") == "skip":
                skip_at = next((t.at for t in nxt if _ts(t.at) > float(override["created"])), None)
            rows.append(
                {
                    "target": ident[0],
                    "cluster_id": ident[1],
                    "cluster": match.cluster,
                    "policy": match.policy.name,
                    "timezone": match.policy.timezone,
                    "dry_run": match.policy.dry_run or self.dry_run,
                    "excluded": match.excluded,
                    "phase": self.clusters[ident].phase,
                    "desired": _effective_desired(match.policy, override, now),
                    "policy_desired": desired_state(match.policy, _dt(now)),
                    "override": _override_view(override),
                    "history": [
                        {**h, "at": _iso(float(h["at"]))}
                        if isinstance(h, dict) and isinstance(h.get("at"), int | float)
                        else h
                        for h in self.state["history"].get(key, [])[-5:]
                    ],
                    "next": [
                        {
                            "action": t.action,
                            "at": _iso(_ts(t.at)),
                            **({"skipped": True} if t.at == skip_at else {}),
                        }
                        for t in nxt
                    ],
                }
            )
        return {
            "now": _iso(now),
            "clusters": rows,
            "conflicts": [
                {
                    "target": c.target,
                    "cluster_id": c.cluster_id,
                    "cluster": c.cluster,
                    "policies": list(c.policies),
                    "message": c.message(),
                }
                for c in self.conflicts
            ],
        }

    # --- metrics --------------------------------------------------------------------------------

    def _labels(self, ident: tuple[str, str]) -> dict[str, str]:
        target = self.targets[ident[0]]
        cluster = self.clusters.get(ident)
        labels = dict(target.labels)
        labels.update(
            project_id=target.project_id,
            cluster_id=ident[1],
            cluster=truncate_label((cluster.name if cluster else None) or ""),
        )
        return labels

    def _rebuild_snapshot(self, now: float) -> None:
        """Compute the gauges once per tick, so a scrape (or a render) does no schedule work."""
        info = Metric(
            "cce_hibernation_policy_info",
            "Which hibernation policy governs which cluster.",
            "gauge",
        )
        desired = Metric(
            "cce_hibernation_desired_state",
            "What the policy wants now (1 for the wanted state).",
            "gauge",
        )
        nxt = Metric(
            "cce_hibernation_next_transition_timestamp_seconds",
            "When the next scheduled action of each kind happens.",
            "gauge",
        )
        over = Metric(
            "cce_hibernation_override_until_timestamp_seconds",
            "A temporary override in force, until then.",
            "gauge",
        )
        for ident, match in sorted(self.matches.items()):
            if match.excluded:
                continue
            labels = self._labels(ident)
            policy = match.policy
            info.add_sample(
                "cce_hibernation_policy_info",
                {
                    **labels,
                    "policy": policy.name,
                    "timezone": policy.timezone,
                    "dry_run": str(policy.dry_run or self.dry_run).lower(),
                },
                1,
            )
            wanted = desired_state(policy, _dt(now))
            if wanted is not None:
                for state in ("awake", "hibernated"):
                    desired.add_sample(
                        "cce_hibernation_desired_state",
                        {**labels, "state": state},
                        float(wanted == state),
                    )
            upcoming = next_transitions(policy, _dt(now), timedelta(days=8))
            for action in ACTIONS:
                first = next((t for t in upcoming if t.action == action), None)
                if first is not None:
                    nxt.add_sample(
                        "cce_hibernation_next_transition_timestamp_seconds",
                        {**labels, "action": action},
                        _ts(first.at),
                    )
            o = self.state["overrides"].get(self.key(*ident))
            if o and o.get("kind") == "keep" and o.get("until") is not None:
                over.add_sample(
                    "cce_hibernation_override_until_timestamp_seconds",
                    {**labels, "state": str(o.get("state"))},
                    float(o["until"]),
                )
        self._snapshot = [info, desired, nxt, over]

    def collect_metrics(self) -> Iterator[Metric]:
        yield from self._snapshot
        actions = Metric(
            "cce_hibernation_actions", "Hibernation actions taken, by result.", "counter"
        )
        for (ident, action, result), value in sorted(self.actions.items()):
            if ident[0] in self.targets:
                actions.add_sample(
                    "cce_hibernation_actions_total",
                    {**self._labels(ident), "action": action, "result": result},
                    value,
                )
        yield actions
        hib = Metric(
            "cce_cluster_hibernated_seconds",
            "Time the exporter observed the cluster in phase Hibernation.",
            "counter",
        )
        for ident, value in sorted(self.hibernated_seconds.items()):
            hib.add_sample("cce_cluster_hibernated_seconds_total", self._labels(ident), value)
        yield hib
        if self.policy_file.pricing is not None:
            currency = self.policy_file.pricing.currency
            sav = Metric(
                "cce_hibernation_estimated_savings",
                "Hibernated hours times the configured control-plane price per hour.",
                "counter",
            )
            for ident, value in sorted(self.savings.items()):
                sav.add_sample(
                    "cce_hibernation_estimated_savings_total",
                    {**self._labels(ident), "currency": currency},
                    value,
                )
            yield sav


def _effective_desired(policy: Any, override: Mapping[str, Any] | None, now: float) -> State | None:
    """What is wanted now: a keep override in force wins over the policy."""
    if override and override.get("kind") == "keep" and override.get("state") in STATE_OF.values():
        until = override.get("until")
        if until is None or float(until) > now:
            state: State = override["state"]
            return state
    return desired_state(policy, _dt(now))


def _override_view(override: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not override:
        return None
    until = override.get("until")
    return {
        "kind": "skip_next" if override.get("kind") == "skip" else f"keep_{override.get('state')}",
        "until": _iso(float(until)) if until is not None else None,
        "reason": override.get("reason", ""),
    }


class _HibernationCollector(Collector):
    def __init__(self, controller: HibernationController) -> None:
        self.controller = controller

    def collect(self) -> Iterable[Metric]:
        return self.controller.collect_metrics()


def targets_from_service(service: Any) -> list[ControllerTarget]:
    """The controller's targets from a set-up ``ExporterService`` (its clients and labels)."""
    return [
        ControllerTarget(
            name=t.config.name,
            client=t.client,
            project_id=t.collector.project_id,
            labels=dict(t.config.labels),
        )
        for t in service.targets
    ]
