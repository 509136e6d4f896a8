"""Collection for one target (one project in one region, with its own credentials).

Each ``collect_<resource>`` method lists one kind of resource through the API client and updates
the target's last good data. Errors are caught here, at the job boundary: they are logged with the
target and cluster, counted, and the last good data is kept (marked by
``cce_exporter_collect_success`` = 0 and an ageing ``cce_exporter_last_success_timestamp_seconds``).

Partial failure is not total failure: a per-cluster resource (nodes, node pools, add-ons) and the
jobs succeed when their pass ran over the listed clusters, even if some clusters failed. Each
cluster's own outcome is kept per resource (``cce_exporter_cluster_collect_success``), its last
good data is kept, and the other clusters' data is never lost. Only when every cluster of a pass
failed (the API is down, not one cluster) does the resource fail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from exporter.cce.errors import CCEError, NotFound
from exporter.cce.memo import reuse_unchanged
from exporter.cce.models import Addon, Cluster, NodePool, NodeSummary, addon_upgrade_available
from exporter.collect.base import CollectorBase
from exporter.collect.state import (
    FIRST_LISTING_WAIT_SECONDS,
    RESOURCES,
    SKIP_PHASES,
    SLOW_RESOURCES,
    UPGRADE_SKIP_PHASES,
    Client,
    CollectorStats,
    TargetState,
)
from exporter.health import Health
from exporter.metrics.inputs import ResourceHealth, TargetData, TrackedJob

__all__ = [
    "RESOURCES",
    "SKIP_PHASES",
    "SLOW_RESOURCES",
    "UPGRADE_SKIP_PHASES",
    "Client",
    "CollectorStats",
    "Health",
    "TargetCollector",
    "TargetState",
]

T = TypeVar("T")

log = logging.getLogger(__name__)


class TargetCollector(CollectorBase):
    """Lists one target's resources and keeps what is needed to render its metrics."""

    # --- clusters --------------------------------------------------------------------------------

    async def collect_clusters(self) -> bool:
        try:
            return await self._timed("clusters", self._clusters)
        finally:
            self.clusters_asked.set()

    async def _clusters(self) -> bool:
        clusters = await self.client.list_clusters()
        if self.cluster_filter is not None:
            clusters = [c for c in clusters if self.cluster_filter(c)]
        clusters = reuse_unchanged(self.state.clusters, await self._unmask_errors(clusters))
        now = self.clock()
        ids = set()
        for cluster in clusters:
            if not cluster.id:
                continue
            ids.add(cluster.id)
            self.phases.observe(f"cluster/{cluster.id}", cluster.phase, now)
            self.jobs.discover(cluster.status.job_id, cluster.id, "cluster", now)
        self.phases.retain("cluster", (f"cluster/{i}" for i in ids))
        state = self.state
        # Resources of clusters that are gone disappear with them.
        self.state = TargetState(
            clusters=tuple(clusters),
            clusters_listed=True,
            nodes={k: v for k, v in state.nodes.items() if k in ids},
            nodepools={k: v for k, v in state.nodepools.items() if k in ids},
            addons={k: v for k, v in state.addons.items() if k in ids},
            quotas=state.quotas,
            upgrades={k: v for k, v in state.upgrades.items() if k in ids},
            templates=state.templates,
            addon_upgrades=state.addon_upgrades,
        )
        self.phases.retain_clusters(ids)
        for outcomes in self.cluster_success.values():
            for gone in [cid for cid in outcomes if cid not in ids]:
                del outcomes[gone]
        for key in [k for k in self.memos if not k.startswith("job/")]:
            if key.partition("/")[2] not in ids:
                del self.memos[key]
        return True

    async def _unmask_errors(self, clusters: list[Cluster]) -> list[Cluster]:
        """Fetch each cluster listed as ``Deleting`` again with ``errorStatus``.

        The list endpoint takes no parameters, and without ``errorStatus`` the API masks an
        ``Error`` cluster as ``Deleting`` (reference 5.2): one get per such cluster (there are few)
        tells a failed cluster from one being deleted. A 404 means it is gone; any other failure
        keeps the listed phase, since the listing itself succeeded.
        """
        masked = [c for c in clusters if c.id and c.phase == "Deleting"]
        if not masked:
            return clusters
        found: dict[str, Cluster | None] = {}

        async def one(cluster: Cluster) -> None:
            assert cluster.id is not None
            try:
                async with self.concurrency:
                    found[cluster.id] = await self.client.get_cluster(
                        cluster.id, detail=False, error_status=True
                    )
            except NotFound:
                found[cluster.id] = None
            except CCEError as exc:
                log.debug(
                    "could not tell whether a Deleting cluster is in Error (%s): %s",
                    self._where_text(cluster),
                    exc,
                    extra=self._where(cluster, "clusters"),
                )

        await asyncio.gather(*(one(c) for c in masked))
        out = []
        for cluster in clusters:
            if cluster.id in found:
                fresh = found[cluster.id]
                if fresh is not None:
                    out.append(fresh)
            else:
                out.append(cluster)
        return out

    # --- per-cluster resources -------------------------------------------------------------------

    async def _per_cluster(
        self,
        resource: str,
        fetch: Callable[[str], Awaitable[Sequence[T]]],
        store: Callable[[TargetState], dict[str, Sequence[T]]],
        after: Callable[[Cluster, Sequence[T], float], None],
    ) -> bool:
        if not self.state.clusters_listed:
            self.health[resource].error = "the cluster list is not available yet"
            return False
        clusters = self.governed_clusters()
        skip = SKIP_PHASES.get(resource, frozenset())
        # Each cluster's answer replaces its last one as soon as it arrives, so that a pass over
        # 100,000 changed nodes never holds the old and the new lists of every cluster at once.
        stored = store(self.state)
        outcomes = self.cluster_success.setdefault(resource, {})
        failed = attempted = 0

        async def one(cluster: Cluster) -> None:
            nonlocal failed, attempted
            assert cluster.id is not None
            if cluster.phase in skip:
                # Not asked (a hibernated cluster cannot answer): no outcome, so no alert.
                outcomes.pop(cluster.id, None)
                return
            attempted += 1
            try:
                async with self.concurrency:
                    items = await fetch(cluster.id)
            except CCEError as exc:
                failed += 1
                outcomes[cluster.id] = False
                self.errors[f"{resource}/{cluster.id}"] = self._log_error(resource, exc, cluster)
                return
            outcomes[cluster.id] = True
            self.errors.pop(f"{resource}/{cluster.id}", None)
            self.last_errors.pop(f"{resource}/{cluster.id}", None)
            stored[cluster.id] = items
            after(cluster, items, self.clock())

        await asyncio.gather(*(one(c) for c in clusters))
        current_ids = {c.id for c in self.state.clusters}
        for gone in [k for k in stored if k not in current_ids]:
            del stored[gone]
        if failed:
            self.health[resource].error = f"{failed} of {attempted} clusters failed"
        # The pass succeeded unless no cluster could be read at all.
        return not attempted or failed < attempted

    def _track_phases(self, kind: str, cluster: Cluster, objs: Sequence[Any], now: float) -> None:
        assert cluster.id is not None
        if kind == "addon":
            pairs = [(obj.id, obj.status.status) for obj in objs if obj.id]
        else:
            pairs = [(obj.id, obj.phase) for obj in objs if obj.id]
        self.phases.observe_group(kind, cluster.id, pairs, now)

    async def collect_nodes(self) -> bool:
        async def fetch(cluster_id: str) -> list[NodeSummary]:
            # Only the summary is kept: a parsed node takes far more memory (docs/performance.md).
            return await self.client.list_node_summaries(
                cluster_id, memo=self._memo(f"nodes/{cluster_id}")
            )

        def after(cluster: Cluster, nodes: Sequence[NodeSummary], now: float) -> None:
            self._track_phases("node", cluster, nodes, now)
            assert cluster.id is not None
            for node in nodes:
                self.jobs.discover(node.job_id, cluster.id, "node", now)

        return await self._timed(
            "nodes",
            lambda: self._per_cluster("nodes", fetch, lambda s: s.nodes, after),
        )

    async def collect_nodepools(self) -> bool:
        def after(cluster: Cluster, pools: Sequence[NodePool], now: float) -> None:
            self._track_phases("nodepool", cluster, pools, now)
            assert cluster.id is not None
            for pool in pools:
                self.jobs.discover(pool.status.job_id, cluster.id, "nodepool", now)

        return await self._timed(
            "nodepools",
            lambda: self._per_cluster(
                "nodepools",
                lambda cid: self.client.list_nodepools(cid, memo=self._memo(f"nodepools/{cid}")),
                lambda s: s.nodepools,
                after,
            ),
        )

    async def collect_addons(self) -> bool:
        def after(cluster: Cluster, addons: Sequence[Addon], now: float) -> None:
            self._track_phases("addon", cluster, addons, now)

        ok = await self._timed(
            "addons",
            lambda: self._per_cluster(
                "addons",
                lambda cid: self.client.list_addons(cid, memo=self._memo(f"addons/{cid}")),
                lambda s: s.addons,
                after,
            ),
        )
        self._compare_addon_versions()
        return ok

    # --- what can be upgraded (slow) -------------------------------------------------------------

    async def _listed(self, resource: str) -> bool:
        """Whether the clusters are listed, waiting a bounded while for the first listing."""
        if self.state.clusters_listed:
            return True
        wait = min(self.slow_intervals.get(resource, 3600.0), FIRST_LISTING_WAIT_SECONDS)
        try:
            await asyncio.wait_for(self.clusters_asked.wait(), wait)
        except TimeoutError:
            return False
        return self.state.clusters_listed

    def _due(self, resource: str) -> bool:
        """Whether a slow resource is to be checked now."""
        health = self.health[resource]
        last = health.last_attempt
        if last is None or (health.attempted and not health.success):
            # A failed check is tried again at the clusters' pace, not a slow interval later
            # (readiness would wait that long for it).
            return True
        # A tenth of slack: the scheduler's own run, an interval after the last, is never early.
        interval = self.slow_intervals.get(resource, 3600.0)
        return self.clock() - last >= 0.9 * interval

    def _not_offered(self, resource: str, call: str, exc: BaseException) -> None:
        self.unsupported.add(resource)
        log.info(
            "this installation does not offer %s (%s: %s); %s is not checked again (%s)",
            call,
            type(exc).__name__,
            exc,
            resource,
            self._where_text(),
            extra=self._where(None, resource),
        )

    async def _nothing_offered(self, resource: str) -> bool:
        """A resource the installation does not offer is collected as nothing, successfully:
        its data (none) stays current, so readiness and the staleness alert leave it alone."""

        async def nothing() -> bool:
            return True

        return await self._timed(resource, nothing)

    async def collect_cluster_upgrades(self) -> bool:
        """The versions each cluster can be upgraded to (``upgradeinfo``), once per interval."""
        if "cluster_upgrades" in self.unsupported:
            return await self._nothing_offered("cluster_upgrades")
        if not self._due("cluster_upgrades") or not await self._listed("cluster_upgrades"):
            return True
        return await self._timed("cluster_upgrades", self._cluster_upgrades)

    async def _cluster_upgrades(self) -> bool:
        clusters = [c for c in self.governed_clusters() if c.phase not in UPGRADE_SKIP_PHASES]
        found: dict[str, tuple[str, ...]] = {}
        missing = 0
        failed = 0
        outcomes = self.cluster_success.setdefault("cluster_upgrades", {})

        async def one(cluster: Cluster) -> None:
            nonlocal missing, failed
            assert cluster.id is not None
            try:
                async with self.concurrency:
                    found[cluster.id] = tuple(await self.client.get_upgrade_targets(cluster.id))
                outcomes[cluster.id] = True
            except NotFound:
                missing += 1
                outcomes[cluster.id] = True  # nothing offered for it: a valid answer
            except CCEError as exc:
                failed += 1
                outcomes[cluster.id] = False
                self._log_error("cluster_upgrades", exc, cluster)

        await asyncio.gather(*(one(c) for c in clusters))
        if missing and not found and not failed:
            # Every cluster answered 404: the call is not there, not the clusters.
            self._not_offered(
                "cluster_upgrades", "GET .../clusters/{id}/upgradeinfo", NotFound(404)
            )
            return True
        ids = {c.id for c in self.state.clusters}
        merged = {k: v for k, v in self.state.upgrades.items() if k in ids}
        merged.update(found)
        self.state.upgrades = merged
        if failed:
            self.health["cluster_upgrades"].error = f"{failed} of {len(clusters)} clusters failed"
        # Partial failure is not total failure: some clusters failing are shown per cluster.
        return not clusters or failed < len(clusters)

    async def collect_addon_upgrades(self) -> bool:
        """The add-on templates (``addontemplates``), once per interval: which add-on has a newer
        version that fits its cluster."""
        if "addon_upgrades" in self.unsupported:
            return await self._nothing_offered("addon_upgrades")
        if not self._due("addon_upgrades") or not await self._listed("addon_upgrades"):
            return True
        clusters = [c for c in self.governed_clusters() if c.phase not in UPGRADE_SKIP_PHASES]
        if not clusters:
            return True
        cluster = clusters[0]

        async def work() -> bool:
            assert cluster.id is not None
            try:
                templates = await self.client.list_addon_templates(cluster.id)
            except NotFound as exc:
                self._not_offered("addon_upgrades", "GET /api/v3/addontemplates", exc)
                return True
            self.state.templates = {t.name: t for t in templates if t.name}
            self._compare_addon_versions()
            return True

        return await self._timed("addon_upgrades", work)

    def _compare_addon_versions(self) -> None:
        templates = self.state.templates
        if not templates:
            self.state.addon_upgrades = {}
            return
        by_id = {c.id: c for c in self.state.clusters if c.id}
        out: dict[str, bool] = {}
        for cluster_id, addons in self.state.addons.items():
            cluster = by_id.get(cluster_id)
            if cluster is None:
                continue
            for addon in addons:
                if addon.id:
                    available = addon_upgrade_available(addon, cluster, templates)
                    if available is not None:
                        out[addon.id] = available
        self.state.addon_upgrades = out

    # --- quotas and jobs -------------------------------------------------------------------------

    async def collect_quotas(self) -> bool:
        async def work() -> bool:
            quotas = await self.client.get_quotas()
            self.state.quotas = tuple(quotas)
            return True

        return await self._timed("quotas", work)

    async def collect_jobs(self, *, new_only: bool = False) -> bool:
        """Poll the jobs being followed.

        ``new_only``: only those never fetched yet, as a complement of a full poll that ran
        while they were being discovered: a failure then marks the jobs collection failed, a
        success leaves its outcome as it was.
        """
        if not new_only:
            return await self._timed("jobs", self._jobs)
        if not any(e.job is None for e in self.jobs.entries.values()):
            return True
        try:
            ok = await self._jobs(new_only=True)
        except CCEError as exc:
            ok = False
            self.health["jobs"].error = self._log_error("jobs", exc)
        if not ok:
            self.health["jobs"].success = False
        return ok

    async def _jobs(self, new_only: bool = False) -> bool:
        if not self.state.clusters_listed:
            # Jobs are found in the listings: with none yet, "nothing to poll" is not a success.
            self.health["jobs"].error = "no cluster listing has succeeded yet: no job is known"
            return False
        now = self.clock()
        self.jobs.expire(now)
        failed = attempted = 0
        outcomes: dict[str, bool] = {}

        async def poll(entry_id: str) -> None:
            nonlocal failed, attempted
            entry = self.jobs.entries.get(entry_id)
            if entry is None:
                return
            attempted += 1
            try:
                async with self.concurrency:
                    job = await self.client.get_job(
                        entry.job_id, memo=self._memo(f"job/{entry.job_id}")
                    )
            except NotFound:
                # Job IDs are short-lived (reference section 15): a 404 is normal, not an error.
                cluster = next((c for c in self.state.clusters if c.id == entry.cluster_id), None)
                log.debug(
                    "CCE job %s answers 404; no longer followed (%s)",
                    entry.job_id,
                    self._where_text(cluster, entry.cluster_id),
                    extra={**self._where(cluster, "jobs"), "cluster_id": entry.cluster_id},
                )
                self.jobs.drop(entry.job_id, gone=True)
                self.stats.job_dropped(self.project_id, "not_found")
                outcomes.setdefault(entry.cluster_id, True)
                return
            except CCEError as exc:
                failed += 1
                outcomes[entry.cluster_id] = False
                cluster = next((c for c in self.state.clusters if c.id == entry.cluster_id), None)
                self._log_error("jobs", exc, cluster)
                return
            outcomes.setdefault(entry.cluster_id, True)
            if self.jobs.update(entry, job, self.clock()) and not entry.observed:
                entry.observed = True
                self.stats.job_finished(job)
            self.phases.observe(f"job/{entry.job_id}", job.phase, self.clock())

        pending = self.jobs.pending()
        if new_only:
            pending = [e for e in pending if e.job is None]
        await asyncio.gather(*(poll(e.job_id) for e in pending))
        self.phases.retain("job", (f"job/{j}" for j in self.jobs.entries))
        # A finished or dropped job is not polled again: its last answer is not needed.
        for key in [k for k in self.memos if k.startswith("job/")]:
            entry = self.jobs.entries.get(key[4:])
            if entry is None or entry.finished_at is not None:
                del self.memos[key]
        known = self.cluster_success.setdefault("jobs", {})
        if not new_only:
            known.clear()  # clusters with no job left to poll have no outcome
        known.update(outcomes)
        if failed:
            self.health["jobs"].error = f"{failed} of {attempted} job polls failed"
        # As for the per-cluster listings: failed polls are shown per cluster, not target-wide.
        return not attempted or failed < attempted

    # --- output ----------------------------------------------------------------------------------

    async def collect(self, resource: str) -> bool:
        """Collect one resource (one of :data:`RESOURCES`)."""
        return await COLLECT[resource](self)

    def snapshot(self) -> TargetData:
        """An immutable view of the last good data, for the renderer."""
        state = self.state
        jobs = tuple(
            TrackedJob(project_id=self.project_id, cluster_id=e.cluster_id, job=e.job)
            for e in self.jobs.entries.values()
            if e.job is not None
        )
        health = tuple(
            ResourceHealth(
                resource=resource,
                success=h.success,
                duration_seconds=h.duration,
                last_success=h.last_success,
            )
            for resource, h in self.health.items()
            if h.attempted
        )
        return TargetData(
            project_id=self.project_id,
            labels=self.labels,
            clusters=state.clusters,
            nodes=dict(state.nodes),
            nodepools=dict(state.nodepools),
            addons=dict(state.addons),
            jobs=jobs,
            quotas=state.quotas,
            phase_since=self.phases.renderer_snapshot(),
            health=health,
            cluster_success={r: dict(o) for r, o in self.cluster_success.items() if o},
            upgrades=dict(state.upgrades),
            addon_upgrades=state.addon_upgrades,
        )


#: Which method collects each resource: one entry per name of :data:`RESOURCES`.
COLLECT: dict[str, Callable[[TargetCollector], Awaitable[bool]]] = {
    "clusters": TargetCollector.collect_clusters,
    "nodes": TargetCollector.collect_nodes,
    "nodepools": TargetCollector.collect_nodepools,
    "addons": TargetCollector.collect_addons,
    "quotas": TargetCollector.collect_quotas,
    "jobs": TargetCollector.collect_jobs,
    "cluster_upgrades": TargetCollector.collect_cluster_upgrades,
    "addon_upgrades": TargetCollector.collect_addon_upgrades,
}
if set(COLLECT) != set(RESOURCES):  # pragma: no cover - a resource added without its method
    raise AssertionError(f"no collection for {sorted(set(RESOURCES) ^ set(COLLECT))}")
