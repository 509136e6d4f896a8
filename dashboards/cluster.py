"""CCE / Cluster: one cluster's phase, nodes, pools, add-ons, conditions and jobs."""

from __future__ import annotations

from dashboards.board import (
    CLUSTER_VARIABLES,
    Board,
    board,
)
from dashboards.kit import (
    CLUSTER,
    PROJECT,
    bars,
    cluster_phase_timeline,
    column,
    state_column,
    table,
    target,
    timeseries,
    value_mapping,
    with_cluster_name,
)
from dashboards.phases import (
    ADDON_STATUSES,
    CERTIFICATE_REASONS,
    CLUSTER_PHASES,
    JOB_PHASES,
    NODE_PHASES,
    NODEPOOL_PHASES,
)


def cluster() -> Board:
    return board(
        "cce-cluster",
        "CCE / Cluster",
        "One cluster: phase, nodes, pools, add-ons, jobs.",
        CLUSTER_VARIABLES,
        (
            _cluster_summary,
            _cluster_nodes,
            _cluster_pools,
            _cluster_conditions,
            _cluster_counts,
            _cluster_jobs,
        ),
    )


def _cluster_summary(d: Board) -> None:
    """The cluster and its phase history."""
    d.add(
        table(
            "Cluster",
            [
                (None, f"cce_cluster_info{{{CLUSTER}}}"),
                (None, f"cce_cluster_status_phase{{{CLUSTER}}} == 1"),
                (
                    "Time in phase",
                    f"time() - cce_cluster_status_phase_since_timestamp_seconds{{{CLUSTER}}}",
                ),
                ("Created", f"cce_cluster_created_timestamp_seconds{{{CLUSTER}}} * 1000"),
                ("Nodes", f"cce_cluster_nodes{{{CLUSTER}}}"),
                ("Active", f"cce_cluster_nodes_active{{{CLUSTER}}}"),
                ("Max nodes", f"cce_cluster_max_nodes{{{CLUSTER}}}"),
            ],
            hide=["project_id"],
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
        cluster_phase_timeline("Phase history"),
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
                (None, f"cce_node_info{{{CLUSTER}}}"),
                (None, f"cce_node_status_phase{{{CLUSTER}}} == 1"),
                (
                    "Time in phase",
                    f"time() - cce_node_status_phase_since_timestamp_seconds{{{CLUSTER}}}",
                ),
                ("Age", f"time() - cce_node_created_timestamp_seconds{{{CLUSTER}}}"),
            ],
            hide=["project_id", "cluster_id"],
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
                (None, f"cce_nodepool_info{{{CLUSTER}}}"),
                (None, f"cce_nodepool_status_phase{{{CLUSTER}}} == 1"),
                ("Nodes", f"cce_nodepool_nodes{{{CLUSTER}}}"),
                ("Initial", f"cce_nodepool_initial_nodes{{{CLUSTER}}}"),
                ("Autoscaling", f"cce_nodepool_autoscaling_enabled{{{CLUSTER}}}"),
                ("Min", f"cce_nodepool_autoscaling_min_nodes{{{CLUSTER}}}"),
                ("Max", f"cce_nodepool_autoscaling_max_nodes{{{CLUSTER}}}"),
            ],
            hide=["project_id", "cluster_id"],
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
                (None, f"cce_addon_info{{{CLUSTER}}}"),
                (None, f"cce_addon_status{{{CLUSTER}}} == 1"),
            ],
            hide=["project_id", "cluster_id"],
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
                (None, f"cce_cluster_status_condition{{{CLUSTER}}} == 1"),
                (None, f"cce_cluster_status_condition_reason{{{CLUSTER}}}"),
            ],
            description="status.conditions: certificate, rotation, agency (true/false/unknown).",
            hide=["project_id", "cluster_id"],
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
                ("Locked", f"cce_cluster_locked{{{CLUSTER}}}"),
                ("Upgrade available", f"cce_cluster_upgrade_available{{{CLUSTER}}}"),
                (None, f"cce_cluster_upgrade_target_info{{{CLUSTER}}}"),
                (None, f"cce_cluster_control_plane_az_info{{{CLUSTER}}}"),
            ],
            description="Billing lock, upgrade offered (hourly) with its target versions, and "
            "the control plane's zones.",
            hide=["project_id", "cluster_id"],
            order=["cluster", "Locked", "Upgrade available", "target_version", "az"],
        ),
        12,
        7,
    )
    d.add(
        table(
            "Node pool conditions",
            [
                (None, f"cce_nodepool_status_condition{{{CLUSTER}}} == 1"),
                (None, f"cce_nodepool_status_condition_reason{{{CLUSTER}}}"),
            ],
            description="Scalable, QuotaInsufficient, ResourceInsufficient, LockedByOrder...",
            hide=["project_id", "cluster_id", "nodepool_id"],
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
                (
                    "Last probe age",
                    f"time() - cce_node_status_last_probe_timestamp_seconds{{{CLUSTER}}}",
                ),
                ("Up to date", f"cce_node_configuration_up_to_date{{{CLUSTER}}}"),
                (None, f"cce_addon_upgrade_available{{{CLUSTER}}} == 1"),
            ],
            description="Seconds since CCE last probed each node, whether it matches its "
            "pool's template, and the add-ons that can be upgraded.",
            hide=["project_id", "cluster_id", "node_id", "addon_id"],
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
                (None, with_cluster_name(f"cce_job_info{{{PROJECT}}}")),
                (None, with_cluster_name(f"cce_job_status_phase{{{PROJECT}}} == 1")),
                ("Duration", with_cluster_name(f"cce_job_duration_seconds{{{PROJECT}}}")),
                (
                    "Started",
                    with_cluster_name(f"cce_job_created_timestamp_seconds{{{PROJECT}}} * 1000"),
                ),
                (
                    "Finished",
                    with_cluster_name(f"cce_job_completion_timestamp_seconds{{{PROJECT}}} * 1000"),
                ),
            ],
            hide=["project_id", "cluster_id"],
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
