"""The hibernation controller: acts on policy transitions, overrides and requests, safely.

Edge-triggered with catch-up
    Each :meth:`HibernationController.tick` looks, per governed cluster, for the latest policy
    transition in ``(max(handled, now - catch_up), now]``, where ``handled`` is the instant of the
    last transition already dealt with. So each transition is acted on once; a cluster a person
    woke by hand between transitions is left alone until the next one; a transition missed while
    the exporter was down is caught up on start-up only if it is within the catch-up window.

Its own timer
    :meth:`HibernationController.start_timer` ticks at each scheduled transition (see
    :mod:`exporter.hibernation.timer`); cluster collections still feed it fresh lists
    (:meth:`HibernationController.on_collect`).

Precedence
    A temporary override (keep awake / keep hibernated until T, skip the next transition) beats an
    exclusion, which beats the policy. When a keep-override expires and the policy then wants the
    other state, its expiry counts as a transition. Overrides live in the state file.

Safety
    Only clusters one policy selects are touched; a cluster two policies select is reported and
    left alone. The call itself, its phase checks, retries and following are
    :mod:`exporter.hibernation.actions`. An action is recorded in the state (and the state saved)
    before it is started or reported, so a restart never repeats it; an action cut short by a
    shutdown (its ``in_flight`` record left behind) is resolved after the restart by reading the
    cluster's phase, and its result recorded. A requested change that cannot be saved
    (:class:`StateNotSaved`) is refused and undone, so a hook answers 503 rather than a success
    that a restart would forget. ``dry_run`` (per policy or global) computes, logs and counts
    ``dry_run`` and calls nothing that changes a cluster.

Its parts
    ``view`` (the clusters last listed, matched against the policies), ``planning`` (pure:
    policy, override and clock -> what is due and wanted), ``timer``, ``state``
    (the state, overrides and their stores), ``actions`` (the guarded call, its retries and
    following), ``metrics`` (the families, in a private registry,
    :attr:`HibernationController.registry`). This class composes them.

Overrides written by another process
    With a state file, ``cce-exporter hibernate|awake CLUSTER --until T`` writes its override to
    the file while a daemon runs. The daemon looks at the file between its timer's waits (every
    few seconds, ``exporter.hibernation.timer.STATE_POLL``) and at every tick, takes in the
    overrides (and history) the other process changed, and never writes over them (see
    :func:`exporter.collect.statefile.merge_hibernation`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry

from exporter.cce.errors import CCEError
from exporter.cce.models import Cluster
from exporter.hibernation.actions import ActionRunner, Outcome, reason_of
from exporter.hibernation.metrics import HibernationMetrics
from exporter.hibernation.notify import Notifier, action_event
from exporter.hibernation.planning import (
    ACTIONS,
    SOURCE,
    STATE_OF,
    TARGET,
    TRANSIT,
    due_transition,
    iso,
    keep_blocks,
    plan_view,
    skip_applies,
    ts,
    wrong_phase,
)
from exporter.hibernation.planning import next_due as _next_due
from exporter.hibernation.policy import Conflict, ControllerOptions, Match, PolicyFile
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
from exporter.hibernation.targets import (
    ClusterAPI,
    CollectedTarget,
    ControllerTarget,
    TargetSource,
    targets_from_service,
)
from exporter.hibernation.timer import Timer
from exporter.hibernation.view import ClusterView

log = logging.getLogger(__name__)

__all__ = [
    "ACTIONS",
    "ClusterAPI",
    "CollectedTarget",
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


Ident = tuple[str, str]


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
        self.view = ClusterView(policy_file)
        self.metrics = HibernationMetrics(
            self.registry, policy_file, self.targets, self.view.clusters
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
    def clusters(self) -> dict[Ident, Cluster]:
        return self.view.clusters

    @property
    def matches(self) -> dict[Ident, Match]:
        return self.view.matches

    @property
    def conflicts(self) -> list[Conflict]:
        return self.view.conflicts

    @property
    def actions(self) -> dict[tuple[Ident, str, str], float]:
        return self.metrics.actions

    @property
    def _tasks(self) -> set[asyncio.Task[Any]]:
        return self.runner.tasks

    # --- keys, lookups --------------------------------------------------------------------------

    @staticmethod
    def key(target: str, cluster_id: str) -> str:
        return _key(target, cluster_id)

    def find(self, cluster_id_or_name: str) -> tuple[str, Cluster] | None:
        """The known cluster with this ID (or, failing that, this name)."""
        return self.view.find(cluster_id_or_name)

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
        self.view.update({name: items for name, items in given.items() if name in self.targets})
        self.metrics.observe_phases(self.clusters, self.matches, self.clock())
        return errors

    # --- the tick -------------------------------------------------------------------------------

    async def tick(self, clusters: Mapping[str, Sequence[Cluster]] | None = None) -> list[Outcome]:
        """Refresh, expire overrides, and start the actions due now. Returns the outcomes of the
        actions decided in this tick (``started`` for those now running in the background)."""
        self.reload_state()
        await self.refresh(clusters)
        self.runner.resolve_interrupted(self.view.listed, self.clusters, self._finish)
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
        """Tick at each transition, forever (see :mod:`exporter.hibernation.timer`), with the
        clusters last seen. ``ready``: whether this replica may act (the leader gate). A tick
        never lists clusters itself for a target already seen, so a hanging API does not hold
        the timer."""

        async def scheduled() -> None:
            if not self.view.listed or (ready is not None and not ready()):
                return  # the first cluster collection starts things; a follower waits
            await self.tick(self.view.by_target())

        timer = Timer(
            due=self.next_due,
            tick=scheduled,
            reload=self.reload_state,
            watch=lambda: isinstance(self.store, ReloadableStore),
            clock=self.clock,
            sleep=lambda: self.sleep,
        )
        await timer.run()

    async def on_collect(self, target: CollectedTarget, resource: str) -> None:
        """The service's ``after_collect`` hook: tick with the cluster list just collected."""
        if resource != "clusters":
            return
        name = target.config.name
        await self.tick({name: list(target.collector.state.clusters)})

    # --- overrides ------------------------------------------------------------------------------

    def _governed(self, cluster_id: str) -> tuple[Ident, Match] | str:
        return self.view.governed(cluster_id)

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
        if self.notifier is not None:
            cluster = self.clusters.get(ident)
            name = (cluster.name if cluster else None) or ""
            event = action_event(when, ident, name, action, result, reason, source)
            self.notifier.notify({**event, "at": iso(self.clock())})

    # --- plan -----------------------------------------------------------------------------------

    def plan(self, days: float = 7, now: float | None = None) -> dict[str, Any]:
        """Every governed cluster with its policy, phase, desired state, override and next
        transitions (a skip override marks the transition it will skip)."""
        now = self.clock() if now is None else now
        return plan_view(
            self.matches,
            self.conflicts,
            phases={ident: self.clusters[ident].phase for ident in self.matches},
            state=self.state,
            dry_run=self.dry_run,
            now=now,
            days=days,
        )

    # --- metrics --------------------------------------------------------------------------------

    def _rebuild_snapshot(self, now: float) -> None:
        """Compute the gauges once per tick, so a scrape (or a render) does no schedule work."""
        self.metrics.rebuild(self.matches, self.book.overrides, self.dry_run, now)
