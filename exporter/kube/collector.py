"""Collection of the Kubernetes objects of one target's clusters (opt-in, per target).

Which clusters: those the target's cluster listing knows, in phase ``Available``, selected by
``kubernetes.clusters`` (``names`` globs or ``ids``; neither means all; ``exclude`` globs on names
or IDs win). A cluster in another phase is skipped without an error: a hibernated one's data is
dropped (nothing runs there, and stale running Jobs would raise alerts), one that is upgrading or
unavailable keeps its last good data. A cluster whose lists fail keeps its last good data too,
and counts one error: one broken cluster never blinds the others.

Bounds, per cluster and kind: ``max_objects_per_cluster`` objects at most (Jobs that are running
or failed are kept before the others, then the newest), the rest counted in
``cce_exporter_kube_objects_dropped_total``; finished Jobs that finished longer ago than
``finished_job_retention`` are left out (they are history, not state).
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from exporter.cce.errors import CCEError
from exporter.cce.models import Cluster
from exporter.config import KubernetesConfig
from exporter.health import Health
from exporter.kube.client import KubeClient
from exporter.kube.models import KubeClusterData, KubeJob

__all__ = [
    "KubeClusterData",
    "KubeCollector",
    "KubeHealth",
    "KubeStats",
    "select_cluster",
]

log = logging.getLogger(__name__)

RESOURCE = "kubernetes"
#: Phases whose Kubernetes data is dropped rather than kept while the cluster is not listed.
ASLEEP = frozenset({"Hibernation", "Hibernating", "Deleting"})


class KubeStats(Protocol):
    def error(self, project_id: str, resource: str, error: str) -> None: ...
    def kube_dropped(self, cluster_id: str, kind: str, count: int) -> None: ...


def _matches(value: str | None, patterns: Iterable[str]) -> bool:
    return value is not None and any(fnmatch.fnmatchcase(value, p) for p in patterns)


def select_cluster(config: KubernetesConfig, cluster: Cluster) -> bool:
    """Whether the configuration selects the cluster (phase aside)."""
    sel = config.clusters
    if _matches(cluster.name, sel.exclude) or _matches(cluster.id, sel.exclude):
        return False
    if not sel.names and not sel.ids:
        return True
    return _matches(cluster.name, sel.names) or (cluster.id in sel.ids)


def _job_order(job: KubeJob) -> tuple[int, float, str, str]:
    failed = any(k == "Failed" and s == "True" for k, s in job.conditions)
    rank = 0 if not job.finished else 1 if failed else 2
    newest = -(job.start_time or job.created or 0.0)
    return (rank, newest, job.namespace, job.name)


@dataclass
class KubeHealth(Health):
    """:class:`~exporter.health.Health`, and the pages and per-cluster errors of the last run."""

    requests: int = 0  # pages fetched in the last collection
    errors: dict[str, str] = field(default_factory=dict)  # cluster ID -> last error text


class KubeCollector:
    """Lists the configured kinds of every selected cluster of one target."""

    def __init__(
        self,
        *,
        target: str,
        project_id: str,
        config: KubernetesConfig,
        client: KubeClient,
        clusters: Callable[[], Sequence[Cluster] | None],
        stats: KubeStats,
        concurrency: int = 8,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.target = target
        self.project_id = project_id
        self.config = config
        self.client = client
        self.clusters = clusters
        self.stats = stats
        self.clock = clock
        self.data: dict[str, KubeClusterData] = {}
        #: cluster ID -> whether its lists succeeded, for the clusters asked last time
        #: (``cce_exporter_cluster_collect_success{resource="kubernetes"}``)
        self.outcomes: dict[str, bool] = {}
        self.health = KubeHealth()
        self._slots = asyncio.Semaphore(concurrency)

    def _namespace_ok(self, namespace: str) -> bool:
        ns = self.config.namespaces
        if ns.include and not _matches(namespace, ns.include):
            return False
        return not _matches(namespace, ns.exclude)

    async def collect(self) -> bool:
        """One collection; never raises for an API failure (counted and logged instead).

        Before the target's first cluster listing there is nothing to select from: False,
        without counting an attempt.
        """
        clusters = self.clusters()
        if clusters is None:
            return False
        started = time.perf_counter()
        self.health.attempted = True
        self.health.requests = 0
        listed = list(clusters)
        chosen = [c for c in listed if c.id and select_cluster(self.config, c)]
        live = [c for c in chosen if c.phase == "Available"]
        keep_ids = {c.id for c in chosen if c.id and c.phase not in ASLEEP}
        failed = 0
        outcomes: dict[str, bool] = {}

        async def one(cluster: Cluster) -> None:
            nonlocal failed
            assert cluster.id is not None
            try:
                async with self._slots:
                    data = await self._cluster(cluster)
            except CCEError as exc:
                failed += 1
                text = str(exc) or type(exc).__name__
                self.health.errors[cluster.id] = text
                log.warning(
                    "collecting Kubernetes objects failed (target=%s cluster=%s cluster_id=%s): %s",
                    self.target,
                    cluster.name,
                    cluster.id,
                    text,
                    extra={"target": self.target, "cluster_id": cluster.id, "resource": RESOURCE},
                )
                self.stats.error(self.project_id, RESOURCE, type(exc).__name__)
                outcomes[cluster.id] = False
                return
            self.health.errors.pop(cluster.id, None)
            self.data[cluster.id] = data
            outcomes[cluster.id] = True

        try:
            await asyncio.gather(*(one(c) for c in live))
            ok = failed == 0
        except Exception as exc:  # a bug must not kill the scheduler; it shows as a failure
            log.exception("collecting Kubernetes objects crashed (target=%s)", self.target)
            self.stats.error(self.project_id, RESOURCE, type(exc).__name__)
            ok = False
        # Clusters gone, deselected or asleep lose their data; the others keep their last good.
        self.data = {k: v for k, v in self.data.items() if k in keep_ids}
        for cluster in chosen:
            # Renamed clusters: the series carry the current name.
            old = self.data.get(cluster.id or "")
            if old is not None and cluster.name and old.cluster != cluster.name:
                self.data[old.cluster_id] = KubeClusterData(
                    old.cluster_id, cluster.name, old.jobs, old.cronjobs, old.quotas
                )
        self.client.forget({k for k in keep_ids if k})
        self.health.errors = {k: v for k, v in self.health.errors.items() if k in keep_ids}
        self.outcomes = outcomes
        self.health.success = ok
        self.health.error = None if ok else f"{failed} of {len(live)} clusters failed"
        self.health.duration = time.perf_counter() - started
        if ok:
            self.health.last_success = self.clock()
        return ok

    async def _cluster(self, cluster: Cluster) -> KubeClusterData:
        """The cluster's kinds, listed at once (the client's limits bound the requests)."""
        assert cluster.id is not None
        kinds = self.config.resources
        lists = await asyncio.gather(*(self._kind(cluster.id, kind) for kind in kinds))
        found = dict(zip(kinds, lists, strict=True))
        return KubeClusterData(
            cluster_id=cluster.id,
            cluster=cluster.name or "",
            jobs=found.get("jobs", ()),
            cronjobs=found.get("cronjobs", ()),
            quotas=found.get("resourcequotas", ()),
        )

    async def _kind(self, cluster_id: str, kind: str) -> tuple[Any, ...]:
        cap = self.config.max_objects_per_cluster
        # Fetched: up to twice the cap and a page, since the namespace filter and the retention
        # apply after the list (the API offers no namespace-set filter); memory stays bounded.
        listing = await self.client.list(cluster_id, kind, max_items=cap * 2 + 500)
        self.health.requests += listing.pages
        objs: list[Any] = [o for o in listing.items if self._namespace_ok(o.namespace)]
        dropped = listing.dropped
        if kind == "jobs":
            horizon = self.clock() - self.config.finished_job_retention
            objs = [j for j in objs if j.finished_at is None or j.finished_at >= horizon]
            objs.sort(key=_job_order)  # which Jobs the cap keeps
        if len(objs) > cap:
            dropped += len(objs) - cap
            objs = objs[:cap]
        if dropped:
            self.stats.kube_dropped(cluster_id, kind, dropped)
        return tuple(sorted(objs, key=lambda o: (o.namespace, o.name)))  # the render order

    def snapshot(self) -> Mapping[str, KubeClusterData]:
        return dict(self.data)
