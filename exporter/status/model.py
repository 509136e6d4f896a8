"""The status console's view model, built from the collector's last good data.

:func:`build_status` and :func:`build_cluster_detail` are the only code that reads the service
(targets, collectors, health, errors, jobs) and the hibernation controller for the console; the
renderer and the JSON see plain frozen dataclasses. Instants are Unix seconds of type :class:`At`
(a float), which :func:`to_json` writes as RFC 3339 UTC strings.

The thresholds that make a problem are the alert rules' defaults (``alerts/thresholds.yaml``; a
test keeps them equal): a cluster in a transition for over 2 h, a job initialising or running for
over 1 h, a quota at or above 90 %.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from exporter.status.hibernation import _hibernation
from exporter.status.problems import (
    _blocking_conditions,
    _cluster_problems,
    _collection_problems,
    _collections,
    _job_problems,
    _job_rows,
    _quota_problems,
    _quota_rows,
    _refresh,
    _Target,
)
from exporter.status.view import (
    ADDON_UNHEALTHY,
    CLUSTER_CONDITION_REASONS,
    CLUSTER_STUCK_SECONDS,
    DAY,
    FAILING,
    GROUPS,
    HEALTHY,
    HIBERNATED,
    JOB_RUNNING,
    JOB_STUCK_SECONDS,
    KIND_ORDER,
    MAX_NODES,
    MAX_PROBLEMS,
    NODE_ABNORMAL,
    PENDING_FROM,
    POOL_BLOCKING_CONDITIONS,
    POOL_CANNOT_SCALE,
    QUOTA_RATIO,
    SCHEMA_VERSION,
    SEVERITY_ORDER,
    TRANSITIONING,
    ActionRecord,
    AddonRow,
    At,
    Cause,
    ClusterDetail,
    ClusterRow,
    Collection,
    CollectionError,
    Counts,
    HibernationRow,
    JobRow,
    NextTransition,
    NodeRow,
    OverrideView,
    PoolRow,
    Problem,
    QuotaRow,
    StatusModel,
    TargetInfo,
    phase_group,
    to_json,
)

# The view's names are re-exported: the console's model is imported from here.
__all__ = [
    "ADDON_UNHEALTHY",
    "CLUSTER_CONDITION_REASONS",
    "CLUSTER_STUCK_SECONDS",
    "DAY",
    "FAILING",
    "GROUPS",
    "HEALTHY",
    "HIBERNATED",
    "JOB_RUNNING",
    "JOB_STUCK_SECONDS",
    "KIND_ORDER",
    "MAX_NODES",
    "MAX_PROBLEMS",
    "NODE_ABNORMAL",
    "PENDING_FROM",
    "POOL_BLOCKING_CONDITIONS",
    "POOL_CANNOT_SCALE",
    "QUOTA_RATIO",
    "SCHEMA_VERSION",
    "SEVERITY_ORDER",
    "TRANSITIONING",
    "ActionRecord",
    "AddonRow",
    "At",
    "Cause",
    "ClusterDetail",
    "ClusterRow",
    "Collection",
    "CollectionError",
    "Counts",
    "HibernationRow",
    "JobRow",
    "NextTransition",
    "NodeRow",
    "OverrideView",
    "PoolRow",
    "Problem",
    "QuotaRow",
    "StatusModel",
    "TargetInfo",
    "build_cluster_detail",
    "build_status",
    "phase_group",
    "to_json",
]


# --- building ----------------------------------------------------------------------------------


def _sorted_problems(problems: list[Problem]) -> list[Problem]:
    return sorted(
        problems,
        key=lambda p: (
            SEVERITY_ORDER.get(p.severity, 9),
            KIND_ORDER.get(p.kind, 99),
            p.cluster or "",
            p.subject or "",
        ),
    )


def _cluster_row(t: _Target, cluster: Any, now: float, problems: int) -> ClusterRow:
    cid = cluster.id
    nodes = t.state.nodes.get(cid)
    total, active = cluster.total_nodes, cluster.active_nodes
    if nodes is not None:
        total = len(nodes)
        active = sum(1 for n in nodes if n.phase == "Active")
    pools = t.state.nodepools.get(cid, ())
    addons = t.state.addons.get(cid, ())
    running = t.running.get(cid, 0)
    return ClusterRow(
        target=t.name,
        id=cid,
        name=cluster.name or cid,
        phase=cluster.phase or "",
        group=phase_group(cluster.phase),
        phase_since=t.phase_since(f"cluster/{cid}"),
        flavor=cluster.spec.flavor,
        version=cluster.spec.version,
        nodes_total=total,
        nodes_active=active,
        nodepools=len(pools),
        nodepools_cannot_scale=sum(
            1 for p in pools if p.phase in POOL_CANNOT_SCALE or _blocking_conditions(p)
        ),
        addons=len(addons),
        addons_unhealthy=sum(1 for a in addons if (a.status.status or "") in ADDON_UNHEALTHY),
        jobs_running=running,
        problems=problems,
    )


def build_status(service: Any, now: float | None = None) -> StatusModel:
    """The console's view of ``service`` (an ``ExporterService``; its ``hibernation`` attribute,
    when set, is the running ``HibernationController``)."""
    now = float(service.clock()) if now is None else now
    targets = [_Target(service, t) for t in service.targets]
    problems: list[Problem] = []
    clusters: list[ClusterRow] = []
    quotas: list[QuotaRow] = []
    collections: list[Collection] = []
    groups = dict.fromkeys(GROUPS, 0)
    nodes_total = nodes_not_active = 0
    for t in targets:
        job_problems = _job_problems(t, now)
        per_cluster: dict[str, int] = {}
        for p in job_problems:
            per_cluster[p.cluster_id or ""] = per_cluster.get(p.cluster_id or "", 0) + 1
        problems.extend(job_problems)
        t_collections = _collections(t)
        collections.extend(t_collections)
        for p in _collection_problems(t_collections):
            problems.append(p)
            if p.cluster_id:
                per_cluster[p.cluster_id] = per_cluster.get(p.cluster_id, 0) + 1
        for cluster in t.clusters:
            found = _cluster_problems(t, cluster, now)
            problems.extend(found)
            row = _cluster_row(t, cluster, now, len(found) + per_cluster.get(cluster.id, 0))
            clusters.append(row)
            groups[row.group] += 1
            for node in t.state.nodes.get(cluster.id, ()):
                nodes_total += 1
                if node.phase != "Active":
                    nodes_not_active += 1
        quotas.extend(_quota_rows(t))
        problems.extend(_quota_problems(t))
    controller = getattr(service, "hibernation", None)
    hibernation: list[HibernationRow] = []
    actions = 0
    if controller is not None:
        hibernation, hib_problems, actions = _hibernation(controller, now)
        problems.extend(hib_problems)
    problems = _sorted_problems(problems)
    ready, reasons = service.readiness()
    attempts = [c.last_attempt for c in collections if c.last_attempt is not None]
    counts = Counts(
        clusters=groups,
        clusters_total=len(clusters),
        nodes_total=nodes_total,
        nodes_not_active=nodes_not_active,
        firing_conditions=sum(1 for p in problems if p.severity != "info"),
        quotas_near_limit=sum(1 for q in quotas if q.ratio is not None and q.ratio >= QUOTA_RATIO),
        jobs_stuck_or_failed=sum(1 for p in problems if p.kind in ("job_stuck", "job_failed")),
        hibernation_actions_24h=actions,
    )
    from exporter import __version__

    return StatusModel(
        schema_version=SCHEMA_VERSION,
        generated_at=At(now),
        data_updated_at=At(max(attempts)) if attempts else None,
        version=__version__,
        started_at=At(float(service.started_at)),
        ready=ready,
        not_ready_reasons=tuple(reasons),
        refresh_seconds=_refresh(v for t in targets for v in t.intervals.values()),
        counts=counts,
        problems=tuple(problems[:MAX_PROBLEMS]),
        problems_total=len(problems),
        hibernation_enabled=controller is not None,
        hibernation=tuple(hibernation),
        clusters=tuple(sorted(clusters, key=lambda c: (c.name, c.target, c.id))),
        quotas=tuple(quotas),
        collections=tuple(collections),
        targets=tuple(TargetInfo(t.name, t.project_id, t.labels) for t in targets),
    )


def build_cluster_detail(
    service: Any, target_name: str, cluster_id: str, now: float | None = None
) -> ClusterDetail | None:
    """One cluster's page; None when the target or cluster is not known."""
    now = float(service.clock()) if now is None else now
    found = next((t for t in service.targets if t.config.name == target_name), None)
    if found is None:
        return None
    t = _Target(service, found)
    cluster = next((c for c in t.clusters if c.id == cluster_id), None)
    if cluster is None:
        return None
    t_collections = _collections(t)
    problems = _cluster_problems(t, cluster, now)
    problems += [p for p in _job_problems(t, now) if p.cluster_id == cluster_id]
    problems += [p for p in _collection_problems(t_collections) if p.cluster_id == cluster_id]
    hib_row = None
    controller = getattr(service, "hibernation", None)
    if controller is not None:
        rows, hib_problems, _ = _hibernation(controller, now)
        hib_row = next((r for r in rows if (r.target, r.cluster_id) == (t.name, cluster_id)), None)
        problems += [p for p in hib_problems if (p.target, p.cluster_id) == (t.name, cluster_id)]
    node_rows = _node_rows(t, cluster_id)
    errors = [
        dataclasses.replace(c, errors=tuple(e for e in c.errors if e.cluster_id == cluster_id))
        for c in t_collections
    ]
    jobs = [row for cid, row in _job_rows(t, now, cluster_id)]
    return ClusterDetail(
        generated_at=At(now),
        refresh_seconds=_refresh(t.intervals.values()),
        target=TargetInfo(t.name, t.project_id, t.labels),
        cluster=_cluster_row(t, cluster, now, len(problems)),
        reason=cluster.status.reason,
        message=cluster.status.message,
        problems=tuple(_sorted_problems(problems)),
        nodes=tuple(node_rows[:MAX_NODES]),
        nodes_total=len(node_rows),
        nodepools=tuple(_pool_rows(t, cluster_id)),
        addons=tuple(_addon_rows(t, cluster_id)),
        jobs=tuple(jobs),
        quotas=tuple(_quota_rows(t)),
        hibernation=hib_row,
        collection_errors=tuple(c for c in errors if c.errors),
    )


def _node_rows(t: _Target, cluster_id: str) -> list[NodeRow]:
    """The cluster's nodes, those not Active first, then by name."""
    rows = [
        NodeRow(
            id=n.id or "",
            name=n.name or n.id or "",
            phase=n.phase or "",
            flavor=n.flavor,
            az=n.az,
            nodepool_id=n.nodepool_id,
            private_ip=n.private_ip,
            phase_since=t.phase_since(f"node/{cluster_id}/{n.id}"),
        )
        for n in t.state.nodes.get(cluster_id, ())
    ]
    rows.sort(key=lambda n: (n.phase == "Active", n.name))
    return rows


def _pool_rows(t: _Target, cluster_id: str) -> list[PoolRow]:
    return [
        PoolRow(
            id=p.id or "",
            name=p.name or "",
            phase=p.phase,
            nodes=p.status.current_node,
            flavor=p.spec.node_template.flavor,
            autoscaling=(
                f"{p.spec.autoscaling.min_node_count or 0}-{p.spec.autoscaling.max_node_count}"
                if p.spec.autoscaling.enable
                else "off"
            ),
            blocked_by=tuple(_blocking_conditions(p)),
        )
        for p in t.state.nodepools.get(cluster_id, ())
    ]


def _addon_rows(t: _Target, cluster_id: str) -> list[AddonRow]:
    return [
        AddonRow(
            id=a.id or "",
            name=a.name or "",
            version=a.version,
            status=a.status.status or "",
            reason=a.status.reason,
            message=a.status.message,
        )
        for a in t.state.addons.get(cluster_id, ())
    ]
