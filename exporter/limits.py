"""Bounds on what comes from outside: label values, log fields, compressed answers, bad objects.

Everything here is process-wide and cheap to consult on a hot path:

* :func:`truncate_label` cuts a label value longer than :data:`limits.label_value_max
  <Limits.label_value_max>` characters (default 256) and appends :data:`MARKER`; the renderer
  calls it for every value it formats, so 300 clusters with 100 KB names still give a bounded
  ``/metrics``.
* :class:`TruncatingFilter` does the same for every argument and ``extra=`` field of a log record
  (default 1,024 characters), so one hostile name cannot make a log line of megabytes.
* :func:`inflate` decompresses a ``gzip`` or ``deflate`` body step by step, refusing it as soon as
  the output passes a cap (a 1 MB gzip bomb is refused after the cap, never inflated to 1 GB).

Each cut and each object dropped from an API list is counted; :class:`LimitsCollector` exports
the counts::

    cce_exporter_truncations_total{kind="label_value"} 300
    cce_exporter_truncations_total{kind="log_field"} 12
    cce_exporter_objects_dropped_total{endpoint="/api/v3/projects/{project_id}/clusters"} 1
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections import Counter
from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "MARKER",
    "CompressedBodyError",
    "LimitsCollector",
    "TruncatingFilter",
    "count_dropped",
    "inflate",
    "limits",
    "read_capped",
    "truncate",
    "truncate_label",
]

#: Appended to every cut value, so that a reader sees the value is not whole.
MARKER = "…(truncated)"


@dataclass
class Limits:
    """The process-wide lengths (set from the configuration at start-up)."""

    label_value_max: int = 256
    log_field_max: int = 1024


limits = Limits()

_lock = threading.Lock()
_truncations: Counter[str] = Counter()
_dropped: Counter[str] = Counter()


def truncate(value: str, limit: int, kind: str) -> str:
    """``value`` cut to ``limit`` characters (the marker included) when longer; counted."""
    if len(value) <= limit:
        return value
    with _lock:
        _truncations[kind] += 1
    keep = max(0, limit - len(MARKER))
    return value[:keep] + MARKER


def truncate_label(value: str) -> str:
    """A label value bounded to ``limits.label_value_max`` characters."""
    if len(value) <= limits.label_value_max:
        return value
    return truncate(value, limits.label_value_max, "label_value")


def count_dropped(endpoint: str, n: int = 1) -> None:
    """Count objects dropped from an API list (invalid text, wrong types)."""
    with _lock:
        _dropped[endpoint] += n


def counts() -> tuple[dict[str, int], dict[str, int]]:
    """``(truncations by kind, dropped objects by endpoint)``, for tests and the soak."""
    with _lock:
        return dict(_truncations), dict(_dropped)


class LimitsCollector(Collector):
    """Exports the truncation and dropped-object counters."""

    def collect(self) -> Iterable[Metric]:
        truncations, dropped = counts()
        cut = CounterMetricFamily(
            "cce_exporter_truncations",
            "Values cut to their documented length (label_value: a label value; log_field: an "
            "argument or field of a log line).",
            labels=["kind"],
        )
        for kind in ("label_value", "log_field"):
            cut.add_metric([kind], float(truncations.get(kind, 0)))
        yield cut
        drop = CounterMetricFamily(
            "cce_exporter_objects_dropped",
            "Objects dropped from an API list because they could not be read (invalid text, "
            "wrong types); the rest of the list is kept.",
            labels=["endpoint"],
        )
        for endpoint, n in sorted(dropped.items()):
            drop.add_metric([endpoint], float(n))
        yield drop


class TruncatingFilter(logging.Filter):
    """Cut every string argument and ``extra=`` field of a record to ``limits.log_field_max``.

    Arguments that are not numbers are turned into their text first (an exception carrying a
    100 KB message is cut as well). Installed on the exporter's log handler.
    """

    _SKIP = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}

    def filter(self, record: logging.LogRecord) -> bool:
        limit = limits.log_field_max
        args = record.args
        if isinstance(args, tuple) and args:
            if any(
                not isinstance(a, int | float) and len(a if isinstance(a, str) else str(a)) > limit
                for a in args
            ):
                record.args = tuple(
                    a if isinstance(a, int | float) else truncate(str(a), limit, "log_field")
                    for a in args
                )
        elif isinstance(args, dict) and args:
            record.args = {
                k: v if isinstance(v, int | float) else truncate(str(v), limit, "log_field")
                for k, v in args.items()
            }
        if isinstance(record.msg, str) and len(record.msg) > 4 * limit:
            record.msg = truncate(record.msg, 4 * limit, "log_field")
        for key, value in list(record.__dict__.items()):
            if key in self._SKIP or key.startswith("_"):
                continue
            if isinstance(value, str) and len(value) > limit:
                setattr(record, key, truncate(value, limit, "log_field"))
        return True


# --- compressed bodies ---------------------------------------------------------------------------

#: Output produced per inflate step: the cap is checked after each.
INFLATE_STEP = 256 * 1024


class CompressedBodyError(ValueError):
    """A compressed body that is too large once inflated, corrupt, or in an unknown coding."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def inflate(data: bytes, coding: str, limit: int) -> bytes:
    """Decode ``data`` sent with ``Content-Encoding: coding``, at most ``limit`` bytes of output.

    ``gzip``/``x-gzip`` and ``deflate`` (zlib-wrapped or raw) are understood; the output is
    produced :data:`INFLATE_STEP` bytes at a time and the body refused the moment it passes
    ``limit``. Raises :class:`CompressedBodyError`.
    """
    coding = coding.strip().lower()
    if coding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif coding == "deflate":
        # RFC 9110 deflate is zlib-wrapped; some servers send raw deflate: the first byte tells.
        wbits = zlib.MAX_WBITS if data[:1] and (data[0] & 0x0F) == 8 else -zlib.MAX_WBITS
    else:
        raise CompressedBodyError(f"unsupported Content-Encoding {coding[:40]!r}")
    decoder = zlib.decompressobj(wbits)
    out = bytearray()
    pending = data
    try:
        while True:
            piece = decoder.decompress(pending, INFLATE_STEP)
            out += piece
            if len(out) > limit:
                raise CompressedBodyError(
                    f"the answer inflates to more than {limit} bytes ({len(data)} bytes "
                    f"{coding}); refused",
                    too_large=True,
                )
            pending = decoder.unconsumed_tail
            if decoder.eof or (not pending and len(piece) < INFLATE_STEP):
                break
    except zlib.error as exc:
        raise CompressedBodyError(f"corrupt {coding} body: {exc}") from None
    if not decoder.eof:
        raise CompressedBodyError(f"incomplete {coding} body")
    return bytes(out)


async def read_capped(
    chunks: AsyncIterable[bytes], cap: int, too_large: Callable[[], Exception]
) -> bytes:
    """``chunks`` joined; ``too_large()`` is raised as soon as they pass ``cap`` bytes, so no more
    than the cap (and one chunk) is ever held."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > cap:
            raise too_large()
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)
