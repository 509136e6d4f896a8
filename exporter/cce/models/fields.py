"""The lenient field types every model is built from, and the two base models.

The rules they implement are listed in :mod:`exporter.cce.models`.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, ClassVar, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    model_validator,
)
from pydantic_core import CoreSchema
from pydantic_core import core_schema as cs

# --- timestamps ---------------------------------------------------------------------------------

_TS = re.compile(
    r"""^(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}:\d{2})
        (?:[.,](?P<frac>\d{1,9}))?
        \s*(?P<off>Z|z|[+-]\d{2}:?\d{2})?
        (?:\s+(?P<zone>[A-Za-z][A-Za-z0-9_+-]*))?
        (?:\s+m=[+-]?[\d.]+)?$""",
    re.VERBOSE,
)


#: UTC suffixes of the two families as the API sends them (Go ``+0000 UTC``, RFC 3339 ``Z``).
_UTC_SUFFIXES: tuple[str, ...] = (" +0000 UTC", "Z", "+00:00")


def _utc_timestamp(value: str) -> datetime | None:
    """The common exact layouts in UTC, read by ``datetime.fromisoformat`` without the regex;
    None means "use the general path".

    ``YYYY-MM-DD[T ]HH:MM:SS[.f{1,9}]`` followed by one of :data:`_UTC_SUFFIXES`, ASCII digits
    only. It accepts a subset of what the general path accepts and gives the same result (the
    fraction cut to microseconds); nearly every timestamp the API sends takes this path.
    """
    for suffix in _UTC_SUFFIXES:
        if value.endswith(suffix):
            core = value[: -len(suffix)]
            break
    else:
        return None
    n = len(core)
    if (
        n < 19
        or core[4] != "-"
        or core[7] != "-"
        or core[10] not in "T "
        or core[13] != ":"
        or core[16] != ":"
    ):
        return None
    digits = core[0:4] + core[5:7] + core[8:10] + core[11:13] + core[14:16] + core[17:19]
    if n > 19:
        frac = core[20:]
        if core[19] not in ".," or not 1 <= len(frac) <= 9:
            return None
        digits += frac
    if not (digits.isascii() and digits.isdigit()):
        return None
    try:
        return datetime.fromisoformat(core + "+00:00")
    except ValueError:
        return None


def parse_timestamp(value: object) -> datetime | None:
    """Parse a CCE timestamp of either family into an aware datetime; None if missing or unreadable.

    Numbers are taken as Unix seconds. A timestamp without an offset is taken as UTC.
    """
    if type(value) is str and len(value) <= _CACHED_LENGTH:
        return _text_timestamp(value)
    return _other_timestamp(value)


#: Strings up to this long are cached (a timestamp is at most about 50 characters; longer ones
#: are unreadable anyway, and a cache of hostile kilobyte strings would hold memory).
_CACHED_LENGTH = 64


@functools.lru_cache(maxsize=1024)
def _text_timestamp(value: str) -> datetime | None:
    """:func:`parse_timestamp` of a string. Cached: an object's update time is often its creation
    time, and a list's probe times are often one (datetimes are immutable, so sharing is safe)."""
    return _utc_timestamp(value) or _other_timestamp(value)


def _other_timestamp(value: object) -> datetime | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        if not math.isfinite(value) or abs(value) > 253402300799:
            return None
        try:
            return datetime.fromtimestamp(value, UTC)
        except (ValueError, OverflowError, OSError):  # before year 1
            return None
    if not isinstance(value, str):
        return None
    m = _TS.match(value.strip())
    if m is None:
        return None
    frac = (m.group("frac") or "").ljust(6, "0")[:6]
    try:
        dt = datetime.fromisoformat(f"{m.group('date')}T{m.group('time')}")
        dt = dt.replace(microsecond=int(frac))
    except ValueError:
        return None
    off = m.group("off")
    tz: timezone = UTC
    if off and off not in ("Z", "z"):
        sign = -1 if off[0] == "-" else 1
        digits = off[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:])
        if hours > 23 or minutes > 59:
            return None
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        return dt.replace(tzinfo=tz)
    except (ValueError, OverflowError):
        return None


# --- lenient field types ------------------------------------------------------------------------


def _to_str(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def _to_int(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return parse_number(value)
    return None


def parse_number(value: str) -> int | None:
    """Leading integer or float of a string (``"12"``, ``"3.5"``, ``"16Gi"``), else None."""
    m = re.match(r"^\s*([+-]?\d+(?:\.\d+)?)", value)
    if m is None:
        return None
    number = float(m.group(1))
    return int(number) if math.isfinite(number) else None


def _to_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off", ""):
            return False
    if isinstance(value, int | float):
        return bool(value)
    return None


def _to_str_map(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    out: dict[str, str] = {}
    for k, v in value.items():
        if v is None:
            continue
        out[str(k)] = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    return out


def _to_list(value: object) -> list[Any]:
    """An object where an array is expected becomes a one-item array; null becomes empty."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [value]
    return []


def _to_object_list(value: object) -> list[Any]:
    """Like ``_to_list`` but keeps only objects (anything else in an array is dropped)."""
    return [item for item in _to_list(value) if isinstance(item, dict)]


def _to_extend_param(value: object) -> dict[str, Any] | str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        return value
    return _to_str(value)


def _to_str_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [s for s in (_to_str(v) for v in _to_list(value)) if s is not None]


class _FastPath:
    """Validate with a pydantic-core schema first, and with the lenient Python function only when
    that refuses the value.

    The API's values nearly always have the documented type; checking that in Rust and calling
    Python only for the odd value keeps every tolerance at a fraction of the cost (parsing
    100,000 nodes calls these millions of times). ``fast`` must accept only values for which
    ``fallback`` would return the same thing.
    """

    __slots__ = ("fallback", "fast")

    def __init__(
        self,
        fast: CoreSchema | None,
        fallback: Callable[[Any], Any],
    ) -> None:
        self.fast = fast
        self.fallback = fallback

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        # ``None`` as the fast schema: the type's own (lax) schema, for nested models.
        fast = self.fast if self.fast is not None else handler(source)
        if self.fallback is _to_object_list:
            # An array of objects: each item must be an object before it reaches the model
            # (whose own before-validator would turn a stray number into an empty object).
            (item,) = get_args(source)
            only_objects = cs.dict_schema(strict=True)
            fast = cs.list_schema(
                cs.chain_schema([only_objects, handler.generate_schema(item)]), strict=True
            )
        slow = cs.no_info_before_validator_function(self.fallback, handler(source))
        return cs.union_schema([fast, slow], mode="left_to_right")


def _strict(schema: CoreSchema) -> CoreSchema:
    return cs.nullable_schema(schema)


Str = Annotated[str | None, _FastPath(_strict(cs.str_schema(strict=True)), _to_str)]
Int = Annotated[int | None, _FastPath(_strict(cs.int_schema(strict=True)), _to_int)]
Bool = Annotated[bool | None, _FastPath(_strict(cs.bool_schema(strict=True)), _to_bool)]
Timestamp = Annotated[datetime | None, BeforeValidator(parse_timestamp)]
StrMap = Annotated[
    dict[str, str],
    _FastPath(
        cs.dict_schema(cs.str_schema(strict=True), cs.str_schema(strict=True), strict=True),
        _to_str_map,
    ),
]
StrList = Annotated[list[str], BeforeValidator(_to_str_list)]
ExtendParam = Annotated[dict[str, Any] | str | None, BeforeValidator(_to_extend_param)]


def _coerce_object(value: object) -> object:
    return value if isinstance(value, dict) else {}


def _nested(model: Callable[..., Any]) -> Any:
    """A nested object: anything but an object becomes an empty one."""
    return _FastPath(None, _coerce_object)


def _objects() -> Any:
    """An array of objects; an object alone is a one-item array, non-objects are dropped."""
    return _FastPath(None, _to_object_list)


class Lenient(BaseModel):
    """Base of every model: ignores unknown keys; every field optional."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    _ci_keys: ClassVar[dict[str, str]] = {}


class CaseInsensitive(Lenient):
    """A model whose keys the API spells several ways: they are matched case-insensitively.

    Only the objects known to need it pay for the extra pass (statuses and volumes); the rest are
    validated by pydantic-core alone. An object whose keys are all plain (the fields' own
    spellings, or a key of :attr:`_other_keys`) is passed through after one set comparison, done
    in C; any other object has its keys folded.
    """

    #: Keys the API sends that no field reads (a table per model, from the API reference and the
    #: SDK); a key here that folds to a field's name is ignored.
    _other_keys: ClassVar[frozenset[str]] = frozenset()
    _plain_keys: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        keys: dict[str, str] = {}
        for name, field in cls.model_fields.items():
            alias = field.alias or name
            keys[alias.lower()] = alias
        cls._ci_keys = keys
        others = {key for key in cls._other_keys if key.lower() not in keys}
        cls._plain_keys = frozenset(keys.values()) | others

    @model_validator(mode="before")
    @classmethod
    def _normalise_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return {}
        if cls._plain_keys.issuperset(data):
            return data
        keys = cls._ci_keys
        out: dict[str, Any] | None = None
        for key in data:
            if not isinstance(key, str):
                continue
            canonical = keys.get(key.lower())
            if canonical is not None and canonical != key:
                if out is None:
                    out = dict(data)
                value = out.pop(key)
                # The exact spelling wins when both are present.
                if canonical not in data:
                    out[canonical] = value
        return data if out is None else out


# --- shared objects -----------------------------------------------------------------------------


class ObjectMeta(Lenient):
    name: Str = None
    uid: Str = None
    alias: Str = None
    creation_timestamp: Timestamp = Field(None, alias="creationTimestamp")
    update_timestamp: Timestamp = Field(None, alias="updateTimestamp")
    labels: StrMap = Field(default_factory=dict)
    annotations: StrMap = Field(default_factory=dict)


class Condition(CaseInsensitive):
    """One entry of ``status.conditions`` (SDK ``ClusterCondition``, ``NodePoolCondition``)."""

    type: Str = None
    status: Str = None
    reason: Str = None
    message: Str = None
    last_probe_time: Timestamp = Field(None, alias="lastProbeTime")
    last_transit_time: Timestamp = Field(None, alias="lastTransitTime")

    @property
    def state(self) -> str | None:
        """``true``/``false`` for the API's ``True``/``False`` (any case); else the raw value."""
        raw = self.status
        if raw is None:
            return None
        lowered = raw.strip().lower()
        return lowered if lowered in ("true", "false", "unknown") else raw


class Resource(Lenient):
    """A CCE object: its ``kind`` and ``metadata``, and the ID and name the metadata gives."""

    kind: Str = None
    metadata: Annotated[ObjectMeta, _nested(ObjectMeta)] = Field(default_factory=ObjectMeta)

    @property
    def id(self) -> str | None:
        return self.metadata.uid

    @property
    def name(self) -> str | None:
        return self.metadata.name
