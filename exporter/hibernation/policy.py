"""The hibernation policy file: which clusters sleep when.

A YAML document (``CCE_EXPORTER_POLICY_FILE`` or ``policy_file`` in the config)::

    policies:
      - name: office-hours
        clusters:
          names: ["dev-*", "test-*"]     # globs on the cluster name
          ids: []                         # cluster IDs
          exclude: ["dev-critical"]       # names, globs or IDs
          targets: []                     # configured target names; empty = all
        timezone: Europe/Berlin           # IANA; default UTC
        awake: ["Mon-Fri 08:00-20:00"]    # awake inside, hibernated outside
        # or: schedules: [{hibernate: "0 20 * * 1-5", awake: "0 8 * * 1-5"}]
        holidays: {country: DE, subdiv: BY, dates: ["2027-12-24"]}   # hibernated all day
        dry_run: false
    pricing:
      currency: EUR
      control_plane_per_hour: {cce.s1.small: 0.30}
    controller:                           # optional; the defaults are shown
      catch_up_seconds: 3600
      max_in_flight: 2
      action_timeout_seconds: 1800
      max_attempts: 3
    notify:
      webhooks: ["https://chat.example/hook"]
      timeout_seconds: 5

Awake windows use kube-downscaler's syntax: ``<days> <HH:MM>-<HH:MM>``, days as a range
(``Mon-Fri``, ``Fri-Mon`` wraps), a list (``Sat,Sun``) or both (``Mon-Wed,Fri``); a window whose
end is not after its start crosses midnight and ends on the next day (``Fri 22:00-02:00`` is Friday
night until Saturday 02:00); ``24:00`` is the end of the day; days alone (``Sat,Sun``) mean the
whole day. Cron expressions are croniter's five fields, read in the policy's timezone.

:func:`load_policy_file` raises :class:`PolicyError`, whose message names the policy and the
field. A cluster that two policies select is found only against the real cluster list
(:func:`match_policies`), which reports it as a :class:`Conflict` and leaves the cluster alone.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib
import yaml
from croniter import CroniterBadDateError, croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "ClusterSelector",
    "Conflict",
    "ControllerOptions",
    "CronPair",
    "Holidays",
    "Match",
    "NotifyOptions",
    "Policy",
    "PolicyError",
    "PolicyFile",
    "Pricing",
    "Window",
    "load_policy_file",
    "match_policies",
    "parse_policy_file",
    "parse_window",
]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(
    r"^\s*(?P<days>[A-Za-z,\-]+)(?:\s+(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2}))?\s*$"
)


class PolicyError(ValueError):
    """The policy file is missing, not YAML, or not a valid policy document."""


@dataclass(frozen=True)
class Window:
    """One awake window: on ``days`` (0 = Monday) from ``start`` to ``end`` minutes after
    midnight; ``end`` may pass 1440 (the window crosses midnight)."""

    days: frozenset[int]
    start: int
    end: int


_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _day(token: str, text: str) -> int:
    word = token.strip().lower()
    for index, full in enumerate(_FULL_DAYS):
        if word in (DAYS[index], full):
            return index
    raise ValueError(f"unknown day {token.strip()!r} in window {text!r} (use Mon, Tue, ... Sun)")


def _minutes(value: str, text: str) -> int:
    hours, minutes = (int(p) for p in value.split(":"))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ValueError(f"invalid time {value!r} in window {text!r} (00:00 to 24:00)")
    return hours * 60 + minutes


def parse_window(text: str) -> Window:
    """Parse ``Mon-Fri 08:00-20:00``, ``Sat,Sun``, ``Fri 22:00-02:00``; ValueError if invalid."""
    m = _WINDOW.match(text)
    if not m:
        raise ValueError(
            f"window {text!r} is not '<days> <HH:MM>-<HH:MM>' (e.g. 'Mon-Fri 08:00-20:00')"
        )
    days: set[int] = set()
    for part in m["days"].split(","):
        if not part.strip():
            raise ValueError(f"empty day in window {text!r}")
        first, sep, last = part.partition("-")
        a = _day(first, text)
        b = _day(last, text) if sep else a
        day = a
        days.add(day)
        while day != b:  # a range may wrap around the week: Fri-Mon
            day = (day + 1) % 7
            days.add(day)
    if m["start"] is None:
        return Window(frozenset(days), 0, 1440)
    start = _minutes(m["start"], text)
    end = _minutes(m["end"], text)
    if start == 1440:
        raise ValueError(f"window {text!r} cannot start at 24:00")
    if end <= start:
        end += 1440  # crosses midnight: ends on the next day
    return Window(frozenset(days), start, end)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClusterSelector(_Strict):
    names: list[str] = Field(default_factory=list)
    ids: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    targets: list[str] = Field(default_factory=list)

    def selects(self, target: str, cluster_id: str, name: str) -> bool:
        """Whether the names/ids (and targets) select the cluster, exclusions aside."""
        if self.targets and target not in self.targets:
            return False
        if cluster_id and cluster_id in self.ids:
            return True
        return any(fnmatch.fnmatchcase(name, glob) for glob in self.names)

    def excludes(self, cluster_id: str, name: str) -> bool:
        return any(
            (cluster_id and cluster_id == pattern) or fnmatch.fnmatchcase(name, pattern)
            for pattern in self.exclude
        )


class CronPair(_Strict):
    hibernate: str | None = None
    awake: str | None = None

    @field_validator("hibernate", "awake")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a valid cron expression (5 fields)")
        if value is not None:
            try:  # a valid expression may name a day that never comes (30 February)
                croniter(value, datetime(2000, 1, 1)).get_next()
            except CroniterBadDateError:
                raise ValueError(f"{value!r} never fires (a day that does not exist)") from None
        return value

    @model_validator(mode="after")
    def _one_side(self) -> CronPair:
        if self.hibernate is None and self.awake is None:
            raise ValueError("a schedule needs 'hibernate', 'awake' or both")
        return self


class Holidays(_Strict):
    country: str | None = None
    subdiv: str | None = None
    dates: list[date] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known(self) -> Holidays:
        if self.subdiv and not self.country:
            raise ValueError("'subdiv' needs 'country'")
        if self.country:
            try:
                holidays_lib.country_holidays(self.country, subdiv=self.subdiv, years=2000)
            except NotImplementedError as exc:
                raise ValueError(f"unknown holiday calendar: {exc}") from None
        return self

    def is_holiday(self, day: date) -> bool:
        if day in self.dates:
            return True
        if not self.country:
            return False
        return day in _calendar(self.country, self.subdiv, day.year)


@lru_cache(maxsize=64)
def _calendar(country: str, subdiv: str | None, year: int) -> frozenset[date]:
    return frozenset(holidays_lib.country_holidays(country, subdiv=subdiv, years=year))


class Policy(_Strict):
    name: str
    clusters: ClusterSelector = Field(default_factory=ClusterSelector)
    timezone: str = "UTC"
    awake: list[str] = Field(default_factory=list)
    schedules: list[CronPair] = Field(default_factory=list)
    holidays: Holidays | None = None
    dry_run: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. Europe/Berlin)") from None
        return value

    @field_validator("awake")
    @classmethod
    def _windows(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_window(text)
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Policy:
        if bool(self.awake) == bool(self.schedules):
            raise ValueError("give either 'awake' windows or 'schedules', exactly one of them")
        if not (self.clusters.names or self.clusters.ids):
            raise ValueError("'clusters' must select something with 'names' or 'ids'")
        return self

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def windows(self) -> tuple[Window, ...]:
        return tuple(parse_window(w) for w in self.awake)

    def is_holiday(self, day: date) -> bool:
        return self.holidays is not None and self.holidays.is_holiday(day)

    def wall_time_awake(self, weekday: int, minute: int) -> bool:
        """Whether the awake windows cover ``minute`` of a day with ``weekday`` (holidays aside)."""
        for w in self.windows:
            if weekday in w.days and w.start <= minute < w.end:
                return True
            if (weekday - 1) % 7 in w.days and minute + 1440 < w.end:
                return True
        return False


class Pricing(_Strict):
    currency: str = "EUR"
    control_plane_per_hour: dict[str, float] = Field(default_factory=dict)


class ControllerOptions(_Strict):
    catch_up_seconds: float = Field(3600, ge=0)
    max_in_flight: int = Field(2, ge=1)
    action_timeout_seconds: float = Field(1800, gt=0)
    poll_seconds: float = Field(15, gt=0)
    max_attempts: int = Field(3, ge=1)
    retry_backoff_seconds: float = Field(60, ge=0)


class NotifyOptions(_Strict):
    webhooks: list[str] = Field(default_factory=list)
    timeout_seconds: float = Field(5, gt=0)

    @field_validator("webhooks")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http(s) URL")
        return value


class PolicyFile(_Strict):
    policies: list[Policy] = Field(default_factory=list)
    pricing: Pricing | None = None
    controller: ControllerOptions = Field(default_factory=ControllerOptions)
    notify: NotifyOptions = Field(default_factory=NotifyOptions)

    @field_validator("policies")
    @classmethod
    def _unique(cls, value: list[Policy]) -> list[Policy]:
        seen: set[str] = set()
        for p in value:
            if p.name in seen:
                raise ValueError(f"two policies are named {p.name!r}")
            seen.add(p.name)
        return value


def _model_at(loc: Iterable[int | str]) -> type[BaseModel] | None:
    """The model class whose fields are valid at ``loc`` (a path of field names and indexes)."""
    model: type[BaseModel] | None = PolicyFile
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = _model_in(field.annotation)
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _unknown_key(loc: list[int | str]) -> str:
    key = str(loc[-1])
    model = _model_at(loc[:-1])
    choices = sorted(model.model_fields) if model is not None else []
    match = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
    hint = f" (did you mean {match[0]}?)" if match else ""
    known = f"; known keys: {', '.join(choices)}" if choices and not match else ""
    return f"unknown key {key!r}{hint}{known}"


def _describe(exc: ValidationError, data: Any) -> list[str]:
    """One line per problem: where (policy name and field) and what, in words."""
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        where = ".".join(str(p) for p in loc) or "the document"
        if len(loc) >= 2 and loc[0] == "policies" and isinstance(loc[1], int):
            name = None
            with contextlib.suppress(KeyError, IndexError, TypeError, AttributeError):
                name = data["policies"][loc[1]].get("name")
            field = ".".join(str(p) for p in loc[2:]) or "(the policy)"
            where = f"policy {name!r}" if name else f"policy #{loc[1] + 1}"
            where += f", field {field}"
        if err["type"] == "extra_forbidden" and loc:
            msg = _unknown_key(loc)
        elif err["type"] == "missing":
            msg = "is required"
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"{where}: {msg}")
    return list(dict.fromkeys(lines))


def parse_policy_file(text: str, source: str = "<policy>") -> PolicyFile:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: the document must be a mapping with a 'policies' list")
    try:
        return PolicyFile.model_validate(data)
    except ValidationError as exc:
        problems = _describe(exc, data)
        if len(problems) == 1:  # one problem, one line
            raise PolicyError(f"{source}: {problems[0]}") from None
        raise PolicyError(
            f"{source}: invalid policy file ({len(problems)} problems):\n"
            + "\n".join(f"  - {p}" for p in problems)
        ) from None


def load_policy_file(path: str | Path) -> PolicyFile:
    """Read and validate a policy file; :class:`PolicyError` names the policy and the field."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read the policy file {path}: {exc.strerror or exc}") from None
    return parse_policy_file(text, str(path))


@dataclass(frozen=True)
class Match:
    """A cluster some policy selects; ``excluded`` when its ``exclude`` list names it."""

    target: str
    cluster_id: str
    cluster: str
    policy: Policy
    excluded: bool


@dataclass(frozen=True)
class Conflict:
    """A cluster two or more policies select: config error, the cluster is left alone."""

    target: str
    cluster_id: str
    cluster: str
    policies: tuple[str, ...]

    def message(self) -> str:
        names = " and ".join(repr(p) for p in self.policies)
        return (
            f"cluster {self.cluster!r} ({self.cluster_id}) of target {self.target!r} is selected "
            f"by policies {names}; it is left alone until only one policy selects it"
        )


def match_policies(
    policy_file: PolicyFile, clusters: Iterable[tuple[str, str, str]]
) -> tuple[dict[tuple[str, str], Match], list[Conflict]]:
    """Match ``(target, cluster_id, name)`` triples against the policies.

    A cluster is governed by the one policy whose selector picks it; a policy that picks it only to
    exclude it still counts (so an exclusion cannot be overridden by another policy by accident).
    """
    matches: dict[tuple[str, str], Match] = {}
    conflicts: list[Conflict] = []
    for target, cluster_id, name in clusters:
        found = [p for p in policy_file.policies if p.clusters.selects(target, cluster_id, name)]
        if len(found) > 1:
            conflicts.append(Conflict(target, cluster_id, name, tuple(p.name for p in found)))
        elif found:
            policy = found[0]
            matches[(target, cluster_id)] = Match(
                target, cluster_id, name, policy, policy.clusters.excludes(cluster_id, name)
            )
    return matches, conflicts
