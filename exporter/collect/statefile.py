"""The optional state file: what must survive a restart.

It keeps the phase-since times (time in state), the CCE jobs being tracked, and sections owned by
other parts of the exporter (the hibernation scheduler keeps its record of actions and overrides
here). Writes are atomic: a temporary file in the same directory, fsync, rename, fsync of the
directory. A corrupt or unreadable file is reported, renamed aside (``<name>.corrupt-<time>``) and
replaced by an empty state: never fatal.

A readable file is validated section by section, entry by entry, with pydantic models
(:func:`validate_sections`): an entry of the wrong shape (an override that is a string,
``until: "never"``, ``handled: "yesterday"``) is dropped with one WARNING naming it, and the rest
is kept. Sections this module does not know are kept as they are.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


class StateFile:
    """Load and atomically save a JSON document of named sections."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        """The saved sections, or ``{}`` when there is no file or it could not be read."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.error("state file %s is unreadable (%s); starting with empty state", self.path, exc)
            return {}
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or not isinstance(data.get("sections"), dict):
                raise ValueError("not a state document")
        except (ValueError, UnicodeDecodeError) as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            try:
                self.path.rename(aside)
                where = f"moved aside to {aside}"
            except OSError:
                where = "left in place"
            log.error(
                "state file %s is corrupt (%s); %s, starting with empty state",
                self.path,
                type(exc).__name__,
                where,
            )
            return {}
        sections: dict[str, Any] = data["sections"]
        return validate_sections(sections, f"state file {self.path}")

    def save(self, sections: dict[str, Any]) -> None:
        """Write atomically. Raises ``OSError`` when the directory is not writable."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(
            {"version": FORMAT_VERSION, "saved_at": time.time(), "sections": sections},
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        try:
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            with contextlib.suppress(OSError):
                os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# --- validation ----------------------------------------------------------------------------------

#: Unix seconds from 1970 to the end of year 9999: what a datetime can show.
Timestamp = Annotated[float, Field(ge=0, le=253402300799, allow_inf_nan=False, strict=True)]


class _Entry(BaseModel):
    # Strict: "1.8e9" is not a number here; unknown keys are kept (written by a newer version).
    model_config = ConfigDict(strict=True, extra="allow")


class JobRecord(_Entry):
    cluster_id: str
    source: str = "unknown"
    discovered_at: Timestamp
    finished_at: Timestamp | None = None
    observed: bool = False


class Override(_Entry):
    kind: Literal["keep", "skip"]
    state: Literal["awake", "hibernated"] | None = None
    until: Timestamp | None = None
    reason: str = ""
    created: Timestamp = 0.0

    @model_validator(mode="after")
    def _keep_has_a_state(self) -> Override:
        if self.kind == "keep" and self.state is None:
            raise ValueError("a keep override needs a state")
        return self


class HistoryEntry(_Entry):
    at: Timestamp
    action: str
    result: str
    reason: str = ""
    source: str = ""


class InFlight(_Entry):
    action: Literal["hibernate", "awake"]
    started: Timestamp
    attempt: int = Field(1, ge=1, strict=True)


def _reason(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[:1]
    if not first:
        return "invalid"
    where = ".".join(str(p) for p in first[0]["loc"])
    return f"{where}: {first[0]['msg']}" if where else first[0]["msg"]


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, tuple):
        return list(value)
    return value


def clean_map(
    value: Any, adapter: TypeAdapter[Any], where: str, source: str = "state"
) -> dict[str, Any]:
    """The entries of the JSON object ``value`` that ``adapter`` accepts; each other entry is
    dropped with one WARNING naming it (``where[key]``)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        log.warning("%s: dropped %s: not an object (%s)", source, where, type(value).__name__)
        return {}
    out: dict[str, Any] = {}
    for key, item in value.items():
        try:
            out[key] = _dump(adapter.validate_python(item))
        except ValidationError as exc:
            log.warning("%s: dropped %s[%r]: %s", source, where, key, _reason(exc))
    return out


_TIMESTAMP: TypeAdapter[Any] = TypeAdapter(Timestamp)
_PHASE: TypeAdapter[Any] = TypeAdapter(tuple[Annotated[str, Field(strict=True)], Timestamp])
_JOB: TypeAdapter[Any] = TypeAdapter(JobRecord)
_OVERRIDE: TypeAdapter[Any] = TypeAdapter(Override)
_IN_FLIGHT: TypeAdapter[Any] = TypeAdapter(InFlight)
_HISTORY: TypeAdapter[Any] = TypeAdapter(HistoryEntry)


def _per_target(value: Any, where: str, adapter: TypeAdapter[Any], source: str) -> Any:
    if not isinstance(value, dict):
        if value is not None:
            log.warning("%s: dropped %s: not an object", source, where)
        return {}
    return {
        target: clean_map(entries, adapter, f"{where}.{target}", source)
        for target, entries in value.items()
    }


def clean_hibernation(raw: Any, source: str = "state") -> dict[str, Any]:
    """The hibernation section with every entry of the wrong shape dropped (one WARNING each)."""
    if raw is not None and not isinstance(raw, dict):
        log.warning("%s: dropped the hibernation section: not an object", source)
    state: dict[str, Any] = dict(raw) if isinstance(raw, dict) else {}
    for section, adapter in (
        ("handled", _TIMESTAMP),
        ("overrides", _OVERRIDE),
        ("in_flight", _IN_FLIGHT),
    ):
        state[section] = clean_map(state.get(section), adapter, f"hibernation.{section}", source)
    history: dict[str, Any] = {}
    raw_history = state.get("history")
    if isinstance(raw_history, dict):
        for key, entries in raw_history.items():
            if not isinstance(entries, list):
                log.warning("%s: dropped hibernation.history[%r]: not a list", source, key)
                continue
            kept = clean_map(
                dict(enumerate(entries)), _HISTORY, f"hibernation.history[{key!r}]", source
            )
            history[key] = list(kept.values())
    elif raw_history is not None:
        log.warning("%s: dropped hibernation.history: not an object", source)
    state["history"] = history
    return state


def validate_sections(sections: dict[str, Any], source: str = "state") -> dict[str, Any]:
    """Every known section validated entry by entry (see the module docstring)."""
    out = dict(sections)
    if "phases" in out:
        out["phases"] = _per_target(out["phases"], "phases", _PHASE, source)
    if "jobs" in out:
        out["jobs"] = _per_target(out["jobs"], "jobs", _JOB, source)
    if "hibernation" in out:
        out["hibernation"] = clean_hibernation(out["hibernation"], source)
    return out
