"""CCE / Hibernation & cost: what the policies want, what the clusters do, what it saves."""

from __future__ import annotations

from dashboards.board import (
    CLUSTER_VARIABLES,
    Board,
    board,
)
from dashboards.kit import (
    CLUSTER,
    bargauge,
    bars,
    column,
    firing,
    hibernation_actual,
    stat,
    state_timeline,
    table,
    target,
    timeseries,
)
from dashboards.phases import (
    HIBERNATION_STATES,
)

#: Title, timestamp family, its label and the column of the time, of the schedule's tables.
SCHEDULE_TABLES = (
    ("Next transitions", "cce_hibernation_next_transition_timestamp_seconds", "action", "At"),
    ("Overrides in force", "cce_hibernation_override_until_timestamp_seconds", "state", "Until"),
)


def hibernation() -> Board:
    return board(
        "cce-hibernation",
        "CCE / Hibernation & cost",
        "What the hibernation policies want, what the clusters do, and what it saves.",
        CLUSTER_VARIABLES,
        (_hibernation_summary, _hibernation_states, _hibernation_schedule, _hibernation_actions),
    )


def _hibernation_summary(d: Board) -> None:
    """Hours, savings, failures and governed clusters in the range."""
    d.add(
        stat(
            "Hibernated hours",
            [
                target(
                    f"sum(increase(cce_cluster_hibernated_seconds_total{{{CLUSTER}}}[$__range]))"
                    " / 3600",
                    "hours",
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
                )
            ],
            thresholds=firing(),
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
                )
            ],
            color_mode="none",
        ),
        6,
        4,
    )


def _hibernation_states(d: Board) -> None:
    """Desired against actual state."""
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


def _hibernation_schedule(d: Board) -> None:
    """Next transitions, overrides and policies."""
    d.row("Schedule")
    for title, metric, label, when in SCHEDULE_TABLES:
        d.add(
            table(
                title,
                [(when, f"{metric}{{{CLUSTER}}} * 1000")],
                hide=["project_id", "cluster_id"],
                order=["cluster", label, when],
                columns={when: column(unit="dateTimeAsIso")},
            ),
            8,
            8,
        )
    d.add(
        table(
            "Policies",
            [(None, f"cce_hibernation_policy_info{{{CLUSTER}}}")],
            hide=["project_id", "cluster_id"],
            order=["cluster", "policy", "timezone", "dry_run"],
        ),
        8,
        8,
    )


def _hibernation_actions(d: Board) -> None:
    """Actions, their duration, and the savings by cluster."""
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
                )
            ],
            decimals=2,
        ),
        12,
        8,
    )
