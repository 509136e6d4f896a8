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
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from exporter.cce.models import NODEPOOL_PHASES, NodePool
from exporter.metrics.clusters import IDENTITY as CLUSTER_IDENTITY
from exporter.metrics.clusters import present_clusters
from exporter.metrics.inputs import TargetData
from exporter.metrics.spec import Gauge, Info, StateSet, Table, escape_label_value

__all__ = ["TABLE"]


@dataclass(frozen=True, slots=True)
class ScopedPool:
    """A node pool with the cluster it belongs to: default pool IDs (``<az>#<flavor>#<os>``)
    repeat across clusters, so the pool alone does not find its phase-since time."""

    cluster_id: str
    pool: NodePool


def _items(target: TargetData) -> Iterator[tuple[str, ScopedPool]]:
    esc = escape_label_value
    for cluster_ident, cluster in present_clusters(target):
        pools = target.nodepools.get(cluster.id or "")
        if not pools:
            continue
        seen: set[str] = set()
        for pool in sorted(pools, key=lambda p: p.id or ""):
            pid = pool.id
            if not pid or pid in seen:
                continue
            seen.add(pid)
            ident = f'{cluster_ident},nodepool_id="{esc(pid)}"'
            if pool.name:
                ident += f',nodepool="{esc(pool.name)}"'
            yield ident, ScopedPool(cluster.id or "", pool)


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
    ),
)
