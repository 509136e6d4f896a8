"""CCE / Workloads: Kubernetes Jobs, CronJobs and ResourceQuotas inside the clusters."""

from __future__ import annotations

from dashboards.board import (
    CLUSTER_VARIABLES,
    Board,
    board,
)
from dashboards.kit import (
    COLOR_TEXT,
    bargauge,
    column,
    count_or_zero,
    firing,
    stat,
    steps,
    table,
    target,
    timeseries,
    value_mapping,
)

KUBE = 'project_id=~"$project", cluster=~"$cluster", namespace=~"$namespace"'
KUBE_JOB = "project_id, cluster_id, namespace, job_name"
KUBE_QUOTA_RATIO = (
    f'cce_kube_resourcequota{{{KUBE}, type="used"}}\n  / ignoring(type)\n'
    f'  (cce_kube_resourcequota{{{KUBE}, type="hard"}} > 0)'
)
KUBE_FAILED = f'(cce_kube_job_status_condition{{{KUBE}, condition="Failed", status="true"}} == 1)'
KUBE_RUNNING = f"(cce_kube_job_status_active{{{KUBE}}} > 0)"


def workloads() -> Board:
    namespace = (
        'label_values(cce_kube_job_info{project_id=~"$project", cluster=~"$cluster"}, namespace)'
    )
    return board(
        "cce-workloads",
        "CCE / Workloads",
        "Kubernetes Jobs, CronJobs and ResourceQuotas inside the clusters, per cluster and "
        "namespace (collected through CCE when kubernetes.enabled is on).",
        (*CLUSTER_VARIABLES, ("namespace", "Namespace", namespace)),
        (
            _workloads_summary,
            _workloads_failing_jobs,
            _workloads_job_pods,
            _workloads_cronjobs,
            _workloads_quotas,
        ),
    )


def _workloads_summary(d: Board) -> None:
    """Failed, running and late work, and objects over the cap."""
    d.add(
        stat(
            "Failed Jobs",
            [target(count_or_zero(KUBE_FAILED), "failed")],
            thresholds=firing(),
        ),
        6,
        4,
    )
    d.add(
        stat(
            "Running Jobs",
            [target(count_or_zero(KUBE_RUNNING), "running")],
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
                (
                    "Failed pods",
                    f"cce_kube_job_status_failed{{{KUBE}}}\nand on({KUBE_JOB}) {KUBE_FAILED}",
                ),
                (
                    "Started",
                    f"cce_kube_job_status_start_time_seconds{{{KUBE}}} * 1000\n"
                    f"and on({KUBE_JOB}) {KUBE_FAILED}",
                ),
                (None, f"cce_kube_job_info{{{KUBE}}}\nand on({KUBE_JOB}) {KUBE_FAILED}"),
            ],
            hide=["project_id", "cluster_id"],
            rename={"job_name": "Job"},
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
                (
                    "Running for",
                    f"time() - cce_kube_job_status_start_time_seconds{{{KUBE}}}\n"
                    f"and on({KUBE_JOB}) {KUBE_RUNNING}",
                ),
                (
                    "Deadline",
                    f"cce_kube_job_spec_active_deadline_seconds{{{KUBE}}}\n"
                    f"and on({KUBE_JOB}) {KUBE_RUNNING}",
                ),
            ],
            hide=["project_id", "cluster_id"],
            rename={"job_name": "Job"},
            order=["cluster", "namespace", "Job", "Running for", "Deadline"],
            columns={
                "Running for": column(
                    unit="s",
                    thresholds=steps(("green", None), ("orange", 3600), ("red", 43200)),
                    cells=COLOR_TEXT,
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
                ("Completed", f"cce_kube_job_status_completion_time_seconds{{{KUBE}}} * 1000"),
                (
                    "Took",
                    f"cce_kube_job_status_completion_time_seconds{{{KUBE}}}\n"
                    f"- cce_kube_job_status_start_time_seconds{{{KUBE}}}",
                ),
            ],
            hide=["project_id", "cluster_id"],
            rename={"job_name": "Job"},
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
                (None, f"cce_kube_cronjob_info{{{KUBE}}}"),
                ("Suspended", f"cce_kube_cronjob_spec_suspend{{{KUBE}}}"),
                (
                    "Since last schedule",
                    f"time() - cce_kube_cronjob_status_last_schedule_time_seconds{{{KUBE}}}",
                ),
                (
                    "Since last success",
                    f"time() - cce_kube_cronjob_status_last_successful_time_seconds{{{KUBE}}}",
                ),
                ("Next schedule", f"cce_kube_cronjob_next_schedule_time_seconds{{{KUBE}}} * 1000"),
            ],
            hide=["project_id", "cluster_id"],
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
                    cells=COLOR_TEXT,
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
                ("Used", f'cce_kube_resourcequota{{{KUBE}, type="used"}}'),
                ("Hard", f'cce_kube_resourcequota{{{KUBE}, type="hard"}}'),
            ],
            hide=["project_id", "cluster_id", "type"],
            order=["cluster", "namespace", "resourcequota", "resource", "Used", "Hard"],
            description="Values in the resource's base unit (cores, bytes, counts).",
        ),
        12,
        10,
    )
