"""The optional state file: what must survive a restart.

It keeps the phase-since times (time in state), the CCE jobs being tracked, and sections owned by
other parts of the exporter (the hibernation scheduler keeps its record of actions and overrides
here). Writes are atomic: a temporary file in the same directory, fsync, rename, fsync of the
directory. A corrupt or unreadable file is reported, renamed aside (``<name>.corrupt-<time>``) and
replaced by an empty state: never fatal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

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
        return sections

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
