"""Signing with the temporary credentials of the instance's agency (ECS/BMS metadata service).

:class:`AgencyAuth` reads an AK/SK and security token from the metadata service, signs like
:class:`~exporter.cce.aksk.AkSkAuth`, and refreshes them before they expire.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx

from exporter.cce.aksk import AkSkAuth, Clock, RefreshCallback, _mask, _utcnow
from exporter.cce.errors import (
    CCEError,
    CredentialsError,
    RequestTimeout,
    TransportError,
)
from exporter.cce.http import HttpOptions, build_http_client, scrub
from exporter.cce.refreshing import RefreshingAuth
from exporter.limits import read_capped

log = logging.getLogger(__name__)


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


class AgencyAuth(RefreshingAuth):
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
        super().__init__(on_refresh)
        self.metadata_endpoint = metadata_endpoint.rstrip("/")
        self.project_id = project_id
        base = http if http is not None else HttpOptions(timeout=5.0, max_connections=2)
        self.http = base.direct()
        self._refresh_margin = refresh_margin
        self._attempts = max(1, attempts)
        self._retry_wait = retry_wait
        self._clock = clock
        self._sleep = sleep
        self._current: TemporaryCredentials | None = None
        self._signer: AkSkAuth | None = None
        self._refresh_at: datetime | None = None
        self._next_try: datetime | None = None
        self._failures = 0
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
                body = await read_capped(
                    response.aiter_bytes(),
                    _MAX_METADATA_BYTES,
                    lambda: CredentialsError(f"the metadata service's {what} is too large"),
                )
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
        return response.status_code, body

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
        token = body.decode("latin-1").strip() if status == 200 else ""
        if not (token.isascii() and token.isprintable()):
            # It is sent back as a header: refused here rather than failing as one.
            raise CredentialsError("the metadata service's session token is not printable ASCII")
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
