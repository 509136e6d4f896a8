"""Actions: the guarded hibernate/awake call, its retries, and following it to the end.

Before every call the cluster's phase is read again (hibernate only from ``Available``, awake
only from ``Hibernation``; already in the target phase -> done). The attempt is recorded in the
state's ``in_flight`` (and saved) before the call, so a restart never calls again blindly. After
the call the cluster is polled to the target phase until ``action_timeout_seconds``; a failure
(API error, the cluster back in its source phase, another phase, the timeout) is retried with
exponential backoff (at least the ``Retry-After`` of a rate limit) up to ``max_attempts``, then
given up with the last reason. At most ``max_in_flight`` actions run per target.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Container, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import Histogram

from exporter.cce.errors import CCEError, RateLimited
from exporter.cce.models import Cluster
from exporter.hibernation.planning import SOURCE, TARGET, TRANSIT, wrong_phase
from exporter.hibernation.policy import ControllerOptions
from exporter.hibernation.schedule import Action
from exporter.hibernation.state import HibernationState, ident_of, key
from exporter.hibernation.targets import ControllerTarget

#: The controller's logger: its parts log as the controller always has.
log = logging.getLogger("exporter.hibernation.controller")

__all__ = ["ActionRunner", "Failure", "Outcome", "Result", "reason_of"]

Ident = tuple[str, str]
Progress = Callable[[str], None] | None
#: Records the result of an action: ``(ident, action, result, reason, source) -> Outcome``.
Finish = Callable[[Ident, str, str, str, str], "Outcome"]


Result = Literal["started", "success", "failed", "skipped", "dry_run", "not_found"]


@dataclass
class Outcome:
    """What became of an action (or a request for one)."""

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


class Failure(Exception):
    """An attempt that did not end in the target phase; the message is the reason."""


def reason_of(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _why(cluster: Cluster) -> str:
    why = " ".join(p for p in (cluster.status.reason, cluster.status.message) if p)
    return f": {why}" if why else ""


class ActionRunner:
    """Runs actions as background tasks (one per cluster) under the rules above."""

    def __init__(
        self,
        targets: Mapping[str, ControllerTarget],
        options: ControllerOptions,
        state: HibernationState,
        duration: Histogram,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        before_call: Callable[[Ident, Action], None],
    ) -> None:
        self.targets = targets
        self.options = options
        self.state = state
        self.duration = duration
        self.clock = clock
        self.sleep = sleep
        self.before_call = before_call  # the first call of an action is about to be made
        self.slots = {name: asyncio.Semaphore(options.max_in_flight) for name in targets}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.active: set[str] = set()  # cluster keys with an action running

    def spawn(self, ident: Ident, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``work`` as the cluster's action (named by its key, tracked until done)."""
        k = key(*ident)
        self.active.add(k)
        task = asyncio.get_running_loop().create_task(work, name=k)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def task_for(self, ident: Ident) -> asyncio.Task[Any]:
        for task in self.tasks:
            if task.get_name() == key(*ident):
                return task
        raise LookupError(ident)

    async def run(
        self, ident: Ident, action: Action, name: str, progress: Progress
    ) -> tuple[str, str]:
        """The action with its retries, in the target's slot: ``(result, reason)``. A crash is
        a ``failed`` result (the boundary of a background task); a cancel frees the cluster."""
        try:
            async with self.slots[ident[0]]:
                return await self.attempts(ident, action, name, progress)
        except asyncio.CancelledError:
            self.active.discard(key(*ident))
            raise
        except Exception as exc:  # the boundary of a background task: log, count, keep going
            log.exception("hibernation: %s of %s crashed", action, name)
            return "failed", reason_of(exc)

    def _retrying(self, action: str, name: str, attempt: int, reason: str) -> None:
        log.warning(
            "hibernation: %s of %s, attempt %d/%d: %s",
            action,
            name,
            attempt,
            self.options.max_attempts,
            reason,
        )

    async def attempts(
        self, ident: Ident, action: Action, name: str, progress: Progress
    ) -> tuple[str, str]:
        target = self.targets[ident[0]]
        cid = ident[1]
        last_reason = ""
        last_error: BaseException | None = None
        for attempt in range(1, self.options.max_attempts + 1):
            if attempt > 1:
                await self.sleep(self.backoff(attempt, last_error))
            last_error = None
            try:
                cluster = await target.client.get_cluster(cid)
            except CCEError as exc:
                last_error, last_reason = exc, f"reading the cluster failed: {reason_of(exc)}"
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
                    why = wrong_phase(phase, action)
                    return (
                        ("skipped", why)
                        if attempt == 1
                        else ("failed", f"{last_reason}; then {why}")
                    )
                self.state.begin(key(*ident), action, started, attempt)
                if attempt == 1:
                    self.before_call(ident, action)
                try:
                    job = await (
                        target.client.hibernate(cid)
                        if action == "hibernate"
                        else target.client.awake(cid)
                    )
                except CCEError as exc:
                    last_error, last_reason = exc, reason_of(exc)
                    self._retrying(action, name, attempt, last_reason)
                    continue
                if job:
                    log.info("hibernation: %s of %s runs as CCE job %s", action, name, job)
            try:
                await self.follow(target, cid, action, started, progress)
            except Failure as exc:
                last_error, last_reason = exc, str(exc)
                self._retrying(action, name, attempt, last_reason)
                continue
            self.duration.labels(action).observe(max(0.0, self.clock() - started))
            return "success", ""
        return "failed", f"gave up after {self.options.max_attempts} attempts: {last_reason}"

    def backoff(self, attempt: int, error: BaseException | None) -> float:
        wait = self.options.retry_backoff_seconds * 2.0 ** (attempt - 2)
        if isinstance(error, RateLimited) and error.retry_after:
            wait = max(wait, float(error.retry_after))
        return wait

    async def follow(
        self,
        target: ControllerTarget,
        cid: str,
        action: Action,
        started: float,
        progress: Progress,
    ) -> None:
        """Poll the cluster until it reaches the target phase; :class:`Failure` otherwise."""
        deadline = started + self.options.action_timeout_seconds
        seen_transit = False
        last = ""
        while True:
            await self.sleep(self.options.poll_seconds)
            try:
                cluster: Cluster | None = await target.client.get_cluster(cid)
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
                    raise Failure(f"the cluster went back to {phase}{_why(cluster)}")
                elif phase not in (SOURCE[action], TRANSIT[action]):
                    raise Failure(f"the cluster went to {phase}{_why(cluster)}")
            if self.clock() >= deadline:
                raise Failure(
                    f"not {TARGET[action]} {self.options.action_timeout_seconds:g}s after the call"
                    f" (last phase {last or 'unknown'})"
                )

    async def resolve(self, ident: Ident, action: Action, started: float) -> tuple[str, str]:
        """The result of an action a shutdown cut short, read from the cluster's phase now
        (followed while it is still in transit); ``unknown`` when the cluster cannot be read
        yet."""
        target = self.targets[ident[0]]
        try:
            try:
                cluster = await target.client.get_cluster(ident[1])
            except CCEError as exc:
                # Unknown for now: the record stays, and the next tick asks again.
                self.active.discard(key(*ident))
                log.info(
                    "hibernation: cannot resolve the interrupted %s of %s yet: %s",
                    action,
                    key(*ident),
                    exc,
                )
                return "unknown", reason_of(exc)
            phase = cluster.phase or ""
            if phase == TARGET[action]:
                return "success", f"interrupted by a shutdown; {phase} after the restart"
            if phase == TRANSIT[action]:
                try:
                    await self.follow(target, ident[1], action, started, None)
                    return "success", "interrupted by a shutdown; followed to the end"
                except Failure as exc:
                    return "failed", f"interrupted by a shutdown; then {exc}"
            return "failed", f"interrupted by a shutdown; the cluster is {phase or 'in no phase'}"
        except asyncio.CancelledError:
            self.active.discard(key(*ident))
            raise

    # --- actions cut short by a shutdown ----------------------------------------------------------

    def resolve_interrupted(
        self, listed: Collection[str], known: Container[Ident], finish: Finish
    ) -> None:
        """Start resolving every ``in_flight`` record no running action owns: left behind by a
        shutdown during the action (the call may or may not have reached CCE). ``finish``
        records a result. Records of targets not ``listed`` yet wait for a later tick."""
        for k, entry in list(self.state.in_flight().items()):
            if k in self.active:
                continue
            ident = ident_of(k)
            if ident[0] not in self.targets or ident[0] not in listed:
                continue  # not known yet; a later tick resolves it
            action = entry["action"]  # a loaded record has both (clean_hibernation)
            if ident not in known:
                finish(
                    ident,
                    action,
                    "failed",
                    "interrupted by a shutdown; the cluster is gone",
                    "restart",
                )
                continue
            started = float(entry["started"])
            self.spawn(ident, self._resolve_and_finish(ident, action, started, finish))

    async def _resolve_and_finish(
        self, ident: Ident, action: Action, started: float, finish: Finish
    ) -> Outcome:
        result, reason = await self.resolve(ident, action, started)
        if result == "unknown":
            return Outcome("skipped", ident[1], action, reason=reason)
        return finish(ident, action, result, reason, "restart")

    async def wait_idle(self) -> None:
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    async def cancel(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
