"""Reading one target of the service for the console: its clusters', jobs', quotas' and
collections' problems and rows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from exporter.status.view import (
    ADDON_UNHEALTHY,
    CLUSTER_CONDITION_REASONS,
    CLUSTER_STUCK_SECONDS,
    FAILING,
    JOB_RUNNING,
    JOB_STUCK_SECONDS,
    NODE_ABNORMAL,
    POOL_BLOCKING_CONDITIONS,
    POOL_CANNOT_SCALE,
    QUOTA_RATIO,
    TRANSITIONING,
    At,
    Cause,
    Collection,
    CollectionError,
    JobRow,
    Problem,
    QuotaRow,
    _at,
)

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
    """Every problem of one cluster: phase, conditions, lock, nodes, pools and add-ons."""
    cid, name = cluster.id, cluster.name or cluster.id
    return [
        *_phase_problems(t, cluster, now),
        *_status_problems(t, cluster),
        *_node_problems(t, cid, name),
        *_pool_problems(t, cid, name),
        *_addon_problems(t, cid, name),
    ]


def _phase_problems(t: _Target, cluster: Any, now: float) -> list[Problem]:
    """A failing cluster, or one stuck in a transition."""
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
    return out


def _status_problems(t: _Target, cluster: Any) -> list[Problem]:
    """The cluster's alarming conditions, and its lock."""
    out: list[Problem] = []
    cid, name = cluster.id, cluster.name or cluster.id
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
    return out


def _node_problems(t: _Target, cid: str, name: str) -> list[Problem]:
    """The cluster's abnormal nodes."""
    out: list[Problem] = []
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
    return out


def _pool_problems(t: _Target, cid: str, name: str) -> list[Problem]:
    """The cluster's node pools that cannot scale up."""
    out: list[Problem] = []
    for pool in t.state.nodepools.get(cid, ()):
        blocking = _blocking_conditions(pool)
        summary = None
        if blocking and pool.phase not in POOL_CANNOT_SCALE:
            summary = f"node pool {pool.name} cannot scale up: {', '.join(blocking)}"
        if pool.phase in POOL_CANNOT_SCALE:
            what = (
                "sold out (SoldOut): scale-ups fail"
                if pool.phase == "SoldOut"
                else f"in error ({pool.phase})"
            )
            if blocking:
                what += f"; conditions {', '.join(blocking)}"
            summary = f"node pool {pool.name} is {what}"
        if summary is not None:
            out.append(
                Problem(
                    "nodepool_cannot_scale",
                    "warning",
                    t.name,
                    summary,
                    cid,
                    name,
                    subject=pool.name,
                    since=t.phase_since(f"nodepool/{cid}/{pool.id}"),
                )
            )
    return out


def _addon_problems(t: _Target, cid: str, name: str) -> list[Problem]:
    """The cluster's unhealthy add-ons."""
    out: list[Problem] = []
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
