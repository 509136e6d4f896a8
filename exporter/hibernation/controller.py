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

Its parts
    ``planning`` (pure: policy, override and clock -> what is due and wanted), ``state``
    (the state, overrides and their stores), ``actions`` (the guarded call, its retries and
    following), ``metrics`` (the families, in a private registry,
    :attr:`HibernationController.registry`). This class composes them.

Overrides written by another process
    With a state file, ``cce-exporter hibernate|awake CLUSTER --until T`` writes its override to
    the file while a daemon runs. The daemon looks at the file between its timer's waits (every
    ``STATE_POLL`` seconds) and at every tick, takes in the overrides (and history) the other
    process changed, and never writes over them (see
    :func:`exporter.collect.statefile.merge_hibernation`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

from exporter.cce.errors import CCEError
from exporter.cce.models import Cluster
from exporter.hibernation.actions import ActionRunner, ClusterAPI, ControllerTarget, reason_of
from exporter.hibernation.metrics import HibernationMetrics
from exporter.hibernation.notify import Notifier
from exporter.hibernation.planning import (
    ACTIONS,
    SOURCE,
    STATE_OF,
    TARGET,
    TRANSIT,
    conflict_view,
    due_transition,
    iso,
    keep_blocks,
    plan_row,
    skip_applies,
    ts,
    wrong_phase,
)
from exporter.hibernation.planning import next_due as _next_due
from exporter.hibernation.policy import (
    Conflict,
    ControllerOptions,
    Match,
    PolicyFile,
    match_policies,
)
from exporter.hibernation.schedule import Action, State
from exporter.hibernation.state import (
    HibernationState,
    MemoryStateStore,
    ReloadableStore,
    ServiceStateStore,
    StateNotSaved,
    StateSections,
    StateStore,
)
from exporter.hibernation.state import key as _key
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
    "StateSections",
    "StateStore",
    "TargetSource",
    "targets_from_service",
]

RESULTS = ("success", "failed", "skipped", "dry_run")
#: Longest sleep of the timer between two looks at the schedule (policies and overrides change).
TIMER_MAX_WAIT = 30.0
#: Longest sleep of the timer between two looks at a state file another process may write.
STATE_POLL = 2.0

Result = Literal["started", "success", "failed", "skipped", "dry_run", "not_found"]
Ident = tuple[str, str]


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


# --- what the controller needs of the exporter service ------------------------------------------


class _TargetConfig(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def labels(self) -> Mapping[str, str]: ...


class _Listing(Protocol):
    @property
    def clusters(self) -> Sequence[Cluster]: ...


class _Collector(Protocol):
    @property
    def project_id(self) -> str: ...
    @property
    def state(self) -> _Listing: ...


class CollectedTarget(Protocol):
    """A target of the exporter service: its configuration, client and last cluster listing."""

    @property
    def config(self) -> _TargetConfig: ...
    @property
    def client(self) -> ClusterAPI: ...
    @property
    def collector(self) -> _Collector: ...


class TargetSource(Protocol):
    """What :func:`targets_from_service` needs of the exporter service."""

    @property
    def targets(self) -> Sequence[CollectedTarget]: ...


def targets_from_service(service: TargetSource) -> list[ControllerTarget]:
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


# --- the controller ------------------------------------------------------------------------------


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
        self.targets = {t.name: t for t in targets}
        self.store = store if store is not None else MemoryStateStore()
        self.dry_run = dry_run
        self.clock = clock
        self.notifier = notifier
        if notifier is None and policy_file.notify.webhooks:
            self.notifier = Notifier(
                policy_file.notify.webhooks, timeout=policy_file.notify.timeout_seconds
            )
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = HibernationMetrics(
            self.registry, policy_file, self._labels, lambda name: name in self.targets
        )
        self.book = HibernationState(self.store, clock)
        self.runner = ActionRunner(
            self.targets,
            policy_file.controller,
            self.book,
            self.metrics.duration,
            clock=clock,
            sleep=sleep,
            before_call=lambda ident, action: self._notify(
                "before", ident, action, "started", "", ""
            ),
        )
        self._timer: asyncio.Task[None] | None = None
        self._listed: set[str] = set()  # targets whose clusters were seen at least once
        self.clusters: dict[Ident, Cluster] = {}
        self.matches: dict[Ident, Match] = {}
        self.conflicts: list[Conflict] = []
        self._reported_conflicts: set[Ident] = set()

    # --- the parts' settings, one place each ----------------------------------------------------

    @property
    def state(self) -> dict[str, Any]:
        return self.book.data

    @state.setter
    def state(self, value: dict[str, Any]) -> None:
        self.book.data = value

    @property
    def options(self) -> ControllerOptions:
        return self.runner.options

    @options.setter
    def options(self, value: ControllerOptions) -> None:
        self.runner.options = value

    @property
    def sleep(self) -> Callable[[float], Awaitable[None]]:
        return self.runner.sleep

    @sleep.setter
    def sleep(self, value: Callable[[float], Awaitable[None]]) -> None:
        self.runner.sleep = value

    @property
    def actions(self) -> dict[tuple[Ident, str, str], float]:
        return self.metrics.actions

    @property
    def hibernated_seconds(self) -> dict[Ident, float]:
        return self.metrics.hibernated_seconds

    @property
    def savings(self) -> dict[Ident, float]:
        return self.metrics.savings

    @property
    def duration(self) -> Any:
        return self.metrics.duration

    @property
    def _tasks(self) -> set[asyncio.Task[Any]]:
        return self.runner.tasks

    # --- keys, lookups --------------------------------------------------------------------------

    @staticmethod
    def key(target: str, cluster_id: str) -> str:
        return _key(target, cluster_id)

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
        self.book.save(strict=strict)

    def reload_state(self) -> bool:
        """Take in what another process wrote to the state store (a ``--until`` of the command
        line); True when something changed. The gauges follow at once."""
        if not self.book.reload():
            return False
        self._rebuild_snapshot(self.clock())
        return True

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
                errors[name] = reason_of(exc)
                log.warning("hibernation: cannot list the clusters of %s: %s", name, exc)
        for name, items in given.items():
            if name not in self.targets:
                continue
            self._listed.add(name)
            for k in [k for k in self.clusters if k[0] == name]:
                del self.clusters[k]
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
        self.metrics.observe_phases(self.clusters, self.matches, self.clock())
        return errors

    # --- the tick -------------------------------------------------------------------------------

    async def tick(self, clusters: Mapping[str, Sequence[Cluster]] | None = None) -> list[Outcome]:
        """Refresh, expire overrides, and start the actions due now. Returns the outcomes of the
        actions decided in this tick (``started`` for those now running in the background)."""
        self.reload_state()
        await self.refresh(clusters)
        self._resolve_interrupted()
        now = self.clock()
        outcomes: list[Outcome] = []
        for ident, match in sorted(self.matches.items()):
            outcome = self._due(ident, match, now)
            if outcome is not None:
                outcomes.append(outcome)
        self.book.expire_overrides(now)
        self._rebuild_snapshot(now)
        return outcomes

    def _due(self, ident: Ident, match: Match, now: float) -> Outcome | None:
        k = self.key(*ident)
        since = max(self.book.handled(k), now - self.options.catch_up_seconds)
        override = self.book.overrides.get(k)
        due = due_transition(match.policy, override, since, now)
        if due is None:
            return None
        at = ts(due.at)
        self.book.set_handled(k, at)
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
        if skip_applies(override, at):
            del self.book.overrides[k]
            return self._record_skip(ident, match, due.action, "skipped on request (skip override)")
        blocked = keep_blocks(override, due.action, now)
        if blocked is not None:
            return self._record_skip(ident, match, due.action, blocked)
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

    def _record_skip(self, ident: Ident, match: Match, action: str, reason: str) -> Outcome:
        self._count(ident, action, "skipped")
        self._history(ident, action, "skipped", reason, "policy")
        self._save()
        log.info("hibernation: %s of %s skipped: %s", action, match.cluster, reason)
        return Outcome("skipped", ident[1], action, match.cluster, reason)

    # --- the timer ------------------------------------------------------------------------------

    def next_due(self, now: float) -> float | None:
        """The next instant after ``now`` at which a tick has something to do: a transition of
        a policy that governs a cluster, or the end of a keep override."""
        return _next_due(self.matches.values(), self.state["overrides"].values(), now)

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
            await self._wait(wait)
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

    async def _wait(self, seconds: float) -> None:
        """Sleep ``seconds``. With a store another process may write (the state file), in
        slices of at most ``STATE_POLL``, taking in its changes between them: a change ends the
        wait early (an override's end may now come sooner)."""
        if not isinstance(self.store, ReloadableStore):
            await self.sleep(seconds)
            return
        slices = max(1, math.ceil(seconds / STATE_POLL))
        for _ in range(slices):
            await self.sleep(seconds / slices)
            try:
                if self.reload_state():
                    return
            except Exception:  # the timer must outlive a bad read of the state
                log.exception("hibernation: reading the state written by another process failed")

    async def on_collect(self, target: CollectedTarget, resource: str) -> None:
        """The service's ``after_collect`` hook: tick with the cluster list just collected."""
        if resource != "clusters":
            return
        name = target.config.name
        await self.tick({name: list(target.collector.state.clusters)})

    # --- overrides ------------------------------------------------------------------------------

    def _governed(self, cluster_id: str) -> tuple[Ident, Match] | str:
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
        if until is not None and ts(until) <= now:
            return "'until' is in the past"
        self.reload_state()  # what another process wrote first: this change is made on top
        self.book.set_override(
            self.key(*ident),
            {
                "kind": "skip" if state is None else "keep",
                "state": state,
                "until": None if until is None else ts(until),
                "reason": reason[:200],
                "created": now,
            },
        )
        self._rebuild_snapshot(now)
        return None

    def clear_override(self, cluster_id: str) -> bool:
        found = self.find(cluster_id)
        if found is None:
            return False
        self.reload_state()
        removed = self.book.clear_override(self.key(found[0], found[1].id or ""))
        if removed:
            self._rebuild_snapshot(self.clock())
        return removed

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
            result: Outcome = await self.runner.task_for(ident)
            return result
        return outcome

    # --- running actions ------------------------------------------------------------------------

    def _start(
        self,
        ident: Ident,
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
        if self.key(*ident) in self.runner.active:
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
                else wrong_phase(phase, action)
            )
            self._count(ident, action, "skipped")
            self._history(ident, action, "skipped", why, source)
            self._save()
            log.info("hibernation: %s of %s skipped: %s", action, name, why)
            return Outcome("skipped", ident[1], action, name, why)
        self.runner.spawn(ident, self._run(ident, action, source, progress))
        return Outcome("started", ident[1], action, name)

    async def _run(
        self,
        ident: Ident,
        action: Action,
        source: str,
        progress: Callable[[str], None] | None,
    ) -> Outcome:
        name = self.clusters[ident].name or ident[1]
        result, reason = await self.runner.run(ident, action, name, progress)
        return self._finish(ident, action, result, reason, source)

    def _finish(self, ident: Ident, action: str, result: str, reason: str, source: str) -> Outcome:
        k = self.key(*ident)
        cluster = self.clusters.get(ident)
        name = (cluster.name if cluster else None) or ident[1]
        self.runner.active.discard(k)
        self.book.end(k)
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
        for k, entry in list(self.book.in_flight().items()):
            if k in self.runner.active:
                continue
            name, _, cid = k.partition("/")
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
            self.runner.spawn(ident, self._resolve(ident, action, float(entry.get("started", 0.0))))

    async def _resolve(self, ident: Ident, action: Action, started: float) -> Outcome:
        result, reason = await self.runner.resolve(ident, action, started)
        if result == "unknown":
            return Outcome("skipped", ident[1], action, reason=reason)
        return self._finish(ident, action, result, reason, "restart")

    async def wait_idle(self) -> None:
        """Wait for every running action (tests, the CLI, shutdown)."""
        await self.runner.wait_idle()
        if self.notifier is not None:
            await self.notifier.drain()

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(BaseException):
                await self._timer
        await self.runner.cancel()
        if self.notifier is not None:
            await self.notifier.aclose()
        self._save()

    # --- bookkeeping ----------------------------------------------------------------------------

    def _count(self, ident: Ident, action: str, result: str) -> None:
        self.metrics.count(ident, action, result)

    def _history(self, ident: Ident, action: str, result: str, reason: str, source: str) -> None:
        self.book.add_history(self.key(*ident), action, result, reason, source)

    def _notify(
        self, when: str, ident: Ident, action: str, result: str, reason: str, source: str
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
                "at": iso(self.clock()),
            }
        )

    # --- plan -----------------------------------------------------------------------------------

    def plan(self, days: float = 7, now: float | None = None) -> dict[str, Any]:
        """Every governed cluster with its policy, phase, desired state, override and next
        transitions (a skip override marks the transition it will skip)."""
        now = self.clock() if now is None else now
        rows = [
            plan_row(
                ident,
                match,
                phase=self.clusters[ident].phase,
                dry_run=self.dry_run,
                override=self.book.overrides.get(self.key(*ident)),
                history=self.book.history(self.key(*ident))[-5:],
                now=now,
                days=days,
            )
            for ident, match in sorted(self.matches.items())
        ]
        return {
            "now": iso(now),
            "clusters": rows,
            "conflicts": [conflict_view(c) for c in self.conflicts],
        }

    # --- metrics --------------------------------------------------------------------------------

    def _labels(self, ident: Ident) -> dict[str, str]:
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
        self.metrics.rebuild(self.matches, self.book.overrides, self.dry_run, now)

    def collect_metrics(self) -> list[Metric]:
        return list(self.metrics.collect())
