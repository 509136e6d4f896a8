"""Sharding: each replica collects only the clusters whose ID hashes to its shard.

A cluster belongs to shard ``shard_of(cluster_id, total)``: the first 8 bytes of the SHA-256 of
the ID, as a big-endian integer, modulo ``total``. The hash is stable across processes, Python
versions and machines (Python's ``hash()`` is salted per process and would scatter a cluster over
several shards across restarts). Every per-cluster resource (nodes, node pools, add-ons, jobs)
follows its cluster, so the shards' series are disjoint and their union is what one unsharded
exporter exports. Quotas are per project, not per cluster: only shard 0 collects them.

The ordinal comes from ``CCE_EXPORTER_SHARD`` (``--shard``); when that is not set and there is more
than one shard, it is read from the StatefulSet pod name (``POD_NAME``, else ``HOSTNAME``), whose
last ``-<n>`` is the pod's ordinal: ``cce-exporter-2`` is shard 2.

Self-metrics (:meth:`ShardConfig.registry`), so that an alert can tell a missing or misconfigured
shard::

    cce_exporter_shard_ordinal 2
    cce_exporter_total_shards 3
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from exporter.cce.models import Cluster

__all__ = [
    "ShardConfig",
    "ShardError",
    "detect_ordinal",
    "shard_of",
    "shard_settings",
]

#: A StatefulSet pod is named ``<statefulset>-<ordinal>``.
_ORDINAL = re.compile(r"-(\d+)$")
SHARD_ENV = "CCE_EXPORTER_SHARD"


class ShardError(ValueError):
    """The shard settings are inconsistent (the message names the setting and the fix)."""


def shard_of(cluster_id: str, total: int) -> int:
    """The shard (``0 .. total-1``) that owns ``cluster_id``; stable everywhere."""
    if total < 1:
        raise ValueError(f"total must be at least 1, got {total}")
    digest = hashlib.sha256(cluster_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % total


def detect_ordinal(env: Mapping[str, str] | None = None) -> int | None:
    """The StatefulSet ordinal at the end of ``POD_NAME`` (or ``HOSTNAME``), or None."""
    env = os.environ if env is None else env
    for name in ("POD_NAME", "HOSTNAME"):
        value = env.get(name, "").strip()
        if value:
            match = _ORDINAL.search(value)
            return int(match.group(1)) if match else None
    return None


@dataclass(frozen=True)
class ShardConfig:
    """This replica's shard: ``ordinal`` of ``total`` (``ShardConfig()`` is the unsharded one)."""

    ordinal: int = 0
    total: int = 1

    def __post_init__(self) -> None:
        if self.total < 1:
            raise ShardError(f"total_shards must be at least 1, got {self.total}")
        if not 0 <= self.ordinal < self.total:
            raise ShardError(
                f"shard {self.ordinal} is out of range: shards are numbered 0 to "
                f"{self.total - 1} when total_shards is {self.total}"
            )

    @property
    def enabled(self) -> bool:
        return self.total > 1

    def owns(self, cluster: Cluster | str) -> bool:
        """Whether this shard collects ``cluster`` (a model or an ID): the ``cluster_filter``."""
        if self.total == 1:
            return True
        cluster_id = cluster if isinstance(cluster, str) else (cluster.id or "")
        return shard_of(cluster_id, self.total) == self.ordinal

    @property
    def owns_quotas(self) -> bool:
        """Quotas are per project: one shard (0) collects them, or they would be duplicated."""
        return self.ordinal == 0

    @classmethod
    def from_settings(cls, settings: Any, env: Mapping[str, str] | None = None) -> ShardConfig:
        """From ``settings.shard``/``settings.total_shards``; with several shards and no explicit
        shard setting, the ordinal is the StatefulSet pod's."""
        total = int(settings.total_shards)
        ordinal = int(settings.shard)
        explicit = "shard" in getattr(settings, "sources", {})
        if total > 1 and not explicit:
            detected = detect_ordinal(env)
            if detected is None:
                raise ShardError(
                    f"total_shards is {total} but this replica's shard is unknown: set "
                    f"{SHARD_ENV} (--shard), or run as a StatefulSet pod whose POD_NAME or "
                    "HOSTNAME ends in -<ordinal>"
                )
            if detected >= total:
                raise ShardError(
                    f"the pod ordinal {detected} (from POD_NAME/HOSTNAME) is not below "
                    f"total_shards {total}: raise CCE_EXPORTER_TOTAL_SHARDS to the StatefulSet's "
                    "replica count"
                )
            ordinal = detected
        return cls(ordinal, total)

    def registry(self) -> CollectorRegistry:
        """A private registry with the two shard gauges (add it to ``extra_registries``)."""
        registry = CollectorRegistry(auto_describe=True)
        Gauge(
            "cce_exporter_shard_ordinal",
            "This replica's shard number (0 to total_shards-1).",
            registry=registry,
        ).set(self.ordinal)
        Gauge(
            "cce_exporter_total_shards",
            "How many shards this replica believes there are.",
            registry=registry,
        ).set(self.total)
        return registry


def shard_settings(settings: Any, shard: ShardConfig) -> Any:
    """``settings`` for this shard: a copy with quota collection off except on shard 0."""
    if shard.owns_quotas:
        return settings
    targets = []
    for target in settings.targets:
        resources = target.resources.model_copy(
            update={"quotas": target.resources.quotas.model_copy(update={"enabled": False})}
        )
        targets.append(target.model_copy(update={"resources": resources}))
    copy = settings.model_copy(update={"targets": targets})
    return copy
