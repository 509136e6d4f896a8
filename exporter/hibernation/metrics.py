"""The hibernation metrics, in the controller's private registry::

    cce_hibernation_policy_info{project_id,cluster_id,cluster,policy,timezone,dry_run} 1
    cce_hibernation_desired_state{...,state="awake"} 0
    cce_hibernation_desired_state{...,state="hibernated"} 1
    cce_hibernation_next_transition_timestamp_seconds{...,action="awake"} 1.8e9
    cce_hibernation_override_until_timestamp_seconds{...,state="awake"} 1.8e9
    cce_hibernation_actions_total{...,action="hibernate",result="success"} 3
    cce_hibernation_action_duration_seconds_bucket{action="hibernate",le="300.0"} 3
    cce_cluster_hibernated_seconds_total{project_id,cluster_id,cluster} 86400
    cce_hibernation_estimated_savings_total{...,currency="EUR"} 7.2

The gauges are computed once per tick (:meth:`HibernationMetrics.rebuild`), so a scrape does no
schedule work; the counters are kept here as the controller reports actions and phases.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter.cce.models import Cluster
from exporter.hibernation.planning import ACTIONS, dt, ts
from exporter.hibernation.policy import Match, PolicyFile
from exporter.hibernation.schedule import desired_state, next_transitions
from exporter.hibernation.targets import ControllerTarget
from exporter.limits import truncate_label

__all__ = ["OBSERVATION_CAP", "HibernationMetrics", "Ident"]

Ident = tuple[str, str]
#: Longest gap between two observations still counted as time in ``Hibernation``.
OBSERVATION_CAP = 3600.0


class HibernationMetrics(Collector):
    """The families above, labelled from the controller's ``targets`` and ``clusters`` (kept
    up to date by the controller)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        policy_file: PolicyFile,
        targets: Mapping[str, ControllerTarget],
        clusters: Mapping[Ident, Cluster],
    ) -> None:
        self.policy_file = policy_file
        self.targets = targets
        self.clusters = clusters
        self.duration = Histogram(
            "cce_hibernation_action_duration_seconds",
            "Seconds from the hibernate/awake API call to the cluster reaching the target phase.",
            ["action"],
            buckets=(30, 60, 120, 180, 300, 600, 900, 1200, 1800, 3600),
            registry=registry,
        )
        self.actions: dict[tuple[Ident, str, str], float] = {}
        self.hibernated_seconds: dict[Ident, float] = {}
        self.savings: dict[Ident, float] = {}
        self._observed: dict[Ident, tuple[float, str]] = {}
        self._snapshot: list[Metric] = []
        registry.register(self)

    def labels(self, ident: Ident) -> dict[str, str]:
        """A cluster's identifying labels: its target's labels, project, ID and name."""
        target = self.targets[ident[0]]
        cluster = self.clusters.get(ident)
        labels = dict(target.labels)
        labels.update(
            project_id=target.project_id,
            cluster_id=ident[1],
            cluster=truncate_label((cluster.name if cluster else None) or ""),
        )
        return labels

    def count(self, ident: Ident, action: str, result: str) -> None:
        k = (ident, action, result)
        self.actions[k] = self.actions.get(k, 0.0) + 1

    def observe_phases(
        self, clusters: Mapping[Ident, Cluster], governed: Iterable[Ident], now: float
    ) -> None:
        """Add the time since the last observation to the clusters seen in ``Hibernation``
        then (and its price to the savings)."""
        pricing = self.policy_file.pricing
        for ident in governed:
            cluster = clusters[ident]
            previous = self._observed.get(ident)
            if previous is not None and previous[1] == "Hibernation":
                seconds = min(max(0.0, now - previous[0]), OBSERVATION_CAP)
                self.hibernated_seconds[ident] = self.hibernated_seconds.get(ident, 0.0) + seconds
                price = (
                    pricing.control_plane_per_hour.get(cluster.spec.flavor or "")
                    if pricing
                    else None
                )
                if price is not None:
                    self.savings[ident] = self.savings.get(ident, 0.0) + seconds / 3600 * price
            self._observed[ident] = (now, cluster.phase or "")

    def rebuild(
        self,
        matches: Mapping[Ident, Match],
        overrides: Mapping[str, Any],
        dry_run: bool,
        now: float,
    ) -> None:
        """Compute the gauges (``overrides`` keyed ``target/cluster_id``)."""
        info = Metric(
            "cce_hibernation_policy_info",
            "Which hibernation policy governs which cluster.",
            "gauge",
        )
        desired = Metric(
            "cce_hibernation_desired_state",
            "What the policy wants now (1 for the wanted state).",
            "gauge",
        )
        nxt = Metric(
            "cce_hibernation_next_transition_timestamp_seconds",
            "When the next scheduled action of each kind happens.",
            "gauge",
        )
        over = Metric(
            "cce_hibernation_override_until_timestamp_seconds",
            "A temporary override in force, until then.",
            "gauge",
        )
        for ident, match in sorted(matches.items()):
            if match.excluded:
                continue
            labels = self.labels(ident)
            policy = match.policy
            info.add_sample(
                "cce_hibernation_policy_info",
                {
                    **labels,
                    "policy": policy.name,
                    "timezone": policy.timezone,
                    "dry_run": str(policy.dry_run or dry_run).lower(),
                },
                1,
            )
            wanted = desired_state(policy, dt(now))
            if wanted is not None:
                for state in ("awake", "hibernated"):
                    desired.add_sample(
                        "cce_hibernation_desired_state",
                        {**labels, "state": state},
                        float(wanted == state),
                    )
            upcoming = next_transitions(policy, dt(now), timedelta(days=8))
            for action in ACTIONS:
                first = next((t for t in upcoming if t.action == action), None)
                if first is not None:
                    nxt.add_sample(
                        "cce_hibernation_next_transition_timestamp_seconds",
                        {**labels, "action": action},
                        ts(first.at),
                    )
            o = overrides.get(f"{ident[0]}/{ident[1]}")
            if o and o.get("kind") == "keep" and o.get("until") is not None:
                over.add_sample(
                    "cce_hibernation_override_until_timestamp_seconds",
                    {**labels, "state": str(o.get("state"))},
                    float(o["until"]),
                )
        self._snapshot = [info, desired, nxt, over]

    def collect(self) -> Iterator[Metric]:
        yield from self._snapshot
        actions = Metric(
            "cce_hibernation_actions", "Hibernation actions taken, by result.", "counter"
        )
        for (ident, action, result), value in sorted(self.actions.items()):
            if ident[0] in self.targets:
                actions.add_sample(
                    "cce_hibernation_actions_total",
                    {**self.labels(ident), "action": action, "result": result},
                    value,
                )
        yield actions
        hib = Metric(
            "cce_cluster_hibernated_seconds",
            "Time the exporter observed the cluster in phase Hibernation.",
            "counter",
        )
        for ident, value in sorted(self.hibernated_seconds.items()):
            hib.add_sample("cce_cluster_hibernated_seconds_total", self.labels(ident), value)
        yield hib
        if self.policy_file.pricing is not None:
            currency = self.policy_file.pricing.currency
            sav = Metric(
                "cce_hibernation_estimated_savings",
                "Hibernated hours times the configured control-plane price per hour.",
                "counter",
            )
            for ident, value in sorted(self.savings.items()):
                sav.add_sample(
                    "cce_hibernation_estimated_savings_total",
                    {**self.labels(ident), "currency": currency},
                    value,
                )
            yield sav
