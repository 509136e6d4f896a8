"""Node metrics: identity = the cluster's labels + ``node_id``, ``node``.

Only nodes of clusters still in the target's cluster list are emitted: a deleted cluster's last
node list must not linger. Sample exposition::

    cce_node_info{project_id="p1",cluster_id="4d1e...",cluster="mycluster",node_id="4d1e...",
        node="myhost",flavor="s1.medium",az="az1.dc1",os="EulerOS 2.2",
        nodepool_id="az1.dc1#s1.medium#EulerOS 2.2",private_ip="192.168.1.23"} 1
    cce_node_status_phase{...,node="myhost",phase="Active"} 1
    cce_node_status_phase_since_timestamp_seconds{...} 1.7e+09
    cce_node_created_timestamp_seconds{...} 1533195444.005071
    cce_node_status_last_probe_timestamp_seconds{...} 1.7e+09
    cce_node_configuration_up_to_date{...} 1

``lastProbeTime`` and ``configurationUpToDate`` are today's API (the SDK's ``NodeStatus``): a
status probed more than five minutes ago means nothing, and a node not up to date no longer
matches its pool's template (its OS or runtime changed since). Both are omitted where not given.
"""

from __future__ import annotations

from exporter.cce.models import NODE_PHASES, NodeLike
from exporter.metrics.clusters import IDENTITY as CLUSTER_IDENTITY
from exporter.metrics.clusters import per_cluster_items
from exporter.metrics.spec import Gauge, Info, StateSet, Table

__all__ = ["TABLE"]


TABLE: Table[NodeLike] = Table(
    group="nodes",
    resource="node",
    identity=(*CLUSTER_IDENTITY, "node_id", "node"),
    items=per_cluster_items(lambda target: target.nodes, "node_id", "node"),
    families=(
        Info(
            "cce_node_info",
            "Static properties of a cluster node.",
            ("flavor", "az", "os", "nodepool_id", "private_ip"),
            lambda n: (n.flavor, n.az, n.os, n.nodepool_id, n.private_ip),
        ),
        StateSet(
            "cce_node_status_phase",
            "Current phase of the node (1 for the current phase, 0 for the others).",
            "phase",
            NODE_PHASES,
            lambda n: n.phase,
        ),
        Gauge(
            "cce_node_status_phase_since_timestamp_seconds",
            "When the exporter first saw the node's current phase (Unix time).",
            lambda n, ctx: ctx.since(f"node/{n.id}"),
        ),
        Gauge(
            "cce_node_created_timestamp_seconds",
            "Creation time of the node (Unix time).",
            lambda n, ctx: n.created,
        ),
        Gauge(
            "cce_node_status_last_probe_timestamp_seconds",
            "When CCE last checked the node's status (status.lastProbeTime, Unix time); a "
            "status older than five minutes means nothing.",
            lambda n, ctx: n.last_probe,
        ),
        Gauge(
            "cce_node_configuration_up_to_date",
            "1 if the node matches its pool's current template (status.configurationUpToDate), "
            "else 0; where given.",
            lambda n, ctx: n.configuration_up_to_date,
        ),
    ),
)
