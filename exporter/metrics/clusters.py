"""Cluster metrics: one row per family, identity ``project_id``, ``cluster_id``, ``cluster``.

Sample exposition::

    cce_cluster_info{project_id="p1",cluster_id="4d1e...",cluster="mycluster",type="VirtualMachine",
        flavor="cce.s1.small",version="v1.15.11-r1",container_network_mode="overlay_l2"} 1
    cce_cluster_status_phase{project_id="p1",cluster_id="4d1e...",cluster="mycluster",
        phase="Available"} 1
    cce_cluster_status_phase_since_timestamp_seconds{...} 1.7e+09
    cce_cluster_created_timestamp_seconds{...} 1533181738.968214
    cce_cluster_nodes{...} 1
    cce_cluster_nodes_active{...} 1
    cce_cluster_max_nodes{...} 50

``cce_cluster_nodes`` and ``_nodes_active`` come from the ``detail=true`` annotations when the API
sent them, else they are counted from the cluster's last good node list, else omitted.
"""

from __future__ import annotations

from collections.abc import Iterator

from exporter.cce.models import CLUSTER_PHASES, Cluster
from exporter.metrics.inputs import TargetData
from exporter.metrics.spec import (
    Gauge,
    Info,
    RenderContext,
    StateSet,
    Table,
    epoch,
    escape_label_value,
)

__all__ = ["TABLE", "cluster_identity", "present_clusters"]

IDENTITY = ("project_id", "cluster_id", "cluster")


def present_clusters(target: TargetData) -> list[tuple[str, Cluster]]:
    """The target's clusters with an ID, by ID, first of duplicates kept, with identity labels."""
    seen: set[str] = set()
    out: list[tuple[str, Cluster]] = []
    project = f'project_id="{escape_label_value(target.project_id)}"'
    for cluster in sorted(target.clusters, key=lambda c: c.id or ""):
        cid = cluster.id
        if not cid or cid in seen:
            continue
        seen.add(cid)
        out.append((cluster_identity(project, cluster), cluster))
    return out


def cluster_identity(project: str, cluster: Cluster) -> str:
    """``project_id=..,cluster_id=..,cluster=..`` (``cluster`` left out when the name is)."""
    ident = f'{project},cluster_id="{escape_label_value(cluster.id or "")}"'
    if cluster.name:
        ident += f',cluster="{escape_label_value(cluster.name)}"'
    return ident


def _items(target: TargetData) -> Iterator[tuple[str, Cluster]]:
    yield from present_clusters(target)


def _nodes(c: Cluster, ctx: RenderContext) -> int | None:
    if c.total_nodes is not None:
        return c.total_nodes
    nodes = ctx.target.nodes.get(c.id or "")
    return None if nodes is None else len(nodes)


def _nodes_active(c: Cluster, ctx: RenderContext) -> int | None:
    if c.active_nodes is not None:
        return c.active_nodes
    nodes = ctx.target.nodes.get(c.id or "")
    return None if nodes is None else sum(1 for n in nodes if n.phase == "Active")


TABLE: Table[Cluster] = Table(
    group="clusters",
    resource="cluster",
    identity=IDENTITY,
    items=_items,
    families=(
        Info(
            "cce_cluster_info",
            "Static properties of a CCE cluster.",
            ("type", "flavor", "version", "container_network_mode"),
            lambda c: (c.spec.type, c.spec.flavor, c.spec.version, c.spec.container_network.mode),
        ),
        StateSet(
            "cce_cluster_status_phase",
            "Current phase of the cluster (1 for the current phase, 0 for the others).",
            "phase",
            CLUSTER_PHASES,
            lambda c: c.phase,
        ),
        Gauge(
            "cce_cluster_status_phase_since_timestamp_seconds",
            "When the exporter first saw the cluster's current phase (Unix time).",
            lambda c, ctx: ctx.since(f"cluster/{c.id}"),
        ),
        Gauge(
            "cce_cluster_created_timestamp_seconds",
            "Creation time of the cluster (Unix time).",
            lambda c, ctx: epoch(c.metadata.creation_timestamp),
        ),
        Gauge(
            "cce_cluster_nodes",
            "Nodes in the cluster (totalNodesNumber, or counted from the node list).",
            _nodes,
        ),
        Gauge(
            "cce_cluster_nodes_active",
            "Nodes of the cluster in phase Active (activeNodesNumber, or counted).",
            _nodes_active,
        ),
        Gauge(
            "cce_cluster_max_nodes",
            "Node limit of the cluster's flavor.",
            lambda c, ctx: c.max_nodes,
        ),
    ),
)
