"""The ways of authenticating to CCE, as ``httpx.Auth`` classes.

* :class:`AkSkAuth` signs every request with an access key / secret key pair
  (``SDK-HMAC-SHA256``, see :mod:`exporter.cce.signing`). Nothing expires, nothing is fetched.
* :class:`PasswordAuth` gets a project-scoped token from IAM (``POST /v3/auth/tokens``, password
  method) and sends it as ``X-Auth-Token``. The token is cached and refreshed ahead of its expiry;
  concurrent requests share one token request; a 401 from the API triggers exactly one refresh and
  one retry of that request. Async clients only.
* :class:`TokenAuth` sends a token issued elsewhere, given as a value or as a file that is re-read
  whenever it changes on disk (a mounted Kubernetes secret is rotated by replacing the file).
* :class:`AgencyAuth` signs like :class:`AkSkAuth` with the temporary AK/SK and security token of
  the ECS/BMS instance's agency, read from the metadata service and refreshed before they expire.
* :class:`AssumeAgencyAuth` gets an IAM token for an agency of another account (IAM's assume-role
  token), asking with any of the above, and sends it as ``X-Auth-Token``.

All of them take ``on_refresh``, called with ``"success"`` or ``"failure"`` each time a credential
is (re)loaded, so the caller can count it. No secret ever appears in a repr, a log line or an
exception message; IAM failures raise the classes of :mod:`exporter.cce.errors`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from exporter.cce.errors import (
    CCEError,
    CredentialsError,
    RequestTimeout,
    ResponseParseError,
    TransportError,
    error_from_response,
)
from exporter.cce.http import HttpOptions, build_http_client, scrub, tls_verify
from exporter.cce.models import TokenBody, parse_response
from exporter.cce.signing import SignatureError, sdk_date, sign

__all__ = [
    "DEFAULT_METADATA_ENDPOINT",
    "AgencyAuth",
    "AkSkAuth",
    "AssumeAgencyAuth",
    "Clock",
    "PasswordAuth",
    "RefreshCallback",
    "TemporaryCredentials",
    "TokenAuth",
    "describe_credentials",
]

log = logging.getLogger(__name__)

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
        token = ", security_token=***" if self._security_token else ""
        return f"AkSkAuth(ak={_mask(self.ak)!r}, sk=***{token}, project_id={self.project_id!r})"

    def sign_request(self, request: httpx.Request) -> None:
        """Add the signing headers to ``request`` in place (its body must have been read)."""
        for name in ("Authorization", "X-Sdk-Date"):
            request.headers.pop(name, None)
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


class _IamTokenAuth(httpx.Auth):
    """An IAM token, cached, refreshed and sent as X-Auth-Token; subclasses say how to ask.

    The token is refreshed ``refresh_margin`` before it expires (at most half its lifetime
    before, so a short lived token is not refetched on every request); concurrent requests share
    one token request; a 401 from the API triggers exactly one refresh and one retry.
    ``deadline`` bounds each token request as a whole (the answer's every byte included). Works
    with ``httpx.AsyncClient`` only; IAM is called through a client of its own (built by
    :func:`~exporter.cce.http.build_http_client` with the target's options, proxy included), so
    the token request never runs through this flow.
    """

    requires_request_body = True  # the request is sent a second time after a 401
    #: What the token request is called in errors.
    what = "IAM token request"

    def __init__(
        self,
        iam_endpoint: str,
        *,
        http: HttpOptions | None = None,
        verify: ssl.SSLContext | bool | str | Path = True,
        timeout: float = 10,
        refresh_margin: timedelta = timedelta(minutes=10),
        on_refresh: RefreshCallback | None = None,
        clock: Clock = _utcnow,
        deadline: float | None = None,
    ) -> None:
        if not iam_endpoint:
            raise CredentialsError(f"{self.method_name()} needs the IAM endpoint")
        self.iam_endpoint = iam_endpoint.rstrip("/")
        if http is None:
            if isinstance(verify, str | Path):
                # httpx deprecates verify=<path>; build the context the way it would.
                verify = tls_verify(verify)
            http = HttpOptions(timeout=timeout, verify=verify, max_connections=2)
        self.http = http
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

    @classmethod
    def method_name(cls) -> str:
        return "IAM token authentication"

    @property
    def expires_at(self) -> datetime | None:
        """When the cached token expires (our clock), or None before the first token."""
        return self._expires_at

    def token_request_body(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _iam_auth(self) -> httpx.Auth | None:
        """The authentication of the token request itself (none: the body carries it)."""
        return None

    async def aclose(self) -> None:
        """Close the IAM client (a new one is created if the auth is used again)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError(f"{type(self).__name__} needs httpx.AsyncClient")
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
            self._client = build_http_client(self.http, auth=self._iam_auth())
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
                f"{self.what}: no complete answer within the {self._deadline:g}s deadline"
            ) from None
        except httpx.TimeoutException as exc:
            raise RequestTimeout(f"{self.what} timed out ({type(exc).__name__})") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            # The httpx exception is not chained: it holds the request, whose body has the
            # password. Its message names only the failure.
            raise TransportError(
                f"{self.what} failed: {type(exc).__name__}: {scrub(str(exc))}"
            ) from None
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


class PasswordAuth(_IamTokenAuth):
    """An IAM token got with a user name and password, cached, refreshed and sent as X-Auth-Token.

    The token is scoped to one project, by name or by ID (the ID wins when both are given), or,
    with ``domain_scope``, to the user's domain (the token that asks IAM for another account's
    agency). See :class:`_IamTokenAuth` for caching and refreshing.
    """

    def __init__(
        self,
        iam_endpoint: str,
        username: str,
        password: str,
        domain: str,
        project_name: str | None = None,
        project_id: str | None = None,
        *,
        domain_scope: bool = False,
        http: HttpOptions | None = None,
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
        if not project_name and not project_id and not domain_scope:
            raise CredentialsError("password authentication needs a project name or project ID")
        super().__init__(
            iam_endpoint,
            http=http,
            verify=verify,
            timeout=timeout,
            refresh_margin=refresh_margin,
            on_refresh=on_refresh,
            clock=clock,
            deadline=deadline,
        )
        self.username = username
        self._password = password
        self.domain = domain
        self.project_name = project_name
        self.project_id = project_id
        self.domain_scope = domain_scope

    def __repr__(self) -> str:
        if self.domain_scope:
            scope = "domain_scope=True"
        elif self.project_id:
            scope = f"project_id={self.project_id!r}"
        else:
            scope = f"project_name={self.project_name!r}"
        return (
            f"PasswordAuth(iam_endpoint={self.iam_endpoint!r}, username={self.username!r}, "
            f"domain={self.domain!r}, {scope}, password=***)"
        )

    def token_request_body(self) -> dict[str, Any]:
        """The IAM request body (reference §2.1): password method, project scope."""
        scope: dict[str, Any]
        if self.domain_scope:
            scope = {"domain": {"name": self.domain}}
        else:
            scope = {
                "project": {"id": self.project_id}
                if self.project_id
                else {"name": str(self.project_name)}
            }
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
                "scope": scope,
            }
        }


class AssumeAgencyAuth(_IamTokenAuth):
    """A token for an IAM agency of another account, scoped to a project of that account.

    The exporter asks IAM (``POST /v3/auth/tokens``, identity method ``assume_role``) with its own
    credentials, ``base`` (any of the other classes: the request is signed or carries the
    exporter's own token); IAM answers with a token acting as the agency, which is cached and
    renewed before it expires like a password token. The exporter's account needs the
    ``iam:agencies:assume`` permission (or the Security Administrator role) and the other account
    must have created the agency, delegated to the exporter's account, with CCE read permissions
    (plus operate permissions for hibernation).
    """

    what = "IAM assume-agency token request"

    def __init__(
        self,
        iam_endpoint: str,
        base: httpx.Auth,
        domain: str,
        agency: str,
        project_id: str | None = None,
        project_name: str | None = None,
        *,
        duration: timedelta = timedelta(hours=1),
        http: HttpOptions | None = None,
        refresh_margin: timedelta = timedelta(minutes=10),
        on_refresh: RefreshCallback | None = None,
        clock: Clock = _utcnow,
        deadline: float | None = None,
    ) -> None:
        if not domain or not agency:
            raise CredentialsError("assume_agency needs the domain and the agency name")
        if not project_id and not project_name:
            raise CredentialsError("assume_agency needs a project name or project ID")
        super().__init__(
            iam_endpoint,
            http=http,
            refresh_margin=refresh_margin,
            on_refresh=on_refresh,
            clock=clock,
            deadline=deadline,
        )
        self.base = base
        self.domain = domain
        self.agency = agency
        self.project_id = project_id
        self.project_name = project_name
        self.duration = duration

    @classmethod
    def method_name(cls) -> str:
        return "assume_agency"

    def __repr__(self) -> str:
        return (
            f"AssumeAgencyAuth(iam_endpoint={self.iam_endpoint!r}, domain={self.domain!r}, "
            f"agency={self.agency!r}, project_id={self.project_id!r}, base={self.base!r})"
        )

    def _iam_auth(self) -> httpx.Auth | None:
        return self.base

    def token_request_body(self) -> dict[str, Any]:
        project: dict[str, str] = (
            {"id": self.project_id} if self.project_id else {"name": str(self.project_name)}
        )
        return {
            "auth": {
                "identity": {
                    "methods": ["assume_role"],
                    "assume_role": {
                        "domain_name": self.domain,
                        "agency_name": self.agency,
                        "duration_seconds": int(self.duration.total_seconds()),
                    },
                },
                "scope": {"project": project},
            }
        }

    async def aclose(self) -> None:
        await super().aclose()
        close = getattr(self.base, "aclose", None)
        if close is not None:
            await close()


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


#: The ECS/BMS metadata service (link-local; reached directly, never through a proxy).
DEFAULT_METADATA_ENDPOINT = "http://169.254.169.254"
METADATA_SECURITYKEY_PATH = "/openstack/latest/securitykey"
#: The session token a hardened metadata service requires (as the official SDK asks for it).
METADATA_TOKEN_PATH = "/meta-data/latest/api/token"  # noqa: S105 - a URL path
METADATA_TOKEN_TTL_SECONDS = 6 * 3600
#: Largest metadata answer read (a credential is a few kB).
_MAX_METADATA_BYTES = 64 * 1024


@dataclass(frozen=True)
class TemporaryCredentials:
    """A temporary AK/SK with its security token; ``repr`` shows neither secret."""

    access: str = field(repr=False)
    secret: str = field(repr=False)
    security_token: str = field(repr=False)
    expires_at: datetime

    def __repr__(self) -> str:
        return f"TemporaryCredentials(access={_mask(self.access)!r}, expires_at={self.expires_at})"


def parse_securitykey(content: bytes) -> tuple[str, str, str, datetime]:
    """``(access, secret, security_token, expires_at)`` from a metadata ``securitykey`` answer.

    The answer is ``{"credential": {"access", "secret", "securitytoken", "expires_at"}}``; the
    SDK's alternative spellings are accepted too. Raises CredentialsError naming what is wrong,
    never a value.
    """
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        raise CredentialsError("the metadata service's security key is not JSON") from None
    if isinstance(data, dict):
        data = data.get("credential", data.get("credentials", data))
    if not isinstance(data, dict):
        raise CredentialsError("the metadata service's security key has no credential object")

    def pick(*names: str) -> str:
        for name in names:
            value = data.get(name)
            if isinstance(value, str) and value.strip():
                return value.strip()
        raise CredentialsError(f"the metadata service's security key has no {names[0]}")

    access = pick("access", "accessKeyId", "access_key_id")
    secret = pick("secret", "secretAccessKey", "secret_access_key")
    token = pick("securitytoken", "securityToken", "security_token")
    raw = pick("expires_at", "expiration")
    try:
        expires = datetime.fromisoformat(raw)
    except ValueError:
        raise CredentialsError("the metadata service's expires_at is not a timestamp") from None
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return access, secret, token, expires


class AgencyAuth(httpx.Auth):
    """Sign with the temporary credentials of the instance's agency, from the metadata service.

    ``GET {metadata_endpoint}/openstack/latest/securitykey`` hands out an AK/SK and a security
    token valid until ``expires_at``; requests are signed as by :class:`AkSkAuth`, with the token
    sent and signed as ``X-Security-Token``. The credentials are fetched on first use and again
    ``refresh_margin`` before they expire (at most half their lifetime before); concurrent requests
    share one fetch. A failed fetch is counted (``on_refresh("failure")``) and retried: at once,
    up to ``attempts`` times with a doubling wait, when there is no valid credential; otherwise the
    current credentials keep signing and the next request after ``retry_wait`` (doubling, at most
    a minute) tries again. A 401 from the API fetches new credentials once and retries the request.
    The metadata service is always reached directly, whatever the proxy settings.
    """

    requires_request_body = True

    def __init__(
        self,
        metadata_endpoint: str = DEFAULT_METADATA_ENDPOINT,
        project_id: str | None = None,
        *,
        http: HttpOptions | None = None,
        refresh_margin: timedelta = timedelta(minutes=10),
        attempts: int = 3,
        retry_wait: float = 1.0,
        on_refresh: RefreshCallback | None = None,
        clock: Clock = _utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        deadline: float | None = None,
    ) -> None:
        if not metadata_endpoint:
            raise CredentialsError("agency authentication needs the metadata endpoint")
        self.metadata_endpoint = metadata_endpoint.rstrip("/")
        self.project_id = project_id
        base = http if http is not None else HttpOptions(timeout=5.0, max_connections=2)
        self.http = base.direct()
        self._refresh_margin = refresh_margin
        self._attempts = max(1, attempts)
        self._retry_wait = retry_wait
        self._on_refresh = on_refresh
        self._clock = clock
        self._sleep = sleep
        self._current: TemporaryCredentials | None = None
        self._signer: AkSkAuth | None = None
        self._refresh_at: datetime | None = None
        self._next_try: datetime | None = None
        self._failures = 0
        self._lock: asyncio.Lock | None = None
        self._client: httpx.AsyncClient | None = None
        self._session_token: str | None = None
        self._session_until: datetime | None = None
        # The total time one metadata exchange may take, every byte of the answer included.
        self._deadline = deadline

    def __repr__(self) -> str:
        return (
            f"AgencyAuth(metadata_endpoint={self.metadata_endpoint!r}, "
            f"project_id={self.project_id!r}, credentials={self._current!r})"
        )

    @property
    def credentials(self) -> TemporaryCredentials | None:
        """The temporary credentials in use (None before the first fetch)."""
        return self._current

    @property
    def expires_at(self) -> datetime | None:
        return self._current.expires_at if self._current is not None else None

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("AgencyAuth needs httpx.AsyncClient")
        yield request  # pragma: no cover - makes this a generator, as httpx expects

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        await request.aread()
        signer = await self._valid_signer()
        signer.sign_request(request)
        response = yield request
        if response.status_code != 401:
            return
        # Revoked early, or our clock is behind the service's: new credentials, one retry.
        signer = await self._replace(signer)
        signer.sign_request(request)
        yield request

    def _get_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _usable(self, now: datetime) -> AkSkAuth | None:
        """The current signer if it needs no refresh attempt now."""
        if self._signer is None or self._current is None or now >= self._current.expires_at:
            return None
        if self._refresh_at is not None and now < self._refresh_at:
            return self._signer
        if self._next_try is not None and now < self._next_try:
            return self._signer  # a refresh failed lately; the credentials are still valid
        return None

    async def _valid_signer(self) -> AkSkAuth:
        signer = self._usable(self._clock())
        if signer is not None:
            return signer
        async with self._get_lock():
            signer = self._usable(self._clock())
            if signer is not None:
                return signer
            return await self._refresh()

    async def _replace(self, rejected: AkSkAuth) -> AkSkAuth:
        async with self._get_lock():
            if self._signer is not None and self._signer is not rejected:
                return self._signer
            self._current = None  # refused: do not fall back on it
            self._signer = None
            return await self._refresh()

    async def _refresh(self) -> AkSkAuth:
        """Fetch new credentials (lock held); see the class docstring for failures."""
        attempt = 0
        while True:
            attempt += 1
            try:
                credentials = await self._fetch()
            except CCEError as exc:
                self._report("failure")
                self._failures += 1
                now = self._clock()
                wait = min(60.0, self._retry_wait * 2 ** (self._failures - 1))
                current, signer = self._current, self._signer
                if signer is not None and current is not None and now < current.expires_at:
                    log.warning(
                        "refreshing the agency's temporary credentials failed (%s); the "
                        "current ones stay in use until %s",
                        exc,
                        current.expires_at.isoformat(),
                    )
                    self._next_try = now + timedelta(seconds=wait)
                    return signer
                if attempt >= self._attempts:
                    raise
                await self._sleep(min(self._retry_wait * 2 ** (attempt - 1), 60.0))
                continue
            self._report("success")
            self._failures = 0
            self._next_try = None
            now = self._clock()
            lifetime = credentials.expires_at - now
            margin = (
                min(self._refresh_margin, lifetime / 2) if lifetime > timedelta(0) else lifetime
            )
            self._current = credentials
            self._refresh_at = credentials.expires_at - margin
            self._signer = AkSkAuth(
                credentials.access,
                credentials.secret,
                self.project_id,
                security_token=credentials.security_token,
                clock=self._clock,
            )
            return self._signer

    def _report(self, outcome: str) -> None:
        if self._on_refresh is not None:
            self._on_refresh(outcome)

    def _metadata_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = build_http_client(self.http)
        return self._client

    async def _read(
        self, method: str, path: str, headers: dict[str, str], what: str
    ) -> tuple[int, bytes]:
        """One bounded exchange with the metadata service: ``(status, body)``."""
        url = self.metadata_endpoint + path
        try:
            async with (
                asyncio.timeout(self._deadline),
                self._metadata_client().stream(method, url, headers=headers) as response,
            ):
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > _MAX_METADATA_BYTES:
                        raise CredentialsError(f"the metadata service's {what} is too large")
                    chunks.append(chunk)
        except TimeoutError:
            raise RequestTimeout(
                f"metadata {what} request: no complete answer within the {self._deadline:g}s "
                "deadline"
            ) from None
        except httpx.TimeoutException as exc:
            raise RequestTimeout(
                f"metadata {what} request timed out ({type(exc).__name__})"
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise TransportError(
                f"metadata {what} request failed: {type(exc).__name__}: {scrub(str(exc))}"
            ) from None
        return response.status_code, b"".join(chunks)

    async def _metadata_session(self, *, renew: bool = False) -> str | None:
        """The metadata service's session token, asked for as the official SDK does: a hardened
        instance requires it; one that does not know it (404, 405, 503) is read without."""
        now = self._clock()
        if not renew and self._session_until is not None and now < self._session_until:
            return self._session_token
        ttl = METADATA_TOKEN_TTL_SECONDS
        status, body = await self._read(
            "PUT",
            METADATA_TOKEN_PATH,
            {"X-Metadata-Token-Ttl-Seconds": str(ttl)},
            "session token",
        )
        token = body.decode("utf-8", "replace").strip() if status == 200 else ""
        self._session_token = token or None
        # Asked for again well before its TTL; without one, not asked again for as long.
        self._session_until = now + timedelta(seconds=ttl * 0.9)
        return self._session_token

    async def _fetch(self) -> TemporaryCredentials:
        what = "security key"
        session = await self._metadata_session()
        headers = {"X-Metadata-Token": session} if session else {}
        status, body = await self._read("GET", METADATA_SECURITYKEY_PATH, headers, what)
        if status == 401:
            # The session token expired or was revoked: one new one, one more try.
            session = await self._metadata_session(renew=True)
            headers = {"X-Metadata-Token": session} if session else {}
            status, body = await self._read("GET", METADATA_SECURITYKEY_PATH, headers, what)
        if status != 200:
            raise CredentialsError(
                f"the metadata service answered HTTP {status} for the security "
                "key: is an agency attached to this instance (ECS > Management Information > "
                "Agency)?"
            )
        access, secret, token, expires_at = parse_securitykey(body)
        if expires_at <= self._clock():
            raise CredentialsError("the metadata service handed out expired credentials")
        return TemporaryCredentials(access, secret, token, expires_at)


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "unknown"


def describe_credentials(auth: httpx.Auth) -> str:
    """Which credentials ``auth`` uses and, for temporary ones, when they expire (no secret;
    what ``check-config --online`` prints after a successful call)."""
    if isinstance(auth, AssumeAgencyAuth):
        return (
            f"token of agency {auth.agency} in domain {auth.domain} (expires "
            f"{_when(auth.expires_at)}), asked for with {describe_credentials(auth.base)}"
        )
    if isinstance(auth, AgencyAuth):
        current = auth.credentials
        if current is None:
            return "the instance agency's temporary credentials (not fetched yet)"
        return (
            f"the instance agency's temporary access key {_mask(current.access)} "
            f"(expires {_when(current.expires_at)})"
        )
    if isinstance(auth, PasswordAuth):
        return f"IAM token of user {auth.username} (expires {_when(auth.expires_at)})"
    if isinstance(auth, AkSkAuth):
        return f"access key {_mask(auth.ak)} (permanent)"
    if isinstance(auth, TokenAuth):
        return f"token from {auth.token_file}" if auth.token_file is not None else "a fixed token"
    return type(auth).__name__
