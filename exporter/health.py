"""How the last collection of one resource went: the record every collector keeps.

One definition for the CCE resources' collector and the Kubernetes collector (which adds what it
needs on top, see :class:`exporter.kube.collector.KubeHealth`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Health"]


@dataclass
class Health:
    """The last collection of one resource: whether it was tried and succeeded, how long it took,
    when it last ended (``last_attempt``) and last succeeded (``last_success``, clock seconds),
    and the error text of a failure."""

    success: bool = False
    attempted: bool = False
    duration: float | None = None
    last_success: float | None = None
    last_attempt: float | None = None
    error: str | None = None
