"""Signing each request with an access key / secret key pair (``SDK-HMAC-SHA256``).

:class:`AkSkAuth` signs with a permanent key pair, and with the temporary ones of
:mod:`exporter.cce.agency`. The types every auth class shares (``Clock``, ``RefreshCallback``)
are defined here once; :mod:`exporter.cce.auth` re-exports all of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Generator
from datetime import UTC, datetime

import httpx

from exporter.cce.errors import CredentialsError
from exporter.cce.signing import SignatureError, sdk_date, sign

Clock = Callable[[], datetime]
RefreshCallback = Callable[[str], None]

# Headers that are never signed: the Authorization header itself, and headers a transport or a
# proxy may add, drop or rewrite on the way (the official SDK does not sign these either: its HTTP
# library adds them after signing).
_UNSIGNED_HEADERS = frozenset(
    {
        "authorization",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "accept-encoding",
    }
)


def _utcnow() -> datetime:
    # Looked up at call time, so freezegun's patched datetime is seen.
    return datetime.now(UTC)


def _mask(value: str, keep: int = 4) -> str:
    return value[:keep] + "..." if len(value) > keep else "***"


class AkSkAuth(httpx.Auth):
    """Sign each request (SDK-HMAC-SHA256): adds X-Sdk-Date, Host, X-Project-Id, Authorization."""

    requires_request_body = True

    def __init__(
        self,
        ak: str,
        sk: str,
        project_id: str | None = None,
        *,
        security_token: str | None = None,
        clock: Clock = _utcnow,
        on_refresh: RefreshCallback | None = None,
    ) -> None:
        if not ak or not sk:
            raise CredentialsError("AK/SK authentication needs both an access key and a secret key")
        self.ak = ak
        self._sk = sk
        # Temporary credentials come with a security token, sent and signed as X-Security-Token.
        self._security_token = security_token
        self.project_id = project_id
        self._clock = clock
        del on_refresh  # accepted for a uniform constructor: a key pair is never refreshed
        self._last_date: tuple[int | None, str] = (None, "")

    def _date(self, now: datetime) -> str:
        """``sdk_date(now)``, formatted once per second (every request of a cycle needs it)."""
        second = int(now.timestamp())
        cached = self._last_date
        if cached[0] != second:
            cached = self._last_date = (second, sdk_date(now))
        return cached[1]

    def __repr__(self) -> str:
        token = ", security_token=***" if self._security_token else ""
        return f"AkSkAuth(ak={_mask(self.ak)!r}, sk=***{token}, project_id={self.project_id!r})"

    def sign_request(self, request: httpx.Request) -> None:
        """Add the signing headers to ``request`` in place (its body must have been read)."""
        # Setting a header replaces every value it had: a request signed again (a retry after a
        # 401) keeps one date and one signature.
        request.headers["X-Sdk-Date"] = self._date(self._clock())
        if "host" not in request.headers:
            request.headers["Host"] = request.url.netloc.decode("ascii")
        if self.project_id:
            request.headers["X-Project-Id"] = self.project_id
        if self._security_token:
            request.headers["X-Security-Token"] = self._security_token
        # A header sent twice would be read differently by different servers (first value or
        # joined values), so repeated headers are left out of the signature.
        counts = Counter(key.lower() for key, _ in request.headers.multi_items())
        to_sign = {
            key.lower(): value
            for key, value in request.headers.items()
            if key.lower() not in _UNSIGNED_HEADERS and counts[key.lower()] == 1
        }
        try:
            authorization = sign(
                request.method, str(request.url), to_sign, request.content, self.ak, self._sk
            )
        except SignatureError as exc:
            raise CredentialsError(f"cannot sign the request: {exc}") from None
        request.headers["Authorization"] = authorization

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign_request(request)
        yield request
