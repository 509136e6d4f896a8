"""Node pool metrics: identity = the cluster's labels + ``nodepool_id``, ``nodepool``.

The API's empty node-pool phase is reported as ``Normal``. Only pools of clusters still present
are emitted. Sample exposition::

    cce_nodepool_info{project_id="p1",cluster_id="4d1e...",cluster="mycluster",
        nodepool_id="az1.dc1#s1.large#EulerOS 2.2",nodepool="az1.dc1#s1.large#EulerOS 2.2",
        flavor="s1.large",az="az1.dc1",os="EulerOS 2.2"} 1
    cce_nodepool_nodes{...} 1
    cce_nodepool_autoscaling_enabled{...} 1
    cce_nodepool_autoscaling_max_nodes{...} 50
    cce_nodepool_status_phase{...,phase="Normal"} 1

Today's API (the SDK's ``NodePoolStatus``, which deprecates ``phase``): conditions as for clusters
(``Scalable`` replaces ``SoldOut``; ``QuotaInsufficient``, ``ResourceInsufficient``,
``LockedByOrder`` and ``Error`` say why a pool cannot grow), node counts by state, and each scale
group's desired, existing and upcoming nodes::

    cce_nodepool_status_condition{...,condition="Scalable",status="false"} 1
    cce_nodepool_status_condition_reason{...,condition="Scalable",reason="QuotaInsufficient"} 1
    cce_nodepool_status_nodes{...,state="creating"} 2
    cce_nodepool_status_configuration_synced_nodes{...} 5
    cce_nodepool_scalegroup_nodes{...,scalegroup="default",state="upcoming"} 2
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from exporter.cce.models import NODEPOOL_PHASES, NodePool
from exporter.metrics.clusters import IDENTITY as CLUSTER_IDENTITY
from exporter.metrics.clusters import (
    MAX_PER_OBJECT,
    Labelled,
    cluster_objects,
    condition_reason_samples,
    condition_samples,
    machine_word,
    present_clusters,
)
from exporter.metrics.inputs import TargetData
from exporter.metrics.spec import (
    Gauge,
    Info,
    RenderContext,
    Samples,
    StateSet,
    Table,
    Value,
)

__all__ = ["NODE_STATES", "TABLE"]


@dataclass(frozen=True, slots=True)
class ScopedPool:
    """A node pool with the cluster it belongs to: default pool IDs (``<az>#<flavor>#<os>``)
    repeat across clusters, so the pool alone does not find its phase-since time."""

    cluster_id: str
    pool: NodePool


def _items(target: TargetData) -> Iterator[tuple[str, ScopedPool]]:
    for cluster_ident, cluster in present_clusters(target):
        cluster_id = cluster.id or ""
        pools = target.nodepools.get(cluster_id)
        for ident, pool in cluster_objects(cluster_ident, pools, "nodepool_id", "nodepool"):
            yield ident, ScopedPool(cluster_id, pool)


#: ``state`` label -> the SDK's NodePoolStatus field.
NODE_STATES: tuple[tuple[str, str], ...] = (
    ("active", "active_node"),
    ("creating", "creating_node"),
    ("deleting", "deleting_node"),
    ("repairing", "repairing_node"),
    ("repair_failed", "repair_failed_node"),
)


def _node_states(s: ScopedPool, ctx: RenderContext) -> Labelled:
    out: list[tuple[Mapping[str, str | None], Value]] = []
    for state, attr in NODE_STATES:
        count = getattr(s.pool.status, attr)
        if count is not None:
            out.append(({"state": state}, count))
    return out


def _scalegroups(s: ScopedPool, ctx: RenderContext) -> Labelled:
    out: list[tuple[Mapping[str, str | None], Value]] = []
    seen: set[str] = set()
    for group in s.pool.status.scale_group_statuses:
        name = machine_word(group.name or group.uid)
        if name is None or name in seen or len(seen) >= MAX_PER_OBJECT:
            continue
        seen.add(name)
        for state, count in (
            ("desired", group.desired_node_count),
            ("existing", group.existing_node_count.total),
            ("upcoming", group.upcoming_node_count.total),
        ):
            if count is not None:
                out.append(({"scalegroup": name, "state": state}, count))
    return out


TABLE: Table[ScopedPool] = Table(
    group="nodepools",
    resource="node pool",
    identity=(*CLUSTER_IDENTITY, "nodepool_id", "nodepool"),
    items=_items,
    families=(
        Info(
            "cce_nodepool_info",
            "Static properties of a node pool (from its node template).",
            ("flavor", "az", "os"),
            lambda s: (
                s.pool.spec.node_template.flavor,
                s.pool.spec.node_template.az,
                s.pool.spec.node_template.os,
            ),
        ),
        Gauge(
            "cce_nodepool_nodes",
            "Nodes currently in the pool (status.currentNode).",
            lambda s, ctx: s.pool.status.current_node,
        ),
        Gauge(
            "cce_nodepool_initial_nodes",
            "Initial node count of the pool (spec.initialNodeCount), where given.",
            lambda s, ctx: s.pool.spec.initial_node_count,
        ),
        Gauge(
            "cce_nodepool_autoscaling_enabled",
            "1 if autoscaling is enabled for the pool, else 0.",
            lambda s, ctx: 1 if s.pool.spec.autoscaling.enable else 0,
        ),
        Gauge(
            "cce_nodepool_autoscaling_min_nodes",
            "Autoscaling lower bound of the pool, where given.",
            lambda s, ctx: s.pool.spec.autoscaling.min_node_count,
        ),
        Gauge(
            "cce_nodepool_autoscaling_max_nodes",
            "Autoscaling upper bound of the pool, where given.",
            lambda s, ctx: s.pool.spec.autoscaling.max_node_count,
        ),
        StateSet(
            "cce_nodepool_status_phase",
            "Current phase of the node pool; the API's empty phase is Normal.",
            "phase",
            NODEPOOL_PHASES,
            lambda s: s.pool.phase,
        ),
        Gauge(
            "cce_nodepool_status_phase_since_timestamp_seconds",
            "When the exporter first saw the node pool's current phase (Unix time).",
            lambda s, ctx: ctx.since(f"nodepool/{s.cluster_id}/{s.pool.id}"),
        ),
        Samples(
            "cce_nodepool_status_condition",
            "Status of each condition in the pool's status.conditions (1 for the current "
            "status of true, false, unknown).",
            "gauge",
            ("condition", "status"),
            lambda s, ctx: condition_samples(s.pool.status.conditions),
        ),
        Samples(
            "cce_nodepool_status_condition_reason",
            "Current reason of each node-pool condition; other for free text.",
            "gauge",
            ("condition", "reason"),
            lambda s, ctx: condition_reason_samples(s.pool.status.conditions),
        ),
        Samples(
            "cce_nodepool_status_nodes",
            "Nodes of the pool by state (status.activeNode, creatingNode, deletingNode, "
            "repairingNode, repairFailedNode), where given.",
            "gauge",
            ("state",),
            _node_states,
        ),
        Gauge(
            "cce_nodepool_status_configuration_synced_nodes",
            "Nodes of the pool whose configuration matches the pool's "
            "(status.configurationSyncedNodeCount), where given.",
            lambda s, ctx: s.pool.status.configuration_synced_node_count,
        ),
        Samples(
            "cce_nodepool_scalegroup_nodes",
            "Nodes of each scale group of the pool (status.scaleGroupStatuses): desired, "
            "existing and upcoming.",
            "gauge",
            ("scalegroup", "state"),
            _scalegroups,
        ),
    ),
)
