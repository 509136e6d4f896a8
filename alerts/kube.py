"""The ``cce-kube`` rule group: Kubernetes Jobs, CronJobs and ResourceQuotas inside the clusters.

Called by :func:`alerts.generate.build_alerts` with its ``add`` function; thresholds come from
``alerts/thresholds.yaml`` like every other alert's. The families are the ``cce_kube_*`` ones
(collected through CCE when ``kubernetes.enabled`` is on), whose series all carry ``project_id``,
``cluster_id``, ``cluster`` and ``namespace``; no expression aggregates, so every label (static
target labels, ``instance``, ``job``) reaches the alert.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from alerts.durations import human_seconds

__all__ = ["add_kube_alerts"]

GROUP = "cce-kube"
WHERE = "{{ $labels.namespace }} of cluster {{ $labels.cluster }} ({{ $labels.cluster_id }})"
QUOTA_RATIO = (
    'cce_kube_resourcequota{type="used"}\n'
    '  / ignoring(type)\n  (cce_kube_resourcequota{type="hard"} > 0)'
)


def add_kube_alerts(a: Mapping[str, Mapping[str, Any]], add: Callable[..., None]) -> None:
    """Add the group's alerts through ``add(group, name, expr, **texts)``."""
    add(
        GROUP,
        "CCEKubeJobFailed",
        'cce_kube_job_status_condition{condition="Failed",status="true"} == 1',
        summary="Kubernetes Job {{ $labels.job_name }} failed.",
        description=(
            f"Job {{{{ $labels.job_name }}}} in namespace {WHERE} failed (backoff limit or "
            "deadline exceeded). The alert lasts while the Job is kept (the cluster's TTL, and "
            "the exporter's finished_job_retention, 24h by default): delete or silence it once "
            "handled."
        ),
        threshold="condition Failed = true",
        meaning="A batch Job inside a cluster failed.",
    )
    not_done = a["CCEKubeJobNotCompleted"]
    default = float(not_done["default_seconds"])
    add(
        GROUP,
        "CCEKubeJobNotCompleted",
        f"""
(
  time() - cce_kube_job_status_start_time_seconds
)
> (
  cce_kube_job_spec_active_deadline_seconds
  or
  cce_kube_job_status_start_time_seconds * 0 + {default:g}
)
and
(
  cce_kube_job_status_active > 0
)
unless
cce_kube_job_status_completion_time_seconds
""",
        summary="Kubernetes Job {{ $labels.job_name }} has not completed.",
        description=(
            f"Job {{{{ $labels.job_name }}}} in namespace {WHERE} has been running for "
            "{{ $value | humanizeDuration }}, longer than its activeDeadlineSeconds or, without "
            f"one, {human_seconds(default)}."
        ),
        threshold=f"running > activeDeadlineSeconds, or > {human_seconds(default)} without one",
        meaning="A batch Job hangs.",
    )
    missed = a["CCEKubeCronJobMissedSchedule"]
    factor = float(missed["period_factor"])
    add(
        GROUP,
        "CCEKubeCronJobMissedSchedule",
        f"""
(
  time() - cce_kube_cronjob_status_last_schedule_time_seconds
)
> {factor:g} * (
  cce_kube_cronjob_next_schedule_time_seconds
  - cce_kube_cronjob_status_last_schedule_time_seconds
)
unless
(
  cce_kube_cronjob_spec_suspend == 1
)
""",
        summary="CronJob {{ $labels.cronjob }} missed its schedule.",
        description=(
            f"CronJob {{{{ $labels.cronjob }}}} in namespace {WHERE} last started a Job "
            f"{{{{ $value | humanizeDuration }}}} ago, more than {factor:g} times its schedule's "
            "period, and is not suspended: the controller cannot start it (quota, admission, "
            "startingDeadlineSeconds, or too many missed runs)."
        ),
        threshold=f"no schedule for > {factor:g} x the period, not suspended",
        meaning="A CronJob stopped running on schedule.",
    )
    where_quota = (
        "{{ $labels.resource }} of ResourceQuota {{ $labels.resourcequota }} in namespace " + WHERE
    )
    almost = float(a["CCEKubeQuotaAlmostFull"]["ratio"])
    add(
        GROUP,
        "CCEKubeQuotaAlmostFull",
        f"""
(
  {QUOTA_RATIO}
) > {almost:g} < 1
""",
        summary="ResourceQuota {{ $labels.resourcequota }} is almost full.",
        description=(
            f"{{{{ $value | humanizePercentage }}}} of the {where_quota} is used: new pods "
            "will soon be refused."
        ),
        threshold=f"used / hard > {almost:g} and < 1",
        meaning="A namespace's quota is almost used up.",
    )
    add(
        GROUP,
        "CCEKubeQuotaFullyUsed",
        f"""
(
  {QUOTA_RATIO}
) == 1
""",
        summary="ResourceQuota {{ $labels.resourcequota }} is fully used.",
        description=(
            f"The {where_quota} is fully used: what needs more of it is refused. A quota used "
            "to the brim can be by design (a pod count cap); silence it then."
        ),
        threshold="used / hard = 1",
        meaning="A namespace's quota is used up.",
    )
    add(
        GROUP,
        "CCEKubeQuotaExceeded",
        f"""
(
  {QUOTA_RATIO}
) > 1
""",
        summary="ResourceQuota {{ $labels.resourcequota }} is exceeded.",
        description=(
            f"{{{{ $value | humanizePercentage }}}} of the {where_quota} is used: the quota was "
            "lowered below what runs, and nothing more of it can be created."
        ),
        threshold="used / hard > 1",
        meaning="A namespace uses more than its quota.",
    )
