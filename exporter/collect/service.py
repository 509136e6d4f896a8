"""The exporter's core: schedules every target's collections and keeps the rendered exposition.

One APScheduler ``AsyncIOScheduler`` job per (target, resource), at the resource's interval, with
``max_instances=1`` and coalescing: a collection that overruns its interval is skipped and counted
(``cce_exporter_collect_skipped_total``), never stacked. After each collection only the metric group
whose data changed is rendered again (in a worker thread, so scrapes keep being served), and the
exposition is swapped in one assignment: a scrape always sees a complete state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CollectorRegistry, Counter

from exporter.cce.client import CCEClient
from exporter.cce.instrumentation import ApiMetrics
from exporter.cce.models import Job
from exporter.collect.state import RESOURCES, SLOW_RESOURCES
from exporter.collect.statefile import StateFile
from exporter.collect.target import TargetCollector
from exporter.config import Settings, TargetConfig
from exporter.kube.collector import KubeCollector
from exporter.kube.wiring import KubeCounters, with_kube
from exporter.limits import LimitsCollector, limits
from exporter.memory import HeapFreezer
from exporter.metrics.catalog import GROUPS
from exporter.metrics.render import (
    Exposition,
    Fragment,
    JobDurationHistogram,
    assemble,
    render_group,
)

log = logging.getLogger(__name__)

#: Which metric groups a resource's new data can change.
GROUPS_OF: dict[str, tuple[str, ...]] = {
    "clusters": ("clusters", "nodes", "nodepools", "addons"),
    "nodes": ("clusters", "nodes"),
    "nodepools": ("nodepools",),
    "addons": ("addons",),
    "quotas": ("quotas",),
    "jobs": ("jobs",),
    "cluster_upgrades": ("clusters",),
    "addon_upgrades": ("addons",),
}
if set(GROUPS_OF) != set(RESOURCES):  # pragma: no cover - a resource added without its groups
    raise AssertionError(f"no metric groups for {sorted(set(RESOURCES) ^ set(GROUPS_OF))}")
#: Every metric group, in exposition order (defined once, by the metric catalog).
ALL_GROUPS = GROUPS


def _cluster_identities(target: Target) -> frozenset[tuple[str | None, str | None]]:
    return frozenset((c.id, c.name) for c in target.collector.state.clusters)


class CollectorCounters:
    """The collector's own counters (errors by class, dropped jobs, skipped runs)."""

    def __init__(self, registry: CollectorRegistry, histogram: JobDurationHistogram) -> None:
        self.errors = Counter(
            "cce_exporter_collect_errors",
            "Failed API calls during collection, by resource and error class.",
            ["project_id", "resource", "error"],
            registry=registry,
        )
        self.jobs_dropped = Counter(
            "cce_exporter_jobs_dropped",
            "CCE jobs no longer followed before finishing (not_found: the job ID answered 404).",
            ["project_id", "reason"],
            registry=registry,
        )
        self.skipped = Counter(
            "cce_exporter_collect_skipped",
            "Scheduled collections skipped because the previous one was still running.",
            ["project_id", "resource"],
            registry=registry,
        )
        self.histogram = histogram

    def error(self, project_id: str, resource: str, error: str) -> None:
        self.errors.labels(project_id, resource, error).inc()

    def job_dropped(self, project_id: str, reason: str) -> None:
        self.jobs_dropped.labels(project_id, reason).inc()

    def job_finished(self, job: Job) -> None:
        self.histogram.observe(job)


#: Called after each scheduled collection with the target and the resource (may be async).
AfterCollect = Callable[["Target", str], Awaitable[None] | None]


@dataclass
class Target:
    """One configured target, built by the composition root (``exporter.assemble``)."""

    config: TargetConfig
    client: CCEClient
    collector: TargetCollector
    kube: KubeCollector | None = None  # Kubernetes objects inside the clusters (opt-in)


@dataclass(frozen=True)
class TargetTools:
    """What the service lends the builder of its targets: where API calls, collection errors
    and Kubernetes drops are counted, and the clock."""

    api_metrics: ApiMetrics
    counters: CollectorCounters
    kube_counters: KubeCounters
    clock: Callable[[], float]


class BuildTargets(Protocol):
    """Builds the configured targets, one at a time (``exporter.assemble.TargetBuilder``)."""

    def __call__(self, settings: Settings, tools: TargetTools) -> AsyncIterator[Target]: ...


class ExporterService:
    """Owns the targets, the scheduler, the state file and the current exposition.

    It is the web layer's ``StatusSource`` (:meth:`exposition`, :meth:`readiness`); the status
    console (``exporter.status``) reads its targets.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        build_targets: BuildTargets,
        clock: Callable[[], float] = time.time,
        heap: HeapFreezer | None = None,
    ) -> None:
        """``build_targets``: builds the targets (clients, collectors) at :meth:`setup`.
        ``heap``: freeze the long-lived heap after each render (the daemon passes one; see
        :class:`~exporter.memory.HeapFreezer`)."""
        self.settings = settings
        self.build_targets = build_targets
        self.heap = heap
        self.clock = clock
        self.started_at = clock()
        self.api_registry = CollectorRegistry(auto_describe=True)
        self.api_metrics = ApiMetrics(self.api_registry)
        self.stats_registry = CollectorRegistry(auto_describe=True)
        self.job_histogram = JobDurationHistogram(self.stats_registry)
        self.counters = CollectorCounters(self.stats_registry, self.job_histogram)
        self.kube_counters = KubeCounters(self.stats_registry, self.counters)
        self.tools = TargetTools(self.api_metrics, self.counters, self.kube_counters, clock)
        limits.label_value_max = settings.label_value_max_length
        limits.log_field_max = settings.log_field_max_length
        self.stats_registry.register(LimitsCollector())
        self.extra_registries: list[CollectorRegistry] = [self.api_registry, self.stats_registry]
        self.statefile = StateFile(Path(settings.state_file)) if settings.state_file else None
        self.targets: list[Target] = []
        self.fragments: dict[str, Fragment] = {}
        self._exposition: Exposition | None = None
        self._render_lock = asyncio.Lock()
        self._rendered_success: dict[tuple[str, str], float | None] = {}
        self._running: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._semaphore = asyncio.Semaphore(settings.collect_concurrency)
        self.scheduler: AsyncIOScheduler | None = None
        self._state_sections: dict[str, Any] = {}
        self.last_save_error: str | None = None
        self.after_collect: list[AfterCollect] = []
        # The hibernation controller, when a policy file is set (the status console shows it).
        self.hibernation: object | None = None

    # --- set-up ----------------------------------------------------------------------------------

    async def setup(self) -> None:
        """Take the targets from ``build_targets``; restore the state file into their trackers."""
        sections = self.statefile.load() if self.statefile else {}
        self._state_sections = sections
        phases_by_target = sections.get("phases", {})
        jobs_by_target = sections.get("jobs", {})
        # Each target is kept as soon as it is built: a later one failing still closes its client.
        async for target in self.build_targets(self.settings, self.tools):
            name = target.config.name
            if isinstance(jobs_by_target, dict):
                target.collector.jobs.load(jobs_by_target.get(name))
            if isinstance(phases_by_target, dict):
                target.collector.phases.load(phases_by_target.get(name))
            self.targets.append(target)
        await self.render(ALL_GROUPS)

    def enabled(self, target: Target) -> list[str]:
        return target.config.resources.enabled()

    def interval(self, target: Target, resource: str) -> float:
        return float(target.config.resources.get(resource).interval)

    # --- collection ------------------------------------------------------------------------------

    async def _collect_resource(self, target: Target, resource: str) -> bool:
        # collect_concurrency bounds the (target x resource) collections running at once.
        async with self._semaphore:
            return await target.collector.collect(resource)

    async def _scheduled(self, work: Callable[[], Awaitable[bool]]) -> bool:
        """A scheduled job's ``work``, cancelled (and awaited) by :meth:`close`."""
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            return await work()
        except asyncio.CancelledError:
            if self._closing:
                # Cancelled by close(): the end of a job, not its failure (the scheduler would
                # log it as an error).
                return False
            raise
        finally:
            if task is not None:
                self._running.discard(task)

    async def collect(self, target: Target, resource: str) -> bool:
        """The scheduled collection of one resource of one target, its render, then the
        ``after_collect`` hooks."""

        async def work() -> bool:
            before = _cluster_identities(target) if resource == "clusters" else None
            ok = await self._collect_resource(target, resource)
            groups: tuple[str, ...] = GROUPS_OF[resource]
            if before is not None and before == _cluster_identities(target):
                # Same clusters under the same names: the nodes, pools and add-ons series (whose
                # labels carry the cluster's) have not changed, and the nodes group is the costly
                # one to render.
                groups = ("clusters",)
            await self.render((*groups, "exporter"), (resource,))
            for hook in self.after_collect:
                result = hook(target, resource)
                if asyncio.iscoroutine(result):
                    await result
            return ok

        return await self._scheduled(work)

    async def collect_all(self) -> dict[str, bool]:
        """One full collection of every enabled resource of every target, jobs included.

        Per target: the clusters, then the other listings, and the jobs already followed (which
        do not depend on this cycle's listings) queued right behind them, so that the job polls'
        network waits overlap the listings' CPU-bound parsing; once the listings are in, their
        groups are rendered while the last polls finish; then the jobs the listings discovered
        are polled and the jobs group rendered. Every job is polled once a cycle.

        Returns ``{"<target>/<resource>": success}``.
        """
        results: dict[str, bool] = {}
        polls: list[asyncio.Future[bool]] = []

        async def listings(target: Target) -> None:
            enabled = self.enabled(target)
            name = target.config.name
            if "clusters" in enabled:
                results[f"{name}/clusters"] = await self._collect_resource(target, "clusters")
            middle = [r for r in enabled if r not in ("clusters", "jobs")]
            # Created first, so that their requests are queued before the job polls'.
            listed = asyncio.gather(*(self._collect_resource(target, r) for r in middle))
            if "jobs" in enabled:
                polls.append(asyncio.ensure_future(self._known_jobs(target, results)))
            oks = await listed
            results.update({f"{name}/{r}": ok for r, ok in zip(middle, oks, strict=True)})

        try:
            await asyncio.gather(*(listings(t) for t in self.targets))
            groups = [g for g in ALL_GROUPS if g not in ("jobs", "exporter")]
            early = asyncio.create_task(self.render(groups, [r for r in RESOURCES if r != "jobs"]))
            try:
                await asyncio.gather(*polls)
                for target in self.targets:
                    if "jobs" in self.enabled(target):
                        async with self._semaphore:
                            ok = await target.collector.collect_jobs(new_only=True)
                        key = f"{target.config.name}/jobs"
                        results[key] = results.get(key, True) and ok
            finally:
                await early
        finally:
            for poll in polls:
                if not poll.done():
                    poll.cancel()
            await asyncio.gather(*polls, return_exceptions=True)
        await self.render(("jobs", "exporter"), ("jobs",))
        kube = [t for t in self.targets if t.kube is not None]
        if kube:
            oks = await asyncio.gather(*(self._collect_kube(t) for t in kube))
            results.update(
                {f"{t.config.name}/kubernetes": ok for t, ok in zip(kube, oks, strict=True)}
            )
            await self.render(("kube", "exporter"), ())
        return results

    async def _collect_kube(self, target: Target) -> bool:
        assert target.kube is not None
        async with self._semaphore:
            return await target.kube.collect()

    async def collect_kube(self, target: Target) -> bool:
        """The scheduled Kubernetes collection of one target, then its render."""

        async def work() -> bool:
            ok = await self._collect_kube(target)
            await self.render(("kube", "exporter"), ())
            return ok

        return await self._scheduled(work)

    async def _known_jobs(self, target: Target, results: dict[str, bool]) -> bool:
        ok = await self._collect_resource(target, "jobs")
        results[f"{target.config.name}/jobs"] = ok
        return ok

    async def render(self, groups: Sequence[str], resources: Sequence[str] = RESOURCES) -> None:
        """Render ``groups`` again and swap the exposition; it publishes ``resources``' data."""
        async with self._render_lock:
            # Readiness speaks of what /metrics shows: a resource's success counts once the
            # exposition that contains its data is swapped in, not when the listing returns.
            covered = list(resources)
            rendered = {
                (t.config.name, r): t.collector.health[r].last_success
                for t in self.targets
                for r in covered
            }
            snapshots = [with_kube(t.collector.snapshot(), t.kube) for t in self.targets]
            now = self.clock()
            state_sets = self.settings.state_sets

            def work() -> Exposition:
                for group in dict.fromkeys(groups):
                    self.fragments[group] = render_group(
                        group, snapshots, now=now, state_sets=state_sets
                    )
                ordered = [self.fragments[g] for g in ALL_GROUPS if g in self.fragments]
                # Compressed as rendered, off the event loop: no gzip scrape ever pays for it.
                return assemble(ordered, self.extra_registries)

            self._exposition = await asyncio.to_thread(work)
            self._rendered_success.update(rendered)
            if self.heap is not None:
                self.heap.settle()

    # --- scheduling ------------------------------------------------------------------------------

    def start_scheduler(self) -> AsyncIOScheduler:
        scheduler = AsyncIOScheduler(timezone=UTC)
        start = datetime.now(UTC)
        for index, target in enumerate(self.targets):
            for resource in self.enabled(target):
                interval = self.interval(target, resource)
                if resource in SLOW_RESOURCES and "clusters" in self.enabled(target):
                    # Asked at the clusters' pace; the collector acts once its own (slow)
                    # interval has passed, and soon after a first listing that came late.
                    interval = min(interval, self.interval(target, "clusters"))
                # Spread the first runs a little so that targets don't all start at once; clusters
                # go first, since the per-cluster resources need the cluster list.
                delay = 0.0 if resource == "clusters" else 1.0 + 0.2 * index
                scheduler.add_job(
                    self.collect,
                    "interval",
                    seconds=interval,
                    jitter=min(interval * 0.1, 5.0),
                    args=(target, resource),
                    id=f"{target.config.name}/{resource}",
                    name=f"collect {resource} of {target.config.name}",
                    max_instances=1,
                    coalesce=True,
                    misfire_grace_time=max(1, int(interval)),
                    next_run_time=start + timedelta(seconds=delay),
                )
        for index, target in enumerate(self.targets):
            if target.kube is not None:
                interval = target.config.kubernetes.interval
                scheduler.add_job(
                    self.collect_kube,
                    "interval",
                    seconds=interval,
                    jitter=min(interval * 0.1, 5.0),
                    args=(target,),
                    id=f"{target.config.name}/kubernetes",
                    name=f"collect Kubernetes objects of {target.config.name}",
                    max_instances=1,
                    coalesce=True,
                    misfire_grace_time=max(1, int(interval)),
                    # After the first cluster listing, which tells which clusters are Available.
                    next_run_time=start + timedelta(seconds=3.0 + 0.2 * index),
                )
        scheduler.add_listener(self._on_skip, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        if self.statefile is not None:
            scheduler.add_job(
                self.save_state, "interval", seconds=60, id="save-state", max_instances=1
            )
        scheduler.start()
        self.scheduler = scheduler
        return scheduler

    def _on_skip(self, event: JobExecutionEvent) -> None:
        target_name, _, resource = str(event.job_id).partition("/")
        for target in self.targets:
            if target.config.name == target_name:
                self.counters.skipped.labels(target.collector.project_id, resource).inc()
                log.warning(
                    "collection of %s for target %s skipped: the previous one is still running",
                    resource,
                    target_name,
                )

    # --- state file ------------------------------------------------------------------------------

    def state_section(self, name: str) -> Any:
        return self._state_sections.get(name)

    def set_state_section(self, name: str, value: Any) -> None:
        self._state_sections[name] = value

    def reload_state(self) -> bool:
        """Take in what another process (``cce-exporter hibernate --until``) changed in the
        state file since this one last read or wrote it; True when a section changed."""
        return self.statefile is not None and self.statefile.take_in(self._state_sections)

    def save_state(self) -> bool:
        """Write the state file; False when it could not be written (``last_save_error`` says
        why; logged at ERROR)."""
        if self.statefile is None:
            return True
        self._state_sections["phases"] = {
            t.config.name: t.collector.phases.dump() for t in self.targets
        }
        self._state_sections["jobs"] = {
            t.config.name: t.collector.jobs.dump() for t in self.targets
        }
        try:
            self.statefile.save(self._state_sections)
        except OSError as exc:
            self.last_save_error = f"cannot write the state file {self.statefile.path}: " + (
                exc.strerror or type(exc).__name__
            )
            log.error("could not write the state file %s: %s", self.statefile.path, exc)
            return False
        self.last_save_error = None
        return True

    async def close(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        # Collections in flight are cancelled and awaited, so that none runs against a closed
        # client (and the scheduler does not report them as failed jobs).
        self._closing = True
        running = [t for t in self._running if t is not asyncio.current_task()]
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        self.save_state()
        for target in self.targets:
            await target.client.aclose()

    # --- what the web layer reads (exporter.web.StatusSource) -------------------------------------

    def exposition(self) -> Exposition | None:
        return self._exposition

    def readiness(self) -> tuple[bool, list[str]]:
        reasons: list[str] = []
        now = self.clock()
        if not self.targets:
            reasons.append("no target is configured")
        for target in self.targets:
            for resource in self.enabled(target):
                health = target.collector.health[resource]
                last_success = self._rendered_success.get((target.config.name, resource))
                interval = self.interval(target, resource)
                name = f"target {target.config.name}: {resource}"
                if last_success is None:
                    reasons.append(
                        f"{name} has not completed a collection yet"
                        if not health.attempted or health.last_success is not None
                        else f"{name} has never succeeded ({health.error or 'failed'})"
                    )
                elif now - last_success > 3 * interval:
                    reasons.append(
                        f"{name} data is {now - last_success:.0f}s old "
                        f"(more than 3 intervals of {interval:g}s)"
                    )
        return (not reasons, reasons)
