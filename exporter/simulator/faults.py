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
"""

from __future__ import annotations

import random
import re
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


@dataclass
class FaultRule:
    kind: str
    rate: float | None = None
    count: int | None = None
    path: re.Pattern[str] | None = None
    latency_ms: float = 1000.0
    hang_seconds: float = 60.0
    retry_after: int = 1
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
    ) -> FaultRule:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
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
