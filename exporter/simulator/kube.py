"""The simulated clusters' Kubernetes API: Jobs, CronJobs, ResourceQuotas and batch discovery.

Served for every simulated cluster under the cluster-host layout (``Host: {cluster_id}.<any>``,
paths as on a Kubernetes API server) and, because ``127.0.0.1`` cannot take a host prefix, under
the path prefix ``/kubernetes/{cluster_id}`` too (the simulator's
``CCE_EXPORTER_KUBERNETES_ENDPOINT`` uses the latter)::

    GET /apis/batch/v1                 APIResourceList (cronjobs listed on clusters >= 1.25)
    GET /apis/batch/v1beta1            APIResourceList with cronjobs (clusters < 1.25), else 404
    GET /apis/batch/v1/jobs            JobList
    GET /apis/batch/{v1|v1beta1}/cronjobs
    GET /api/v1/resourcequotas

Lists honour ``limit`` and ``continue`` (a token naming the offset; a token that is not one is
answered ``410 Gone``, as an expired one is). A cluster that is not ``Available`` answers 503.

What each cluster holds (deterministic from the seed and the cluster ID; times anchored where
the cluster's objects are first asked for, so they age with the simulator clock):

* Jobs, in a cycle of eight (one namespace per cycle): running; succeeded (owned by a
  CronJob); failed (backoff limit); hanging for 20 h with a one-hour
  ``activeDeadlineSeconds``; hanging 14 h with no deadline; running within its two-hour
  deadline; succeeded three days ago (past the default retention); succeeded an hour ago.
* CronJobs: every five minutes (UTC, on time); daily at 02:00 ``Asia/Shanghai`` (on time);
  weekdays at 06:30 ``Europe/Berlin``, suspended; hourly, last run five hours ago (missed).
* ResourceQuotas of ``pods``, ``requests.cpu``, ``requests.memory`` and ``limits.memory``, in a
  cycle of four: filling up with the clock (from 50 % to 130 % of ``hard`` over twelve hours,
  later ones faster), almost full (93 %), fully used (100 %), exceeded (120 %).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from croniter import croniter

from exporter.simulator.clock import NS
from exporter.simulator.formats import dump_json
from exporter.simulator.world import World

__all__ = ["KubeSim", "KubeSizes"]

HOUR = 3600


class _Request(Protocol):
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, at: float, reason: str | None = None) -> dict[str, str]:
    cond = {"type": kind, "status": "True", "lastTransitionTime": rfc3339(at)}
    if reason:
        cond["reason"] = reason
    return cond


class _Refused(Exception):
    def __init__(self, answer: tuple[bytes, int]) -> None:
        self.answer = answer


def _status(code: int, reason: str, message: str) -> tuple[bytes, int]:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return dump_json(body), code


@dataclass(frozen=True)
class KubeSizes:
    jobs: int = 16
    cronjobs: int = 4
    quotas: int = 4


NAMESPACES = ("batch", "reports", "team-a", "team-b")
CRON_PATTERNS: tuple[tuple[str, str | None, bool, str], ...] = (
    # schedule, time zone, suspended, kind of history
    ("*/5 * * * *", None, False, "on_time"),
    ("0 2 * * *", "Asia/Shanghai", False, "on_time"),
    ("30 6 * * 1-5", "Europe/Berlin", True, "stale"),
    ("0 * * * *", None, False, "missed"),
)
QUOTA_FILL = (0.0, 0.93, 1.0, 1.2)
QUOTA_RESOURCES: tuple[tuple[str, float, Callable[[float], str]], ...] = (
    ("pods", 50, lambda v: str(int(v))),
    ("requests.cpu", 8, lambda v: f"{int(v * 1000)}m"),
    ("requests.memory", 16 * 2**30, lambda v: f"{int(v / 2**20)}Mi"),
    ("limits.memory", 32 * 2**30, lambda v: f"{int(v / 2**20)}Mi"),
)


@dataclass
class _Cluster:
    anchor: float
    rng_seed: str
    jobs: list[dict[str, Any]] = field(default_factory=list)
    # (kind, version, start, end, minute for the time-dependent kinds) -> the answer's bytes
    pages: dict[tuple[str, str, int, int, int], bytes] = field(default_factory=dict)


def _version_at_least(version: str, minor: int) -> bool:
    m = re.match(r"v?(\d+)\.(\d+)", version)
    return m is not None and (int(m.group(1)), int(m.group(2))) >= (1, minor)


class KubeSim:
    """Kubernetes lists of the world's clusters; see the module docstring."""

    def __init__(self, world: World, sizes: KubeSizes | None = None) -> None:
        self.world = world
        self.sizes = sizes or KubeSizes()
        self._clusters: dict[str, _Cluster] = {}

    # --- routes (wired into the simulator's application) -----------------------------------

    def routes(self) -> list[tuple[str, str, str, Callable[[_Request], tuple[bytes, int]]]]:
        """``(method, regex, route name, handler)``; handlers answer ``(body, status)``."""
        prefix = r"(?:/kubernetes/(?P<kube_cluster>[^/]+))?"
        return [
            ("GET", prefix + r"/apis/batch/(?P<version>v1|v1beta1)", "kube_batch", self.discovery),
            (
                "GET",
                prefix + r"/apis/batch/(?P<version>v1|v1beta1)/(?P<kind>jobs|cronjobs)",
                "kube_list",
                self.listing,
            ),
            (
                "GET",
                prefix + r"/api/(?P<version>v1)/(?P<kind>resourcequotas)",
                "kube_list",
                self.listing,
            ),
        ]

    # --- handlers ---------------------------------------------------------------------------------

    def _cluster(self, request: _Request) -> tuple[str, Any]:
        uid = request.params.get("kube_cluster") or request.headers.get("host", "").split(".")[0]
        cluster = self.world.clusters.get(uid)
        if cluster is None:
            raise _Refused(_status(404, "NotFound", "no such cluster"))
        phase = cluster.segment(self.world.now_ns()).phase
        if phase != "Available":
            raise _Refused(_status(503, "ServiceUnavailable", f"the cluster is {phase}"))
        return uid, cluster

    def discovery(self, request: _Request) -> tuple[bytes, int]:
        try:
            _, cluster = self._cluster(request)
        except _Refused as refused:
            return refused.answer
        new = _version_at_least(cluster.version, 25)
        version = request.params["version"]
        names = ["jobs", "jobs/status"]
        if version == "v1beta1":
            if new:
                return _status(404, "NotFound", "the server could not find the requested resource")
            names = ["cronjobs", "cronjobs/status"]
        elif new:
            names += ["cronjobs", "cronjobs/status"]
        body = {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"batch/{version}",
            "resources": [
                {"name": n, "namespaced": True, "kind": "CronJob" if "cron" in n else "Job"}
                for n in names
            ],
        }
        return dump_json(body), 200

    def listing(self, request: _Request) -> tuple[bytes, int]:
        try:
            uid, cluster = self._cluster(request)
        except _Refused as refused:
            return refused.answer
        kind, version = request.params["kind"], request.params["version"]
        if kind == "cronjobs" and (version == "v1") != _version_at_least(cluster.version, 25):
            return _status(404, "NotFound", "the server could not find the requested resource")
        now = self.world.now_ns() / NS
        state = self._state(uid, now)
        # Jobs do not change; CronJobs and quotas follow the clock, a minute at a time. Answers
        # are kept per page so that a large world costs the simulator little CPU per cycle.
        minute = 0 if kind == "jobs" else int(now // 60)
        total = {"jobs": len(state.jobs), "cronjobs": self.sizes.cronjobs}.get(
            kind, self.sizes.quotas
        )
        start = 0
        token = request.query.get("continue")
        if token:
            m = re.fullmatch(r"sim:(\d{1,9})", token)
            if m is None or int(m.group(1)) > total:
                return _status(410, "Expired", "the provided continue parameter is too old")
            start = int(m.group(1))
        try:
            limit = int(request.query.get("limit", "0"))
        except ValueError:
            limit = 0
        end = total if limit <= 0 else min(total, start + limit)
        key = (kind, version, start, end, minute)
        cached = state.pages.get(key)
        if cached is not None:
            return cached, 200
        if len(state.pages) > 256:
            state.pages.clear()
        if kind == "jobs":
            items = state.jobs
        elif kind == "cronjobs":
            items = self._cronjobs(state, minute * 60.0, version)
        else:
            items = self._quotas(state, minute * 60.0)
        meta: dict[str, Any] = {"resourceVersion": str(self.world.version + 1000)}
        if end < total:
            meta["continue"] = f"sim:{end}"
            meta["remainingItemCount"] = total - end
        list_kind = {"jobs": "JobList", "cronjobs": "CronJobList"}.get(kind, "ResourceQuotaList")
        api = "v1" if kind == "resourcequotas" else f"batch/{version}"
        body = {"kind": list_kind, "apiVersion": api, "metadata": meta, "items": items[start:end]}
        state.pages[key] = dump_json(body)
        return state.pages[key], 200

    # --- the objects ----------------------------------------------------------------------------

    def _state(self, uid: str, now: float) -> _Cluster:
        state = self._clusters.get(uid)
        if state is None:
            state = self._clusters[uid] = _Cluster(anchor=float(int(now)), rng_seed=uid)
            state.jobs = self._jobs(uid, state.anchor)
        return state

    def _jobs(self, uid: str, anchor: float) -> list[dict[str, Any]]:
        rng = random.Random(f"{self.world.seed}-kube-{uid}")
        out = []
        for i in range(self.sizes.jobs):
            ns = NAMESPACES[(i // 8) % len(NAMESPACES)]  # each namespace a whole cycle
            out.append(_job(uid, i, ns, anchor, rng.randrange(0, 600)))
        return out

    def _cronjobs(self, state: _Cluster, now: float, version: str) -> list[dict[str, Any]]:
        out = []
        for i in range(self.sizes.cronjobs):
            schedule, zone, suspend, history = CRON_PATTERNS[i % len(CRON_PATTERNS)]
            name = ("every-five", "nightly", "office-hours", "hourly-sync")[i % 4]
            if i >= len(CRON_PATTERNS):
                name += f"-{i}"
            tz = ZoneInfo(zone) if zone else UTC
            created = state.anchor - 30 * 24 * HOUR
            if history == "on_time":
                last = croniter(schedule, datetime.fromtimestamp(now, tz)).get_prev(float)
            elif history == "stale":
                last = state.anchor - 10 * 24 * HOUR
            else:  # missed: the last run was five hours before the anchor
                last = state.anchor - 5 * HOUR
            spec: dict[str, Any] = {"schedule": schedule, "suspend": suspend}
            if zone:
                spec["timeZone"] = zone
            spec["jobTemplate"] = {"spec": {"template": {"spec": {"restartPolicy": "Never"}}}}
            status: dict[str, Any] = {"lastScheduleTime": rfc3339(last)}
            if version == "v1":
                status["lastSuccessfulTime"] = rfc3339(last + 30 if last + 30 <= now else last)
            out.append(
                {
                    "metadata": {
                        "name": name,
                        "namespace": NAMESPACES[i % len(NAMESPACES)],
                        "creationTimestamp": rfc3339(created),
                    },
                    "spec": spec,
                    "status": status,
                }
            )
        return out

    def _quotas(self, state: _Cluster, now: float) -> list[dict[str, Any]]:
        out = []
        hours = max(0.0, now - state.anchor) / HOUR
        for i in range(self.sizes.quotas):
            ns = NAMESPACES[i % len(NAMESPACES)]
            # In a cycle of four: filling up with the clock, almost full, full, exceeded.
            kind = i % 4
            fill = (
                min(1.3, 0.5 + 0.8 * (1 + i // 4) * hours / 12) if kind == 0 else QUOTA_FILL[kind]
            )
            hard: dict[str, str] = {}
            used: dict[str, str] = {}
            for resource, limit, fmt in QUOTA_RESOURCES:
                hard[resource] = fmt(limit)
                used[resource] = fmt(limit * fill)
            out.append(
                {
                    "metadata": {
                        "name": f"quota-{i:03d}" if i >= len(NAMESPACES) else f"{ns}-quota",
                        "namespace": ns,
                    },
                    "spec": {"hard": hard},
                    "status": {"hard": hard, "used": used},
                }
            )
        return out

    def summary(self) -> Mapping[str, Any]:
        return {
            "clusters_asked": len(self._clusters),
            "sizes": json.loads(json.dumps(vars(self.sizes))),
        }


def _job(uid: str, i: int, ns: str, anchor: float, jitter: int) -> dict[str, Any]:
    """Job ``i`` of a cluster: one of eight patterns (running, failed, hanging, finished...)."""
    pattern = i % 8
    spec: dict[str, Any] = {"parallelism": 1, "completions": 1, "backoffLimit": 2}
    status: dict[str, Any] = {}
    owners: list[dict[str, Any]] = []
    name = f"job-{i:04d}"
    if pattern == 0:  # running
        start = anchor - 300 - jitter
        status = {"active": 1, "startTime": rfc3339(start)}
    elif pattern == 1:  # succeeded, from a CronJob
        start = anchor - 2 * HOUR - jitter
        name = f"every-five-{i:04d}"
        owners = [
            {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "name": "every-five",
                "controller": True,
                "uid": f"{uid[:8]}-cron",
            }
        ]
        status = {
            "succeeded": 1,
            "startTime": rfc3339(start),
            "completionTime": rfc3339(start + 95),
            "conditions": [_condition("Complete", start + 95)],
        }
    elif pattern == 2:  # failed
        start = anchor - HOUR - jitter
        status = {
            "failed": 3,
            "startTime": rfc3339(start),
            "conditions": [
                _condition("FailureTarget", start + 290),
                _condition("Failed", start + 300, "BackoffLimitExceeded"),
            ],
        }
    elif pattern == 3:  # hanging past its deadline
        start = anchor - 20 * HOUR - jitter
        spec["activeDeadlineSeconds"] = HOUR
        status = {"active": 1, "startTime": rfc3339(start)}
    elif pattern == 4:  # hanging, no deadline
        start = anchor - 14 * HOUR - jitter
        status = {"active": 1, "startTime": rfc3339(start)}
    elif pattern == 5:  # running within its deadline
        start = anchor - 600 - jitter
        spec["activeDeadlineSeconds"] = 2 * HOUR
        status = {"active": 1, "startTime": rfc3339(start)}
    elif pattern == 6:  # finished long ago: past the retention
        start = anchor - 72 * HOUR - jitter
        status = {
            "succeeded": 1,
            "startTime": rfc3339(start),
            "completionTime": rfc3339(start + 30),
            "conditions": [_condition("Complete", start + 30)],
        }
    else:  # succeeded recently
        start = anchor - HOUR - jitter
        status = {
            "succeeded": 1,
            "startTime": rfc3339(start),
            "completionTime": rfc3339(start + 600),
            "conditions": [_condition("Complete", start + 600)],
        }
    return _job_object(uid, i, ns, name, start, spec, status, owners)


def _job_object(
    uid: str,
    i: int,
    ns: str,
    name: str,
    start: float,
    spec: dict[str, Any],
    status: dict[str, Any],
    owners: list[dict[str, Any]],
) -> dict[str, Any]:
    """The Job's object: metadata (owners included), the spec with its pod template, status."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": ns,
        "uid": f"{uid[:8]}-job-{i:05d}",
        "creationTimestamp": rfc3339(start - 1),
        "labels": {"app": name.rsplit("-", 1)[0]},
    }
    if owners:
        meta["ownerReferences"] = owners
    spec["template"] = {
        "metadata": {"labels": {"job-name": name}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", "true"]}
            ],
        },
    }
    return {"metadata": meta, "spec": spec, "status": status}
