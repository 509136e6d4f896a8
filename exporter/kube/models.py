"""Typed, tolerant models of the Kubernetes objects the exporter reads: Job, CronJob, ResourceQuota.

Only the fields the metrics need are kept, in slotted frozen dataclasses built straight from the
decoded JSON. Why not lightkube's models (a dependency already): measured on the simulator's
lists they parse about as fast, but ``lightkube.models`` builds every nested object of a Job (pod
template, containers, volumes...) and keeps much more memory per object, leaves quantities as
text, and is strict about types (``docs/performance.md`` has the numbers).

Like the CCE models, these are tolerant: a field of the wrong type reads as missing, an item that
is not an object or has no name is skipped, and only a body that is not a Kubernetes list at all
is an error (:class:`ResponseParseError`).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from exporter.cce.errors import ResponseParseError
from exporter.cce.models import parse_timestamp
from exporter.limits import count_dropped

__all__ = [
    "KubeClusterData",
    "KubeCronJob",
    "KubeJob",
    "KubeList",
    "KubeQuota",
    "parse_api_resources",
    "parse_cronjob",
    "parse_job",
    "parse_list",
    "parse_quantity",
    "parse_quota",
]

T = TypeVar("T")

#: Label values taken from objects are cut to this length (names are at most 253 characters).
MAX_TEXT = 253


@dataclass(frozen=True, slots=True)
class KubeJob:
    namespace: str
    name: str
    owner_kind: str | None
    owner_name: str | None
    active: int | None
    succeeded: int | None
    failed: int | None
    start_time: float | None
    completion_time: float | None
    #: (type, status) of each condition, e.g. ("Complete", "True")
    conditions: tuple[tuple[str, str], ...]
    active_deadline_seconds: int | None
    created: float | None
    #: lastTransitionTime of the Complete or Failed condition that is True
    finished_condition_time: float | None = None

    @property
    def finished_at(self) -> float | None:
        """When the Job finished (Complete or Failed), or None while it has not. A failed Job
        has no completionTime: its condition's transition time, else its start, is used."""
        if self.completion_time is not None:
            return self.completion_time
        for kind, status in self.conditions:
            if kind in ("Complete", "Failed") and status == "True":
                for moment in (self.finished_condition_time, self.start_time, self.created):
                    if moment is not None:
                        return moment
                return None
        return None

    @property
    def finished(self) -> bool:
        return self.completion_time is not None or any(
            kind in ("Complete", "Failed") and status == "True" for kind, status in self.conditions
        )


@dataclass(frozen=True, slots=True)
class KubeCronJob:
    namespace: str
    name: str
    schedule: str | None
    timezone: str | None
    suspend: bool | None
    last_schedule: float | None
    last_successful: float | None
    created: float | None


@dataclass(frozen=True, slots=True)
class KubeQuota:
    namespace: str
    name: str
    #: (resource, value) pairs, sorted by resource
    hard: tuple[tuple[str, float], ...]
    used: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class KubeClusterData:
    """The last good objects of one cluster, ready to render."""

    cluster_id: str
    cluster: str
    jobs: tuple[KubeJob, ...] = ()
    cronjobs: tuple[KubeCronJob, ...] = ()
    quotas: tuple[KubeQuota, ...] = ()


@dataclass(frozen=True, slots=True)
class KubeList:
    """One page of a list: the items that parsed, and what paging needs."""

    items: tuple[Any, ...]
    continue_token: str | None
    remaining: int | None  # metadata.remainingItemCount, when the server says
    skipped: int  # items that were not objects or had no name
    unparsed: int = 0  # items past max_items, not parsed (a server ignoring limit)


# --- field helpers ------------------------------------------------------------------------------


def _obj(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _valid(text: str) -> bool:
    """Whether ``text`` can be written out: JSON lets a lone surrogate (``"\\ud800"``) in, and
    it would fail the exposition's UTF-8 encoding."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(value: object) -> str | None:
    if isinstance(value, str) and value and _valid(value):
        return value[:MAX_TEXT]
    return None


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _time(value: object) -> float | None:
    moment = parse_timestamp(value) if isinstance(value, str) else None
    return None if moment is None else moment.timestamp()


# --- quantities ---------------------------------------------------------------------------------

_QUANTITY = re.compile(
    r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)$"
)
_FACTOR: dict[str, float] = {
    "": 1.0,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}
_SUFFIX: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


def parse_quantity(value: object) -> float | None:
    """A Kubernetes quantity (``"500m"``, ``"2Gi"``, ``"1e3"``, ``10``) as a float; None if it is
    not one (the metric is then left out rather than guessed)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
        return number if math.isfinite(number) else None
    if not isinstance(value, str) or len(value) > 64:
        return None
    return _parse_quantity_text(value)


@functools.lru_cache(maxsize=4096)
def _parse_quantity_text(value: str) -> float | None:
    # Quotas repeat the same few texts ("50", "8000m", "16Gi") across namespaces and cycles.
    m = _QUANTITY.match(value.strip())
    if m is None:
        return None
    number_text, suffix = m.group(1), m.group(2)
    try:
        if "e" in number_text or "E" in number_text:
            number = float(Decimal(number_text) * _SUFFIX[suffix])  # exact for huge exponents
        else:
            number = float(number_text) * _FACTOR[suffix]
    except (InvalidOperation, OverflowError):
        return None
    return number if math.isfinite(number) else None


# --- objects ------------------------------------------------------------------------------------


def _meta(item: Mapping[str, Any]) -> tuple[str, str, Mapping[str, Any]] | None:
    meta = _obj(item.get("metadata"))
    name = _text(meta.get("name"))
    if name is None:
        return None
    return _text(meta.get("namespace")) or "default", name, meta


def parse_job(item: Mapping[str, Any]) -> KubeJob | None:
    head = _meta(item)
    if head is None:
        return None
    namespace, name, meta = head
    spec, status = _obj(item.get("spec")), _obj(item.get("status"))
    owner_kind = owner_name = None
    owners = meta.get("ownerReferences")
    if isinstance(owners, list):
        # The controller, else the first owner (as kube-state-metrics reports it).
        refs = [o for o in owners if isinstance(o, dict)]
        ref = next((o for o in refs if o.get("controller") is True), refs[0] if refs else None)
        if ref is not None:
            owner_kind, owner_name = _text(ref.get("kind")), _text(ref.get("name"))
    conditions: list[tuple[str, str]] = []
    finished: float | None = None
    raw_conditions = status.get("conditions")
    if isinstance(raw_conditions, list):
        for cond in raw_conditions[:16]:
            if isinstance(cond, dict):
                kind, state = _text(cond.get("type")), _text(cond.get("status"))
                if kind is not None and state is not None:
                    conditions.append((kind[:64], state[:16]))
                    if kind in ("Complete", "Failed") and state == "True":
                        finished = _time(cond.get("lastTransitionTime")) or finished
    return KubeJob(
        namespace=namespace,
        name=name,
        owner_kind=owner_kind,
        owner_name=owner_name,
        active=_int(status.get("active")),
        succeeded=_int(status.get("succeeded")),
        failed=_int(status.get("failed")),
        start_time=_time(status.get("startTime")),
        completion_time=_time(status.get("completionTime")),
        conditions=tuple(conditions),
        active_deadline_seconds=_int(spec.get("activeDeadlineSeconds")),
        created=_time(meta.get("creationTimestamp")),
        finished_condition_time=finished,
    )


def parse_cronjob(item: Mapping[str, Any]) -> KubeCronJob | None:
    head = _meta(item)
    if head is None:
        return None
    namespace, name, meta = head
    spec, status = _obj(item.get("spec")), _obj(item.get("status"))
    return KubeCronJob(
        namespace=namespace,
        name=name,
        schedule=_text(spec.get("schedule")),
        timezone=_text(spec.get("timeZone")),
        suspend=_bool(spec.get("suspend")),
        last_schedule=_time(status.get("lastScheduleTime")),
        last_successful=_time(status.get("lastSuccessfulTime")),
        created=_time(meta.get("creationTimestamp")),
    )


def _amounts(value: object) -> tuple[tuple[str, float], ...]:
    pairs = []
    for key, raw in _obj(value).items():
        amount = parse_quantity(raw)
        if isinstance(key, str) and key and amount is not None and _valid(key):
            pairs.append((key[:MAX_TEXT], amount))
    return tuple(sorted(pairs))


def parse_quota(item: Mapping[str, Any]) -> KubeQuota | None:
    head = _meta(item)
    if head is None:
        return None
    namespace, name, _ = head
    status = _obj(item.get("status"))
    # status.hard is what the quota controller enforces; spec.hard until it has caught up.
    hard = status.get("hard") if isinstance(status.get("hard"), dict) else None
    if hard is None:
        hard = _obj(item.get("spec")).get("hard")
    return KubeQuota(namespace, name, _amounts(hard), _amounts(status.get("used")))


PARSERS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "jobs": parse_job,
    "cronjobs": parse_cronjob,
    "resourcequotas": parse_quota,
}


def _decode(content: bytes, endpoint: str) -> Mapping[str, Any]:
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        raise ResponseParseError("the body is not JSON", endpoint=endpoint) from None
    if not isinstance(data, dict):
        raise ResponseParseError("the body is not a JSON object", endpoint=endpoint)
    return data


def parse_list(
    kind: str, content: bytes, *, endpoint: str, max_items: int | None = None
) -> KubeList:
    """One page of a ``<Kind>List``; :class:`ResponseParseError` if the body is not one.

    At most ``max_items`` items are parsed (a server may ignore ``limit``); the rest is counted
    in ``unparsed``.
    """
    data = _decode(content, endpoint)
    items = data.get("items")
    if items is None:
        items = []  # an empty list is serialised with "items": null by some servers
    if not isinstance(items, list):
        raise ResponseParseError("items is not a list", endpoint=endpoint)
    parse = PARSERS[kind]
    out = []
    skipped = 0
    unparsed = 0
    if max_items is not None and len(items) > max_items:
        unparsed = len(items) - max_items
        items = items[:max_items]
    for item in items:
        obj = parse(item) if isinstance(item, dict) else None
        if obj is None:
            skipped += 1
        else:
            out.append(obj)
    if skipped:
        count_dropped(endpoint, skipped)  # cce_exporter_objects_dropped_total, as for CCE lists
    meta = _obj(data.get("metadata"))
    token = meta.get("continue")
    return KubeList(
        items=tuple(out),
        continue_token=token if isinstance(token, str) and token and len(token) < 4096 else None,
        remaining=_int(meta.get("remainingItemCount")),
        skipped=skipped,
        unparsed=unparsed,
    )


def parse_api_resources(content: bytes, *, endpoint: str) -> frozenset[str]:
    """The resource names of an ``APIResourceList`` (``GET /apis/batch/v1``)."""
    data = _decode(content, endpoint)
    resources = data.get("resources")
    if not isinstance(resources, list):
        raise ResponseParseError("resources is not a list", endpoint=endpoint)
    return frozenset(
        r["name"] for r in resources if isinstance(r, dict) and isinstance(r.get("name"), str)
    )
