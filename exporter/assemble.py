"""How the composition root builds each configured target: its client, collector and trackers,
and its Kubernetes collector.

:class:`TargetBuilder` is what :mod:`exporter.app` hands the service
(``ExporterService(settings, build_targets=TargetBuilder(...))``); the service lends it its API
metrics, counters and clock (:class:`~exporter.collect.service.TargetTools`) and takes the targets
as they are built, one at a time, so that a start-up that fails half-way still closes the clients
already open. The service restores the state file's phases and jobs into the trackers built here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from exporter.cce.client import CCEClient
from exporter.cce.factory import connect, describe_auth
from exporter.cce.http import HttpOptions
from exporter.cce.instrumentation import ApiMetrics
from exporter.cce.models import Cluster
from exporter.collect.service import Target, TargetTools
from exporter.collect.state import SLOW_RESOURCES
from exporter.collect.target import TargetCollector
from exporter.collect.tracking import JobTracker, PhaseTracker
from exporter.config import Settings, TargetConfig
from exporter.kube.wiring import build_kube_collector

__all__ = ["Connect", "TargetBuilder"]

log = logging.getLogger("exporter.collect.service")


class Connect(Protocol):
    """Builds a target's client (``exporter.cce.factory.connect``, or a test's stand-in)."""

    async def __call__(self, target: TargetConfig, api_metrics: ApiMetrics) -> CCEClient: ...


@dataclass(frozen=True)
class TargetBuilder:
    """Builds every configured target (resolving project names to IDs through its client).

    ``connect``: how a target's client is built; ``cluster_filter``: which clusters this replica
    collects (its shard's), None for all."""

    connect: Connect = connect
    cluster_filter: Callable[[Cluster], bool] | None = None

    async def __call__(self, settings: Settings, tools: TargetTools) -> AsyncIterator[Target]:
        for config in settings.targets:
            yield await self.target(settings, config, tools)

    async def target(self, settings: Settings, config: TargetConfig, tools: TargetTools) -> Target:
        """One target: its client, its collector with fresh trackers, its Kubernetes collector."""
        log.info(
            "target %s: %s, proxy: %s",
            config.name,
            describe_auth(config),
            HttpOptions.for_target(config).route(),
        )
        client = await self.connect(config, tools.api_metrics)
        collector = TargetCollector(
            name=config.name,
            project_id=client.project_id,
            labels=config.labels,
            client=client,
            stats=tools.counters,
            jobs=JobTracker(settings.job_retention, target=config.name),
            # One tracker per target: a target's listing forgets only its own objects.
            phases=PhaseTracker(),
            cluster_filter=self.cluster_filter,
            # Per-cluster calls of one target, each a request and the parse of its answer.
            # Twice what the client lets through at once: a call parsing its answer has
            # released the client's slot, and the next call can take it meanwhile.
            concurrency=asyncio.Semaphore(2 * config.concurrency),
            clock=tools.clock,
        )
        collector.slow_intervals = {
            r: float(config.resources.get(r).interval) for r in SLOW_RESOURCES
        }
        kube = build_kube_collector(config, client, collector, tools.kube_counters)
        return Target(config, client, collector, kube)
