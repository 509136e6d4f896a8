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
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "ADDON_UNHEALTHY",
    "CLUSTER_STUCK_SECONDS",
    "JOB_STUCK_SECONDS",
    "MAX_PROBLEMS",
    "QUOTA_RATIO",
    "At",
    "Cause",
    "ClusterDetail",
    "ClusterRow",
    "Collection",
    "Counts",
    "HibernationRow",
    "Problem",
    "StatusModel",
    "build_cluster_detail",
    "build_status",
    "phase_group",
    "to_json",
]

SCHEMA_VERSION = 1

#: ``CCEClusterStuckInTransition``: seconds in one of :data:`TRANSITIONING` before it is stuck.
CLUSTER_STUCK_SECONDS = 7200.0
#: ``CCEJobStuck``: seconds a job may be Initializing or Running.
JOB_STUCK_SECONDS = 3600.0
#: ``CCEQuotaNearlyExhausted``: used / limit at or above this is a problem.
QUOTA_RATIO = 0.9
#: ``CCEAddonUnhealthy``.
ADDON_UNHEALTHY = frozenset(
    {"abnormal", "installFailed", "upgradeFailed", "deleteFailed", "unavailable", "rollbackFailed"}
)
#: ``CCENodeAbnormal``, and ``CCENodeRepairFailed``.
NODE_ABNORMAL = frozenset({"Abnormal", "Error", "RepairFailed"})
#: ``CCENodePoolSoldOut`` and ``CCENodePoolError``: pools that cannot scale.
POOL_CANNOT_SCALE = frozenset({"SoldOut", "Error"})
#: ``CCENodePoolScaleBlocked``: pool conditions that, true, stop scale-ups.
POOL_BLOCKING_CONDITIONS = frozenset(
    {"QuotaInsufficient", "ResourceInsufficient", "LockedByOrder", "Error"}
)
#: ``CCEClusterCertificate*``: condition reasons of a cluster (severity, what it means).
CLUSTER_CONDITION_REASONS = {
    "CertificateExpired": ("critical", "certificate has expired"),
    "CertificateExpiringWithin30Days": ("warning", "certificate expires within 30 days"),
    "RotationFailed": ("warning", "certificate rotation failed"),
}
JOB_RUNNING = frozenset({"Initializing", "Running"})

HEALTHY = frozenset({"Available"})
HIBERNATED = frozenset({"Hibernation"})
TRANSITIONING = frozenset(
    {
        "Creating",
        "Upgrading",
        "Resizing",
        "ScalingUp",
        "ScalingDown",
        "RollingBack",
        "Deleting",
        "Hibernating",
        "Awaking",
    }
)
FAILING = frozenset({"Unavailable", "Error", "RollbackFailed"})
GROUPS = ("healthy", "transitioning", "hibernated", "failing", "other")
#: Phases in which a cluster is not yet in the wanted state but on its way or able to get there
#: (other phases are problems of their own, or are left alone by the safety rules).
PENDING_FROM = {
    "hibernated": frozenset({"Available", "Hibernating"}),
    "awake": frozenset({"Hibernation", "Awaking"}),
}

#: The page lists at most this many problems (the count says how many there are).
MAX_PROBLEMS = 500
#: A cluster page lists at most this many nodes.
MAX_NODES = 2000
DAY = 86400.0

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
KIND_ORDER = {
    k: i
    for i, k in enumerate(
        (
            "cluster_failing",
            "cluster_condition",
            "quota_exhausted",
            "hibernation_failed",
            "collection_failed",
            "cluster_stuck",
            "cluster_locked",
            "node_abnormal",
            "nodepool_cannot_scale",
            "addon_unhealthy",
            "job_failed",
            "job_stuck",
            "quota_near_limit",
            "policy_conflict",
            "hibernation_pending",
        )
    )
}


class At(float):
    """An instant in Unix seconds; JSON writes it as RFC 3339 UTC."""

    def iso(self) -> str:
        return (
            datetime.fromtimestamp(self, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        )


def _at(value: float | datetime | None) -> At | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return At(aware.timestamp())
    return At(value)


def phase_group(phase: str | None) -> str:
    """healthy, transitioning, hibernated, failing or other (Empty, unknown phases)."""
    if phase in HEALTHY:
        return "healthy"
    if phase in HIBERNATED:
        return "hibernated"
    if phase in TRANSITIONING:
        return "transitioning"
    if phase in FAILING:
        return "failing"
    return "other"


# --- the model ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Cause:
    """Why a collection failed: the API's HTTP status and error code when it answered."""

    error: str  # the error class: ServerError, RequestTimeout, ...
    message: str  # the full text (as logged)
    status_code: int | None = None
    code: str | None = None  # the API's error code, e.g. CCE.01500001
    api_message: str | None = None


@dataclasses.dataclass(frozen=True)
class Problem:
    kind: str
    severity: str  # critical, warning, info
    target: str
    summary: str
    cluster_id: str | None = None
    cluster: str | None = None
    subject: str | None = None  # the node, pool, add-on, job or quota concerned
    since: At | None = None
    cause: Cause | None = None


@dataclasses.dataclass(frozen=True)
class Counts:
    clusters: Mapping[str, int]  # by phase group
    clusters_total: int
    nodes_total: int
    nodes_not_active: int
    firing_conditions: int  # problems of severity critical or warning
    quotas_near_limit: int
    jobs_stuck_or_failed: int
    hibernation_actions_24h: int


@dataclasses.dataclass(frozen=True)
class ClusterRow:
    target: str
    id: str
    name: str
    phase: str
    group: str
    phase_since: At | None
    flavor: str | None
    version: str | None
    nodes_total: int | None
    nodes_active: int | None
    nodepools: int
    nodepools_cannot_scale: int
    addons: int
    addons_unhealthy: int
    jobs_running: int
    problems: int


@dataclasses.dataclass(frozen=True)
class CollectionError:
    cluster_id: str | None
    cluster: str | None
    cause: Cause


@dataclasses.dataclass(frozen=True)
class Collection:
    target: str
    resource: str
    interval: float
    last_attempt: At | None
    last_success: At | None
    duration: float | None
    success: bool | None  # None before the first attempt
    error: str | None
    errors: Sequence[CollectionError] = ()  # the cause, per cluster when per-cluster


@dataclasses.dataclass(frozen=True)
class ActionRecord:
    at: At | None
    action: str
    result: str
    reason: str
    source: str


@dataclasses.dataclass(frozen=True)
class OverrideView:
    kind: str  # keep_awake, keep_hibernated, skip_next
    until: At | None
    reason: str


@dataclasses.dataclass(frozen=True)
class NextTransition:
    action: str
    at: At
    local: str  # in the policy's time zone, e.g. "Mon 2026-11-30 19:00 CET"
    skipped: bool


@dataclasses.dataclass(frozen=True)
class HibernationRow:
    target: str
    cluster_id: str
    cluster: str
    policy: str
    timezone: str
    dry_run: bool
    excluded: bool
    phase: str
    desired: str | None  # awake, hibernated (a keep override wins over the policy)
    policy_desired: str | None
    actual: str  # awake, hibernated, or the phase
    pending: bool  # desired and actual differ and nothing keeps it so
    next: NextTransition | None
    override: OverrideView | None
    last_action: ActionRecord | None


@dataclasses.dataclass(frozen=True)
class TargetInfo:
    name: str
    project_id: str
    labels: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class QuotaRow:
    target: str
    key: str
    used: int | None
    limit: int | None
    ratio: float | None
    unit: str | None
    region: str | None
    zone: str | None


@dataclasses.dataclass(frozen=True)
class StatusModel:
    schema_version: int
    generated_at: At
    data_updated_at: At | None  # the newest collection attempt
    version: str
    started_at: At
    ready: bool
    not_ready_reasons: Sequence[str]
    refresh_seconds: int
    counts: Counts
    problems: Sequence[Problem]
    problems_total: int
    hibernation_enabled: bool
    hibernation: Sequence[HibernationRow]
    clusters: Sequence[ClusterRow]
    quotas: Sequence[QuotaRow]
    collections: Sequence[Collection]
    targets: Sequence[TargetInfo]


@dataclasses.dataclass(frozen=True)
class NodeRow:
    id: str
    name: str
    phase: str
    flavor: str | None
    az: str | None
    nodepool_id: str | None
    private_ip: str | None
    phase_since: At | None


@dataclasses.dataclass(frozen=True)
class PoolRow:
    id: str
    name: str
    phase: str
    nodes: int | None
    flavor: str | None
    autoscaling: str
    blocked_by: Sequence[str] = ()  # true conditions that stop scale-ups


@dataclasses.dataclass(frozen=True)
class AddonRow:
    id: str
    name: str
    version: str | None
    status: str
    reason: str | None
    message: str | None


@dataclasses.dataclass(frozen=True)
class JobRow:
    id: str
    type: str | None
    phase: str
    resource: str | None
    created: At | None
    duration: float | None
    reason: str | None


@dataclasses.dataclass(frozen=True)
class ClusterDetail:
    generated_at: At
    refresh_seconds: int
    target: TargetInfo
    cluster: ClusterRow
    reason: str | None
    message: str | None
    problems: Sequence[Problem]
    nodes: Sequence[NodeRow]
    nodes_total: int
    nodepools: Sequence[PoolRow]
    addons: Sequence[AddonRow]
    jobs: Sequence[JobRow]
    quotas: Sequence[QuotaRow]
    hibernation: HibernationRow | None
    collection_errors: Sequence[Collection]


# --- JSON --------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, At):
        return value.iso()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def to_json(model: StatusModel | ClusterDetail) -> dict[str, Any]:
    """The model as JSON-able data; instants become RFC 3339 UTC strings."""
    out: dict[str, Any] = _plain(model)
    return out


# --- reading the service -----------------------------------------------------------------------


def cause_of(recorded: Mapping[str, Any] | None, text: str) -> Cause:
    """A :class:`Cause` from what the collector recorded of the error (or just its text)."""
    if not recorded:
        return Cause(error="error", message=text)
    status = recorded.get("status_code")
    code = recorded.get("code")
    api_message = recorded.get("message")
    return Cause(
        error=str(recorded.get("error") or "error"),
        message=text,
        status_code=status if isinstance(status, int) else None,
        code=code if isinstance(code, str) else None,
        api_message=api_message if isinstance(api_message, str) else None,
    )


def _ratio(used: int | None, limit: int | None) -> float | None:
    if used is None or not limit or limit <= 0:
        return None
    return used / limit


def _refresh(intervals: Iterable[float]) -> int:
    values = [v for v in intervals if v > 0]
    return int(min(max(min(values, default=30.0), 10.0), 300.0))


class _Target:
    """One target's data as the console needs it (read once per request)."""

    def __init__(self, service: Any, target: Any) -> None:
        self.service = service
        self.name: str = target.config.name
        self.collector = c = target.collector
        self.project_id: str = c.project_id
        self.labels = dict(target.config.labels)
        self.state = c.state
        self.enabled: list[str] = list(service.enabled(target))
        self.intervals = {r: float(service.interval(target, r)) for r in self.enabled}
        self.clusters = [cl for cl in self.state.clusters if cl.id]
        self.names = {cl.id: cl.name or cl.id for cl in self.clusters}
        self.last_errors: Mapping[str, Mapping[str, Any]] = getattr(c, "last_errors", {}) or {}
        self.running: dict[str, int] = {}  # jobs Initializing or Running, per cluster
        for entry in c.jobs.entries.values():
            if entry.job is not None and entry.job.phase in JOB_RUNNING:
                self.running[entry.cluster_id] = self.running.get(entry.cluster_id, 0) + 1

    def phase_since(self, key: str) -> At | None:
        return _at(self.collector.phases.since(key))


def _cluster_problems(t: _Target, cluster: Any, now: float) -> list[Problem]:
    out: list[Problem] = []
    cid, name, phase = cluster.id, cluster.name or cluster.id, cluster.phase or ""
    since = t.phase_since(f"cluster/{cid}")
    why = " ".join(p for p in (cluster.status.reason, cluster.status.message) if p)
    if phase in FAILING:
        out.append(
            Problem(
                "cluster_failing",
                "critical",
                t.name,
                f"cluster is {phase}" + (f": {why}" if why else ""),
                cid,
                name,
                since=since,
            )
        )
    elif phase in TRANSITIONING and since is not None and now - since > CLUSTER_STUCK_SECONDS:
        out.append(
            Problem(
                "cluster_stuck",
                "warning",
                t.name,
                f"cluster stuck in {phase} for over {CLUSTER_STUCK_SECONDS / 3600:g} h",
                cid,
                name,
                since=since,
            )
        )
    for condition in getattr(cluster.status, "conditions", None) or ():
        found = CLUSTER_CONDITION_REASONS.get(condition.reason or "")
        if found is not None:
            severity, what = found
            out.append(
                Problem(
                    "cluster_condition",
                    severity,
                    t.name,
                    f"{condition.type or 'cluster'}: {what}"
                    + (f" ({condition.message})" if condition.message else ""),
                    cid,
                    name,
                    subject=condition.type,
                    since=_at(condition.last_transit_time),
                )
            )
    if getattr(cluster.status, "is_locked", None):
        scene, source = cluster.status.lock_scene, cluster.status.lock_source
        out.append(
            Problem(
                "cluster_locked",
                "warning",
                t.name,
                "cluster is locked"
                + (f" ({scene})" if scene else "")
                + (f" by {source}" if source else "")
                + ": operations on it are refused",
                cid,
                name,
            )
        )
    for node in t.state.nodes.get(cid, ()):
        if node.phase in NODE_ABNORMAL:
            out.append(
                Problem(
                    "node_abnormal",
                    "warning",
                    t.name,
                    f"node {node.name or node.id} is {node.phase}",
                    cid,
                    name,
                    subject=node.name or node.id,
                    since=t.phase_since(f"node/{cid}/{node.id}"),
                )
            )
    for pool in t.state.nodepools.get(cid, ()):
        blocking = _blocking_conditions(pool)
        if blocking and pool.phase not in POOL_CANNOT_SCALE:
            out.append(
                Problem(
                    "nodepool_cannot_scale",
                    "warning",
                    t.name,
                    f"node pool {pool.name} cannot scale up: {', '.join(blocking)}",
                    cid,
                    name,
                    subject=pool.name,
                    since=t.phase_since(f"nodepool/{cid}/{pool.id}"),
                )
            )
        if pool.phase in POOL_CANNOT_SCALE:
            what = (
                "sold out (SoldOut): scale-ups fail"
                if pool.phase == "SoldOut"
                else f"in error ({pool.phase})"
            )
            if blocking:
                what += f"; conditions {', '.join(blocking)}"
            out.append(
                Problem(
                    "nodepool_cannot_scale",
                    "warning",
                    t.name,
                    f"node pool {pool.name} is {what}",
                    cid,
                    name,
                    subject=pool.name,
                    since=t.phase_since(f"nodepool/{cid}/{pool.id}"),
                )
            )
    for addon in t.state.addons.get(cid, ()):
        status = addon.status.status or ""
        if status in ADDON_UNHEALTHY:
            detail = " ".join(p for p in (addon.status.reason, addon.status.message) if p)
            out.append(
                Problem(
                    "addon_unhealthy",
                    "warning",
                    t.name,
                    f"add-on {addon.name} is {status}" + (f": {detail}" if detail else ""),
                    cid,
                    name,
                    subject=addon.name,
                    since=t.phase_since(f"addon/{cid}/{addon.id}"),
                )
            )
    return out


def _blocking_conditions(pool: Any) -> list[str]:
    """The pool's true conditions that stop scale-ups (with their reason when given)."""
    out = []
    for condition in getattr(pool.status, "conditions", None) or ():
        if condition.type in POOL_BLOCKING_CONDITIONS and condition.state == "true":
            out.append(condition.type + (f" ({condition.reason})" if condition.reason else ""))
    return out


def _job_rows(t: _Target, now: float, cluster_id: str | None = None) -> list[tuple[str, JobRow]]:
    rows = []
    for entry in t.collector.jobs.entries.values():
        job = entry.job
        if job is None or (cluster_id is not None and entry.cluster_id != cluster_id):
            continue
        created_at = _at(job.metadata.creation_timestamp)
        # Running: until now; finished: until its last update (when it completed).
        end = _at(job.metadata.update_timestamp) if job.finished else None
        duration = None
        if created_at is not None:
            duration = max(0.0, (now if end is None else end) - created_at)
        failed = [s.status.reason for s in job.failed_sub_jobs if s.status.reason]
        reason = job.status.reason or ("; ".join(failed) if failed else None)
        rows.append(
            (
                entry.cluster_id,
                JobRow(
                    id=job.id or entry.job_id,
                    type=job.spec.type,
                    phase=job.phase or "",
                    resource=job.spec.resource_name or job.spec.resource_id,
                    created=created_at,
                    duration=duration,
                    reason=reason,
                ),
            )
        )
    rows.sort(key=lambda r: (r[1].created or 0.0, r[1].id), reverse=True)
    return rows


def _job_problems(t: _Target, now: float) -> list[Problem]:
    out = []
    for cid, job in _job_rows(t, now):
        label = f"CCE job {job.type or 'job'} {job.id}" + (
            f" ({job.resource})" if job.resource else ""
        )
        if job.phase == "Failed":
            out.append(
                Problem(
                    "job_failed",
                    "warning",
                    t.name,
                    f"{label} failed" + (f": {job.reason}" if job.reason else ""),
                    cid,
                    t.names.get(cid, cid),
                    subject=job.id,
                    since=job.created,
                )
            )
        elif job.phase in JOB_RUNNING and (job.duration or 0.0) > JOB_STUCK_SECONDS:
            hours = (job.duration or 0.0) / 3600
            out.append(
                Problem(
                    "job_stuck",
                    "warning",
                    t.name,
                    f"{label} stuck in {job.phase} for {hours:.1f} h",
                    cid,
                    t.names.get(cid, cid),
                    subject=job.id,
                    since=job.created,
                )
            )
    return out


def _quota_rows(t: _Target) -> list[QuotaRow]:
    return [
        QuotaRow(
            target=t.name,
            key=q.quota_key or "",
            used=q.used,
            limit=q.quota_limit,
            ratio=_ratio(q.used, q.quota_limit),
            unit=q.unit,
            region=q.region_id,
            zone=q.availability_zone_id,
        )
        for q in t.state.quotas
    ]


def _quota_problems(t: _Target) -> list[Problem]:
    out = []
    for q in _quota_rows(t):
        if q.ratio is None or q.ratio < QUOTA_RATIO:
            continue
        where = q.zone or q.region
        subject = q.key + (f" ({where})" if where else "")
        full = q.ratio >= 1.0
        out.append(
            Problem(
                "quota_exhausted" if full else "quota_near_limit",
                "critical" if full else "warning",
                t.name,
                f"quota {subject} {'used up' if full else 'nearly used up'}: "
                f"{q.used} of {q.limit} ({q.ratio:.0%})",
                subject=subject,
            )
        )
    return out


def _collections(t: _Target) -> list[Collection]:
    out = []
    for resource in t.enabled:
        h = t.collector.health[resource]
        errors: list[CollectionError] = []
        prefix = f"{resource}/"
        for key, text in sorted(t.collector.errors.items()):
            if key.startswith(prefix) and key[len(prefix) :] in t.names:
                cid = key[len(prefix) :]
                errors.append(
                    CollectionError(cid, t.names.get(cid), cause_of(t.last_errors.get(key), text))
                )
        if h.attempted and h.success is False and not errors and h.error:
            errors.append(
                CollectionError(None, None, cause_of(t.last_errors.get(resource), h.error))
            )
        out.append(
            Collection(
                target=t.name,
                resource=resource,
                interval=t.intervals[resource],
                last_attempt=_at(h.last_attempt),
                last_success=_at(h.last_success),
                duration=h.duration,
                success=h.success if h.attempted else None,
                # A pass over the clusters may succeed with some of them failed: say so too.
                error=h.error if h.attempted and (h.success is False or errors) else None,
                errors=tuple(errors),
            )
        )
    return out


def _collection_problems(collections: Sequence[Collection]) -> list[Problem]:
    out = []
    for c in collections:
        # Per-cluster failures count whatever the resource's outcome (one broken cluster may not
        # fail the whole pass); a target-wide failure only when the collection failed.
        if c.success is not False and not any(e.cluster_id for e in c.errors):
            continue
        for e in c.errors:
            where = f" of cluster {e.cluster or e.cluster_id}" if e.cluster_id else ""
            out.append(
                Problem(
                    "collection_failed",
                    "critical" if e.cluster_id is None else "warning",
                    c.target,
                    f"collecting {c.resource}{where} failed",
                    e.cluster_id,
                    e.cluster or e.cluster_id,
                    subject=c.resource,
                    # The resource's last success says nothing of one cluster's part of it.
                    since=c.last_success if c.success is False and e.cluster_id is None else None,
                    cause=e.cause,
                )
            )
        if not c.errors and c.success is False:
            out.append(
                Problem(
                    "collection_failed",
                    "critical",
                    c.target,
                    f"collecting {c.resource} failed: {c.error or 'no data'}",
                    subject=c.resource,
                    since=c.last_success,
                )
            )
    return out


# --- hibernation -------------------------------------------------------------------------------


def _hibernation(controller: Any, now: float) -> tuple[list[HibernationRow], list[Problem], int]:
    """Rows per governed cluster, the problems they show, and actions in the last 24 h."""
    from exporter.hibernation.schedule import desired_state, next_transitions

    rows: list[HibernationRow] = []
    problems: list[Problem] = []
    recent = 0
    state = controller.state
    now_dt = datetime.fromtimestamp(now, UTC)
    by_name = sorted(controller.matches.items(), key=lambda kv: (kv[1].cluster, kv[0]))
    for ident, match in by_name:
        key = controller.key(*ident)
        cluster = controller.clusters.get(ident)
        phase = (cluster.phase if cluster is not None else None) or ""
        policy = match.policy
        dry_run = bool(policy.dry_run or controller.dry_run)
        raw = state["overrides"].get(key)
        override = None
        keep_state = None
        skip_created = None
        if isinstance(raw, dict):
            until = raw.get("until")
            until_at = _at(float(until)) if isinstance(until, int | float) else None
            kind = "skip_next" if raw.get("kind") == "skip" else f"keep_{raw.get('state')}"
            override = OverrideView(kind, until_at, str(raw.get("reason", ""))[:200])
            if raw.get("kind") == "keep" and (until_at is None or until_at > now):
                keep_state = raw.get("state")
            if raw.get("kind") == "skip":
                skip_created = float(raw.get("created", 0.0))
        policy_desired = desired_state(policy, now_dt)
        desired = keep_state if keep_state in ("awake", "hibernated") else policy_desired
        actual = {"Available": "awake", "Hibernation": "hibernated"}.get(phase, phase or "unknown")
        upcoming = next_transitions(policy, now_dt, timedelta(days=8))
        nxt = None
        if upcoming:
            first = upcoming[0]
            skipped = skip_created is not None and first.at.timestamp() > skip_created
            nxt = NextTransition(
                first.action,
                At(first.at.timestamp()),
                first.at.astimezone(policy.tz).strftime("%a %Y-%m-%d %H:%M %Z"),
                skipped,
            )
        history = state["history"].get(key) or []
        last = None
        if history and isinstance(history[-1], dict):
            h = history[-1]
            at = h.get("at")
            last = ActionRecord(
                _at(float(at)) if isinstance(at, int | float) else None,
                str(h.get("action", "")),
                str(h.get("result", "")),
                str(h.get("reason", "")),
                str(h.get("source", "")),
            )
        for h in history:
            if (
                isinstance(h, dict)
                and isinstance(h.get("at"), int | float)
                and h["at"] >= now - DAY
                and h.get("result") != "skipped"
            ):
                recent += 1
        pending = not match.excluded and phase in PENDING_FROM.get(desired or "", ())
        row = HibernationRow(
            target=ident[0],
            cluster_id=ident[1],
            cluster=match.cluster,
            policy=policy.name,
            timezone=policy.timezone,
            dry_run=dry_run,
            excluded=match.excluded,
            phase=phase,
            desired=desired,
            policy_desired=policy_desired,
            actual=actual,
            pending=pending,
            next=nxt,
            override=override,
            last_action=last,
        )
        rows.append(row)
        if pending:
            verb = "hibernation" if desired == "hibernated" else "wake-up"
            how = " (dry run: nothing will be called)" if dry_run else ""
            problems.append(
                Problem(
                    "hibernation_pending",
                    "info",
                    ident[0],
                    f"{verb} pending: policy {policy.name} wants it {desired}, "
                    f"the cluster is {phase}{how}",
                    ident[1],
                    match.cluster,
                    subject=policy.name,
                )
            )
        if last is not None and last.result == "failed" and last.at and last.at >= now - DAY:
            problems.append(
                Problem(
                    "hibernation_failed",
                    "critical" if last.action == "awake" else "warning",
                    ident[0],
                    f"{last.action} failed: {last.reason}",
                    ident[1],
                    match.cluster,
                    subject=policy.name,
                    since=last.at,
                )
            )
    for conflict in controller.conflicts:
        problems.append(
            Problem(
                "policy_conflict",
                "warning",
                conflict.target,
                conflict.message(),
                conflict.cluster_id,
                conflict.cluster,
            )
        )
    return rows, problems, recent


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
    nodes = t.state.nodes.get(cluster_id, ())
    node_rows = [
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
        for n in nodes
    ]
    # Problems first, then by name.
    node_rows.sort(key=lambda n: (n.phase == "Active", n.name))
    pools = [
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
    addons = [
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
        nodepools=tuple(pools),
        addons=tuple(addons),
        jobs=tuple(jobs),
        quotas=tuple(_quota_rows(t)),
        hibernation=hib_row,
        collection_errors=tuple(c for c in errors if c.errors),
    )
