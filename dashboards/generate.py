"""Render the CCE Grafana dashboards (dashboards/*.json) from Python, with grafana-foundation-sdk.

Usage::

    python -m dashboards.generate            # rewrite dashboards/*.json
    python -m dashboards.generate --check    # exit 1 when a committed dashboard drifted
    python -m dashboards.generate --output DIR

Every panel and query uses the ``${datasource}`` variable (no data source UID is hard-coded), so the
files import as they are and work with Grafana's file provisioning
(dashboards/provisioning/dashboards.yaml). Dashboards link to each other through the ``cce`` tag.
The panel shapes and the shared dashboard settings are in dashboards/kit.py; the phases and
statuses shown are the models' (exporter/cce/models.py), never a list of this module's own.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards.kit import (
    CLUSTER,
    EXPORTER,
    PROJECT,
    Board,
    bargauge,
    bars,
    colour_overrides,
    coloured,
    column,
    firing,
    hibernation_actual,
    percent,
    phase_code,
    stat,
    state_column,
    state_set,
    state_timeline,
    steps,
    table,
    target,
    text,
    timeseries,
    value_mapping,
    with_cluster_name,
)
from exporter.cce import models

OUT_DIR = Path(__file__).resolve().parent
THRESHOLDS = OUT_DIR.parent / "alerts" / "thresholds.yaml"

# Phases and statuses as the exporter exports them (the models' values, then "unknown"); the
# order is the code phase_code() gives them.
CLUSTER_PHASES = state_set(models.CLUSTER_PHASES)
NODE_PHASES = state_set(models.NODE_PHASES)
NODEPOOL_PHASES = state_set(models.NODEPOOL_PHASES)
ADDON_STATUSES = state_set(models.ADDON_STATUSES)
JOB_PHASES = state_set(models.JOB_PHASES)
#: Certificate stages and rotation outcomes (the SDK's ClusterCondition reasons), as coloured cells.
CERTIFICATE_REASONS = coloured(models.CLUSTER_CONDITION_REASONS)
#: The dashboards' own codes of hibernation_actual() (0, 1, 2), not phases.
HIBERNATION_STATES = {"Awake": "green", "Transition": "purple", "Hibernated": "dark-purple"}
SEVERITIES = {"critical": "red", "warning": "orange"}


def _scale_blocking() -> str:
    """Node-pool conditions that stop scale-ups: those of the CCENodePoolScaleBlocked alert."""
    config = yaml.safe_load(THRESHOLDS.read_text(encoding="utf-8"))
    return "|".join(config["alerts"]["CCENodePoolScaleBlocked"]["conditions"])


SCALE_BLOCKING = _scale_blocking()
INSTANCE = 'instance=~"$instance"'

KUBE = 'project_id=~"$project", cluster=~"$cluster", namespace=~"$namespace"'
KUBE_JOB = "project_id, cluster_id, namespace, job_name"
KUBE_QUOTA_RATIO = (
    f'cce_kube_resourcequota{{{KUBE}, type="used"}}\n  / ignoring(type)\n'
    f'  (cce_kube_resourcequota{{{KUBE}, type="hard"}} > 0)'
)
KUBE_FAILED = f'(cce_kube_job_status_condition{{{KUBE}, condition="Failed", status="true"}} == 1)'
KUBE_RUNNING = f"(cce_kube_job_status_active{{{KUBE}}} > 0)"


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
    d = Board("cce-overview", "CCE / Overview", "All CCE clusters, nodes, quotas and alerts.")
    d.cluster_variables()
    _overview_summary(d)
    _overview_capacity(d)
    _overview_attention(d)
    _overview_freshness(d)
    _overview_alerts(d)
    return d


def _overview_summary(d: Board) -> None:
    """Counts and the phase of every cluster."""
    d.add(
        stat(
            "Clusters",
            [target(f"count(cce_cluster_info{{{CLUSTER}}})", "clusters", instant=True)],
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
                    instant=True,
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
                target(f"sum(cce_cluster_nodes{{{CLUSTER}}})", "total", instant=True),
                target(f"sum(cce_cluster_nodes_active{{{CLUSTER}}})", "active", instant=True),
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
                    f"count(\n{FIRING_ALERTS}\n) or vector(0)",
                    "alerts",
                    instant=True,
                )
            ],
            description=FIRING_ALERTS_DESCRIPTION,
            thresholds=firing(),
        ),
        5,
        4,
    )
    d.add(
        state_timeline(
            "Cluster phase",
            [
                target(
                    phase_code("cce_cluster_status_phase", "phase", list(CLUSTER_PHASES), CLUSTER),
                    "{{cluster}}",
                )
            ],
            CLUSTER_PHASES,
            description="Phase of every cluster over time.",
        ),
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
        bargauge(
            "Node pools: current vs autoscaling max",
            [
                target(
                    # Pools without autoscaling report a maxNodeCount too; it bounds nothing.
                    f"(\n  cce_nodepool_nodes{{{CLUSTER}}}\n  / (cce_nodepool_autoscaling_max_nodes"
                    f"{{{CLUSTER}}} > 0)\n)\nand (cce_nodepool_autoscaling_enabled{{{CLUSTER}}}"
                    " == 1)",
                    "{{cluster}} / {{nodepool}}",
                    instant=True,
                )
            ],
            description="Nodes of each autoscaling node pool as a share of its maximum.",
            unit="percentunit",
            thresholds=percent(),
            minmax=(0, 1),
        ),
        12,
        8,
    )
    d.add(
        bargauge(
            "Cluster size vs flavor limit",
            [
                target(
                    f"cce_cluster_nodes{{{CLUSTER}}} / (cce_cluster_max_nodes{{{CLUSTER}}} > 0)",
                    "{{cluster}}",
                    instant=True,
                )
            ],
            unit="percentunit",
            thresholds=percent(),
            minmax=(0, 1),
        ),
        12,
        8,
    )
    d.add(
        bargauge(
            "Quota usage",
            [
                target(
                    f"cce_quota_used{{{PROJECT}}} / (cce_quota_limit{{{PROJECT}}} > 0)",
                    "{{project_id}} {{resource}}",
                    instant=True,
                )
            ],
            description="Used / limit of every CCE quota (unlimited quotas are left out).",
            unit="percentunit",
            thresholds=percent(),
            minmax=(0, 1),
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
                target(
                    f'cce_cluster_status_condition_reason{{{CLUSTER}, reason=~"CertificateExpiring'
                    'Within.*|CertificateExpired|RotationFailed"} == 1'
                ),
            ],
            description=(
                "Clusters whose certificate expires within 180 or 30 days, has expired, or "
                "failed to rotate (status.conditions)."
            ),
            hide=["Value", "project_id"],
            order=["cluster", "condition", "reason"],
            columns={"reason": state_column(CERTIFICATE_REASONS)},
        ),
        12,
        7,
    )
    d.add(
        table(
            "Locked clusters",
            [target(f"cce_cluster_locked{{{CLUSTER}}} == 1")],
            description="Clusters billing has locked (status.isLocked), with scene and source.",
            hide=["Value", "project_id"],
            order=["cluster", "lock_scene", "lock_source"],
        ),
        12,
        7,
    )
    d.add(
        table(
            "Node pools that cannot scale up",
            [
                target(
                    f'cce_nodepool_status_condition{{{CLUSTER}, condition=~"{SCALE_BLOCKING}", '
                    'status="true"} == 1'
                )
            ],
            description="Pool conditions that stop scale-ups (today's replacement of SoldOut).",
            hide=["Value", "project_id", "status"],
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
                    f"count(cce_cluster_upgrade_available{{{CLUSTER}}} == 1) or vector(0)",
                    "clusters",
                    instant=True,
                ),
                target(
                    f"count(cce_addon_upgrade_available{{{CLUSTER}}} == 1) or vector(0)",
                    "add-ons",
                    instant=True,
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
                    f"count(time() - cce_node_status_last_probe_timestamp_seconds{{{CLUSTER}}}"
                    " > 600) or vector(0)",
                    "nodes",
                    instant=True,
                )
            ],
            description="Nodes CCE has not probed for 10 minutes (status.lastProbeTime).",
            thresholds=steps(("green", None), ("orange", 1)),
        ),
        6,
        4,
    )
    d.add(
        stat(
            "Nodes behind their pool's template",
            [
                target(
                    f"count(cce_node_configuration_up_to_date{{{CLUSTER}}} == 0) or vector(0)",
                    "nodes",
                    instant=True,
                )
            ],
            description="Nodes whose OS or runtime no longer match their pool's (reset them).",
            thresholds=steps(("green", None), ("yellow", 1)),
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
                    instant=True,
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
            [target(FIRING_ALERTS)],
            description=FIRING_ALERTS_DESCRIPTION,
            hide=["Value", "alertstate"],
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


def cluster() -> Board:
    d = Board("cce-cluster", "CCE / Cluster", "One cluster: phase, nodes, pools, add-ons, jobs.")
    d.cluster_variables()
    _cluster_summary(d)
    _cluster_nodes(d)
    _cluster_pools(d)
    _cluster_conditions(d)
    _cluster_counts(d)
    _cluster_jobs(d)
    return d


def _cluster_summary(d: Board) -> None:
    """The cluster and its phase history."""
    d.add(
        table(
            "Cluster",
            [
                target(f"cce_cluster_info{{{CLUSTER}}}"),
                target(f"cce_cluster_status_phase{{{CLUSTER}}} == 1"),
                target(f"time() - cce_cluster_status_phase_since_timestamp_seconds{{{CLUSTER}}}"),
                target(f"cce_cluster_created_timestamp_seconds{{{CLUSTER}}} * 1000"),
                target(f"cce_cluster_nodes{{{CLUSTER}}}"),
                target(f"cce_cluster_nodes_active{{{CLUSTER}}}"),
                target(f"cce_cluster_max_nodes{{{CLUSTER}}}"),
            ],
            hide=["Value #A", "Value #B", "project_id"],
            rename={
                "Value #C": "Time in phase",
                "Value #D": "Created",
                "Value #E": "Nodes",
                "Value #F": "Active",
                "Value #G": "Max nodes",
            },
            order=["cluster", "cluster_id", "phase", "Time in phase", "version", "flavor"],
            columns={
                "phase": state_column(CLUSTER_PHASES),
                "Time in phase": column(unit="s"),
                "Created": column(unit="dateTimeAsIso"),
            },
        ),
        24,
        5,
    )
    d.add(
        state_timeline(
            "Phase history",
            [
                target(
                    phase_code("cce_cluster_status_phase", "phase", list(CLUSTER_PHASES), CLUSTER),
                    "{{cluster}}",
                )
            ],
            CLUSTER_PHASES,
        ),
        24,
        5,
    )


def _cluster_nodes(d: Board) -> None:
    """Nodes by phase, and each node."""
    d.row("Nodes")
    d.add(
        timeseries(
            "Nodes by phase",
            [
                target(
                    f"count by (cluster, phase) (cce_node_status_phase{{{CLUSTER}}} == 1)",
                    "{{cluster}} {{phase}}",
                ),
                target(f"cce_cluster_max_nodes{{{CLUSTER}}}", "{{cluster}} limit"),
            ],
            stack=False,
        ),
        8,
        9,
    )
    d.add(
        table(
            "Nodes",
            [
                target(f"cce_node_info{{{CLUSTER}}}"),
                target(f"cce_node_status_phase{{{CLUSTER}}} == 1"),
                target(f"time() - cce_node_status_phase_since_timestamp_seconds{{{CLUSTER}}}"),
                target(f"time() - cce_node_created_timestamp_seconds{{{CLUSTER}}}"),
            ],
            hide=["Value #A", "Value #B", "project_id", "cluster_id"],
            rename={"Value #C": "Time in phase", "Value #D": "Age"},
            order=["cluster", "node", "node_id", "phase", "Time in phase", "flavor", "az"],
            columns={
                "phase": state_column(NODE_PHASES),
                "Time in phase": column(unit="s"),
                "Age": column(unit="s"),
            },
            sort_by="Time in phase",
        ),
        16,
        9,
    )


def _cluster_pools(d: Board) -> None:
    """Node pools and add-ons."""
    d.row("Node pools and add-ons")
    d.add(
        table(
            "Node pools",
            [
                target(f"cce_nodepool_info{{{CLUSTER}}}"),
                target(f"cce_nodepool_status_phase{{{CLUSTER}}} == 1"),
                target(f"cce_nodepool_nodes{{{CLUSTER}}}"),
                target(f"cce_nodepool_initial_nodes{{{CLUSTER}}}"),
                target(f"cce_nodepool_autoscaling_enabled{{{CLUSTER}}}"),
                target(f"cce_nodepool_autoscaling_min_nodes{{{CLUSTER}}}"),
                target(f"cce_nodepool_autoscaling_max_nodes{{{CLUSTER}}}"),
            ],
            hide=["Value #A", "Value #B", "project_id", "cluster_id"],
            rename={
                "Value #C": "Nodes",
                "Value #D": "Initial",
                "Value #E": "Autoscaling",
                "Value #F": "Min",
                "Value #G": "Max",
            },
            order=["cluster", "nodepool", "phase", "Nodes", "Min", "Max", "Autoscaling"],
            columns={
                "phase": state_column(NODEPOOL_PHASES),
                "Autoscaling": column(
                    mappings=[value_mapping({"0": ("off", None), "1": ("on", "green")})]
                ),
            },
        ),
        12,
        8,
    )
    d.add(
        table(
            "Add-ons",
            [
                target(f"cce_addon_info{{{CLUSTER}}}"),
                target(f"cce_addon_status{{{CLUSTER}}} == 1"),
            ],
            hide=["Value #A", "Value #B", "project_id", "cluster_id"],
            order=["cluster", "addon", "status", "version"],
            columns={"status": state_column(ADDON_STATUSES)},
        ),
        12,
        8,
    )


def _cluster_conditions(d: Board) -> None:
    """Conditions of the cluster and its pools, lock, zones and upgrades."""
    d.row("Conditions, node counts and upgrades")
    d.add(
        table(
            "Cluster conditions",
            [
                target(f"cce_cluster_status_condition{{{CLUSTER}}} == 1"),
                target(f"cce_cluster_status_condition_reason{{{CLUSTER}}}"),
            ],
            description="status.conditions: certificate, rotation, agency (true/false/unknown).",
            hide=["Value #A", "Value #B", "project_id", "cluster_id"],
            order=["cluster", "condition", "status", "reason"],
            columns={"reason": state_column(CERTIFICATE_REASONS)},
        ),
        12,
        7,
    )
    d.add(
        table(
            "Lock, zones and upgrades",
            [
                target(f"cce_cluster_locked{{{CLUSTER}}}"),
                target(f"cce_cluster_upgrade_available{{{CLUSTER}}}"),
                target(f"cce_cluster_upgrade_target_info{{{CLUSTER}}}"),
                target(f"cce_cluster_control_plane_az_info{{{CLUSTER}}}"),
            ],
            description="Billing lock, upgrade offered (hourly) with its target versions, and "
            "the control plane's zones.",
            hide=["Value #C", "Value #D", "project_id", "cluster_id"],
            rename={"Value #A": "Locked", "Value #B": "Upgrade available"},
            order=["cluster", "Locked", "Upgrade available", "target_version", "az"],
        ),
        12,
        7,
    )
    d.add(
        table(
            "Node pool conditions",
            [
                target(f"cce_nodepool_status_condition{{{CLUSTER}}} == 1"),
                target(f"cce_nodepool_status_condition_reason{{{CLUSTER}}}"),
            ],
            description="Scalable, QuotaInsufficient, ResourceInsufficient, LockedByOrder...",
            hide=["Value #A", "Value #B", "project_id", "cluster_id", "nodepool_id"],
            order=["cluster", "nodepool", "condition", "status", "reason"],
        ),
        12,
        7,
    )


def _cluster_counts(d: Board) -> None:
    """Pool node counts and node freshness."""
    d.add(
        bars(
            "Pool nodes by state",
            [
                target(
                    f"cce_nodepool_status_nodes{{{CLUSTER}}}",
                    "{{nodepool}} {{state}}",
                    instant=True,
                ),
                target(
                    f"cce_nodepool_status_configuration_synced_nodes{{{CLUSTER}}}",
                    "{{nodepool}} synced",
                    instant=True,
                ),
                target(
                    f"cce_nodepool_scalegroup_nodes{{{CLUSTER}}}",
                    "{{nodepool}}/{{scalegroup}} {{state}}",
                    instant=True,
                ),
            ],
            description="Pool counts by node state, nodes synced with the pool's configuration, "
            "and each scale group's desired, existing and upcoming nodes.",
        ),
        12,
        7,
    )
    d.add(
        table(
            "Node freshness",
            [
                target(f"time() - cce_node_status_last_probe_timestamp_seconds{{{CLUSTER}}}"),
                target(f"cce_node_configuration_up_to_date{{{CLUSTER}}}"),
                target(f"cce_addon_upgrade_available{{{CLUSTER}}} == 1"),
            ],
            description="Seconds since CCE last probed each node, whether it matches its "
            "pool's template, and the add-ons that can be upgraded.",
            hide=["Value #C", "project_id", "cluster_id", "node_id", "addon_id"],
            rename={"Value #A": "Last probe age", "Value #B": "Up to date"},
            order=["cluster", "node", "Last probe age", "Up to date", "addon"],
            columns={"Last probe age": column(unit="s")},
            sort_by="Last probe age",
        ),
        24,
        7,
    )


def _cluster_jobs(d: Board) -> None:
    """CCE jobs and their durations."""
    d.row("CCE jobs")
    d.add(
        table(
            "CCE jobs",
            [
                target(with_cluster_name(f"cce_job_info{{{PROJECT}}}")),
                target(with_cluster_name(f"cce_job_status_phase{{{PROJECT}}} == 1")),
                target(with_cluster_name(f"cce_job_duration_seconds{{{PROJECT}}}")),
                target(with_cluster_name(f"cce_job_created_timestamp_seconds{{{PROJECT}}} * 1000")),
                target(
                    with_cluster_name(f"cce_job_completion_timestamp_seconds{{{PROJECT}}} * 1000")
                ),
            ],
            hide=["Value #A", "Value #B", "project_id", "cluster_id"],
            rename={"Value #C": "Duration", "Value #D": "Started", "Value #E": "Finished"},
            order=["cluster", "job_id", "type", "resource", "phase", "Duration", "Started"],
            columns={
                "phase": state_column(JOB_PHASES),
                "Duration": column(unit="s"),
                "Started": column(unit="dateTimeAsIso"),
                "Finished": column(unit="dateTimeAsIso"),
            },
            sort_by="Started",
        ),
        16,
        9,
    )
    d.add(
        timeseries(
            "p95 job duration by type (all clusters, trailing hour)",
            [
                target(
                    # Jobs finish minutes or hours apart: over $__rate_interval the quantile
                    # would exist only for a moment after each one and draw nothing.
                    "histogram_quantile(0.95, sum by (le, type) "
                    "(increase(cce_job_completed_duration_seconds_bucket[1h])))",
                    "{{type}}",
                )
            ],
            description=(
                "95th percentile duration of the CCE jobs seen to finish in the trailing hour, "
                "by job type."
            ),
            unit="s",
        ),
        8,
        9,
    )


def hibernation() -> Board:
    d = Board(
        "cce-hibernation",
        "CCE / Hibernation & cost",
        "What the hibernation policies want, what the clusters do, and what it saves.",
    )
    d.cluster_variables()
    _hibernation_summary(d)
    _hibernation_states(d)
    _hibernation_schedule(d)
    _hibernation_actions(d)
    return d


def _hibernation_summary(d: Board) -> None:
    """Hours, savings, failures and governed clusters in the range."""
    d.add(
        stat(
            "Hibernated hours",
            [
                target(
                    f"sum(increase(cce_cluster_hibernated_seconds_total{{{CLUSTER}}}[$__range]))"
                    " / 3600",
                    "hours",
                    instant=True,
                )
            ],
            description="Cluster-hours spent in phase Hibernation in the selected time range.",
            unit="h",
            color_mode="none",
            decimals=1,
        ),
        6,
        4,
    )
    d.add(
        stat(
            "Estimated savings",
            [
                target(
                    "sum by (currency) (increase(cce_hibernation_estimated_savings_total"
                    f"{{{CLUSTER}}}[$__range]))",
                    "{{currency}}",
                    instant=True,
                )
            ],
            description="Hibernated hours times the configured control-plane price, in range.",
            color_mode="value",
            decimals=2,
        ),
        6,
        4,
    )
    d.add(
        stat(
            "Failed actions",
            [
                target(
                    "sum(increase(cce_hibernation_actions_total"
                    f'{{{CLUSTER}, result="failed"}}[$__range])) or vector(0)',
                    "failed",
                    instant=True,
                )
            ],
            thresholds=firing(),
            decimals=0,
        ),
        6,
        4,
    )
    d.add(
        stat(
            "Clusters under a policy",
            [
                target(
                    f"count(cce_hibernation_policy_info{{{CLUSTER}}})",
                    "clusters",
                    instant=True,
                )
            ],
            color_mode="none",
        ),
        6,
        4,
    )


def _hibernation_states(d: Board) -> None:
    """Desired against actual state."""
    desired = (
        "max by (project_id, cluster) "
        f'(cce_hibernation_desired_state{{{CLUSTER}, state="hibernated"}}) * 2'
    )
    d.add(
        state_timeline(
            "Desired vs actual state",
            [
                target(desired, "{{cluster}} desired"),
                target(hibernation_actual(CLUSTER), "{{cluster}} actual"),
            ],
            HIBERNATION_STATES,
            description="What the policy wants (desired) and the cluster's phase (actual).",
        ),
        24,
        10,
    )


def _hibernation_schedule(d: Board) -> None:
    """Next transitions, overrides and policies."""
    d.row("Schedule")
    d.add(
        table(
            "Next transitions",
            [target(f"cce_hibernation_next_transition_timestamp_seconds{{{CLUSTER}}} * 1000")],
            hide=["project_id", "cluster_id"],
            rename={"Value": "At"},
            order=["cluster", "action", "At"],
            columns={"At": column(unit="dateTimeAsIso")},
        ),
        8,
        8,
    )
    d.add(
        table(
            "Overrides in force",
            [target(f"cce_hibernation_override_until_timestamp_seconds{{{CLUSTER}}} * 1000")],
            hide=["project_id", "cluster_id"],
            rename={"Value": "Until"},
            order=["cluster", "state", "Until"],
            columns={"Until": column(unit="dateTimeAsIso")},
        ),
        8,
        8,
    )
    d.add(
        table(
            "Policies",
            [target(f"cce_hibernation_policy_info{{{CLUSTER}}}")],
            hide=["Value", "project_id", "cluster_id"],
            order=["cluster", "policy", "timezone", "dry_run"],
        ),
        8,
        8,
    )


def _hibernation_actions(d: Board) -> None:
    """Actions, their duration, and the savings by cluster."""
    d.row("Actions and savings")
    d.add(
        bars(
            "Actions by result",
            [
                target(
                    "sum by (action, result) (increase(cce_hibernation_actions_total"
                    f"{{{CLUSTER}}}[$__rate_interval]))",
                    "{{action}} {{result}}",
                )
            ],
            decimals=0,
        ),
        12,
        8,
    )
    d.add(
        timeseries(
            "Action duration (p95, trailing day)",
            [
                target(
                    # A few actions a day: a trailing day, or the line would be empty.
                    "histogram_quantile(0.95, sum by (le, action) "
                    "(increase(cce_hibernation_action_duration_seconds_bucket[1d])))",
                    "{{action}}",
                )
            ],
            description=(
                "From the API call until the cluster reached its target phase; 95th percentile "
                "of the actions of the trailing day."
            ),
            unit="s",
        ),
        12,
        8,
    )
    d.add(
        bargauge(
            "Hibernated hours by cluster",
            [
                target(
                    "sum by (cluster) (increase(cce_cluster_hibernated_seconds_total"
                    f"{{{CLUSTER}}}[$__range])) / 3600",
                    "{{cluster}}",
                    instant=True,
                )
            ],
            unit="h",
            decimals=1,
        ),
        12,
        8,
    )
    d.add(
        bargauge(
            "Estimated savings by cluster",
            [
                target(
                    "sum by (cluster, currency) (increase(cce_hibernation_estimated_savings_total"
                    f"{{{CLUSTER}}}[$__range]))",
                    "{{cluster}} ({{currency}})",
                    instant=True,
                )
            ],
            decimals=2,
        ),
        12,
        8,
    )


def exporter() -> Board:
    d = Board("cce-exporter", "CCE / Exporter", "The exporter's own health: collections, API.")
    d.variable("instance", "Instance", "label_values(cce_exporter_build_info, instance)")
    d.variable("project", "Project", "label_values(cce_exporter_collect_success, project_id)")
    _exporter_summary(d)
    _exporter_collections(d)
    _exporter_requests(d)
    _exporter_latency(d)
    return d


def _exporter_summary(d: Board) -> None:
    """Exporters, failing collections, oldest data."""
    d.add(
        table(
            "Exporters",
            [
                target(f"cce_exporter_build_info{{{INSTANCE}}}"),
                target(f"cce_exporter_shard_ordinal{{{INSTANCE}}}"),
                target(f"cce_exporter_total_shards{{{INSTANCE}}}"),
            ],
            hide=["Value #A"],
            rename={"Value #B": "Shard", "Value #C": "Shards"},
            order=["instance", "version", "python_version", "Shard", "Shards"],
        ),
        12,
        5,
    )
    d.add(
        stat(
            "Failing collections",
            [
                target(
                    f"count(cce_exporter_collect_success{{{EXPORTER}}} == 0) or vector(0)",
                    "failing",
                    instant=True,
                )
            ],
            thresholds=firing(),
        ),
        6,
        5,
    )
    d.add(
        stat(
            "Oldest data",
            [
                target(
                    f"max(time() - cce_exporter_last_success_timestamp_seconds{{{EXPORTER}}})",
                    "age",
                    instant=True,
                )
            ],
            unit="s",
            thresholds=steps(("green", None), ("yellow", 180), ("red", 900)),
        ),
        6,
        5,
    )


def _exporter_collections(d: Board) -> None:
    """Success, duration and age of each collection."""
    d.row("Collections")
    d.add(
        state_timeline(
            "Collection success",
            [
                target(
                    f"min by (project_id, resource) (cce_exporter_collect_success{{{EXPORTER}}})",
                    "{{project_id}} {{resource}}",
                )
            ],
            {"failed": "red", "ok": "green"},
        ),
        12,
        8,
    )
    d.add(
        timeseries(
            "Collection duration",
            [
                target(
                    f"max by (project_id, resource) "
                    f"(cce_exporter_collect_duration_seconds{{{EXPORTER}}})",
                    "{{project_id}} {{resource}}",
                )
            ],
            unit="s",
        ),
        12,
        8,
    )
    d.add(
        timeseries(
            "Data age",
            [
                target(
                    "max by (project_id, resource) "
                    f"(time() - cce_exporter_last_success_timestamp_seconds{{{EXPORTER}}})",
                    "{{project_id}} {{resource}}",
                )
            ],
            description="Time since the last successful collection; alerts fire at 3 intervals.",
            unit="s",
            thresholds=steps(("green", None), ("red", 900)),
        ),
        24,
        8,
    )


def _exporter_requests(d: Board) -> None:
    """API requests by code and endpoint."""
    d.row("CCE API")
    d.add(
        timeseries(
            "API requests by code",
            [
                target(
                    "sum by (code) (rate(cce_exporter_api_requests_total"
                    f"{{{INSTANCE}}}[$__rate_interval]))",
                    "{{code}}",
                )
            ],
            stack=True,
            unit="reqps",
        ),
        12,
        8,
    )
    d.add(
        timeseries(
            "API requests by endpoint",
            [
                target(
                    "sum by (method, endpoint) (rate(cce_exporter_api_requests_total"
                    f"{{{INSTANCE}}}[$__rate_interval]))",
                    "{{method}} {{endpoint}}",
                )
            ],
            unit="reqps",
        ),
        12,
        8,
    )


def _exporter_latency(d: Board) -> None:
    """Latency, retries and credential refreshes."""
    d.add(
        timeseries(
            "Request latency",
            [
                target(
                    f"histogram_quantile({q}, sum by (le) (rate("
                    f"cce_exporter_api_request_duration_seconds_bucket{{{INSTANCE}}}"
                    "[$__rate_interval])))",
                    f"p{round(q * 100)}",
                )
                for q in (0.5, 0.95, 0.99)
            ],
            unit="s",
        ),
        8,
        8,
    )
    d.add(
        timeseries(
            "p95 latency by endpoint",
            [
                target(
                    "histogram_quantile(0.95, sum by (le, method, endpoint) (rate("
                    f"cce_exporter_api_request_duration_seconds_bucket{{{INSTANCE}}}"
                    "[$__rate_interval])))",
                    "{{method}} {{endpoint}}",
                )
            ],
            unit="s",
        ),
        8,
        8,
    )
    d.add(
        bars(
            "Retries",
            [
                target(
                    "sum by (endpoint, reason) (increase(cce_exporter_api_retries_total"
                    f"{{{INSTANCE}}}[$__rate_interval]))",
                    "{{endpoint}} {{reason}}",
                )
            ],
            decimals=0,
        ),
        8,
        8,
    )
    d.add(
        bars(
            "Auth refreshes",
            [
                target(
                    "sum by (result) (increase(cce_exporter_auth_refreshes_total"
                    f"{{{INSTANCE}}}[$__rate_interval]))",
                    "{{result}}",
                )
            ],
            description="IAM token fetches; failures stop every collection.",
            decimals=0,
            overrides=colour_overrides({"failure": "red"}),
        ),
        12,
        8,
    )
    d.add(
        text(
            "About",
            "Self-metrics of cce-exporter. Alerts and runbooks: `docs/alerts.md`, "
            "`docs/runbooks.md`.",
        ),
        12,
        8,
    )


# --- CCE / Workloads: Kubernetes objects inside the clusters ------------------------------------


def workloads() -> Board:
    d = Board(
        "cce-workloads",
        "CCE / Workloads",
        "Kubernetes Jobs, CronJobs and ResourceQuotas inside the clusters, per cluster and "
        "namespace (collected through CCE when kubernetes.enabled is on).",
    )
    d.cluster_variables()
    d.variable(
        "namespace",
        "Namespace",
        'label_values(cce_kube_job_info{project_id=~"$project", cluster=~"$cluster"}, namespace)',
    )
    _workloads_summary(d)
    _workloads_failing_jobs(d)
    _workloads_job_pods(d)
    _workloads_cronjobs(d)
    _workloads_quotas(d)
    return d


def _workloads_summary(d: Board) -> None:
    """Failed, running and late work, and objects over the cap."""
    d.add(
        stat(
            "Failed Jobs",
            [target(f"count({KUBE_FAILED}) or vector(0)", "failed", instant=True)],
            thresholds=firing(),
        ),
        6,
        4,
    )
    d.add(
        stat(
            "Running Jobs",
            [target(f"count({KUBE_RUNNING}) or vector(0)", "running", instant=True)],
        ),
        6,
        4,
    )
    d.add(
        stat(
            "CronJobs behind schedule",
            [
                target(
                    f"count(\n  (time() - cce_kube_cronjob_status_last_schedule_time_seconds"
                    f"{{{KUBE}}})\n  > 1.5 * (cce_kube_cronjob_next_schedule_time_seconds"
                    f"{{{KUBE}}}\n  - cce_kube_cronjob_status_last_schedule_time_seconds"
                    f"{{{KUBE}}})\n  unless (cce_kube_cronjob_spec_suspend{{{KUBE}}} == 1)\n)"
                    " or vector(0)",
                    "behind",
                    instant=True,
                )
            ],
            description="Not suspended, and no schedule for 1.5 times the schedule's period.",
            thresholds=firing(),
        ),
        6,
        4,
    )
    d.add(
        stat(
            "Objects over the per-cluster cap",
            [
                target(
                    "sum(cce_exporter_kube_objects_dropped_total) or vector(0)",
                    "dropped",
                    instant=True,
                )
            ],
            description="Objects left out (counted at each collection) because a cluster had more "
            "than max_objects_per_cluster of a kind (all clusters).",
            thresholds=firing(),
        ),
        6,
        4,
    )


def _workloads_failing_jobs(d: Board) -> None:
    """Failed and long-running Jobs."""
    d.row("Jobs")
    d.add(
        table(
            "Failing Jobs",
            [
                target(f"cce_kube_job_status_failed{{{KUBE}}}\nand on({KUBE_JOB}) {KUBE_FAILED}"),
                target(
                    f"cce_kube_job_status_start_time_seconds{{{KUBE}}} * 1000\n"
                    f"and on({KUBE_JOB}) {KUBE_FAILED}"
                ),
                target(f"cce_kube_job_info{{{KUBE}}}\nand on({KUBE_JOB}) {KUBE_FAILED}"),
            ],
            hide=["project_id", "cluster_id", "Value #C"],
            rename={"Value #A": "Failed pods", "Value #B": "Started", "job_name": "Job"},
            order=["cluster", "namespace", "Job", "owner_kind", "owner_name", "Failed pods"],
            columns={"Started": column(unit="dateTimeAsIso")},
            description="Jobs whose condition Failed is true (backoff limit or deadline).",
        ),
        12,
        8,
    )
    d.add(
        table(
            "Long-running Jobs",
            [
                target(
                    f"time() - cce_kube_job_status_start_time_seconds{{{KUBE}}}\n"
                    f"and on({KUBE_JOB}) {KUBE_RUNNING}"
                ),
                target(
                    f"cce_kube_job_spec_active_deadline_seconds{{{KUBE}}}\n"
                    f"and on({KUBE_JOB}) {KUBE_RUNNING}"
                ),
            ],
            hide=["project_id", "cluster_id"],
            rename={"Value #A": "Running for", "Value #B": "Deadline", "job_name": "Job"},
            order=["cluster", "namespace", "Job", "Running for", "Deadline"],
            columns={
                "Running for": column(
                    unit="s",
                    thresholds=steps(("green", None), ("orange", 3600), ("red", 43200)),
                    cells="color-text",
                ),
                "Deadline": column(unit="s"),
            },
            sort_by="Running for",
            description="Jobs with active pods, longest first.",
        ),
        12,
        8,
    )


def _workloads_job_pods(d: Board) -> None:
    """Job pods and completed Jobs."""
    d.add(
        timeseries(
            "Active Job pods",
            [
                target(
                    f"sum by (cluster, namespace) (cce_kube_job_status_active{{{KUBE}}})",
                    "{{cluster}} / {{namespace}}",
                )
            ],
            stack=True,
        ),
        8,
        8,
    )
    d.add(
        timeseries(
            "Succeeded and failed Job pods",
            [
                target(
                    f"sum by (cluster, namespace) (cce_kube_job_status_succeeded{{{KUBE}}})",
                    "{{cluster}} / {{namespace}} succeeded",
                ),
                target(
                    f"sum by (cluster, namespace) (cce_kube_job_status_failed{{{KUBE}}})",
                    "{{cluster}} / {{namespace}} failed",
                ),
            ],
        ),
        8,
        8,
    )
    d.add(
        table(
            "Completed Jobs",
            [
                target(f"cce_kube_job_status_completion_time_seconds{{{KUBE}}} * 1000"),
                target(
                    f"cce_kube_job_status_completion_time_seconds{{{KUBE}}}\n"
                    f"- cce_kube_job_status_start_time_seconds{{{KUBE}}}"
                ),
            ],
            hide=["project_id", "cluster_id"],
            rename={"Value #A": "Completed", "Value #B": "Took", "job_name": "Job"},
            order=["cluster", "namespace", "Job", "Completed", "Took"],
            columns={"Completed": column(unit="dateTimeAsIso"), "Took": column(unit="s")},
            sort_by="Completed",
            description="Finished Jobs the exporter still reports (finished_job_retention).",
        ),
        8,
        8,
    )


def _workloads_cronjobs(d: Board) -> None:
    """CronJobs."""
    d.row("CronJobs")
    d.add(
        table(
            "CronJobs",
            [
                target(f"cce_kube_cronjob_info{{{KUBE}}}"),
                target(f"cce_kube_cronjob_spec_suspend{{{KUBE}}}"),
                target(f"time() - cce_kube_cronjob_status_last_schedule_time_seconds{{{KUBE}}}"),
                target(f"time() - cce_kube_cronjob_status_last_successful_time_seconds{{{KUBE}}}"),
                target(f"cce_kube_cronjob_next_schedule_time_seconds{{{KUBE}}} * 1000"),
            ],
            hide=["project_id", "cluster_id", "Value #A"],
            rename={
                "Value #B": "Suspended",
                "Value #C": "Since last schedule",
                "Value #D": "Since last success",
                "Value #E": "Next schedule",
            },
            order=[
                "cluster",
                "namespace",
                "cronjob",
                "schedule",
                "timezone",
                "Suspended",
                "Since last schedule",
                "Since last success",
                "Next schedule",
            ],
            columns={
                "Suspended": column(
                    mappings=[value_mapping({"0": ("no", "green"), "1": ("suspended", "orange")})],
                    cells="color-text",
                ),
                "Since last schedule": column(unit="s"),
                "Since last success": column(unit="s"),
                "Next schedule": column(unit="dateTimeAsIso"),
            },
            description="Next schedule: the first fire time after the last schedule, from the "
            "schedule and its time zone; in the past when a run was missed.",
        ),
        24,
        8,
    )


def _workloads_quotas(d: Board) -> None:
    """ResourceQuota usage."""
    d.row("Quotas")
    d.add(
        bargauge(
            "Quota usage",
            [
                target(
                    KUBE_QUOTA_RATIO,
                    "{{cluster}} / {{namespace}} / {{resourcequota}}: {{resource}}",
                    instant=True,
                )
            ],
            description="Used / hard of each resource of each ResourceQuota (above 100 %: the "
            "quota was lowered below what runs).",
            unit="percentunit",
            thresholds=steps(("green", None), ("yellow", 0.9), ("orange", 1), ("red", 1.0001)),
            minmax=(0, 1.2),
        ),
        12,
        10,
    )
    d.add(
        table(
            "Quotas",
            [
                target(f'cce_kube_resourcequota{{{KUBE}, type="used"}}'),
                target(f'cce_kube_resourcequota{{{KUBE}, type="hard"}}'),
            ],
            hide=["project_id", "cluster_id", "type"],
            rename={"Value #A": "Used", "Value #B": "Hard"},
            order=["cluster", "namespace", "resourcequota", "resource", "Used", "Hard"],
            description="Values in the resource's base unit (cores, bytes, counts).",
        ),
        12,
        10,
    )


DASHBOARDS: dict[str, Callable[[], Board]] = {
    "cce-overview.json": overview,
    "cce-cluster.json": cluster,
    "cce-hibernation.json": hibernation,
    "cce-exporter.json": exporter,
    "cce-workloads.json": workloads,
}


def render(build: Callable[[], Board]) -> str:
    return json.dumps(build().build(), cls=JSONEncoder, indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.generate", description=__doc__)
    parser.add_argument("--output", type=Path, default=OUT_DIR, help="directory to write to")
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    drifted = []
    for name, build in DASHBOARDS.items():
        path = args.output / name
        rendered = render(build)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != rendered:
                drifted.append(path)
        else:
            args.output.mkdir(parents=True, exist_ok=True)
            path.write_text(rendered, encoding="utf-8")
    for path in drifted:
        print(f"{path} is out of date: run python -m dashboards.generate", file=sys.stderr)
    return 1 if drifted else 0


if __name__ == "__main__":
    sys.exit(main())
