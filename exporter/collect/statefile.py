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

Two processes may write one file: a running daemon, and ``cce-exporter hibernate|awake --until``
writing an override. :class:`StateFile` keeps what it last read or wrote (and the file's inode,
size and modification time then), and every save merges the hibernation section with what
another process changed since (:func:`merge_hibernation`), under an advisory lock on the
directory, so neither side's override is lost; :meth:`StateFile.take_in` brings those changes
into a running daemon's memory.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
#: The section two processes may both write (merged, see :func:`merge_hibernation`).
SHARED = "hibernation"
#: How many history entries are kept per cluster.
HISTORY_KEPT = 20
#: Longest wait for the advisory lock of the state file's directory (then written without it).
LOCK_WAIT = 2.0

Stamp = tuple[int, int, int] | None


class StateFile:
    """Load and atomically save a JSON document of named sections (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: Stamp = None  # the file as this process last read or wrote it
        self._known: Any = None  # its hibernation section then
        self._base: Any = None  # the hibernation section this process's memory started from
        self._pending = False  # the file may hold changes of another process not taken in

    def _fingerprint(self) -> Stamp:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def load(self) -> dict[str, Any]:
        """The saved sections, or ``{}`` when there is no file or it could not be read."""
        stamp = self._fingerprint()
        sections = self._read()
        self._stamp = stamp
        self._known = sections.get(SHARED)
        self._base = copy.deepcopy(self._known)
        self._pending = False
        return sections

    def _read(self) -> dict[str, Any]:
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

    def _on_disk(self) -> Any:
        """The file's hibernation section now (read again only when the file changed)."""
        stamp = self._fingerprint()
        if stamp != self._stamp:
            self._known = self._read().get(SHARED)
            self._stamp = stamp
            self._pending = True
        return self._known

    def take_in(self, sections: dict[str, Any]) -> bool:
        """Merge into ``sections`` what another process changed in the file's hibernation
        section since this one last read or wrote it; True when that changed ``sections``.
        Cheap when nothing did: one ``stat`` of the file."""
        if not self._pending and self._fingerprint() == self._stamp:
            return False
        ours = sections.get(SHARED)
        theirs = self._on_disk()
        merged = merge_hibernation(ours, self._base, theirs)
        # Every change of the file is in memory now: what the memory holds beyond the file is
        # this process's own (not saved yet), and must stay so for the next merge.
        self._base = copy.deepcopy(theirs)
        self._pending = False
        if merged == ours:
            return False
        sections[SHARED] = merged
        return True

    def save(self, sections: dict[str, Any]) -> None:
        """Write atomically, the hibernation section merged with the file's (see
        :func:`merge_hibernation`). Raises ``OSError`` when the directory is not writable."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self._commit(dict(sections))

    def save_section(self, name: str, value: Any) -> None:
        """Write one section, keeping every other section as it is in the file now."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            sections = self._read()
            self._stamp = self._fingerprint()
            self._known = sections.get(SHARED)
            self._pending = True
            sections[name] = value
            self._commit(sections)

    def _commit(self, sections: dict[str, Any]) -> None:
        ours = sections.get(SHARED)
        merged = merge_hibernation(ours, self._base, self._on_disk())
        if merged is not None:
            sections[SHARED] = merged
        self._write(sections)
        # Only once written: the file holds this process's memory plus the other process's
        # changes, which stay changes (relative to the memory) until take_in brings them in.
        self._base = copy.deepcopy(ours)
        self._pending = merged is not ours

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An advisory lock on the directory (the file itself is replaced by each write), held
        for a read-merge-write; waited for at most ``LOCK_WAIT``."""
        try:
            fd = os.open(self.path.parent, os.O_RDONLY)
        except OSError:
            yield
            return
        try:
            deadline = time.monotonic() + LOCK_WAIT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    if time.monotonic() >= deadline:
                        log.warning("state file %s: lock not free; writing anyway", self.path)
                        break
                    time.sleep(0.01)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _write(self, sections: dict[str, Any]) -> None:
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
        self._stamp = self._fingerprint()
        self._known = copy.deepcopy(sections.get(SHARED))
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


# --- two writers ---------------------------------------------------------------------------------


def _newer(ours: Any, theirs: Any) -> Any:
    """Of two changes to one override, the one made later (a removal loses to an entry)."""
    if ours is None or theirs is None:
        return theirs if ours is None else ours
    return theirs if float(theirs.get("created", 0)) >= float(ours.get("created", 0)) else ours


def _later(ours: Any, theirs: Any) -> Any:
    """Of two changes to one ``handled`` instant, the later instant."""
    if ours is None or theirs is None:
        return theirs if ours is None else ours
    return max(ours, theirs)


def _section(value: Any, name: str) -> dict[str, Any]:
    inner = value.get(name) if isinstance(value, dict) else None
    return inner if isinstance(inner, dict) else {}


def _merge_map(
    ours: dict[str, Any],
    base: dict[str, Any],
    theirs: dict[str, Any],
    both: Callable[[Any, Any], Any],
) -> dict[str, Any]:
    """``ours`` with each entry ``theirs`` changed (set, changed, removed) since ``base``; an
    entry changed on both sides is ``both(ours, theirs)`` (None: removed)."""
    out = dict(ours)
    for k in set(base) | set(theirs):
        if theirs.get(k) == base.get(k):
            continue
        chosen = theirs.get(k)
        if ours.get(k) != base.get(k):
            chosen = both(ours.get(k), chosen)
        if chosen is None:
            out.pop(k, None)
        else:
            out[k] = chosen
    return out


def _merge_history(
    ours: dict[str, Any], base: dict[str, Any], theirs: dict[str, Any]
) -> dict[str, Any]:
    """``ours`` with the entries ``theirs`` added since ``base`` (newest last, at most
    ``HISTORY_KEPT`` per cluster)."""
    out = dict(ours)
    for k, entries in theirs.items():
        if not isinstance(entries, list):
            continue
        have = list(ours.get(k) or [])
        added = [e for e in entries if e not in (base.get(k) or []) and e not in have]
        if added:
            merged = sorted(have + added, key=lambda e: float(e.get("at", 0.0)))
            out[k] = merged[-HISTORY_KEPT:]
    return out


def merge_hibernation(ours: Any, base: Any, theirs: Any) -> Any:
    """The hibernation section ``ours`` (this process's memory, which started from ``base``)
    with what another process changed in ``theirs`` (the file) since ``base``:

    - an override the file changed (set, changed or removed) since ``base`` is taken from the
      file; where both sides changed the same cluster's override, the one created later wins
      (an override wins over a removal);
    - likewise a ``handled`` instant (where both changed it, the later one);
    - history entries the file added are added (newest last, ``HISTORY_KEPT`` per cluster);
    - ``in_flight`` stays this process's own (an action runs in the process that started it).

    ``ours`` itself is returned (unchanged) when the file changed nothing, or has no
    hibernation section (a file gone, unreadable or corrupt says nothing of the overrides)."""
    if not isinstance(theirs, dict):
        return ours
    merged = dict(ours) if isinstance(ours, dict) else {}
    changed = False
    for name, merge in (
        ("overrides", lambda o, b, t: _merge_map(o, b, t, _newer)),
        ("handled", lambda o, b, t: _merge_map(o, b, t, _later)),
        ("history", _merge_history),
    ):
        mine = _section(ours, name)
        value = merge(mine, _section(base, name), _section(theirs, name))
        if value != mine:
            merged[name] = value
            changed = True
    return merged if changed else ours
