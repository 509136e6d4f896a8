"""Every error the CCE API layer raises.

The hierarchy (catch the most specific class you can handle; everything derives from ``CCEError``)::

    CCEError
     ├── TransportError              the request did not get an HTTP answer
     │    └── RequestTimeout         connect/read/write/pool timeout, or the total deadline passed
     ├── APIError                    an HTTP answer with status >= 400
     │                               (status_code, code, message, request_id, endpoint)
     │    ├── ClientError            4xx not listed below: fix the request, never retried
     │    │    ├── BadRequest        400
     │    │    ├── AuthenticationFailed   401 (after the auth layer's one refresh and retry)
     │    │    ├── PermissionDenied  403
     │    │    ├── NotFound          404
     │    │    ├── Conflict          409
     │    │    └── RateLimited       429 (retry_after seconds, when the server said)
     │    └── ServerError            5xx
     ├── ResponseParseError          the body is not JSON, or not the shape the model accepts
     │    └── PagingError            a paged list repeated its marker or passed the page cap
     └── CredentialsError            credentials missing or unreadable, or IAM gave no token

The API's error-body shapes, ``{"error_code", "error_msg"}`` (IAM and cluster management),
today's camel case ``{"errorCode", "errorMessage"}`` (what the SDK's ``CceExceptionHandler`` reads
besides the first) and ``{"code", "message"}`` (add-on manager), are all parsed by
:func:`error_from_response`. Messages
never contain request headers or bodies that were sent, so no secret can leak through an exception.
"""

from __future__ import annotations

import json
from typing import Any


class CCEError(Exception):
    """Base class of every error raised by ``exporter.cce``."""


class TransportError(CCEError):
    """The request did not get an HTTP answer (connection refused, reset, TLS failure)."""


class RequestTimeout(TransportError):
    """A timeout (connect, read, write, pool) or the retry deadline passed."""


class CredentialsError(CCEError):
    """Credentials are missing or unreadable, or IAM answered without a token."""


class ResponseParseError(CCEError):
    """The response body is not JSON, or JSON of a shape no model accepts."""

    def __init__(self, message: str, *, endpoint: str | None = None) -> None:
        self.endpoint = endpoint
        super().__init__(f"{message} (endpoint {endpoint})" if endpoint else message)


class PagingError(ResponseParseError):
    """A paged list did not end: its ``pageInfo.nextMarker`` repeated, or it passed the page cap."""


class APIError(CCEError):
    """The API answered with an HTTP status >= 400."""

    def __init__(
        self,
        status_code: int,
        *,
        code: str | None = None,
        message: str | None = None,
        request_id: str | None = None,
        method: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.message = message
        self.request_id = request_id
        self.method = method
        self.endpoint = endpoint
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = [f"HTTP {self.status_code}"]
        if self.method and self.endpoint:
            parts.append(f"from {self.method} {self.endpoint}")
        if self.code:
            parts.append(f"[{self.code}]")
        if self.message:
            parts.append(self.message)
        if self.request_id:
            parts.append(f"(request id {self.request_id})")
        return " ".join(parts)


class ClientError(APIError):
    """A 4xx answer: the request must be fixed, it is never retried."""


class BadRequest(ClientError):
    """400."""


class AuthenticationFailed(ClientError):
    """401: the signature, token or password was refused."""


class PermissionDenied(ClientError):
    """403."""


class NotFound(ClientError):
    """404: the resource does not exist (any more)."""


class Conflict(ClientError):
    """409."""


class RateLimited(ClientError):
    """429: too many requests. ``retry_after`` is the server's advice in seconds, if it gave one."""

    def __init__(self, status_code: int, *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        super().__init__(status_code, **kw)


class ServerError(APIError):
    """A 5xx answer."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    429: RateLimited,
}

#: Response headers that may carry the request ID, in order of preference.
REQUEST_ID_HEADERS = ("x-request-id", "x-openstack-request-id", "x-iam-trace-id", "x-trace-id")

_MAX_MESSAGE = 300


#: Where an error body keeps its code and message, in order of preference: the reference's
#: snake case, today's camel case (the SDK's ``CceExceptionHandler`` reads ``errorCode`` and
#: ``errorMessage``; its core handler ``errorMsg``), then the add-on manager's ``code``/``message``.
_CODE_KEYS = ("error_code", "errorCode", "code")
_MESSAGE_KEYS = ("error_msg", "errorMessage", "errorMsg", "message")


def _first(data: dict[str, object], keys: tuple[str, ...]) -> object:
    for key in keys:
        value = data.get(key)
        if value is not None:
            return value
    return None


def parse_error_body(body: bytes) -> tuple[str | None, str | None]:
    """Return ``(code, message)`` from any error-body shape; ``(None, None)`` if none fits."""
    try:
        data = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return None, None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        # Some gateways wrap the body once more: {"error": {"code": ..., "message": ...}}.
        data = data["error"]
    if not isinstance(data, dict):
        return None, None
    code = _first(data, _CODE_KEYS)
    message = _first(data, _MESSAGE_KEYS)
    return (
        None if code is None else str(code)[:_MAX_MESSAGE],
        None if message is None else str(message)[:_MAX_MESSAGE],
    )


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date); None when absent or unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        from datetime import UTC, datetime
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def error_from_response(
    status_code: int,
    body: bytes,
    headers: Any,
    *,
    method: str | None = None,
    endpoint: str | None = None,
) -> APIError:
    """Build the right ``APIError`` subclass for an HTTP answer with status >= 400.

    ``headers`` is any case-insensitive mapping (``httpx.Headers``); ``endpoint`` should be the
    templated path, never one with raw IDs or a query string.
    """
    code, message = parse_error_body(body)
    request_id = None
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            request_id = str(value)[:128]
            break
    kw: dict[str, Any] = {
        "code": code,
        "message": message,
        "request_id": request_id,
        "method": method,
        "endpoint": endpoint,
    }
    if status_code == 429:
        return RateLimited(
            status_code, retry_after=parse_retry_after(headers.get("retry-after")), **kw
        )
    cls = _BY_STATUS.get(status_code)
    if cls is None:
        cls = ServerError if status_code >= 500 else ClientError
    return cls(status_code, **kw)
