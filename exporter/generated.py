"""Generated files (rules, dashboards): write them, or check that they did not drift."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

__all__ = ["write_or_check"]


def write_or_check(outputs: Iterable[tuple[Path, str]], *, check: bool, command: str) -> int:
    """Write every ``(path, text)``; with ``check``, compare instead and name each drifted file.

    Returns the exit status: 1 when ``check`` found a file missing or different, else 0.
    """
    drifted = []
    for path, text in outputs:
        if check:
            current = path.read_text(encoding="utf-8") if path.exists() else None
            if current != text:
                drifted.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in drifted:
        print(f"{path} is out of date: run {command}", file=sys.stderr)
    return 1 if drifted else 0
