"""Fault injection for the simulated API.

A fault is chosen per request, before the handler runs: first the explicit rules (added through the
control API, each with a rate *or* a count of next matching requests, and an optional path regex),
then the global ``--fault-rate``, which picks any kind at random. The control API itself is never
faulted. Every injected fault is counted by kind.

Kinds and what the client sees:

``latency``        the normal answer, ``latency_ms`` later
``http_429``       429 with ``Retry-After`` (seconds) and an API-gateway throttling body
``http_500`` ...   500, 502, 503 or 504 with an error body
``hang``           no answer for ``hang_seconds`` (longer than any sane client timeout), or until
                   the client goes away; then the normal answer
``malformed_json`` 200 whose body is the normal JSON with a syntax error spliced into it
``truncated_json`` 200 whose body is the first half of the normal JSON (a complete HTTP message
                   with a correct ``Content-Length``: the JSON, not the transport, is broken)
``expired_token``  401 as the API gateway answers for an expired token

Hostile kinds (only by rule, never picked by the global rate):

``drip``           the normal answer, one byte every ``drip_ms`` (a complete, correct message
                   that takes ``len(body)`` x ``drip_ms`` to arrive; stops when the client leaves)
``gzip_bomb``      200 with ``Content-Encoding: gzip`` and a body of about ``bomb_mb`` / 1,000 MB
                   that inflates to ``bomb_mb`` MB of spaces
``oversized_names`` the normal answer with every object's ``metadata.name`` padded to
                   ``name_bytes`` characters
``bad_object``     the normal list answer with a lone surrogate (``\\ud800``) in the first
                   object's name and values of the wrong types in the second object
``marker_loop``    a node page whose ``pageInfo.nextMarker`` points back at the page asked for (a
                   paged list that never ends)
"""

from __future__ import annotations

import json
import random
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS: tuple[str, ...] = (
    "latency",
    "http_429",
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    "hang",
    "malformed_json",
    "truncated_json",
    "expired_token",
)
#: Kinds a rule can ask for but the global ``--fault-rate`` never picks.
HOSTILE_KINDS: tuple[str, ...] = (
    "drip",
    "gzip_bomb",
    "oversized_names",
    "bad_object",
    "marker_loop",
)
ALL_FAULT_KINDS: tuple[str, ...] = FAULT_KINDS + HOSTILE_KINDS


@dataclass
class FaultRule:
    kind: str
    rate: float | None = None
    count: int | None = None
    path: re.Pattern[str] | None = None
    latency_ms: float = 1000.0
    hang_seconds: float = 60.0
    retry_after: int = 1
    drip_ms: float = 1000.0
    bomb_mb: int = 1024
    name_bytes: int = 100_000
    id: int = 0

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "rate": self.rate,
            "count": self.count,
            "path": self.path.pattern if self.path else None,
            "latency_ms": self.latency_ms,
            "hang_seconds": self.hang_seconds,
            "retry_after": self.retry_after,
            "drip_ms": self.drip_ms,
            "bomb_mb": self.bomb_mb,
            "name_bytes": self.name_bytes,
        }


@dataclass
class Faults:
    """The fault rules, the global rate, and the count of faults injected by kind."""

    seed: int = 0
    rate: float = 0.0
    rules: list[FaultRule] = field(default_factory=list)
    injected: Counter[str] = field(default_factory=Counter)
    hang_seconds: float = 60.0
    _next_id: int = 1
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"faults-{self.seed}")

    def add(
        self,
        kind: str,
        *,
        rate: float | None = None,
        count: int | None = None,
        path: str | None = None,
        latency_ms: float | None = None,
        hang_seconds: float | None = None,
        retry_after: int | None = None,
        drip_ms: float | None = None,
        bomb_mb: int | None = None,
        name_bytes: int | None = None,
    ) -> FaultRule:
        if kind not in ALL_FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(ALL_FAULT_KINDS)}")
        if bomb_mb is not None and not 1 <= bomb_mb <= 4096:
            raise ValueError("bomb_mb must be within 1..4096")
        if name_bytes is not None and not 1 <= name_bytes <= 10_000_000:
            raise ValueError("name_bytes must be within 1..10000000")
        if (rate is None) == (count is None):
            raise ValueError("give exactly one of rate and count")
        if rate is not None and not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be within 0..1")
        if count is not None and count < 1:
            raise ValueError("count must be at least 1")
        rule = FaultRule(
            kind=kind,
            rate=rate,
            count=count,
            path=re.compile(path) if path else None,
            latency_ms=1000.0 if latency_ms is None else latency_ms,
            hang_seconds=self.hang_seconds if hang_seconds is None else hang_seconds,
            retry_after=1 if retry_after is None else retry_after,
            drip_ms=1000.0 if drip_ms is None else float(drip_ms),
            bomb_mb=1024 if bomb_mb is None else int(bomb_mb),
            name_bytes=100_000 if name_bytes is None else int(name_bytes),
            id=self._next_id,
        )
        self._next_id += 1
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    def pick(self, path: str) -> FaultRule | None:
        """The fault for a request to ``path`` (counted as injected), or None."""
        for rule in self.rules:
            if rule.path is not None and rule.path.search(path) is None:
                continue
            if rule.count is not None:
                rule.count -= 1
                if rule.count <= 0:
                    self.rules.remove(rule)
                return self._hit(rule)
            if rule.rate is not None and self._rng.random() < rule.rate:
                return self._hit(rule)
        if self.rate > 0 and self._rng.random() < self.rate:
            kind = self._rng.choice(FAULT_KINDS)
            return self._hit(FaultRule(kind=kind, hang_seconds=self.hang_seconds))
        return None

    def _hit(self, rule: FaultRule) -> FaultRule:
        self.injected[rule.kind] += 1
        return rule

    def state(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "rules": [r.describe() for r in self.rules],
            "injected": dict(self.injected),
            "injected_total": sum(self.injected.values()),
        }


_BOMBS: dict[int, bytes] = {}


def gzip_bomb(megabytes: int) -> bytes:
    """A gzip stream of ``megabytes`` MB of spaces (about a thousandth of that compressed);
    made once per size."""
    bomb = _BOMBS.get(megabytes)
    if bomb is None:
        encoder = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        block = b" " * (1024 * 1024)
        parts = [encoder.compress(b'{"items": [' + block[11:])]
        parts += [encoder.compress(block) for _ in range(megabytes - 1)]
        parts.append(encoder.flush())
        bomb = _BOMBS[megabytes] = b"".join(parts)
    return bomb


def pad_names(body: bytes, size: int) -> bytes:
    """``body`` (JSON) with every ``metadata.name`` padded to ``size`` characters."""

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            meta = value.get("metadata")
            if isinstance(meta, dict) and isinstance(meta.get("name"), str):
                name = meta["name"]
                meta["name"] = name + "-" + "x" * max(0, size - len(name) - 1)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    data = json.loads(body)
    walk(data)
    return json.dumps(data).encode()


def loop_marker(body: bytes, marker: str | None) -> bytes:
    """A list answer whose ``pageInfo.nextMarker`` names the page just asked for again: the
    request's own marker, or (first page) the first item's UID; other bodies as they are."""
    data = json.loads(body)
    items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items or not isinstance(items[0], dict):
        return body
    first = items[0].get("metadata", {})
    again = marker or (first.get("uid") if isinstance(first, dict) else None)
    if not isinstance(again, str):
        return body
    data["pageInfo"] = {"currentCount": len(items), "nextMarker": again}
    return json.dumps(data).encode()


def spoil_objects(body: bytes) -> bytes:
    """A list answer (JSON) with a lone surrogate in the first object's name and values of the
    wrong types in the second; other bodies are returned as they are."""
    data = json.loads(body)
    items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        return body
    first = items[0]
    if isinstance(first, dict):
        meta = first.setdefault("metadata", {})
        if isinstance(meta, dict):
            meta["name"] = "\ud800" + str(meta.get("name", ""))
    if len(items) > 1 and isinstance(items[1], dict):
        second = items[1]
        meta = second.get("metadata")
        if isinstance(meta, dict):
            meta["name"] = {"not": "a string"}
            meta["creationTimestamp"] = [1, 2]
            meta["labels"] = 42
        second["spec"] = "not an object"
        status = second.get("status")
        if isinstance(status, dict):
            status["phase"] = ["Available"]
    # ensure_ascii (the default) writes the lone surrogate as the escape "\ud800".
    return json.dumps(data).encode()
