"""CCE / Overview: every cluster, node, quota and alert at a glance."""

from __future__ import annotations

from pathlib import Path

import yaml

from dashboards.board import (
    CLUSTER_VARIABLES,
    Board,
    board,
)
from dashboards.kit import (
    CLUSTER,
    PROJECT,
    cluster_phase_timeline,
    colour_overrides,
    count_or_zero,
    firing,
    hibernation_actual,
    share_gauge,
    stat,
    state_column,
    state_timeline,
    table,
    target,
    timeseries,
)
from dashboards.phases import (
    CERTIFICATE_REASONS,
    CLUSTER_PHASES,
    HIBERNATION_STATES,
    NODE_PHASES,
)

SEVERITIES = {"critical": "red", "warning": "orange"}
THRESHOLDS = Path(__file__).resolve().parent.parent / "alerts" / "thresholds.yaml"


def _scale_blocking() -> str:
    """Node-pool conditions that stop scale-ups: those of the CCENodePoolScaleBlocked alert."""
    config = yaml.safe_load(THRESHOLDS.read_text(encoding="utf-8"))
    return "|".join(config["alerts"]["CCENodePoolScaleBlocked"]["conditions"])


SCALE_BLOCKING = _scale_blocking()

# Firing CCE alerts of the selected projects and clusters. Not every alert has those labels:
# exporter alerts may have no project_id (CCEExporterDown, CCEExporterShardsInconsistent), quota
# alerts no cluster, job alerts a cluster_id but no cluster name. So the project matcher also
# accepts an empty label (`|`: Prometheus anchors the regex, and a missing label is empty), and
# the cluster filter goes through cce_cluster_info by cluster_id: it drops only alerts of a known
# cluster that is not selected. Alerts without a cluster_id always stay, and with every cluster
# selected (or no cce_cluster_info at all, e.g. the exporter is down) nothing is dropped.
FIRING_ALERTS = (
    'ALERTS{alertname=~"CCE.*", alertstate="firing", project_id=~"$project|"}\n'
    "unless on(cluster_id)\n"
    "(\n"
    "  cce_cluster_info\n"
    f"  unless on(cluster_id) cce_cluster_info{{{CLUSTER}}}\n"
    ")"
)
FIRING_ALERTS_DESCRIPTION = (
    "Firing CCE* alerts of the selected projects and clusters. Alerts of no project (exporter "
    "down, shards) always show; alerts of a project but no cluster (quotas, collection) show "
    "whichever clusters are selected."
)


def overview() -> Board:
    return board(
        "cce-overview",
        "CCE / Overview",
        "All CCE clusters, nodes, quotas and alerts.",
        CLUSTER_VARIABLES,
        (
            _overview_summary,
            _overview_capacity,
            _overview_attention,
            _overview_freshness,
            _overview_alerts,
        ),
    )


def _overview_summary(d: Board) -> None:
    """Counts and the phase of every cluster."""
    d.add(
        stat(
            "Clusters",
            [target(f"count(cce_cluster_info{{{CLUSTER}}})", "clusters")],
            color_mode="none",
        ),
        4,
        4,
    )
    d.add(
        stat(
            "Clusters by phase",
            [
                target(
                    f"count by (phase) (cce_cluster_status_phase{{{CLUSTER}}} == 1)",
                    "{{phase}}",
                )
            ],
            description="Number of clusters in each phase.",
            overrides=colour_overrides(CLUSTER_PHASES),
            color="text",
        ),
        10,
        4,
    )
    d.add(
        stat(
            "Nodes",
            [
                target(f"sum(cce_cluster_nodes{{{CLUSTER}}})", "total"),
                target(f"sum(cce_cluster_nodes_active{{{CLUSTER}}})", "active"),
            ],
            color_mode="none",
        ),
        5,
        4,
    )
    d.add(
        stat(
            "Firing CCE alerts",
            [
                target(
                    count_or_zero(f"\n{FIRING_ALERTS}\n"),
                    "alerts",
                )
            ],
            description=FIRING_ALERTS_DESCRIPTION,
            thresholds=firing(),
        ),
        5,
        4,
    )
    d.add(
        cluster_phase_timeline("Cluster phase", description="Phase of every cluster over time."),
        24,
        8,
    )


def _overview_capacity(d: Board) -> None:
    """Nodes, node pools, flavor limits and quotas."""
    d.row("Nodes and node pools")
    d.add(
        timeseries(
            "Nodes by phase",
            [
                target(
                    f"count by (phase) (cce_node_status_phase{{{CLUSTER}}} == 1)",
                    "{{phase}}",
                )
            ],
            stack=True,
            overrides=colour_overrides(NODE_PHASES),
        ),
        12,
        8,
    )
    d.add(
        share_gauge(
            "Node pools: current vs autoscaling max",
            # Pools without autoscaling report a maxNodeCount too; it bounds nothing.
            f"(\n  cce_nodepool_nodes{{{CLUSTER}}}\n  / (cce_nodepool_autoscaling_max_nodes"
            f"{{{CLUSTER}}} > 0)\n)\nand (cce_nodepool_autoscaling_enabled{{{CLUSTER}}} == 1)",
            "{{cluster}} / {{nodepool}}",
            description="Nodes of each autoscaling node pool as a share of its maximum.",
        ),
        12,
        8,
    )
    d.add(
        share_gauge(
            "Cluster size vs flavor limit",
            f"cce_cluster_nodes{{{CLUSTER}}} / (cce_cluster_max_nodes{{{CLUSTER}}} > 0)",
            "{{cluster}}",
        ),
        12,
        8,
    )
    d.add(
        share_gauge(
            "Quota usage",
            f"cce_quota_used{{{PROJECT}}} / (cce_quota_limit{{{PROJECT}}} > 0)",
            "{{project_id}} {{resource}}",
            description="Used / limit of every CCE quota (unlimited quotas are left out).",
        ),
        12,
        8,
    )


def _overview_attention(d: Board) -> None:
    """Certificates, locks and pools that need someone."""
    d.row("Certificates, locks, pool conditions and upgrades")
    d.add(
        table(
            "Certificates and locks needing attention",
            [
                (
                    None,
                    f'cce_cluster_status_condition_reason{{{CLUSTER}, reason=~"CertificateExpiring'
                    'Within.*|CertificateExpired|RotationFailed"} == 1',
                ),
            ],
            description="Clusters whose certificate expires within 180 or 30 days, has expired, or "
            "failed to rotate (status.conditions).",
            hide=["project_id"],
            order=["cluster", "condition", "reason"],
            columns={"reason": state_column(CERTIFICATE_REASONS)},
        ),
        12,
        7,
    )
    d.add(
        table(
            "Locked clusters",
            [(None, f"cce_cluster_locked{{{CLUSTER}}} == 1")],
            description="Clusters billing has locked (status.isLocked), with scene and source.",
            hide=["project_id"],
            order=["cluster", "lock_scene", "lock_source"],
        ),
        12,
        7,
    )
    d.add(
        table(
            "Node pools that cannot scale up",
            [
                (
                    None,
                    f'cce_nodepool_status_condition{{{CLUSTER}, condition=~"{SCALE_BLOCKING}", '
                    'status="true"} == 1',
                ),
            ],
            description="Pool conditions that stop scale-ups (today's replacement of SoldOut).",
            hide=["project_id", "status"],
            order=["cluster", "nodepool", "condition"],
        ),
        12,
        7,
    )
    d.add(
        timeseries(
            "Pool nodes by state",
            [
                target(
                    f"sum by (state) (cce_nodepool_status_nodes{{{CLUSTER}}})",
                    "{{state}}",
                )
            ],
            description="Nodes of every pool by state (status.activeNode, creatingNode, ...).",
            stack=True,
        ),
        12,
        7,
    )


def _overview_freshness(d: Board) -> None:
    """Upgrades, stale or outdated nodes, control-plane zones."""
    d.add(
        stat(
            "Upgrades available",
            [
                target(
                    count_or_zero(f"cce_cluster_upgrade_available{{{CLUSTER}}} == 1"),
                    "clusters",
                ),
                target(
                    count_or_zero(f"cce_addon_upgrade_available{{{CLUSTER}}} == 1"),
                    "add-ons",
                ),
            ],
            description="Clusters and add-ons that can be upgraded (checked hourly).",
            color_mode="none",
        ),
        6,
        4,
    )
    d.add(
        stat(
            "Nodes with a stale status",
            [
                target(
                    count_or_zero(
                        f"time() - cce_node_status_last_probe_timestamp_seconds{{{CLUSTER}}} > 600"
                    ),
                    "nodes",
                )
            ],
            description="Nodes CCE has not probed for 10 minutes (status.lastProbeTime).",
            thresholds=firing("orange"),
        ),
        6,
        4,
    )
    d.add(
        stat(
            "Nodes behind their pool's template",
            [
                target(
                    count_or_zero(f"cce_node_configuration_up_to_date{{{CLUSTER}}} == 0"),
                    "nodes",
                )
            ],
            description="Nodes whose OS or runtime no longer match their pool's (reset them).",
            thresholds=firing("yellow"),
        ),
        6,
        4,
    )
    d.add(
        stat(
            "Control-plane zones",
            [
                target(
                    f"count by (az) (cce_cluster_control_plane_az_info{{{CLUSTER}}})",
                    "{{az}}",
                )
            ],
            description="Clusters with a control-plane node in each availability zone.",
            color_mode="none",
        ),
        6,
        4,
    )


def _overview_alerts(d: Board) -> None:
    """Firing alerts and hibernation."""
    d.row("Alerts and hibernation")
    d.add(
        table(
            "Firing CCE alerts",
            [(None, FIRING_ALERTS)],
            description=FIRING_ALERTS_DESCRIPTION,
            hide=["alertstate"],
            order=["alertname", "severity", "cluster", "project_id"],
            columns={"severity": state_column(SEVERITIES)},
        ),
        24,
        8,
    )
    d.add(
        state_timeline(
            "Hibernation state",
            [target(hibernation_actual(CLUSTER), "{{cluster}}")],
            HIBERNATION_STATES,
            description="Awake, in transition (hibernating or awaking) or hibernated.",
        ),
        24,
        8,
    )
