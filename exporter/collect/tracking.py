"""Bookkeeping that outlives one listing: time in phase, and the CCE jobs being followed.

Both are plain in-memory structures, saved to and restored from the state file as JSON sections.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exporter.cce.models import Job

log = logging.getLogger(__name__)


#: Kinds whose keys are qualified by their cluster: ``<kind>/<cluster_id>/<id>``.
PER_CLUSTER_KINDS = frozenset({"node", "nodepool", "addon"})
#: Kinds the renderer looks up with their cluster: a default node pool's ID, <az>#<flavor>#<os>,
#: is the same in every cluster that has one. Node and add-on IDs are UUIDs.
SCOPED_IN_RENDER = frozenset({"nodepool"})


def _split(key: str) -> tuple[str, str, str]:
    """``node/c1/n1`` -> ``("node", "c1", "n1")``; ``cluster/c1`` -> ``("cluster", "", "c1")``."""
    kind, _, rest = key.partition("/")
    if kind in PER_CLUSTER_KINDS:
        scope, sep, obj_id = rest.partition("/")
        if sep:
            return kind, scope, obj_id
    return kind, "", rest


def _key(kind: str, scope: str, obj_id: str) -> str:
    return f"{kind}/{scope}/{obj_id}" if scope else f"{kind}/{obj_id}"


class PhaseView(Mapping[str, float]):
    """The renderer's read-only view of a :class:`PhaseTracker`: ``"<kind>/<id>"`` keys, and
    ``"nodepool/<cluster_id>/<id>"`` for node pools (see :data:`SCOPED_IN_RENDER`).

    A copy of the times only, indexed by kind (and cluster, for node pools): it holds no key
    strings of its own, so at 100,000 nodes it costs one dict entry an object.
    """

    __slots__ = ("_flat", "_scoped")

    def __init__(self, groups: Mapping[tuple[str, str], Mapping[str, tuple[str, float]]]) -> None:
        self._flat: dict[str, dict[str, float]] = {}
        self._scoped: dict[tuple[str, str], dict[str, float]] = {}
        for (kind, scope), group in groups.items():
            if scope and kind in SCOPED_IN_RENDER:
                out = self._scoped[(kind, scope)] = {}
            else:
                out = self._flat.setdefault(kind, {})
            for obj_id, (_, since) in group.items():
                out[obj_id] = since

    def __getitem__(self, key: str) -> float:
        kind, _, rest = key.partition("/")
        if kind in SCOPED_IN_RENDER:
            scope, _, obj_id = rest.partition("/")
            return self._scoped[(kind, scope)][obj_id]
        return self._flat[kind][rest]

    def __iter__(self) -> Iterator[str]:
        for kind, group in self._flat.items():
            for obj_id in group:
                yield f"{kind}/{obj_id}"
        for (kind, scope), scoped in self._scoped.items():
            for obj_id in scoped:
                yield f"{kind}/{scope}/{obj_id}"

    def __len__(self) -> int:
        return sum(map(len, self._flat.values())) + sum(map(len, self._scoped.values()))


class PhaseTracker:
    """When the current phase of each object was first seen (``cce_*_phase_since``).

    Keys are ``"<kind>/<id>"``, and ``"<kind>/<cluster_id>/<id>"`` for nodes, node pools and
    add-ons. A phase change restarts the clock; objects that disappear from a successful listing
    are forgotten with :meth:`retain`. Entries are held by (kind, cluster), then by the object's
    own ID (the model's string, not a new one), so that forgetting one cluster's nodes touches
    that cluster's entries only and 100,000 nodes cost no key strings of their own.
    """

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str], dict[str, tuple[str, float]]] = {}
        # The renderer's view, rebuilt after a change (a copy: collection goes on while a
        # render thread reads it).
        self._view: PhaseView | None = None

    def observe(self, key: str, phase: str | None, now: float) -> float:
        """Record ``phase`` for ``key``; returns the time it was first seen in that phase."""
        value = phase or ""
        kind, scope, obj_id = _split(key)
        group = self._groups.setdefault((kind, scope), {})
        seen = group.get(obj_id)
        if seen is not None and seen[0] == value:
            return seen[1]
        group[obj_id] = (value, now)
        self._view = None
        return now

    def observe_group(
        self, kind: str, scope: str, phases: Sequence[tuple[str, str | None]], now: float
    ) -> None:
        """Observe every object of one cluster's ``kind`` at once, from ``(id, phase)`` pairs, and
        forget the ones not among them: :meth:`observe` and :meth:`retain` in one pass (100,000
        nodes a cycle make the difference worth it). An unchanged group is left as it is."""
        old = self._groups.get((kind, scope), {})
        if len(old) == len(phases) and all(
            (seen := old.get(obj_id)) is not None and seen[0] == (phase or "")
            for obj_id, phase in phases
        ):
            return
        new: dict[str, tuple[str, float]] = {}
        for obj_id, phase in phases:
            value = phase or ""
            seen = old.get(obj_id)
            new[obj_id] = seen if seen is not None and seen[0] == value else (value, now)
        # Reached only when something changed (the check above returned otherwise).
        self._view = None
        if new:
            self._groups[(kind, scope)] = new
        else:
            self._groups.pop((kind, scope), None)

    def since(self, key: str) -> float | None:
        kind, scope, obj_id = _split(key)
        seen = self._groups.get((kind, scope), {}).get(obj_id)
        return None if seen is None else seen[1]

    def retain(self, kind: str, keep: Iterable[str], *, scope: str | None = None) -> None:
        """Forget every key of ``kind`` not in ``keep``; with ``scope``, only that cluster's."""
        keep_set = {(s, o) for k, s, o in map(_split, keep) if k == kind}
        if scope is not None:
            candidates = [(kind, scope)] if (kind, scope) in self._groups else []
        else:
            candidates = [g for g in self._groups if g[0] == kind]
        for group_key in candidates:
            group = self._groups[group_key]
            gone = [o for o in group if (group_key[1], o) not in keep_set]
            for obj_id in gone:
                del group[obj_id]
                self._view = None
            if not group:
                del self._groups[group_key]

    def retain_clusters(self, cluster_ids: Iterable[str]) -> None:
        """Forget the nodes, node pools and add-ons of clusters that are gone."""
        ids = set(cluster_ids)
        for group_key in [g for g in self._groups if g[0] in PER_CLUSTER_KINDS]:
            if group_key[1] not in ids:
                del self._groups[group_key]
                self._view = None

    def renderer_snapshot(self) -> PhaseView:
        """``{"<kind>/<id>": since}``, the renderer's keys (cached until the next change);
        ``"nodepool/<cluster_id>/<id>"`` for node pools, whose IDs repeat across clusters."""
        if self._view is None:
            self._view = PhaseView(self._groups)
        return self._view

    def snapshot(self) -> dict[str, float]:
        return {
            _key(kind, scope, obj_id): since
            for (kind, scope), group in self._groups.items()
            for obj_id, (_, since) in group.items()
        }

    def dump(self) -> dict[str, list[Any]]:
        return {
            _key(kind, scope, obj_id): [phase, since]
            for (kind, scope), group in self._groups.items()
            for obj_id, (phase, since) in group.items()
        }

    def load(self, data: object) -> None:
        if not isinstance(data, dict):
            return
        for key, value in data.items():
            if (
                isinstance(key, str)
                and isinstance(value, list)
                and len(value) == 2
                and isinstance(value[0], str)
                and isinstance(value[1], int | float)
            ):
                kind, scope, obj_id = _split(key)
                self._groups.setdefault((kind, scope), {})[obj_id] = (value[0], float(value[1]))
        self._view = None

    def __len__(self) -> int:
        return sum(len(group) for group in self._groups.values())


@dataclass
class JobEntry:
    """One CCE job being followed until it finishes, then kept for the retention window."""

    job_id: str
    cluster_id: str
    source: str  # where its ID was found: cluster, node, nodepool, hibernate, awake
    discovered_at: float
    job: Job | None = None
    finished_at: float | None = None
    observed: bool = False  # fed to the completed-duration histogram already

    def dump(self) -> dict[str, Any]:
        return {
            "cluster_id": self.cluster_id,
            "source": self.source,
            "discovered_at": self.discovered_at,
            "finished_at": self.finished_at,
            "observed": self.observed,
        }


class JobTracker:
    """The CCE jobs the exporter follows.

    Jobs are discovered from ``jobID`` fields (any spelling) and from hibernate/awake actions,
    polled until Success or Failed, kept ``retention`` seconds after that, then dropped.
    ``max_jobs`` bounds memory under churn: past it, the oldest finished jobs go first.
    """

    def __init__(self, retention: float, max_jobs: int = 5000, *, target: str = "") -> None:
        self.target = target  # for log lines
        self.retention = retention
        self.max_jobs = max_jobs
        self.entries: dict[str, JobEntry] = {}
        # IDs that answered 404: a cluster or node can keep showing a job ID the API no longer
        # knows, and following it again on every listing would poll (and count) it forever.
        self._gone: OrderedDict[str, None] = OrderedDict()

    def discover(self, job_id: str | None, cluster_id: str, source: str, now: float) -> bool:
        """Start following a job; returns True when it is new."""
        if not job_id or job_id in self.entries or job_id in self._gone:
            return False
        self.entries[job_id] = JobEntry(job_id, cluster_id, source, now)
        log.debug(
            "following CCE job %s (target=%s cluster_id=%s, from %s)",
            job_id,
            self.target,
            cluster_id,
            source,
            extra={"target": self.target, "cluster_id": cluster_id, "resource": "jobs"},
        )
        return True

    def pending(self) -> list[JobEntry]:
        """Jobs that still need a poll: never fetched, or not finished."""
        return [e for e in self.entries.values() if e.job is None or e.finished_at is None]

    def update(self, entry: JobEntry, job: Job, now: float) -> bool:
        """Store a polled job; returns True when it is seen finished for the first time."""
        entry.job = job  # an unchanged answer is the same object already (exporter.cce.memo)
        if job.finished and entry.finished_at is None:
            entry.finished_at = now
            return True
        return False

    def drop(self, job_id: str, *, gone: bool = False) -> None:
        """Stop following a job; ``gone`` (it answered 404): never follow it again."""
        self.entries.pop(job_id, None)
        if gone:
            self._gone[job_id] = None
            while len(self._gone) > self.max_jobs:
                self._gone.popitem(last=False)

    def expire(self, now: float) -> int:
        """Drop finished jobs past retention, and the oldest finished ones past ``max_jobs``."""
        dropped = 0
        for job_id, entry in list(self.entries.items()):
            if entry.finished_at is not None and now - entry.finished_at > self.retention:
                del self.entries[job_id]
                dropped += 1
        excess = len(self.entries) - self.max_jobs
        if excess > 0:
            finished = sorted(
                (e for e in self.entries.values() if e.finished_at is not None),
                key=lambda e: e.finished_at or 0.0,
            )
            for entry in finished[:excess]:
                del self.entries[entry.job_id]
                dropped += 1
        return dropped

    def dump(self) -> dict[str, Any]:
        return {job_id: entry.dump() for job_id, entry in self.entries.items()}

    def load(self, data: object) -> None:
        if not isinstance(data, dict):
            return
        for job_id, raw in data.items():
            if not isinstance(job_id, str) or not isinstance(raw, dict):
                continue
            try:
                self.entries[job_id] = JobEntry(
                    job_id=job_id,
                    cluster_id=str(raw["cluster_id"]),
                    source=str(raw.get("source", "unknown")),
                    discovered_at=float(raw["discovered_at"]),
                    finished_at=(
                        None if raw.get("finished_at") is None else float(raw["finished_at"])
                    ),
                    observed=bool(raw.get("observed", False)),
                )
            except (KeyError, TypeError, ValueError):
                log.warning("state file: ignoring unreadable job entry %s", job_id)
