"""What every collection of one target shares: the target's identity and last good data, each
resource's health, and how a failure is logged, counted and kept for the status console.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from exporter.cce.errors import CCEError
from exporter.cce.memo import Memo
from exporter.cce.models import Cluster
from exporter.collect.state import (
    RESOURCES,
    SLOW_RESOURCES,
    Client,
    CollectorStats,
    TargetState,
)
from exporter.collect.tracking import JobTracker, PhaseTracker
from exporter.health import Health

# The collector's log lines keep one logger name, whichever module of it logs.
log = logging.getLogger("exporter.collect.target")


class CollectorBase:
    """One target's identity, last good data and health, and the error bookkeeping and logging
    context every collection of it shares (:class:`~exporter.collect.target.TargetCollector`
    adds the collections)."""

    def __init__(
        self,
        *,
        name: str,
        project_id: str,
        labels: Mapping[str, str],
        client: Client,
        stats: CollectorStats,
        jobs: JobTracker,
        phases: PhaseTracker | None = None,
        cluster_filter: Callable[[Cluster], bool] | None = None,
        concurrency: asyncio.Semaphore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.project_id = project_id
        self.labels = dict(labels)
        self.client = client
        self.stats = stats
        self.jobs = jobs
        # Not `phases or ...`: an empty tracker is falsy (it has a length), and the one passed in
        # is the one the state file saves.
        self.phases = phases if phases is not None else PhaseTracker()
        self.cluster_filter = cluster_filter
        self.concurrency = concurrency or asyncio.Semaphore(16)
        self.clock = clock
        self.state = TargetState()
        self.health: dict[str, Health] = {r: Health() for r in RESOURCES}
        self.errors: dict[str, str] = {}  # "<resource>/<cluster_id>" -> last error text
        # "<resource>" and "<resource>/<cluster_id>" -> the last error's class, HTTP status, API
        # error code and message (the status page shows the cause; no traceback is kept)
        self.last_errors: dict[str, dict[str, Any]] = {}
        # resource -> cluster_id -> whether that cluster's last collection of it succeeded
        self.cluster_success: dict[str, dict[str, bool]] = {}
        # "<resource>/<cluster_id>" and "job/<job_id>" -> the last answer (exporter.cce.memo)
        self.memos: dict[str, Memo[Any]] = {}
        #: Seconds between two checks of each slow resource (set from the configuration).
        self.slow_intervals: dict[str, float] = dict.fromkeys(SLOW_RESOURCES, 3600.0)
        #: Slow resources this installation does not offer (a 404 on every call): not asked again.
        self.unsupported: set[str] = set()
        #: Set once the clusters were first asked for: a slow resource's first run waits for that
        #: rather than an hour for its next run.
        self.clusters_asked = asyncio.Event()

    # --- helpers ---------------------------------------------------------------------------------

    def _memo(self, key: str) -> Memo[Any]:
        memo = self.memos.get(key)
        if memo is None:
            memo = self.memos[key] = Memo()
        return memo

    def _where(self, cluster: Cluster | None = None, resource: str | None = None) -> dict[str, str]:
        """``extra=`` fields naming the target (and cluster): JSON logs carry them as keys."""
        extra = {"target": self.name, "project_id": self.project_id}
        if resource is not None:
            extra["resource"] = resource
        if cluster is not None:
            extra["cluster"] = cluster.name or ""
            extra["cluster_id"] = cluster.id or ""
        return extra

    def _where_text(self, cluster: Cluster | None = None, cluster_id: str | None = None) -> str:
        """``target=... project=... cluster=... cluster_id=...`` for the text of a log line."""
        where = f"target={self.name} project={self.project_id}"
        if cluster is None and cluster_id is not None:
            cluster = next((c for c in self.state.clusters if c.id == cluster_id), None)
            if cluster is None:
                return f"{where} cluster_id={cluster_id}"
        if cluster is not None:
            where += f" cluster={cluster.name} cluster_id={cluster.id}"
        return where

    def _log_error(self, resource: str, exc: BaseException, cluster: Cluster | None = None) -> str:
        where = self._where_text(cluster)
        text = str(exc) or type(exc).__name__
        log.warning(
            "collecting %s failed (%s): %s",
            resource,
            where,
            text,
            extra=self._where(cluster, resource),
        )
        self.stats.error(self.project_id, resource, type(exc).__name__)
        self.last_errors[resource if cluster is None else f"{resource}/{cluster.id}"] = {
            "error": type(exc).__name__,
            "status_code": getattr(exc, "status_code", None),
            "code": getattr(exc, "code", None),
            "message": getattr(exc, "message", None),
        }
        return text

    async def _timed(self, resource: str, work: Callable[[], Awaitable[bool]]) -> bool:
        """Run one resource's collection; record duration and success. Never raises CCEError."""
        health = self.health[resource]
        started = time.perf_counter()
        now = self.clock()
        health.last_attempt = now
        health.error = None
        try:
            ok = await work()
        except CCEError as exc:
            ok = False
            health.error = self._log_error(resource, exc)
        except Exception as exc:  # a bug must not kill the scheduler; it shows as a failure
            ok = False
            log.exception(
                "collecting %s crashed (%s)",
                resource,
                self._where_text(),
                extra=self._where(None, resource),
            )
            self.stats.error(self.project_id, resource, type(exc).__name__)
            health.error = f"internal error: {type(exc).__name__}"
        health.attempted = True
        health.duration = time.perf_counter() - started
        health.success = ok
        if ok:
            health.last_success = self.clock()
        return ok

    def governed_clusters(self) -> list[Cluster]:
        return [c for c in self.state.clusters if c.id]
