"""CCE job metrics: identity ``project_id``, ``cluster_id``, ``job_id``.

A job is a cluster or node operation (create, delete, upgrade, hibernate ...) the collector tracks.
Its duration runs from creation to now while it runs, and to its completion (the job's last update)
once it is Success or Failed. Sample exposition::

    cce_job_info{project_id="p1",cluster_id="4d1e...",job_id="3543...",type="CreateCluster",
        resource_id="6f4d...",resource="cluster-name"} 1
    cce_job_status_phase{...,job_id="3543...",phase="Running"} 1
    cce_job_created_timestamp_seconds{...} 1533197560.672772
    cce_job_duration_seconds{...} 551.5
    cce_job_completion_timestamp_seconds{...} 1533198110.478109   (Success or Failed only)

The histogram ``cce_job_completed_duration_seconds`` is stateful and lives in
:mod:`exporter.metrics.histogram`.
"""

from __future__ import annotations

from collections.abc import Iterator

from exporter.cce.models import JOB_PHASES, Job
from exporter.metrics.inputs import TargetData, TrackedJob
from exporter.metrics.spec import (
    Gauge,
    Info,
    RenderContext,
    StateSet,
    Table,
    epoch,
    escape_label_value,
)

__all__ = ["TABLE", "job_duration"]


def _items(target: TargetData) -> Iterator[tuple[str, TrackedJob]]:
    esc = escape_label_value
    project = f'project_id="{esc(target.project_id)}"'
    seen: set[str] = set()
    for tracked in sorted(target.jobs, key=lambda t: (t.cluster_id, t.job.id or "")):
        jid = tracked.job.id
        if not jid or jid in seen:
            continue
        seen.add(jid)
        yield f'{project},cluster_id="{esc(tracked.cluster_id)}",job_id="{esc(jid)}"', tracked


def completion(job: Job) -> float | None:
    """When a finished job completed (its last update), else None."""
    return epoch(job.metadata.update_timestamp) if job.finished else None


def job_duration(job: Job, now: float) -> float | None:
    """Running: now - created; finished: completion - created; never negative."""
    created = epoch(job.metadata.creation_timestamp)
    if created is None:
        return None
    end = completion(job) if job.finished else now
    return None if end is None else max(0.0, end - created)


def _duration(t: TrackedJob, ctx: RenderContext) -> float | None:
    return job_duration(t.job, ctx.now)


TABLE: Table[TrackedJob] = Table(
    group="jobs",
    resource="CCE job",
    identity=("project_id", "cluster_id", "job_id"),
    items=_items,
    families=(
        Info(
            "cce_job_info",
            "A CCE job (cluster or node operation) the exporter tracks.",
            ("type", "resource_id", "resource"),
            lambda t: (t.job.spec.type, t.job.spec.resource_id, t.job.spec.resource_name),
        ),
        StateSet(
            "cce_job_status_phase",
            "Current phase of the job (1 for the current phase, 0 for the others).",
            "phase",
            JOB_PHASES,
            lambda t: t.job.status.phase,
        ),
        Gauge(
            "cce_job_created_timestamp_seconds",
            "Creation time of the job (Unix time).",
            lambda t, ctx: epoch(t.job.metadata.creation_timestamp),
        ),
        Gauge(
            "cce_job_completion_timestamp_seconds",
            "Completion time of a job in phase Success or Failed (Unix time).",
            lambda t, ctx: completion(t.job),
        ),
        Gauge(
            "cce_job_duration_seconds",
            "Running jobs: seconds since creation; finished jobs: completion minus creation.",
            _duration,
        ),
    ),
)
