"""Kubernetes objects inside the clusters: Jobs, CronJobs and ResourceQuotas (opt-in).

kube-state-metrics' vocabulary under a ``cce_kube_`` prefix: its users feel at home, and nothing
collides with a kube-state-metrics they also run. Every series carries ``project_id``,
``cluster_id``, ``cluster`` (the cluster's name) and ``namespace``. Sample exposition::

    cce_kube_job_info{project_id="p1",cluster_id="4d1e...",cluster="prod",namespace="batch",
        job_name="nightly-28417",owner_kind="CronJob",owner_name="nightly"} 1
    cce_kube_job_status_active{...,job_name="nightly-28417"} 1
    cce_kube_job_status_condition{...,job_name="report",condition="Failed",status="true"} 1
    cce_kube_cronjob_info{...,cronjob="nightly",schedule="0 2 * * *",timezone="Asia/Shanghai"} 1
    cce_kube_cronjob_next_schedule_time_seconds{...,cronjob="nightly"} 1.7e+09
    cce_kube_resourcequota{...,resourcequota="team-a",resource="pods",type="hard"} 50

``cce_kube_cronjob_next_schedule_time_seconds`` is the first fire time of the schedule (in its
time zone, UTC without one) after the last schedule time, or after creation when it never ran
(as kube-state-metrics computes it): a value in the past means a schedule was missed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from croniter import croniter

from exporter.kube.models import KubeClusterData, KubeCronJob, KubeJob, KubeQuota
from exporter.metrics.inputs import TargetData
from exporter.metrics.spec import (
    Family,
    Gauge,
    Info,
    RenderContext,
    Samples,
    Table,
    Value,
    escape_label_value,
)

__all__ = ["CRONJOB_TABLE", "IDENTITY", "JOB_CONDITIONS", "JOB_TABLE", "QUOTA_TABLE", "next_fire"]

log = logging.getLogger(__name__)

T = TypeVar("T")

IDENTITY: tuple[str, ...] = ("project_id", "cluster_id", "cluster", "namespace")

#: Job condition types reported; others (there are none upstream today) are left out rather
#: than becoming free-text label values.
JOB_CONDITIONS: tuple[str, ...] = (
    "Complete",
    "Failed",
    "Suspended",
    "FailureTarget",
    "SuccessCriteriaMet",
)
_STATUSES = (("true", "True"), ("false", "False"), ("unknown", "Unknown"))


def _clusters(target: TargetData) -> Iterator[tuple[str, KubeClusterData]]:
    esc = escape_label_value
    project = f'project_id="{esc(target.project_id)}"'
    for cluster_id in sorted(target.kube):
        data = target.kube[cluster_id]
        yield f'{project},cluster_id="{esc(cluster_id)}",cluster="{esc(data.cluster)}"', data


def _objects(target: TargetData, attr: str, name_label: str) -> Iterator[tuple[str, Any]]:
    esc = escape_label_value
    for head, data in _clusters(target):
        seen: set[tuple[str, str]] = set()
        for obj in getattr(data, attr):
            key = (obj.namespace, obj.name)
            if key in seen:
                continue
            seen.add(key)
            yield f'{head},namespace="{esc(obj.namespace)}",{name_label}="{esc(obj.name)}"', obj


def _table(resource: str, attr: str, name_label: str, families: tuple[Family[T], ...]) -> Table[T]:
    """A table of one kind of object: the cluster's identity, the namespace and ``name_label``."""
    return Table(
        group="kube",
        resource=resource,
        identity=(*IDENTITY, name_label),
        items=lambda target: _objects(target, attr, name_label),
        families=families,
    )


# --- jobs -----------------------------------------------------------------------------------------


def _conditions(job: KubeJob, ctx: RenderContext) -> list[tuple[Mapping[str, str | None], Value]]:
    out: list[tuple[Mapping[str, str | None], Value]] = []
    seen: set[str] = set()
    for kind, status in job.conditions:
        if kind not in JOB_CONDITIONS or kind in seen:
            continue
        seen.add(kind)
        for label, raw in _STATUSES:
            out.append(({"condition": kind, "status": label}, 1 if status == raw else 0))
    return out


JOB_TABLE: Table[KubeJob] = _table(
    "Kubernetes Job",
    "jobs",
    "job_name",
    (
        Info(
            "cce_kube_job_info",
            "A Kubernetes Job inside a CCE cluster (owner: the controller, e.g. its CronJob).",
            ("owner_kind", "owner_name"),
            lambda j: (j.owner_kind, j.owner_name),
        ),
        Gauge(
            "cce_kube_job_status_active",
            "Pods of the Job running now.",
            lambda j, ctx: j.active or 0,
        ),
        Gauge(
            "cce_kube_job_status_succeeded",
            "Pods of the Job that succeeded.",
            lambda j, ctx: j.succeeded or 0,
        ),
        Gauge(
            "cce_kube_job_status_failed",
            "Pods of the Job that failed.",
            lambda j, ctx: j.failed or 0,
        ),
        Gauge(
            "cce_kube_job_status_start_time_seconds",
            "When the Job started (Unix time).",
            lambda j, ctx: j.start_time,
        ),
        Gauge(
            "cce_kube_job_status_completion_time_seconds",
            "When the Job completed (Unix time); absent while it has not.",
            lambda j, ctx: j.completion_time,
        ),
        Samples(
            "cce_kube_job_status_condition",
            "The Job's conditions (Complete, Failed...): 1 on the series of the current status.",
            "gauge",
            ("condition", "status"),
            _conditions,
        ),
        Gauge(
            "cce_kube_job_spec_active_deadline_seconds",
            "The Job's activeDeadlineSeconds; absent when it has none.",
            lambda j, ctx: j.active_deadline_seconds,
        ),
    ),
)


# --- cronjobs -------------------------------------------------------------------------------------


def _split_schedule(schedule: str, timezone: str | None) -> tuple[str, str | None]:
    """``CRON_TZ=Europe/Paris 0 2 * * *`` (the form before spec.timeZone) -> schedule, zone."""
    text = schedule.strip()
    for prefix in ("CRON_TZ=", "TZ="):
        if text.startswith(prefix):
            zone, _, rest = text[len(prefix) :].partition(" ")
            return rest.strip(), timezone or zone
    return text, timezone


@functools.lru_cache(maxsize=65536)
def next_fire(schedule: str, timezone: str | None, after: float) -> float | None:
    """The first fire time of ``schedule`` in ``timezone`` (UTC if None) strictly after
    ``after``; None if the schedule or the zone cannot be read."""
    expr, zone_name = _split_schedule(schedule, timezone)
    try:
        zone = ZoneInfo(zone_name) if zone_name else UTC
        start = datetime.fromtimestamp(after, zone)
        value = croniter(expr, start).get_next(float)
    except Exception:  # croniter and zoneinfo raise many kinds; any means unreadable
        return None
    return float(value)


def _next_schedule(c: KubeCronJob, ctx: RenderContext) -> float | None:
    base = c.last_schedule if c.last_schedule is not None else c.created
    if c.schedule is None or base is None:
        return None
    return next_fire(c.schedule, c.timezone, base)


CRONJOB_TABLE: Table[KubeCronJob] = _table(
    "Kubernetes CronJob",
    "cronjobs",
    "cronjob",
    (
        Info(
            "cce_kube_cronjob_info",
            "A Kubernetes CronJob inside a CCE cluster, with its schedule and time zone.",
            ("schedule", "timezone"),
            lambda c: (c.schedule, c.timezone),
        ),
        Gauge(
            "cce_kube_cronjob_spec_suspend",
            "1 if the CronJob is suspended.",
            lambda c, ctx: 1 if c.suspend else 0,
        ),
        Gauge(
            "cce_kube_cronjob_status_last_schedule_time_seconds",
            "When the CronJob last started a Job (Unix time).",
            lambda c, ctx: c.last_schedule,
        ),
        Gauge(
            "cce_kube_cronjob_status_last_successful_time_seconds",
            "When a Job of the CronJob last succeeded (Unix time).",
            lambda c, ctx: c.last_successful,
        ),
        Gauge(
            "cce_kube_cronjob_next_schedule_time_seconds",
            "Next fire time after the last schedule (or creation), from the schedule and time "
            "zone (Unix time); in the past when a schedule was missed.",
            _next_schedule,
        ),
    ),
)


# --- resource quotas ------------------------------------------------------------------------------


def _quota(q: KubeQuota, ctx: RenderContext) -> list[tuple[Mapping[str, str | None], Value]]:
    out: list[tuple[Mapping[str, str | None], Value]] = []
    for resource, value in q.hard:
        out.append(({"resource": resource, "type": "hard"}, value))
    for resource, value in q.used:
        out.append(({"resource": resource, "type": "used"}, value))
    return out


QUOTA_TABLE: Table[KubeQuota] = _table(
    "Kubernetes ResourceQuota",
    "quotas",
    "resourcequota",
    (
        Samples(
            "cce_kube_resourcequota",
            "A ResourceQuota's limit (type=hard) and usage (type=used) of one resource.",
            "gauge",
            ("resource", "type"),
            _quota,
        ),
    ),
)
