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

import logging
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice, repeat
from typing import Any, Literal

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from zlib_ng import zlib_ng as zlib

from exporter.memory import gc_paused
from exporter.metrics.catalog import GROUP_TABLES, GROUPS, RESERVED_LABELS
from exporter.metrics.histogram import JobDurationHistogram
from exporter.metrics.inputs import TargetData
from exporter.metrics.spec import (
    LABEL_NAME,
    Emitter,
    Family,
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
    "Packed",
    "assemble",
    "render_group",
]

logger = logging.getLogger(__name__)

CONTENT_TYPE_TEXT = "text/plain; version=0.0.4; charset=utf-8"
CONTENT_TYPE_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"

#: Compression level of the expositions, with zlib-ng (the zlib module's interface): level 2 is
#: the best trade of CPU against size on this repetitive text; ``python -m bench.compression``
#: compares the levels (figures in docs/performance.md).
GZIP_LEVEL = 2

_EOF = b"# EOF\n"
_EMPTY_TARGET = TargetData("", {}, (), {}, {}, {}, (), (), {}, ())
_warned_labels: set[str] = set()


#: gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS unknown.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
#: An empty final deflate block (fixed Huffman, end of block).
_FINAL_BLOCK = b"\x03\x00"
#: Objects rendered, joined and compressed at a time within one family.
RENDER_SLICE = 2048
#: Bytes a :class:`Packer` gathers before it compresses them.
PACK_BUFFER = 128 * 1024
#: Size of the pieces a plain-text scrape is inflated and sent in.
INFLATE_CHUNK = 256 * 1024


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of ``A + B`` from ``crc32(A)``, ``crc32(B)`` and ``len(B)`` (zlib-ng's; the
    standard zlib module does not expose it)."""
    if len2 <= 0:
        return crc1
    return int(zlib.crc32_combine(crc1, crc2, len2))


@dataclass(frozen=True, slots=True)
class Packed:
    """Exposition bytes kept compressed: a :func:`deflate` piece and the CRC-32 and size of the
    bytes it holds. Only the compressed form is kept (it is several times smaller than the text),
    and a scrape that does not accept gzip is inflated as it is sent."""

    deflate: bytes
    crc: int
    size: int

    @classmethod
    def of(cls, parts: Sequence[bytes]) -> Packed:
        packer = Packer()
        for part in parts:
            packer.add(part)
        return packer.finish()


class Packer:
    """Builds a :class:`Packed` from bytes fed in order, so the whole is never held uncompressed.

    Input is compressed :data:`PACK_BUFFER` bytes at a time: a small family is compressed in one
    call at :meth:`finish`, and its compressor (a few hundred kB of state) exists only then, so
    the many packers of one group being rendered cost memory only for the large families.
    """

    __slots__ = ("_compressor", "_out", "_pending", "_pending_size", "crc", "size")

    def __init__(self) -> None:
        self._compressor: Any = None
        self._out: list[bytes] = []
        self._pending: list[bytes] = []
        self._pending_size = 0
        self.crc = 0
        self.size = 0

    def add(self, data: bytes) -> None:
        if data:
            self.crc = zlib.crc32(data, self.crc)
            self.size += len(data)
            self._pending.append(data)
            self._pending_size += len(data)
            if self._pending_size >= PACK_BUFFER:
                self._compress_pending()

    def _compress_pending(self) -> None:
        if self._compressor is None:
            self._compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        if self._pending:
            pending = self._pending
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            self._pending = []
            self._pending_size = 0
            self._out.append(self._compressor.compress(data))

    def finish(self) -> Packed:
        self._compress_pending()
        self._out.append(self._compressor.flush(zlib.Z_FULL_FLUSH))
        self._compressor = None
        out, self._out = self._out, []
        return Packed(out[0] if len(out) == 1 else b"".join(out), self.crc, self.size)


def inflate(packs: Sequence[Packed], chunk: int = INFLATE_CHUNK) -> Iterator[bytes]:
    """The bytes ``packs`` hold, in pieces of at most ``chunk`` bytes (none empty)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    for pack in packs:
        data = pack.deflate
        while data:
            out = inflater.decompress(data, chunk)
            if out:
                yield out
            data = inflater.unconsumed_tail
    rest = inflater.flush()  # what a chunk boundary left inside the inflater (< 258 bytes)
    if rest:
        yield rest


@dataclass(frozen=True, slots=True)
class Fragment:
    """The finished families of one group, in both formats (no ``# EOF``), kept compressed: one
    :class:`Packed` a family, in name order.

    A family's ``openmetrics`` piece is the same object as its ``text`` piece when both come out
    byte for byte the same (a gauge).
    """

    group: str
    families: tuple[str, ...]
    text: tuple[Packed, ...]
    openmetrics: tuple[Packed, ...]


class Exposition:
    """A whole exposition, kept as its fragments' compressed pieces (never joined for a scrape).

    :meth:`body` gives a scrape's bytes: for gzip, the pieces framed as one gzip member (header,
    pieces, an empty final block, the CRC combined from the pieces' and the length); otherwise the
    pieces inflated as they are sent.
    """

    __slots__ = ("_om", "_om_gzip", "_text", "_text_gzip", "openmetrics_size", "text_size")

    def __init__(self, text: Sequence[Packed], openmetrics: Sequence[Packed]) -> None:
        self._text = tuple(text)
        self._om = tuple(openmetrics)
        self.text_size = sum(p.size for p in self._text)
        self.openmetrics_size = sum(p.size for p in self._om)
        self._text_gzip = self._gzip_parts(self._text)
        self._om_gzip = self._gzip_parts(self._om)

    @staticmethod
    def _gzip_parts(packs: Sequence[Packed]) -> tuple[bytes, ...]:
        crc = 0
        size = 0
        for pack in packs:
            crc = crc32_combine(crc, pack.crc, pack.size)
            size += pack.size
        trailer = struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF)
        return (_GZIP_HEADER, *(p.deflate for p in packs), _FINAL_BLOCK, trailer)

    def body(self, *, openmetrics: bool, gzip: bool) -> tuple[int, Iterable[bytes]]:
        """``(content length, pieces to send in order)`` of one of the four renderings."""
        if gzip:
            parts = self._om_gzip if openmetrics else self._text_gzip
            return sum(map(len, parts)), parts
        if openmetrics:
            return self.openmetrics_size, inflate(self._om)
        return self.text_size, inflate(self._text)

    @property
    def text(self) -> bytes:
        """Prometheus text format 0.0.4 (inflated and joined on each call: for tools and tests)."""
        return b"".join(inflate(self._text))

    @property
    def openmetrics(self) -> bytes:
        """OpenMetrics 1.0.0 with ``# EOF`` (inflated and joined on each call)."""
        return b"".join(inflate(self._om))

    @property
    def gzip_size(self) -> int:
        return sum(map(len, self._text_gzip))

    def __repr__(self) -> str:
        return f"Exposition(text={self.text_size} bytes, openmetrics={self.openmetrics_size} bytes)"


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


def _rows(
    table: Table[Any], targets: Sequence[TargetData], now: float
) -> Iterator[tuple[RenderContext, str, Iterator[tuple[str, Any]]]]:
    """Per target (and once for the process-wide rows): its render context, the suffix of its
    static labels, and its ``(identity labels, object)`` rows, lazily."""
    if table.global_items is not None:
        yield RenderContext(now, _EMPTY_TARGET), "", iter(table.global_items())
    for target in sorted(targets, key=_target_key):
        static = _static_pairs(target.labels, RESERVED_LABELS)
        suffix = "".join(f',{k}="{escape_label_value(v)}"' for k, v in static)
        yield RenderContext(now, target, static), suffix, iter(table.items(target))


@dataclass(slots=True)
class _FamilyOut:
    """One family being rendered: its sample emitter and its compressed output in each format
    (``om`` is ``text`` when the family's headers are the same in both)."""

    emit: Emitter[Any]
    text: Packer
    om: Packer


def render_group(
    group: str,
    targets: Sequence[TargetData],
    *,
    now: float,
    state_sets: Literal["all", "current"] = "all",
) -> Fragment:
    """Render every family of ``group`` for ``targets``, compressed as it goes.

    Objects are taken :data:`RENDER_SLICE` at a time; each slice is rendered for every family of
    its table and compressed into that family's own deflate stream before the next slice is
    built. So neither a family's text nor the identity labels of all objects are ever held at
    once: only one slice's. The families' streams are concatenated in name order (each ends on a
    full flush, so concatenation is valid deflate).
    ``state_sets="current"`` emits only the value-1 series of each state set (large inventories).
    Raises ``KeyError`` for an unknown group.
    """
    outs: dict[str, _FamilyOut] = {}
    # Rendering creates many short-lived lists and tuples next to a large, long-lived heap of
    # models; the cyclic collector would walk that heap repeatedly for nothing. Nothing created
    # here forms cycles.
    with gc_paused():
        for table in GROUP_TABLES[group]:
            table_outs = [_family_out(fam, state_sets) for fam in table.families]
            outs.update(
                (fam.name, out) for fam, out in zip(table.families, table_outs, strict=True)
            )
            for ctx, suffix, rows in _rows(table, targets, now):
                while chunk := list(islice(rows, RENDER_SLICE)):
                    idents = [ident for ident, _ in chunk]
                    objs = [obj for _, obj in chunk]
                    prefixes = [ident + suffix for ident in idents] if suffix else idents
                    for out in table_outs:
                        body = "".join(map(out.emit, objs, repeat(ctx), prefixes, idents)).encode()
                        out.text.add(body)
                        if out.om is not out.text:
                            out.om.add(body)
    names = tuple(sorted(outs))
    text: list[Packed] = []
    om: list[Packed] = []
    for name in names:
        out = outs.pop(name)  # each family's pieces freed as soon as they are joined
        packed = out.text.finish()
        text.append(packed)
        om.append(packed if out.om is out.text else out.om.finish())
    return Fragment(group, names, tuple(text), tuple(om))


def _family_out(fam: Family[Any], state_sets: Literal["all", "current"]) -> _FamilyOut:
    head_text, head_om = _headers(fam.name, fam.help, fam.type)
    text = Packer()
    text.add(head_text)
    om = text
    if head_om != head_text:
        om = Packer()
        om.add(head_om)
    return _FamilyOut(fam.compile(state_sets), text, om)


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
    text_tail: list[bytes] = []
    om_tail: list[bytes] = []
    for registry in extra_registries:
        text_tail.append(generate_latest(registry))
        rendered = generate_openmetrics(registry)  # type: ignore[no-untyped-call]
        om_tail.append(rendered[: -len(_EOF)] if rendered.endswith(_EOF) else rendered)
    om_tail.append(_EOF)
    return Exposition(
        [*(p for f in ordered for p in f.text), Packed.of(text_tail)],
        [*(p for f in ordered for p in f.openmetrics), Packed.of(om_tail)],
    )
