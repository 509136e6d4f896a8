"""Durations as the rules and their docs print them."""

from __future__ import annotations

__all__ = ["human_seconds"]


def human_seconds(value: float) -> str:
    """Seconds as a short human duration for the docs (7200 -> 2h)."""
    value = int(value)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{value // size}{unit}"
    return f"{value}s"
