"""State and overrides: what the controller must not forget, and where it is kept.

The state is a JSON-able dict with four maps keyed by ``target/cluster_id``: ``handled`` (the
instant of the last transition dealt with), ``overrides``, ``in_flight`` (actions started and not
yet recorded as done) and ``history`` (the last actions, newest last). :class:`HibernationState`
owns it: it validates what the store loads, saves through the store, and makes every change an
override needs (set, clear, expire) with its undo when the save fails.

Stores (:class:`StateStore`): :class:`MemoryStateStore` (tests, no state file),
:class:`ServiceStateStore` (a section of the exporter's state file), the ``hibernation.cli``
store for one-off commands and the replica-shared stores of ``exporter.ha.leader``. A store that
can also tell what another process wrote meanwhile (:class:`ReloadableStore`) lets a running
daemon take in an override the command line wrote to the state file (the merge rule is
:func:`exporter.collect.statefile.merge_hibernation`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from exporter.collect.statefile import HISTORY_KEPT, clean_hibernation

#: The controller's logger: its parts log as the controller always has.
log = logging.getLogger("exporter.hibernation.controller")

__all__ = [
    "HibernationState",
    "MemoryStateStore",
    "ReloadableStore",
    "ServiceStateStore",
    "StateNotSaved",
    "StateSections",
    "StateStore",
]


class StateStore(Protocol):
    """Where the controller keeps its state (a JSON-able dict)."""

    def load(self) -> Any: ...
    def save(self, value: Any) -> None: ...


@runtime_checkable
class ReloadableStore(Protocol):
    """A store that can say what another process wrote to it since this one last looked."""

    def reload(self) -> Any | None:
        """The merged value when something changed outside (None: nothing did)."""
        ...


class StateSections(Protocol):
    """What :class:`ServiceStateStore` needs of the exporter service: named sections of the
    state file, written by :meth:`save_state` (False when it could not write; then
    ``last_save_error`` says why), and :meth:`reload_state`: whether another process changed
    the file since the service last read or wrote it (the changes then merged in)."""

    last_save_error: str | None

    def state_section(self, name: str) -> Any: ...
    def set_state_section(self, name: str, value: Any) -> None: ...
    def save_state(self) -> bool: ...
    def reload_state(self) -> bool: ...


class StateNotSaved(Exception):
    """The state could not be written (the message says why); the change was not made."""


class MemoryStateStore:
    def __init__(self, value: Any = None) -> None:
        self.value = value
        self.saves = 0

    def load(self) -> Any:
        return self.value

    def save(self, value: Any) -> None:
        # A round trip through JSON, as the state file does, so tests see what a restart sees.
        self.value = json.loads(json.dumps(value))
        self.saves += 1


class ServiceStateStore:
    """A section of the exporter service's state file, written through at once: an action is on
    disk before the API is called."""

    def __init__(self, service: StateSections, section: str = "hibernation") -> None:
        self.service = service
        self.section = section

    def load(self) -> Any:
        return self.service.state_section(self.section)

    def save(self, value: Any) -> None:
        self.service.set_state_section(self.section, value)
        if self.service.save_state() is False:
            raise StateNotSaved(self.service.last_save_error or "not written")

    def reload(self) -> Any | None:
        if not self.service.reload_state():
            return None
        return self.service.state_section(self.section)


def key(target: str, cluster_id: str) -> str:
    return f"{target}/{cluster_id}"


def ident_of(k: str) -> tuple[str, str]:
    """``(target, cluster_id)`` of a :func:`key` (neither holds a "/": the configuration refuses
    one in a target's name, and CCE's IDs are UUIDs)."""
    target, _, cluster_id = k.partition("/")
    return target, cluster_id


class HibernationState:
    """The controller's state (see the module docstring) and the changes made to it."""

    def __init__(self, store: StateStore, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock
        # Validated entry by entry: a mistyped entry is dropped (one WARNING), never fatal.
        self.data: dict[str, Any] = clean_hibernation(store.load(), "hibernation state")

    @property
    def overrides(self) -> dict[str, Any]:
        overrides: dict[str, Any] = self.data["overrides"]
        return overrides

    def save(self, *, strict: bool = False) -> None:
        """Save the state; with ``strict``, raise :class:`StateNotSaved` when it cannot be
        written (else the store has logged it, and the next save tries again)."""
        try:
            self.store.save(self.data)
        except StateNotSaved:
            if strict:
                raise

    def reload(self) -> bool:
        """Take in what another process wrote to the store (True when something changed)."""
        if not isinstance(self.store, ReloadableStore):
            return False
        try:
            value = self.store.reload()
        except Exception:  # a bad read of the file never stops the controller
            log.exception("hibernation: reading the state another process wrote failed")
            return False
        if value is None:
            return False
        self.data = clean_hibernation(value, "hibernation state")
        log.info("hibernation: took in the state another process wrote (overrides, history)")
        return True

    # --- overrides --------------------------------------------------------------------------------

    def set_override(self, k: str, value: dict[str, Any]) -> None:
        """Set and save the override of ``k``; when it cannot be saved it is undone and
        :class:`StateNotSaved` raised (not on disk, so not made: a restart would forget it)."""
        previous = self.overrides.get(k)
        self.overrides[k] = value
        try:
            self.save(strict=True)
        except StateNotSaved:
            if previous is None:
                del self.overrides[k]
            else:
                self.overrides[k] = previous
            raise

    def clear_override(self, k: str) -> bool:
        """Remove and save the override of ``k`` (undone when it cannot be saved)."""
        removed = self.overrides.pop(k, None)
        if removed is not None:
            try:
                self.save(strict=True)
            except StateNotSaved:
                self.overrides[k] = removed
                raise
        return removed is not None

    def expire_overrides(self, now: float) -> None:
        expired = [
            k
            for k, o in self.overrides.items()
            if o.get("until") is not None and float(o["until"]) <= now
        ]
        for k in expired:
            log.info("hibernation: override of %s expired", k)
            del self.overrides[k]
        if expired:
            self.save()

    # --- records ----------------------------------------------------------------------------------

    def handled(self, k: str) -> float:
        return float(self.data["handled"].get(k, 0.0))

    def set_handled(self, k: str, at: float) -> None:
        self.data["handled"][k] = at

    def add_history(self, k: str, action: str, result: str, reason: str, source: str) -> None:
        entries = self.data["history"].setdefault(k, [])
        entries.append(
            {
                "at": self.clock(),
                "action": action,
                "result": result,
                "reason": reason[:500],
                "source": source,
            }
        )
        del entries[:-HISTORY_KEPT]

    def in_flight(self) -> dict[str, Any]:
        entries: dict[str, Any] = self.data["in_flight"]
        return entries

    def begin(self, k: str, action: str, started: float, attempt: int) -> None:
        """Record an attempt before its call: a restart will not call again blindly."""
        self.data["in_flight"][k] = {"action": action, "started": started, "attempt": attempt}
        self.save()

    def end(self, k: str) -> None:
        self.data["in_flight"].pop(k, None)
