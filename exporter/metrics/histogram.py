"""``cce_job_completed_duration_seconds``: one observation per CCE job seen to finish.

A histogram is stateful (it accumulates across collections), so it is a prometheus_client object
in its own registry, appended to the exposition by :func:`exporter.metrics.render.assemble`.
Sample exposition::

    cce_job_completed_duration_seconds_bucket{type="CreateCluster",phase="Success",le="600.0"} 3
    cce_job_completed_duration_seconds_count{type="CreateCluster",phase="Success"} 4
"""

from __future__ import annotations

from collections import OrderedDict

from prometheus_client import CollectorRegistry, Histogram

from exporter.cce.models import Job
from exporter.metrics.jobs import job_duration

__all__ = ["JOB_DURATION_BUCKETS", "JobDurationHistogram"]

#: CCE jobs take from under a minute (add-on, node pool edits) to over an hour (cluster creation,
#: upgrades of large clusters).
JOB_DURATION_BUCKETS: tuple[float, ...] = (
    30,
    60,
    120,
    300,
    600,
    900,
    1200,
    1800,
    2700,
    3600,
    5400,
    7200,
)


class JobDurationHistogram:
    """Observe each finished job once; remembers the last ``memory`` job IDs it observed."""

    def __init__(self, registry: CollectorRegistry | None = None, *, memory: int = 10_000) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.histogram = Histogram(
            "cce_job_completed_duration_seconds",
            "Duration of CCE jobs seen to finish, one observation per job.",
            ["type", "phase"],
            buckets=JOB_DURATION_BUCKETS,
            registry=self.registry,
        )
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._memory = memory

    def observe(self, job: Job) -> bool:
        """Observe ``job`` if it finished, has a duration and was not observed before.

        Returns whether it was observed. The job type goes in as the API spells it (an operation
        name such as ``CreateCluster``), or ``unknown`` when the API leaves it out.
        """
        jid = job.id
        if not job.finished or not jid or jid in self._seen:
            return False
        duration = job_duration(job, 0.0)
        if duration is None:
            return False
        self._seen[jid] = None
        if len(self._seen) > self._memory:
            self._seen.popitem(last=False)
        phase = job.phase or "unknown"
        self.histogram.labels(type=job.spec.type or "unknown", phase=phase).observe(duration)
        return True
