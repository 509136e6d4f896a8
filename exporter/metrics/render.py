"""The renderer: tables + target snapshots in, exposition bytes out (text 0.0.4 and OpenMetrics).

The collector renders one *group* of families (``clusters``, ``nodes`` ... ``exporter``) when that
group's data changed, keeps the :class:`Fragment`, and calls :func:`assemble` to build the
:class:`Exposition` the web layer serves as is. A family never spans two fragments, so
concatenation is all assembling needs.

Why it looks the way it does:

* Sample lines are the same in both formats for gauges, so each family's body is built and encoded
  once and shared by both outputs; only the ``# HELP``/``# TYPE`` headers differ (OpenMetrics
  escapes quotes in HELP and drops ``_total`` from a counter's family name).
* Per object the identity labels and the target's static labels are formatted once, and each family
  row appends one finished string (see :mod:`exporter.metrics.spec`).
* Order is deterministic: families by name within a fragment, targets by project and labels,
  objects by ID, state-set series in the contract's order.
"""

from __future__ import annotations

import gc
import logging
import struct
import threading
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Literal

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter.metrics.catalog import GROUP_TABLES, GROUPS, RESERVED_LABELS
from exporter.metrics.histogram import JobDurationHistogram
from exporter.metrics.inputs import TargetData
from exporter.metrics.spec import (
    LABEL_NAME,
    Emitter,
    RenderContext,
    Table,
    escape_help,
    escape_label_value,
)

__all__ = [
    "CONTENT_TYPE_OPENMETRICS",
    "CONTENT_TYPE_TEXT",
    "Exposition",
    "Fragment",
    "JobDurationHistogram",
    "assemble",
    "render_group",
]

logger = logging.getLogger(__name__)

CONTENT_TYPE_TEXT = "text/plain; version=0.0.4; charset=utf-8"
CONTENT_TYPE_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"

#: zlib level for the compressed expositions: 6 halves the size of level 1 only marginally on
#: this very repetitive text and costs several times the CPU.
GZIP_LEVEL = 1

_EOF = b"# EOF\n"
_EMPTY_TARGET = TargetData("", {}, (), {}, {}, {}, (), (), {}, ())
_warned_labels: set[str] = set()


def deflate(parts: Sequence[bytes]) -> bytes:
    """Raw deflate of ``parts`` ending on a full flush, with no final block.

    Such pieces concatenate into one valid deflate stream (the way pigz compresses in parallel),
    so each fragment is compressed once, when it is rendered, and an exposition's gzip is its
    fragments' pieces joined, framed by a header, an empty final block, the CRC and the length.
    """
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = [compressor.compress(part) for part in parts]
    out.append(compressor.flush(zlib.Z_FULL_FLUSH))
    return b"".join(out)


#: gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS unknown.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
#: An empty final deflate block (fixed Huffman, end of block).
_FINAL_BLOCK = b"\x03\x00"


def gzip_from_pieces(pieces: Sequence[bytes], parts: Sequence[bytes]) -> bytes:
    """A gzip member from :func:`deflate` pieces of ``parts`` (CRC and size from ``parts``)."""
    crc = 0
    size = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
        size += len(part)
    trailer = struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF)
    return b"".join((_GZIP_HEADER, *pieces, _FINAL_BLOCK, trailer))


@dataclass(frozen=True, slots=True)
class Fragment:
    """The finished bytes of one group's families, in both formats (no ``# EOF``).

    Kept as per-family pieces, the sample bodies shared by both formats, so that the only copy
    of the whole is the one :func:`assemble` makes; with each format's deflate piece, compressed
    once here rather than at every assembly.
    """

    group: str
    families: tuple[str, ...]
    text_parts: tuple[bytes, ...]
    openmetrics_parts: tuple[bytes, ...]
    text_deflate: bytes = b""
    openmetrics_deflate: bytes = b""

    @property
    def text(self) -> bytes:
        return b"".join(self.text_parts)

    @property
    def openmetrics(self) -> bytes:
        return b"".join(self.openmetrics_parts)


class Exposition:
    """A whole exposition, kept as the parts its fragments rendered (never joined for a scrape).

    The two formats share every sample body, so the uncompressed exposition is held once; a
    scrape sends the parts one after the other. The gzip variants are computed once, on first use
    (the collector asks for them in its render thread), thread-safely.
    """

    __slots__ = (
        "_lock",
        "_om_gzip",
        "_om_pieces",
        "_text_gzip",
        "_text_pieces",
        "openmetrics_parts",
        "text_parts",
    )

    def __init__(
        self,
        text_parts: Sequence[bytes],
        openmetrics_parts: Sequence[bytes],
        *,
        text_pieces: Sequence[bytes] | None = None,
        openmetrics_pieces: Sequence[bytes] | None = None,
    ) -> None:
        """``*_pieces``: :func:`deflate` pieces covering the parts, when the caller has them."""
        self.text_parts: tuple[bytes, ...] = tuple(text_parts)
        self.openmetrics_parts: tuple[bytes, ...] = tuple(openmetrics_parts)
        self._text_pieces = text_pieces
        self._om_pieces = openmetrics_pieces
        self._text_gzip: bytes | None = None
        self._om_gzip: bytes | None = None
        self._lock = threading.Lock()

    @property
    def text(self) -> bytes:
        """Prometheus text format 0.0.4 (joined on each call: for tools and tests)."""
        return b"".join(self.text_parts)

    @property
    def openmetrics(self) -> bytes:
        """OpenMetrics 1.0.0 with ``# EOF`` (joined on each call: for tools and tests)."""
        return b"".join(self.openmetrics_parts)

    @property
    def text_gzip(self) -> bytes:
        if self._text_gzip is None:
            with self._lock:
                if self._text_gzip is None:
                    pieces = self._text_pieces or (deflate(self.text_parts),)
                    self._text_gzip = gzip_from_pieces(pieces, self.text_parts)
        return self._text_gzip

    @property
    def openmetrics_gzip(self) -> bytes:
        if self._om_gzip is None:
            with self._lock:
                if self._om_gzip is None:
                    pieces = self._om_pieces or (deflate(self.openmetrics_parts),)
                    self._om_gzip = gzip_from_pieces(pieces, self.openmetrics_parts)
        return self._om_gzip

    def __repr__(self) -> str:
        text = sum(map(len, self.text_parts))
        om = sum(map(len, self.openmetrics_parts))
        return f"Exposition(text={text} bytes, openmetrics={om} bytes)"


def _static_pairs(
    labels: Mapping[str, str], reserved: frozenset[str]
) -> tuple[tuple[str, str], ...]:
    """A target's static labels usable in a table: valid names, not reserved, non-empty values."""
    pairs: list[tuple[str, str]] = []
    for key in sorted(labels):
        if not LABEL_NAME.match(key) or key.startswith("__"):
            if key not in _warned_labels:
                _warned_labels.add(key)
                logger.warning("static label %r is not a valid label name; left out", key)
            continue
        if key not in reserved and labels[key]:
            pairs.append((key, labels[key]))
    return tuple(pairs)


def _target_key(t: TargetData) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (t.project_id, tuple(sorted(t.labels.items())))


def _headers(name: str, help_text: str, mtype: str) -> tuple[bytes, bytes]:
    text = f"# HELP {name} {escape_help(help_text)}\n# TYPE {name} {mtype}\n"
    om_name = name[:-6] if mtype == "counter" and name.endswith("_total") else name
    om = f"# HELP {om_name} {escape_help(help_text, openmetrics=True)}\n# TYPE {om_name} {mtype}\n"
    return text.encode(), om.encode()


def _render_table(
    table: Table[Any],
    targets: Sequence[TargetData],
    now: float,
    state_sets: Literal["all", "current"],
    out: dict[str, list[str]],
) -> None:
    emitters: list[Emitter[Any]] = [fam.compile(state_sets) for fam in table.families]
    chunks: list[list[str]] = [out.setdefault(fam.name, []) for fam in table.families]
    pairs = list(zip(emitters, chunks, strict=True))
    reserved = RESERVED_LABELS

    if table.global_items is not None:
        ctx = RenderContext(now, _EMPTY_TARGET)
        for ident, obj in table.global_items():
            for emit, chunk in pairs:
                chunk.append(emit(obj, ctx, ident, ident))

    for target in sorted(targets, key=_target_key):
        static = _static_pairs(target.labels, reserved)
        suffix = "".join(f',{k}="{escape_label_value(v)}"' for k, v in static)
        ctx = RenderContext(now, target, static)
        rows = list(table.items(target))
        if not rows:
            continue
        idents = [ident for ident, _ in rows]
        objs = [obj for _, obj in rows]
        prefixes = [ident + suffix for ident in idents] if suffix else idents
        # One map() per family rather than a loop per object: it keeps the hot path in C.
        for emit, chunk in pairs:
            chunk.extend(map(emit, objs, repeat(ctx), prefixes, idents))


def render_group(
    group: str,
    targets: Sequence[TargetData],
    *,
    now: float,
    state_sets: Literal["all", "current"] = "all",
) -> Fragment:
    """Render every family of ``group`` for ``targets``.

    ``state_sets="current"`` emits only the value-1 series of each state set (large inventories).
    Raises ``KeyError`` for an unknown group.
    """
    tables = GROUP_TABLES[group]
    bodies: dict[str, list[str]] = {}
    # Rendering creates many short-lived lists and tuples next to a large, long-lived heap of
    # models; the cyclic collector would walk that heap repeatedly for nothing (about a third of
    # the render time at 100,000 nodes). Nothing created here forms cycles.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for table in tables:
            _render_table(table, targets, now, state_sets, bodies)
    finally:
        if was_enabled:
            gc.enable()
    docs = {fam.name: fam for table in tables for fam in table.families}
    text_parts: list[bytes] = []
    om_parts: list[bytes] = []
    names = tuple(sorted(bodies))
    for name in names:
        fam = docs[name]
        head_text, head_om = _headers(name, fam.help, fam.type)
        body = "".join(bodies[name]).encode()
        text_parts += (head_text, body)
        om_parts += (head_om, body)
    text_deflate = deflate(text_parts)
    # Resource families are gauges: both formats usually come out byte for byte the same.
    om_deflate = text_deflate if om_parts == text_parts else deflate(om_parts)
    return Fragment(group, names, tuple(text_parts), tuple(om_parts), text_deflate, om_deflate)


def _group_order(fragment: Fragment) -> tuple[int, str]:
    try:
        return (GROUPS.index(fragment.group), fragment.group)
    except ValueError:
        return (len(GROUPS), fragment.group)


def assemble(
    fragments: Sequence[Fragment],
    extra_registries: Sequence[CollectorRegistry] = (),
) -> Exposition:
    """Concatenate fragments (in group order) and the samples of prometheus_client registries.

    Registries are rendered with prometheus_client's own generators; ``# EOF`` closes the
    OpenMetrics output once, at the very end.
    """
    ordered = sorted(fragments, key=_group_order)
    text = [part for f in ordered for part in f.text_parts]
    om = [part for f in ordered for part in f.openmetrics_parts]
    text_tail: list[bytes] = []
    om_tail: list[bytes] = []
    for registry in extra_registries:
        text_tail.append(generate_latest(registry))
        rendered = generate_openmetrics(registry)  # type: ignore[no-untyped-call]
        om_tail.append(rendered[: -len(_EOF)] if rendered.endswith(_EOF) else rendered)
    om_tail.append(_EOF)
    text_pieces = [f.text_deflate or deflate(f.text_parts) for f in ordered]
    om_pieces = [f.openmetrics_deflate or deflate(f.openmetrics_parts) for f in ordered]
    text_pieces.append(deflate(text_tail))
    om_pieces.append(deflate(om_tail))
    return Exposition(
        text + text_tail,
        om + om_tail,
        text_pieces=text_pieces,
        openmetrics_pieces=om_pieces,
    )
