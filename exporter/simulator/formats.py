"""The simulated API's wire formats: its time formats, its JSON, and its error answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from exporter.simulator.clock import NS


class SimError(Exception):
    """An API error answer: HTTP status plus the body fields of the API's error shape."""

    def __init__(
        self, status: int, code: str, message: str, *, addon: bool = False, camel: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.addon = addon
        self.camel = camel

    def body(self) -> bytes:
        if self.addon:
            # The reference's add-on manager shape, plus the keys the SDK's CceExceptionHandler
            # reads (it takes no "code": without error_code the SDK would show no code at all).
            return dump_json(
                {
                    "code": self.code,
                    "message": self.message,
                    "error_code": self.code,
                    "error_msg": self.message,
                }
            )
        if self.camel:
            return dump_json({"errorCode": self.code, "errorMessage": self.message})
        return dump_json({"error_code": self.code, "error_msg": self.message})


# --- time formats -------------------------------------------------------------------------------


def go_time(ns: int) -> str:
    """Go's ``time.Time.String()`` in UTC: trailing fraction zeros trimmed, no dot when zero."""
    secs, frac = divmod(ns, NS)
    text = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%d %H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + " +0000 UTC"


def rfc3339(ns: int) -> str:
    return datetime.fromtimestamp(ns // NS, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iam_time(ns: int) -> str:
    """IAM's token times: RFC 3339 with microseconds (``2019-02-13T06:52:13.855000Z``)."""
    return datetime.fromtimestamp(ns // 1000 / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dump_json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
