"""Logging set-up: human-readable text by default, one JSON object per line with ``json``.

Third-party HTTP loggers (httpx, httpcore, aiohttp, uvicorn's access log) are held at WARNING
whatever the level: they would print a line per API call or scrape, and at DEBUG they can show
request details.
The exporter logs its own API calls (method, templated endpoint, status) at DEBUG instead.
Every argument and ``extra=`` field of a record is cut to ``log_field_max_length`` characters
(:class:`exporter.limits.TruncatingFilter`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from exporter.limits import TruncatingFilter

_QUIET = ("httpx", "httpcore", "aiohttp", "uvicorn.access", "apscheduler", "hpack", "asyncio")

_RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = (
                    value if isinstance(value, str | int | float | bool | None) else str(value)
                )
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Configure the root logger once (idempotent: replaces handlers it installed before)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_cce_exporter", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._cce_exporter = True  # type: ignore[attr-defined]
    # Every argument and field cut to a bounded length: one hostile name, one line of bounded size.
    handler.addFilter(TruncatingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
