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
import logging
import ssl
from collections.abc import AsyncGenerator, Generator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict, Unpack

import httpx

from exporter.cce.agency import (
    DEFAULT_METADATA_ENDPOINT,
    AgencyAuth,
    TemporaryCredentials,
    parse_securitykey,
)
from exporter.cce.aksk import AkSkAuth, Clock, RefreshCallback, _mask, _utcnow
from exporter.cce.errors import (
    CredentialsError,
    RequestTimeout,
    ResponseParseError,
    TransportError,
    error_from_response,
)
from exporter.cce.http import HttpOptions, build_http_client, scrub, tls_verify
from exporter.cce.models import TokenBody, parse_response
from exporter.cce.refreshing import RefreshingAuth

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
    "parse_securitykey",
]

log = logging.getLogger(__name__)

IAM_TOKEN_PATH = "/v3/auth/tokens"  # noqa: S105 - a URL path, not a password
#: Lifetime of an IAM token when the response body does not say (reference §2.1).
DEFAULT_TOKEN_LIFETIME = timedelta(hours=24)


class IamTokenOptions(TypedDict, total=False):
    """The keyword options every IAM token auth takes (see :class:`_IamTokenAuth`)."""

    http: HttpOptions | None
    refresh_margin: timedelta
    on_refresh: RefreshCallback | None
    clock: Clock
    deadline: float | None


class PasswordOptions(IamTokenOptions, total=False):
    """:class:`PasswordAuth`'s options: the IAM token ones, and the TLS settings and timeout
    used when ``http`` is not given."""

    verify: ssl.SSLContext | bool | str | Path
    timeout: float


class _IamTokenAuth(RefreshingAuth):
    """An IAM token, cached, refreshed and sent as X-Auth-Token; subclasses say how to ask.

    The token is refreshed ``refresh_margin`` before it expires (at most half its lifetime
    before, so a short lived token is not refetched on every request); concurrent requests share
    one token request; a 401 from the API triggers exactly one refresh and one retry.
    ``deadline`` bounds each token request as a whole (the answer's every byte included). Works
    with ``httpx.AsyncClient`` only; IAM is called through a client of its own (built by
    :func:`~exporter.cce.http.build_http_client` with the target's options, proxy included), so
    the token request never runs through this flow.
    """

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
        self._check_endpoint(iam_endpoint)
        super().__init__(on_refresh)
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
        self._clock = clock
        self._token: str | None = None
        self._refresh_at: datetime | None = None
        self._expires_at: datetime | None = None

    @classmethod
    def method_name(cls) -> str:
        return "IAM token authentication"

    @classmethod
    def _check_endpoint(cls, iam_endpoint: str) -> None:
        if not iam_endpoint:
            raise CredentialsError(f"{cls.method_name()} needs the IAM endpoint")

    @property
    def expires_at(self) -> datetime | None:
        """When the cached token expires (our clock), or None before the first token."""
        return self._expires_at

    def token_request_body(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _iam_auth(self) -> httpx.Auth | None:
        """The authentication of the token request itself (none: the body carries it)."""
        return None

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
        **options: Unpack[PasswordOptions],
    ) -> None:
        self._check_endpoint(iam_endpoint)  # first: the order the errors are reported in
        if not username or not password or not domain:
            raise CredentialsError(
                "password authentication needs a user name, a password and a domain"
            )
        if not project_name and not project_id and not domain_scope:
            raise CredentialsError("password authentication needs a project name or project ID")
        super().__init__(iam_endpoint, **options)
        self.username = username
        self._password = password
        self.domain = domain
        self.project_name = project_name
        self.project_id = project_id
        self.domain_scope = domain_scope

    @classmethod
    def method_name(cls) -> str:
        return "password authentication"

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
        **options: Unpack[IamTokenOptions],
    ) -> None:
        if not domain or not agency:
            raise CredentialsError("assume_agency needs the domain and the agency name")
        if not project_id and not project_name:
            raise CredentialsError("assume_agency needs a project name or project ID")
        super().__init__(iam_endpoint, **options)
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
