"""The simulated CCE world: clusters, nodes, node pools, add-ons, jobs and quotas.

Everything is generated from a seed (same seed and same clock instant -> the same bytes) and lives
on the simulator clock: a resource's phase is a *timeline* of segments ``(from instant, phase,
reason, message, job ID)``, so transitions (a job finishing, a cluster waking up) need no timer,
only a read of the clock. The JSON of every list is rendered once and kept as bytes until either
the world changes (``version`` moves) or the clock passes the next transition instant of anything
the list shows, which keeps 500 clusters x 200 nodes cheap to serve.

Shapes follow the API reference, quirks included: the cluster list's ``kind`` is ``"Cluster"``,
the node list's ``"Node"``, add-ons spell ``Reason`` with a capital R and use RFC 3339 times while
clusters, nodes and jobs use Go's ``time.Time.String()`` with a varying number of fraction digits,
the normal node-pool phase is ``""`` (absent on the default pool), ``detail=true`` annotations are
strings, and an ``Error`` cluster shows as ``Deleting`` unless ``errorStatus`` is sent.

Hibernation: ``hibernate`` on an ``Available`` cluster goes Hibernating -> Hibernation, ``awake`` on
a ``Hibernation`` cluster goes Awaking -> Available, each step ``transition_seconds`` long; any
other starting phase is a 400 ``CCE.014000xx``. An injected wake-up failure behaves as the public
cloud describes it: the awake call is accepted (200), the cluster goes Awaking, then falls back to
Hibernation with ``reason: AwakeFailed`` and a lack-of-capacity message; there is no job to fail.

Jobs: clusters in a transitional phase (Creating, Upgrading, ScalingUp, ...) and nodes in Build,
Installing, Upgrading or Deleting carry ``status.jobID`` while their job runs; the job goes
Initializing -> Running -> Success/Failed (sub-jobs in sequence, the last one failing when the job
fails), then the resource moves on (Available/Active, Error, or gone). The Upgrading cluster's job
is the stuck one: running since three hours before start, for eight hours.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from exporter.cce.models import CLUSTER_PHASES
from exporter.simulator.catalog import _ADDON_REASONS
from exporter.simulator.clock import NS
from exporter.simulator.formats import SimError, dump_json, iam_time
from exporter.simulator.render import WorldRendering
from exporter.simulator.resources import Cluster
from exporter.simulator.timeline import Segment

# Cluster, SimError, dump_json and iam_time live in modules of their own and are re-exported.
__all__ = ["Cluster", "SimError", "World", "dump_json", "iam_time"]


class World(WorldRendering):
    """The simulated project; see the module docstring. All instants are clock nanoseconds."""

    # --- control operations (the control API calls these) ------------------------------------

    def add_cluster(
        self,
        *,
        name: str | None = None,
        phase: str = "Available",
        nodes: int = 0,
        flavor: str | None = None,
    ) -> Cluster:
        now = self.now_ns()
        if name is None:
            name = f"sim-cluster-{len(self.clusters):03d}"
        if phase not in CLUSTER_PHASES:
            # An arbitrary (possibly unknown) phase is held as it is.
            cluster = self._add_cluster(
                now, name=name, phase="Available", nodes=nodes, generated=False
            )
            cluster.timeline.replace_from(now, Segment(now, phase))
        else:
            cluster = self._add_cluster(
                now, name=name, phase=phase, nodes=nodes, generated=False, flavor=flavor
            )
        if flavor is not None:
            cluster.flavor = flavor
        self._changed()
        return cluster

    def remove_cluster(self, uid: str) -> None:
        self.cluster(uid)
        del self.clusters[uid]
        self._changed()

    def remove_node(self, cluster_uid: str, node_uid: str) -> None:
        cluster = self.cluster(cluster_uid)
        if node_uid not in cluster.nodes:
            raise SimError(404, "CCE.01404002", f"node {node_uid} not found")
        del cluster.nodes[node_uid]
        self._node_json.pop(node_uid, None)
        self._changed()

    def set_phase(
        self,
        kind: str,
        uid: str,
        phase: str,
        *,
        cluster_id: str | None = None,
        reason: str | None = None,
        message: str | None = None,
        version: str | None = None,
    ) -> None:
        """Hold a cluster/node/nodepool phase or an add-on status (and installed version)."""
        now = self.now_ns()
        if kind == "cluster":
            self.cluster(uid).timeline.replace_from(now, Segment(now, phase, reason, message))
        elif kind == "node":
            node = self._find(uid, cluster_id, lambda c: c.nodes)
            node.timeline.replace_from(now, Segment(now, phase, reason, message))
        elif kind == "nodepool":
            pool = self._find(uid, cluster_id, lambda c: c.pools)
            pool.phase = "" if phase == "Normal" else phase
        elif kind == "addon":
            addon = self._find(uid, cluster_id, lambda c: c.addons)
            addon.status = phase
            addon.reason, addon.message = _ADDON_REASONS.get(phase, (reason or "", message or ""))
            addon.updated = now
            if version is not None:
                addon.installed = str(version)
        else:
            raise SimError(400, "SIM.400", f"unknown kind {kind!r}")
        self._changed()

    def _find(
        self, uid: str, cluster_id: str | None, table: Callable[[Cluster], dict[str, Any]]
    ) -> Any:
        clusters: Iterable[Cluster] = (
            [self.cluster(cluster_id)] if cluster_id else list(self.clusters.values())
        )
        for cluster in clusters:
            found = table(cluster).get(uid)
            if found is not None:
                return found
        raise SimError(404, "SIM.404", f"{uid} not found")

    def _in_phase(self, uid: str, now: int, wanted: str, code: str, only: str) -> Cluster:
        """The cluster, if it is in phase ``wanted``; else the API's 400 (``only ...``)."""
        cluster = self.cluster(uid)
        phase = cluster.segment(now).phase
        if phase != wanted:
            raise SimError(400, code, f"cluster {cluster.name} is {phase}; {only}")
        return cluster

    def hibernate(self, uid: str) -> None:
        now = self.now_ns()
        only = "only an Available cluster can be hibernated"
        cluster = self._in_phase(uid, now, "Available", "CCE.01400010", only)
        cluster.timeline.replace_from(
            now, Segment(now, "Hibernating"), Segment(now + self.transition_ns, "Hibernation")
        )
        self._changed()

    def awake(self, uid: str) -> None:
        now = self.now_ns()
        only = "only a hibernated cluster can be woken up"
        cluster = self._in_phase(uid, now, "Hibernation", "CCE.01400011", only)
        end = now + self.transition_ns
        if cluster.fail_next_wakeup:
            # As on the public cloud, the wake-up is accepted and fails later for lack of
            # capacity: the cluster falls back to Hibernation and says why.
            cluster.fail_next_wakeup = False
            self.wakeup_failures += 1
            final = Segment(
                end,
                "Hibernation",
                "AwakeFailed",
                "insufficient resources to start the control plane; wait and retry",
            )
        else:
            final = Segment(end, "Available")
        cluster.timeline.replace_from(now, Segment(now, "Awaking"), final)
        self._changed()

    def set_cluster_status(
        self,
        uid: str,
        *,
        certificate: str | None = None,
        rotation: Any = ...,
        agency: bool | None = None,
        lock: Any = ...,
    ) -> None:
        """Set today's cluster status fields (``...``: leave as it is)."""
        cluster = self.cluster(uid)
        if certificate is not None:
            cluster.certificate = str(certificate)
        if rotation is not ...:
            cluster.rotation = None if rotation is None else str(rotation)
        if agency is not None:
            cluster.agency = bool(agency)
        if lock is not ...:
            cluster.lock = lock
        self._changed()

    def set_node_status(
        self,
        cluster_uid: str,
        node_uid: str,
        *,
        probe_age_seconds: Any = ...,
        configuration_up_to_date: bool | None = None,
    ) -> None:
        """Freeze a node's probe ``probe_age_seconds`` ago (None: probed again), or mark it
        (not) up to date with its pool's template."""
        node = self.cluster(cluster_uid).nodes.get(node_uid)
        if node is None:
            raise SimError(404, "CCE.01404002", f"node {node_uid} not found")
        if probe_age_seconds is not ...:
            node.probe_at = (
                None
                if probe_age_seconds is None
                else self.now_ns() - int(float(probe_age_seconds) * NS)
            )
        if configuration_up_to_date is not None:
            node.config_up_to_date = bool(configuration_up_to_date)
        self._changed()

    def set_pool_conditions(
        self, cluster_uid: str, pool_uid: str, conditions: dict[str, tuple[str, str]]
    ) -> None:
        pool = self.cluster(cluster_uid).pools.get(pool_uid)
        if pool is None:
            raise SimError(404, "CCE.01404003", f"node pool {pool_uid} not found")
        pool.conditions = dict(conditions)
        self._changed()

    def fail_next_wakeup(self, uid: str) -> None:
        self.cluster(uid).fail_next_wakeup = True
        self._changed()

    def invalidate(self) -> None:
        """Called when the clock jumps: cached renderings stay valid by instant, but be safe."""
        self._changed()

    # --- state summary ------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        now = self.now_ns()
        cluster_phases: Counter[str] = Counter()
        node_phases: Counter[str] = Counter()
        pool_phases: Counter[str] = Counter()
        addon_statuses: Counter[str] = Counter()
        job_phases: Counter[str] = Counter()
        nodes = 0
        for cluster in self.clusters.values():
            phase = cluster.segment(now).phase
            if phase is None:
                continue
            cluster_phases[phase] += 1
            for node in cluster.nodes.values():
                node_phase = node.timeline.state(now)[0].phase
                if node_phase is not None:
                    nodes += 1
                    node_phases[node_phase] += 1
            for pool in cluster.pools.values():
                pool_phases[pool.phase or "Normal"] += 1
            for addon in cluster.addons.values():
                addon_statuses[addon.status] += 1
        for job in self.jobs.values():
            job_phases[job.phase(now)] += 1
        return {
            "clusters": sum(cluster_phases.values()),
            "nodes": nodes,
            "cluster_phases": dict(cluster_phases),
            "node_phases": dict(node_phases),
            "nodepool_phases": dict(pool_phases),
            "addon_statuses": dict(addon_statuses),
            "job_phases": dict(job_phases),
            "wakeup_failures": self.wakeup_failures,
            "version": self.version,
        }
