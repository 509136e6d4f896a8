"""The three ways of authenticating to CCE, as ``httpx.Auth`` classes.

* :class:`AkSkAuth` signs every request with an access key / secret key pair
  (``SDK-HMAC-SHA256``, see :mod:`exporter.cce.signing`). Nothing expires, nothing is fetched.
* :class:`PasswordAuth` gets a project-scoped token from IAM (``POST /v3/auth/tokens``, password
  method) and sends it as ``X-Auth-Token``. The token is cached and refreshed ahead of its expiry;
  concurrent requests share one token request; a 401 from the API triggers exactly one refresh and
  one retry of that request. Async clients only.
* :class:`TokenAuth` sends a token issued elsewhere, given as a value or as a file that is re-read
  whenever it changes on disk (a mounted Kubernetes secret is rotated by replacing the file).

All three take ``on_refresh``, called with ``"success"`` or ``"failure"`` each time a credential is
(re)loaded, so the caller can count it. No secret ever appears in a repr, a log line or an
exception message; IAM failures raise the classes of :mod:`exporter.cce.errors`.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Generator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from exporter.cce.errors import (
    CredentialsError,
    RequestTimeout,
    ResponseParseError,
    TransportError,
    error_from_response,
)
from exporter.cce.models import TokenBody, parse_response
from exporter.cce.signing import SignatureError, sdk_date, sign

__all__ = ["AkSkAuth", "Clock", "PasswordAuth", "RefreshCallback", "TokenAuth"]

Clock = Callable[[], datetime]
RefreshCallback = Callable[[str], None]

IAM_TOKEN_PATH = "/v3/auth/tokens"  # noqa: S105 - a URL path, not a password
#: Lifetime of an IAM token when the response body does not say (reference §2.1).
DEFAULT_TOKEN_LIFETIME = timedelta(hours=24)

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
        clock: Clock = _utcnow,
        on_refresh: RefreshCallback | None = None,
    ) -> None:
        if not ak or not sk:
            raise CredentialsError("AK/SK authentication needs both an access key and a secret key")
        self.ak = ak
        self._sk = sk
        self.project_id = project_id
        self._clock = clock
        # Kept for a uniform constructor: a key pair is never refreshed.
        self._on_refresh = on_refresh
        self._last_date: tuple[int | None, str] = (None, "")

    def _date(self, now: datetime) -> str:
        """``sdk_date(now)``, formatted once per second (every request of a cycle needs it)."""
        second = int(now.timestamp())
        cached = self._last_date
        if cached[0] != second:
            cached = self._last_date = (second, sdk_date(now))
        return cached[1]

    def __repr__(self) -> str:
        return f"AkSkAuth(ak={_mask(self.ak)!r}, sk=***, project_id={self.project_id!r})"

    def sign_request(self, request: httpx.Request) -> None:
        """Add the signing headers to ``request`` in place (its body must have been read)."""
        for name in ("Authorization", "X-Sdk-Date"):
            request.headers.pop(name, None)
        request.headers["X-Sdk-Date"] = self._date(self._clock())
        if "host" not in request.headers:
            request.headers["Host"] = request.url.netloc.decode("ascii")
        if self.project_id:
            request.headers["X-Project-Id"] = self.project_id
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


class PasswordAuth(httpx.Auth):
    """An IAM token got with a user name and password, cached, refreshed and sent as X-Auth-Token.

    The token is scoped to one project, by name or by ID (the ID wins when both are given). It is
    refreshed ``refresh_margin`` before it expires (at most half its lifetime before, so a short
    lived token is not refetched on every request). ``deadline`` bounds each token request as a
    whole (the answer's every byte included). Works with ``httpx.AsyncClient`` only; IAM is
    called through a client of its own, so the token request never runs through this flow.
    """

    requires_request_body = True  # the request is sent a second time after a 401

    def __init__(
        self,
        iam_endpoint: str,
        username: str,
        password: str,
        domain: str,
        project_name: str | None = None,
        project_id: str | None = None,
        *,
        verify: ssl.SSLContext | bool | str | Path = True,
        timeout: float = 10,
        refresh_margin: timedelta = timedelta(minutes=10),
        on_refresh: RefreshCallback | None = None,
        clock: Clock = _utcnow,
        deadline: float | None = None,
    ) -> None:
        if not iam_endpoint:
            raise CredentialsError("password authentication needs the IAM endpoint")
        if not username or not password or not domain:
            raise CredentialsError(
                "password authentication needs a user name, a password and a domain"
            )
        if not project_name and not project_id:
            raise CredentialsError("password authentication needs a project name or project ID")
        self.iam_endpoint = iam_endpoint.rstrip("/")
        self.username = username
        self._password = password
        self.domain = domain
        self.project_name = project_name
        self.project_id = project_id
        if isinstance(verify, str | Path):
            # httpx deprecates verify=<path>; build the context the way it would.
            path = str(verify)
            verify = (
                ssl.create_default_context(capath=path)
                if os.path.isdir(path)
                else ssl.create_default_context(cafile=path)
            )
        self._verify: ssl.SSLContext | bool = verify
        self._timeout = timeout
        # The total time a token request may take, every byte of IAM's answer included (the
        # timeout bounds each silence only): a dripping answer must not hold every request.
        self._deadline = deadline
        self._refresh_margin = refresh_margin
        self._on_refresh = on_refresh
        self._clock = clock
        self._token: str | None = None
        self._refresh_at: datetime | None = None
        self._expires_at: datetime | None = None
        self._lock: asyncio.Lock | None = None
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        scope = (
            f"project_id={self.project_id!r}"
            if self.project_id
            else (f"project_name={self.project_name!r}")
        )
        return (
            f"PasswordAuth(iam_endpoint={self.iam_endpoint!r}, username={self.username!r}, "
            f"domain={self.domain!r}, {scope}, password=***)"
        )

    @property
    def expires_at(self) -> datetime | None:
        """When the cached token expires (our clock), or None before the first token."""
        return self._expires_at

    def token_request_body(self) -> dict[str, Any]:
        """The IAM request body (reference §2.1): password method, project scope."""
        project: dict[str, str] = (
            {"id": self.project_id} if self.project_id else {"name": str(self.project_name)}
        )
        return {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": self.username,
                            "password": self._password,
                            "domain": {"name": self.domain},
                        }
                    },
                },
                "scope": {"project": project},
            }
        }

    async def aclose(self) -> None:
        """Close the IAM client (a new one is created if the auth is used again)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("PasswordAuth needs httpx.AsyncClient")
        yield request  # pragma: no cover - makes this a generator, as httpx expects

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        await request.aread()
        token = await self._valid_token()
        request.headers["X-Auth-Token"] = token
        response = yield request
        if response.status_code != 401:
            return
        # The token may have been revoked or the server's clock may differ from ours: one fresh
        # token and one retry. A second 401 goes back to the caller as it is.
        token = await self._replace_token(token)
        request.headers["X-Auth-Token"] = token
        yield request

    def _fresh(self) -> str | None:
        if (
            self._token is not None
            and self._refresh_at is not None
            and (self._clock() < self._refresh_at)
        ):
            return self._token
        return None

    def _get_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def _valid_token(self) -> str:
        token = self._fresh()
        if token is not None:
            return token
        async with self._get_lock():
            # Whoever held the lock before us may have fetched a token already.
            token = self._fresh()
            if token is not None:
                return token
            return await self._fetch()

    async def _replace_token(self, rejected: str) -> str:
        async with self._get_lock():
            if self._token is not None and self._token != rejected:
                return self._token  # another request already replaced it
            return await self._fetch()

    def _report(self, outcome: str) -> None:
        if self._on_refresh is not None:
            self._on_refresh(outcome)

    def _iam_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(verify=self._verify, timeout=self._timeout)
        return self._client

    async def _fetch(self) -> str:
        try:
            token, expires_at, refresh_at = await self._request_token()
        except Exception:
            self._report("failure")
            raise
        self._token, self._expires_at, self._refresh_at = token, expires_at, refresh_at
        self._report("success")
        return token

    async def _request_token(self) -> tuple[str, datetime, datetime]:
        url = self.iam_endpoint + IAM_TOKEN_PATH
        try:
            async with asyncio.timeout(self._deadline):
                response = await self._iam_client().post(url, json=self.token_request_body())
        except TimeoutError:
            raise RequestTimeout(
                f"IAM token request: no complete answer within the {self._deadline:g}s deadline"
            ) from None
        except httpx.TimeoutException as exc:
            raise RequestTimeout(f"IAM token request timed out ({type(exc).__name__})") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            # The httpx exception is not chained: it holds the request, whose body has the
            # password. Its message names only the failure.
            raise TransportError(f"IAM token request failed: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            raise error_from_response(
                response.status_code,
                response.content,
                response.headers,
                method="POST",
                endpoint=IAM_TOKEN_PATH,
            )
        token = response.headers.get("x-subject-token", "").strip()
        if not token:
            raise CredentialsError(
                f"IAM answered HTTP {response.status_code} without an X-Subject-Token header"
            )
        now = self._clock()
        lifetime = DEFAULT_TOKEN_LIFETIME
        try:
            info = parse_response(TokenBody, response.content, endpoint=IAM_TOKEN_PATH).token
        except ResponseParseError:
            info = None  # the header is what matters; the body only tells the lifetime
        if info is not None and info.expires_at is not None:
            # Measured on the server's clock when it gives both ends, so skew between its clock
            # and ours does not make the token look expired (or eternal).
            issued = info.issued_at if info.issued_at is not None else now
            lifetime = info.expires_at - issued
        expires_at = now + lifetime
        margin = min(self._refresh_margin, lifetime / 2) if lifetime > timedelta(0) else lifetime
        return token, expires_at, expires_at - margin


class TokenAuth(httpx.Auth):
    """A token issued elsewhere: a fixed value, or a file re-read when it changes on disk.

    The file is checked (``stat``) before every request and re-read when its inode, size or
    modification time changed. On a 401 the file is re-read once more, and the request retried if
    the token in it differs (a rotation within the file system's timestamp granularity).
    """

    requires_request_body = True

    def __init__(
        self,
        token: str | None = None,
        token_file: Path | str | None = None,
        *,
        on_refresh: RefreshCallback | None = None,
    ) -> None:
        if (token is None) == (token_file is None):
            raise CredentialsError("token authentication needs exactly one of token or token_file")
        self.token_file = Path(token_file) if token_file is not None else None
        self._token: str | None = None
        self._file_key: tuple[int, int, int, int] | None = None
        self._on_refresh = on_refresh
        if token is not None:
            token = token.strip()
            if not token:
                raise CredentialsError("the token is empty")
            self._token = token

    def __repr__(self) -> str:
        if self.token_file is not None:
            return f"TokenAuth(token_file={str(self.token_file)!r})"
        return "TokenAuth(token=***)"

    def _report(self, outcome: str) -> None:
        if self._on_refresh is not None:
            self._on_refresh(outcome)

    def current_token(self, *, force: bool = False) -> str:
        """The token to send; re-reads the file when it changed (or when ``force``)."""
        if self.token_file is None:
            assert self._token is not None
            return self._token
        path = self.token_file
        try:
            st = path.stat()
            key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
            if not force and key == self._file_key and self._token is not None:
                return self._token
            raw = path.read_bytes()
        except OSError as exc:
            self._report("failure")
            reason = exc.strerror or type(exc).__name__
            raise CredentialsError(f"token file {path} is unreadable: {reason}") from None
        try:
            token = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            self._report("failure")
            raise CredentialsError(f"token file {path} is not UTF-8 text") from None
        if not token:
            self._report("failure")
            raise CredentialsError(f"token file {path} is empty")
        changed = token != self._token
        self._token, self._file_key = token, key
        if changed:
            self._report("success")
        return token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.current_token()
        request.headers["X-Auth-Token"] = token
        response = yield request
        if response.status_code != 401 or self.token_file is None:
            return
        fresh = self.current_token(force=True)
        if fresh != token:
            request.headers["X-Auth-Token"] = fresh
            yield request
