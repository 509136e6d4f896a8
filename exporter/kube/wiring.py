"""How Kubernetes collection is built (by ``exporter.assemble``) and rendered (by the service).

:func:`build_kube_collector` gives a target's :class:`KubeCollector` (None when the target does
not enable ``kubernetes``), sending through the target's CCE client; :class:`KubeCounters` is
``cce_exporter_kube_objects_dropped_total`` plus the collector's shared error counter;
:func:`with_kube` adds a collector's data and health to a target's render snapshot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter

from exporter.cce.client import CCEClient
from exporter.cce.models import Cluster
from exporter.config import TargetConfig
from exporter.kube.client import KubeClient, fetcher_for
from exporter.kube.collector import RESOURCE, KubeCollector
from exporter.metrics.inputs import ResourceHealth, TargetData

__all__ = ["RESOURCE", "KubeCounters", "build_kube_collector", "with_kube"]


class _Errors(Protocol):
    def error(self, project_id: str, resource: str, error: str) -> None: ...


class _State(Protocol):
    @property
    def clusters(self) -> Sequence[Cluster]: ...
    @property
    def clusters_listed(self) -> bool: ...


class _TargetCollector(Protocol):
    """What is needed of the target's :class:`~exporter.collect.target.TargetCollector`."""

    @property
    def project_id(self) -> str: ...
    @property
    def state(self) -> _State: ...
    @property
    def clock(self) -> Callable[[], float]: ...


class KubeCounters:
    """The counters Kubernetes collection bumps."""

    def __init__(self, registry: CollectorRegistry, errors: _Errors) -> None:
        self.dropped = Counter(
            "cce_exporter_kube_objects_dropped",
            "Kubernetes objects left out, counted at each collection, because a cluster had "
            "more than max_objects_per_cluster of a kind.",
            ["cluster_id", "kind"],
            registry=registry,
        )
        self._errors = errors

    def error(self, project_id: str, resource: str, error: str) -> None:
        self._errors.error(project_id, resource, error)

    def kube_dropped(self, cluster_id: str, kind: str, count: int) -> None:
        self.dropped.labels(cluster_id, kind).inc(count)


def build_kube_collector(
    config: TargetConfig, client: CCEClient, target: _TargetCollector, counters: KubeCounters
) -> KubeCollector | None:
    """The target's Kubernetes collector, or None when ``kubernetes.enabled`` is off.

    It sends through ``client`` (the target's CCE client) and takes its clusters from the
    target's last cluster listing (None until there has been one).
    """
    kube = config.kubernetes
    if not kube.enabled:
        return None

    def clusters() -> Sequence[Cluster] | None:
        return target.state.clusters if target.state.clusters_listed else None

    return KubeCollector(
        target=config.name,
        project_id=target.project_id,
        config=kube,
        client=KubeClient(fetcher_for(client), kube.endpoint),
        clusters=clusters,
        stats=counters,
        concurrency=config.concurrency,
        clock=target.clock,
    )


def with_kube(snapshot: TargetData, kube: KubeCollector | None) -> TargetData:
    """``snapshot`` with the collector's objects and its health (resource ``kubernetes``)."""
    if kube is None:
        return snapshot
    health = kube.health
    extra: tuple[ResourceHealth, ...] = ()
    if health.attempted:
        extra = (ResourceHealth(RESOURCE, health.success, health.duration, health.last_success),)
    outcomes = dict(snapshot.cluster_success)
    if kube.outcomes:
        outcomes[RESOURCE] = dict(kube.outcomes)
    return dataclasses.replace(
        snapshot,
        kube=kube.snapshot(),
        health=(*snapshot.health, *extra),
        cluster_success=outcomes,
    )
