"""Metric family specs: the rows of the per-resource tables, and how each row renders.

A resource module (``clusters.py``, ``nodes.py`` ...) declares one :class:`Table`: the identity
labels of its resource, a pure function listing ``(identity label text, object)`` pairs of a target,
and a tuple of family rows. A row is one of

* :class:`Gauge` -- one sample per object, no extra labels; ``None`` omits the sample;
* :class:`Info` -- value 1 with extra labels; a label whose value is missing or empty is left out;
* :class:`StateSet` -- one 0/1 series per known value plus ``unknown`` (or only the current one);
* :class:`Samples` -- anything else: a function yielding ``(labels, value)`` pairs.

Rows are compiled once per render into small closures that return finished exposition lines, so
the hot loop over 100,000 nodes is string concatenation and nothing else. Label values are escaped
here and only here.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Literal, TypeVar

from exporter.limits import limits, truncate_label
from exporter.metrics.inputs import TargetData

__all__ = [
    "UNKNOWN",
    "Emitter",
    "Family",
    "Gauge",
    "Info",
    "RenderContext",
    "Samples",
    "StateSet",
    "Table",
    "epoch",
    "escape_help",
    "escape_label_value",
    "format_labels",
    "format_value",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
StateSets = Literal["all", "current"]
Value = float | int | bool

UNKNOWN = "unknown"
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


# --- text helpers -------------------------------------------------------------------------------


def escape_label_value(value: str) -> str:
    """Escape a label value for both exposition formats (backslash, double quote, newline),
    cut to the configured length first (:func:`exporter.limits.truncate_label`)."""
    if len(value) > limits.label_value_max:
        value = truncate_label(value)
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def escape_help(text: str, *, openmetrics: bool = False) -> str:
    """Escape HELP text: the text format escapes backslash and newline, OpenMetrics also quotes."""
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if openmetrics else text


def format_value(value: Value) -> str:
    """A sample value as Prometheus reads it: ints plain, floats by ``repr``, ``NaN``, ``±Inf``."""
    cls = value.__class__
    if cls is float:
        if value - value == 0:  # finite: NaN - NaN and Inf - Inf are NaN
            return repr(value)
    elif cls is int:
        return str(value)
    elif cls is bool:
        return "1" if value else "0"
    number = float(value)
    if number != number:
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return repr(number)


def format_labels(pairs: Iterable[tuple[str, str | None]]) -> str:
    """``a="x",b="y"`` for the pairs whose value is present and non-empty."""
    return ",".join(f'{k}="{escape_label_value(v)}"' for k, v in pairs if v)


def epoch(moment: datetime | None) -> float | None:
    """Unix seconds of an aware datetime, or None."""
    return None if moment is None else moment.timestamp()


# --- unknown enumeration values -----------------------------------------------------------------

_SEEN_UNKNOWN: set[tuple[str, str]] = set()
# Bounded so that a misbehaving API cannot grow the set without limit; past it, values repeat.
_SEEN_UNKNOWN_MAX = 4096


def _report_unknown(family: str, raw: str | None) -> None:
    key = (family, raw if raw is not None else "")
    if key in _SEEN_UNKNOWN:
        return
    if len(_SEEN_UNKNOWN) < _SEEN_UNKNOWN_MAX:
        _SEEN_UNKNOWN.add(key)
    shown = "<missing>" if raw is None else repr(raw[:200])
    logger.warning("%s: value %s is not a known value; reported as %r", family, shown, UNKNOWN)


# --- render context -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RenderContext:
    """What an extractor may look at besides its object: the clock and the whole target."""

    now: float
    target: TargetData
    #: The target's static labels that this table may add: valid names, identity names removed.
    static: tuple[tuple[str, str], ...] = ()

    def since(self, key: str) -> float | None:
        """When the current phase of ``key`` (``"node/<id>"``) was first seen, if known."""
        return self.target.phase_since.get(key)


#: A compiled row: (object, context, label prefix, identity labels) -> finished lines, "" for none.
#: The prefix is the identity labels followed by the target's static labels (never empty).
Emitter = Callable[[T, RenderContext, str, str], str]


# --- rows ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Gauge(Generic[T]):
    """One sample per object, with only the identity labels; ``None`` omits it."""

    name: str
    help: str
    value: Callable[[T, RenderContext], Value | None]
    type: str = "gauge"

    @property
    def label_names(self) -> tuple[str, ...]:
        return ()

    @property
    def states(self) -> tuple[str, ...]:
        return ()

    def compile(self, state_sets: StateSets) -> Emitter[T]:
        head = self.name + "{"
        extract = self.value
        fmt = format_value

        def emit(obj: T, ctx: RenderContext, prefix: str, ident: str) -> str:
            v = extract(obj, ctx)
            if v is None:
                return ""
            if v.__class__ is float and v - v == 0:  # finite float, the usual timestamp
                return f"{head}{prefix}}} {v!r}\n"
            return f"{head}{prefix}}} {fmt(v)}\n"

        return emit


@dataclass(frozen=True, slots=True)
class Info(Generic[T]):
    """Value 1 with extra labels; a missing or empty value leaves its label out.

    ``values`` returns one value per name in ``labels``, in that order: a single extractor rather
    than one per label, because this row is rendered for every node.
    """

    name: str
    help: str
    labels: tuple[str, ...]
    values: Callable[[T], tuple[str | None, ...]]
    type: str = "gauge"

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.labels

    @property
    def states(self) -> tuple[str, ...]:
        return ()

    def compile(self, state_sets: StateSets) -> Emitter[T]:
        head = self.name + "{"
        names = self.labels
        # The common case, every value present and none needing escapes, is one %-format.
        template = "".join(f',{k}="%s"' for k in names) + "} 1\n"
        extract = self.values
        esc = escape_label_value

        def emit(obj: T, ctx: RenderContext, prefix: str, ident: str) -> str:
            vals = extract(obj)
            if all(vals):
                joined = "".join(vals)  # type: ignore[arg-type]  # all() ruled out None
                if (
                    "\\" not in joined
                    and '"' not in joined
                    and "\n" not in joined
                    and len(joined) <= limits.label_value_max
                ):
                    return head + prefix + template % vals
            extra = "".join([f',{k}="{esc(v)}"' for k, v in zip(names, vals, strict=True) if v])
            return f"{head}{prefix}{extra}}} 1\n"

        return emit


@dataclass(frozen=True, slots=True)
class StateSet(Generic[T]):
    """A 0/1 series per known value plus ``unknown``; ``current`` mode keeps only the 1."""

    name: str
    help: str
    label: str
    values: tuple[str, ...]  # the known values, without "unknown"
    current: Callable[[T], str | None]
    type: str = "gauge"

    @property
    def label_names(self) -> tuple[str, ...]:
        return (self.label,)

    @property
    def states(self) -> tuple[str, ...]:
        return (*self.values, UNKNOWN)

    def compile(self, state_sets: StateSets) -> Emitter[T]:
        states = self.states
        index = {v: i for i, v in enumerate(self.values)}
        unknown = len(self.values)
        head = self.name + "{"
        name = self.name
        current = self.current
        label = self.label
        report = _report_unknown

        def position(obj: T) -> int:
            raw = current(obj)
            i = index.get(raw) if raw is not None else None
            if i is None:
                if raw != UNKNOWN:  # the API's own "unknown" is the fallback, not a surprise
                    report(name, raw)
                return unknown
            return i

        if state_sets == "current":
            ones = [f',{label}="{escape_label_value(s)}"}} 1\n' for s in states]

            def emit_current(obj: T, ctx: RenderContext, prefix: str, ident: str) -> str:
                return f"{head}{prefix}{ones[position(obj)]}"

            return emit_current

        # For each possible current value, the list of line tails with that one set to 1; a line
        # block is then a single str.join with the per-object head as separator. The leading ""
        # makes join put the head before the first tail too.
        tails: list[list[str]] = []
        for cur in range(len(states)):
            tails.append(
                [""]
                + [
                    f',{label}="{escape_label_value(s)}"}} {"1" if i == cur else "0"}\n'
                    for i, s in enumerate(states)
                ]
            )

        def emit_all(obj: T, ctx: RenderContext, prefix: str, ident: str) -> str:
            return (head + prefix).join(tails[position(obj)])

        return emit_all


@dataclass(frozen=True, slots=True)
class Samples(Generic[T]):
    """Free-form rows: ``samples`` yields ``(extra labels, value)``; extra labels win over the
    target's static labels of the same name (a quota's own ``region`` beats the target's)."""

    name: str
    help: str
    type: str
    label_names: tuple[str, ...]  # for the docs: every extra label the row may carry
    samples: Callable[[T, RenderContext], Iterable[tuple[Mapping[str, str | None], Value]]]

    @property
    def states(self) -> tuple[str, ...]:
        return ()

    def compile(self, state_sets: StateSets) -> Emitter[T]:
        name = self.name
        produce = self.samples

        def emit(obj: T, ctx: RenderContext, prefix: str, ident: str) -> str:
            lines: list[str] = []
            for extra, value in produce(obj, ctx):
                present = {k: v for k, v in extra.items() if v}
                static = [(k, v) for k, v in ctx.static if k not in present]
                tail = format_labels([*static, *present.items()])
                labels = f"{ident},{tail}" if tail else ident
                lines.append(f"{name}{{{labels}}} {format_value(value)}\n")
            return "".join(lines)

        return emit


Family = Gauge[T] | Info[T] | StateSet[T] | Samples[T]


@dataclass(frozen=True, slots=True)
class Table(Generic[T]):
    """One resource's metric families.

    ``items(target)`` yields ``(identity, object)`` pairs in a stable order, ``identity`` being the
    formatted identity labels (see :func:`format_labels`), never empty. Objects without an ID are
    skipped by ``items``: without one their series could not be told apart.
    """

    group: str
    resource: str
    identity: tuple[str, ...]
    items: Callable[[TargetData], Iterable[tuple[str, T]]]
    families: tuple[Family[T], ...]
    #: Called once, not per target, for process-wide series (build info). Static labels not added.
    global_items: Callable[[], Iterable[tuple[str, T]]] | None = None
    doc: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def reserved_labels(self) -> frozenset[str]:
        """Label names a target's static labels may not override in this table."""
        names = set(self.identity)
        for fam in self.families:
            if not isinstance(fam, Samples):
                names.update(fam.label_names)
        return frozenset(names)
