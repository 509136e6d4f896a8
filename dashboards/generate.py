"""Render the CCE Grafana dashboards (dashboards/*.json) from Python.

Usage::

    python -m dashboards.generate            # rewrite dashboards/*.json
    python -m dashboards.generate --check    # exit 1 when a committed dashboard drifted
    python -m dashboards.generate --output DIR

Every panel and query uses the ``${datasource}`` variable (no data source UID is hard-coded), so the
files import as they are and work with Grafana's file provisioning
(dashboards/provisioning/dashboards.yaml). Dashboards link to each other through the ``cce`` tag.

State sets (one 0/1 series per phase) become one number per resource for state timelines:
``phase_code()`` maps the phase whose series is 1 to its index, and a value mapping turns the
index back into the phase's name and colour. It relies on ``== 1`` only, so it also works when the
exporter is configured to export the current value only.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Json = dict[str, Any]

OUT_DIR = Path(__file__).resolve().parent
DS: Json = {"type": "prometheus", "uid": "${datasource}"}
TAGS = ["cce", "cce-exporter"]
SCHEMA_VERSION = 39

PROJECT = 'project_id=~"$project"'
CLUSTER = 'project_id=~"$project", cluster=~"$cluster"'
EXPORTER = 'project_id=~"$project", instance=~"$instance"'

# Phases (API spelling) and their colours; the order is the code phase_code() gives them.
CLUSTER_PHASES = {
    "Available": "green",
    "Unavailable": "red",
    "ScalingUp": "blue",
    "ScalingDown": "blue",
    "Creating": "blue",
    "Deleting": "orange",
    "Upgrading": "blue",
    "Resizing": "blue",
    "RollingBack": "orange",
    "RollbackFailed": "red",
    "Hibernating": "purple",
    "Hibernation": "dark-purple",
    "Awaking": "purple",
    "Empty": "text",
    "Error": "red",
    "unknown": "text",
}
NODE_PHASES = {
    "Build": "blue",
    "Installing": "blue",
    "Installed": "blue",
    "ShutDown": "text",
    "Upgrading": "blue",
    "Active": "green",
    "Abnormal": "red",
    "Deleting": "orange",
    "Error": "red",
    "Repairing": "orange",
    "RepairFailed": "red",
    "unknown": "text",
}
NODEPOOL_PHASES = {
    "Normal": "green",
    "Synchronizing": "blue",
    "Synchronized": "green",
    "SoldOut": "orange",
    "Deleting": "orange",
    "Error": "red",
    "unknown": "text",
}
ADDON_STATUSES = {
    "running": "green",
    "available": "green",
    "abnormal": "red",
    "unavailable": "red",
    "installing": "blue",
    "upgrading": "blue",
    "rollbacking": "orange",
    "deleting": "orange",
    "deleteSuccess": "text",
    "installFailed": "red",
    "upgradeFailed": "red",
    "deleteFailed": "red",
    "rollbackFailed": "red",
    "unknown": "text",
}
#: Certificate stages (the SDK's ClusterCondition reasons), as coloured cells.
CERTIFICATE_REASONS = {
    "CertificateValid": "green",
    "CertificateExpiringWithin180Days": "yellow",
    "CertificateExpiringWithin30Days": "orange",
    "CertificateExpired": "red",
    "RotationInProgress": "blue",
    "RotationSucceeded": "green",
    "RotationFailed": "red",
}
#: Node-pool conditions that stop scale-ups (as the CCENodePoolScaleBlocked alert).
SCALE_BLOCKING = "QuotaInsufficient|ResourceInsufficient|LockedByOrder|Error"
JOB_PHASES = {
    "Initializing": "blue",
    "Running": "blue",
    "Success": "green",
    "Failed": "red",
    "unknown": "text",
}
HIBERNATION_STATES = {"Awake": "green", "Transition": "purple", "Hibernated": "dark-purple"}


# --- PromQL helpers ------------------------------------------------------------------------------


def phase_code(
    metric: str, label: str, phases: Sequence[str], filters: str, by: str = "project_id, cluster"
) -> str:
    """One series per ``by`` group whose value is the index of its current phase."""
    branches = [
        f'(({metric}{{{filters}, {label}="{phase}"}} == 1) * {index})'
        for index, phase in enumerate(phases)
    ]
    return f"max by ({by}) (\n  " + "\n  or ".join(branches) + "\n)"


def hibernation_actual(filters: str) -> str:
    """0 awake, 1 hibernating or awaking, 2 hibernated."""
    metric = "cce_cluster_status_phase"
    return (
        f'(max by (project_id, cluster) ({metric}{{{filters}, phase="Hibernation"}} == 1) * 2)\n'
        f'or (max by (project_id, cluster) ({metric}{{{filters}, phase=~"Hibernating|Awaking"}}'
        " == 1))\n"
        f"or (max by (project_id, cluster) ({metric}{{{filters}}} == 1) * 0)"
    )


def with_cluster_name(expr: str) -> str:
    """Jobs carry cluster_id only: add the cluster name (and filter by it) from cce_cluster_info."""
    return (
        f"({expr})\n* on(project_id, cluster_id) group_left(cluster)\n"
        f"max by (project_id, cluster_id, cluster) (cce_cluster_info{{{CLUSTER}}})"
    )


# --- panel helpers -------------------------------------------------------------------------------


def target(
    expr: str, legend: str = "", *, ref: str = "A", instant: bool = False, table: bool = False
) -> Json:
    return {
        "datasource": DS,
        "refId": ref,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "format": "table" if table else "time_series",
        "editorMode": "code",
    }


def steps(*pairs: tuple[str, float | None]) -> Json:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in pairs]}


GREEN = steps(("green", None))


def value_mappings(names: dict[str, str], *, by_index: bool) -> list[Json]:
    """Map phase codes (by_index) or phase texts to the phase's name and colour."""
    options = {
        (str(i) if by_index else name): {"text": name, "color": color, "index": i}
        for i, (name, color) in enumerate(names.items())
    }
    return [{"type": "value", "options": options}]


def panel(
    kind: str,
    title: str,
    targets: Sequence[Json],
    *,
    description: str = "",
    unit: str = "short",
    thresholds: Json | None = None,
    mappings: list[Json] | None = None,
    color: Json | None = None,
    custom: Json | None = None,
    options: Json | None = None,
    overrides: list[Json] | None = None,
    transformations: list[Json] | None = None,
    decimals: int | None = None,
    minmax: tuple[float, float] | None = None,
) -> Json:
    refs = "ABCDEFGHIJ"
    defaults: Json = {
        "unit": unit,
        "thresholds": thresholds or GREEN,
        "mappings": mappings or [],
        "color": color or {"mode": "thresholds" if thresholds else "palette-classic"},
    }
    if custom:
        defaults["custom"] = custom
    if decimals is not None:
        defaults["decimals"] = decimals
    if minmax:
        defaults["min"], defaults["max"] = minmax
    result: Json = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [dict(t, refId=refs[i]) for i, t in enumerate(targets)],
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
    }
    if transformations:
        result["transformations"] = transformations
    return result


def timeseries(title: str, targets: Sequence[Json], *, stack: bool = False, **kw: Any) -> Json:
    custom = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 20 if stack else 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
    }
    options = {
        "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel("timeseries", title, targets, custom=custom, options=options, **kw)


def bars(title: str, targets: Sequence[Json], **kw: Any) -> Json:
    """A time series drawn as stacked bars: counts per interval."""
    result = timeseries(title, targets, stack=True, **kw)
    result["fieldConfig"]["defaults"]["custom"].update(drawStyle="bars", fillOpacity=80)
    return result


def stat(title: str, targets: Sequence[Json], *, color_mode: str = "background", **kw: Any) -> Json:
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": color_mode,
        "graphMode": "none",
        "textMode": "auto",
        "justifyMode": "auto",
        "orientation": "auto",
    }
    return panel("stat", title, targets, options=options, **kw)


def bargauge(title: str, targets: Sequence[Json], **kw: Any) -> Json:
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "displayMode": "gradient",
        "orientation": "horizontal",
        "showUnfilled": True,
        "valueMode": "color",
    }
    return panel("bargauge", title, targets, options=options, **kw)


def state_timeline(title: str, targets: Sequence[Json], names: dict[str, str], **kw: Any) -> Json:
    options = {
        "showValue": "never",
        "mergeValues": True,
        "rowHeight": 0.8,
        "alignValue": "left",
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "single", "sort": "none"},
    }
    return panel(
        "state-timeline",
        title,
        targets,
        mappings=value_mappings(names, by_index=True),
        color={"mode": "thresholds"},
        custom={"fillOpacity": 80, "lineWidth": 0},
        options=options,
        **kw,
    )


def table(
    title: str,
    targets: Sequence[Json],
    *,
    hide: Sequence[str] = (),
    rename: dict[str, str] | None = None,
    order: Sequence[str] = (),
    columns: dict[str, Json] | None = None,
    sort_by: str | None = None,
    **kw: Any,
) -> Json:
    """Instant table queries merged on their common labels, then tidied up.

    ``columns`` sets field properties per (renamed) column, e.g. a unit or colour-coded cells.
    """
    hidden = {
        "Time": True,
        "__name__": True,
        "instance": True,
        "job": True,
        **{h: True for h in hide},
    }
    for t in targets:
        t.update(instant=True, range=False, format="table")
    transformations: list[Json] = [{"id": "merge", "options": {}}] if len(targets) > 1 else []
    transformations.append(
        {
            "id": "organize",
            "options": {
                "excludeByName": hidden,
                "renameByName": rename or {},
                "indexByName": {name: i for i, name in enumerate(order)},
            },
        }
    )
    overrides = [
        {
            "matcher": {"id": "byName", "options": name},
            "properties": [{"id": key, "value": value} for key, value in props.items()],
        }
        for name, props in (columns or {}).items()
    ]
    options: Json = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    if sort_by:
        options["sortBy"] = [{"displayName": sort_by, "desc": True}]
    return panel(
        "table",
        title,
        targets,
        options=options,
        overrides=overrides,
        transformations=transformations,
        custom={"align": "auto", "cellOptions": {"type": "auto"}, "filterable": True},
        **kw,
    )


def state_column(names: dict[str, str]) -> Json:
    """Column properties: a phase text coloured like the state timelines."""
    return {
        "mappings": value_mappings(names, by_index=False),
        "custom.cellOptions": {"type": "color-background", "mode": "basic"},
    }


def text(title: str, content: str) -> Json:
    return {
        "type": "text",
        "title": title,
        "options": {"mode": "markdown", "content": content},
    }


# --- dashboards ----------------------------------------------------------------------------------


class Dashboard:
    """Collects panels and lays them out left to right on Grafana's 24-column grid."""

    def __init__(self, uid: str, title: str, description: str) -> None:
        self.uid, self.title, self.description = uid, title, description
        self.panels: list[Json] = []
        self.x = self.y = self.line_height = 0
        self.variables: list[Json] = [
            {
                "type": "datasource",
                "name": "datasource",
                "label": "Data source",
                "query": "prometheus",
                "current": {},
                "hide": 0,
                "refresh": 1,
                "regex": "",
                "options": [],
            }
        ]

    def variable(self, name: str, label: str, query: str) -> None:
        self.variables.append(
            {
                "type": "query",
                "name": name,
                "label": label,
                "datasource": DS,
                "definition": query,
                "query": query,
                "refresh": 2,
                "multi": True,
                "includeAll": True,
                "allValue": ".*",
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "sort": 1,
                "hide": 0,
                "regex": "",
                "options": [],
            }
        )

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "type": "row",
                "title": title,
                "collapsed": False,
                "panels": [],
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
            }
        )
        self.y += 1

    def add(self, item: Json, w: int, h: int) -> None:
        if self.x + w > 24:
            self._newline()
        item["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(item)
        self.x += w
        self.line_height = max(self.line_height, h)

    def _newline(self) -> None:
        self.y += self.line_height
        self.x = self.line_height = 0

    def json(self) -> Json:
        panels = [dict(p, id=i) for i, p in enumerate(self.panels, start=1)]
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": TAGS,
            "editable": True,
            "graphTooltip": 1,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "refresh": "1m",
            "time": {"from": "now-6h", "to": "now"},
            "timepicker": {},
            "timezone": "browser",
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "weekStart": "",
            "annotations": {
                "list": [
                    {
                        "builtIn": 1,
                        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                        "enable": True,
                        "hide": True,
                        "iconColor": "rgba(0, 211, 255, 1)",
                        "name": "Annotations & Alerts",
                        "type": "dashboard",
                    }
                ]
            },
            "links": [
                {
                    "type": "dashboards",
                    "title": "CCE dashboards",
                    "tags": ["cce"],
                    "asDropdown": True,
                    "includeVars": True,
                    "keepTime": True,
                    "targetBlank": False,
                    "icon": "external link",
                    "tooltip": "",
                    "url": "",
                }
            ],
            "templating": {"list": self.variables},
            "panels": panels,
        }


def _cluster_variables(d: Dashboard) -> None:
    d.variable("project", "Project", "label_values(cce_cluster_info, project_id)")
    d.variable(
        "cluster", "Cluster", 'label_values(cce_cluster_info{project_id=~"$project"}, cluster)'
    )


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

PERCENT = steps(("green", None), ("yellow", 0.75), ("red", 0.9))
FIRING = steps(("green", None), ("red", 1))


def overview() -> Dashboard:
    d = Dashboard("cce-overview", "CCE / Overview", "All CCE clusters, nodes, quotas and alerts.")
    _cluster_variables(d)
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
            overrides=[
                {
                    "matcher": {"id": "byName", "options": phase},
                    "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": c}}],
                }
                for phase, c in CLUSTER_PHASES.items()
            ],
            color={"mode": "fixed", "fixedColor": "text"},
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
            thresholds=FIRING,
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
            overrides=[
                {
                    "matcher": {"id": "byName", "options": phase},
                    "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": c}}],
                }
                for phase, c in NODE_PHASES.items()
            ],
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
            thresholds=PERCENT,
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
            thresholds=PERCENT,
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
            thresholds=PERCENT,
            minmax=(0, 1),
        ),
        12,
        8,
    )
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
                    ref="B",
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
    d.row("Alerts and hibernation")
    d.add(
        table(
            "Firing CCE alerts",
            [target(FIRING_ALERTS)],
            description=FIRING_ALERTS_DESCRIPTION,
            hide=["Value", "alertstate"],
            order=["alertname", "severity", "cluster", "project_id"],
            columns={"severity": state_column({"critical": "red", "warning": "orange"})},
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
    return d


def cluster() -> Dashboard:
    d = Dashboard(
        "cce-cluster", "CCE / Cluster", "One cluster: phase, nodes, pools, add-ons, jobs."
    )
    _cluster_variables(d)
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
                "Time in phase": {"unit": "s"},
                "Created": {"unit": "dateTimeAsIso"},
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
                "Time in phase": {"unit": "s"},
                "Age": {"unit": "s"},
            },
            sort_by="Time in phase",
        ),
        16,
        9,
    )
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
                "Autoscaling": {
                    "mappings": [
                        {
                            "type": "value",
                            "options": {
                                "0": {"text": "off", "index": 0},
                                "1": {"text": "on", "color": "green", "index": 1},
                            },
                        }
                    ]
                },
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
                    ref="B",
                ),
                target(
                    f"cce_nodepool_scalegroup_nodes{{{CLUSTER}}}",
                    "{{nodepool}}/{{scalegroup}} {{state}}",
                    instant=True,
                    ref="C",
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
            columns={"Last probe age": {"unit": "s"}},
            sort_by="Last probe age",
        ),
        24,
        7,
    )
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
                "Duration": {"unit": "s"},
                "Started": {"unit": "dateTimeAsIso"},
                "Finished": {"unit": "dateTimeAsIso"},
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
    return d


def hibernation() -> Dashboard:
    d = Dashboard(
        "cce-hibernation",
        "CCE / Hibernation & cost",
        "What the hibernation policies want, what the clusters do, and what it saves.",
    )
    _cluster_variables(d)
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
            thresholds=FIRING,
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
    d.row("Schedule")
    d.add(
        table(
            "Next transitions",
            [target(f"cce_hibernation_next_transition_timestamp_seconds{{{CLUSTER}}} * 1000")],
            hide=["project_id", "cluster_id"],
            rename={"Value": "At"},
            order=["cluster", "action", "At"],
            columns={"At": {"unit": "dateTimeAsIso"}},
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
            columns={"Until": {"unit": "dateTimeAsIso"}},
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
    return d


def exporter() -> Dashboard:
    d = Dashboard("cce-exporter", "CCE / Exporter", "The exporter's own health: collections, API.")
    d.variable("instance", "Instance", "label_values(cce_exporter_build_info, instance)")
    d.variable("project", "Project", "label_values(cce_exporter_collect_success, project_id)")
    inst = 'instance=~"$instance"'
    d.add(
        table(
            "Exporters",
            [
                target(f"cce_exporter_build_info{{{inst}}}"),
                target(f"cce_exporter_shard_ordinal{{{inst}}}"),
                target(f"cce_exporter_total_shards{{{inst}}}"),
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
            thresholds=FIRING,
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
    d.row("CCE API")
    d.add(
        timeseries(
            "API requests by code",
            [
                target(
                    "sum by (code) (rate(cce_exporter_api_requests_total"
                    f"{{{inst}}}[$__rate_interval]))",
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
                    f"{{{inst}}}[$__rate_interval]))",
                    "{{method}} {{endpoint}}",
                )
            ],
            unit="reqps",
        ),
        12,
        8,
    )
    d.add(
        timeseries(
            "Request latency",
            [
                target(
                    f"histogram_quantile({q}, sum by (le) (rate("
                    f"cce_exporter_api_request_duration_seconds_bucket{{{inst}}}"
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
                    f"cce_exporter_api_request_duration_seconds_bucket{{{inst}}}"
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
                    f"{{{inst}}}[$__rate_interval]))",
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
                    f"{{{inst}}}[$__rate_interval]))",
                    "{{result}}",
                )
            ],
            description="IAM token fetches; failures stop every collection.",
            decimals=0,
            overrides=[
                {
                    "matcher": {"id": "byName", "options": "failure"},
                    "properties": [
                        {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}}
                    ],
                }
            ],
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
    return d


DASHBOARDS = {
    "cce-overview.json": overview,
    "cce-cluster.json": cluster,
    "cce-hibernation.json": hibernation,
    "cce-exporter.json": exporter,
}


def render(build: Any) -> str:
    return json.dumps(build().json(), indent=2, sort_keys=False) + "\n"


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
