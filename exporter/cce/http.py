"""One place that builds the exporter's HTTP clients: CCE, add-ons, IAM and the metadata service.

Every client is an ``httpx.AsyncClient`` over aiohttp's connection pool and C parser (the
``httpx-aiohttp`` transport): httpx is the interface the rest of the exporter speaks, aiohttp does
the wire work at a fraction of httpcore's CPU (docs/performance.md has the measurements).
:func:`build_http_client` is the only constructor; :class:`HttpOptions` holds what a target
configures:

* ``timeout``: connect, read and pool timeout of each attempt;
* ``verify``: an ``ssl.SSLContext`` (a CA bundle), ``True`` (the system's trust store) or
  ``False`` (no verification), see :func:`tls_verify`;
* ``proxy``: ``None`` uses ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` / ``NO_PROXY`` from
  the environment, as every HTTP tool does; a URL sends every request through that proxy
  (environment ignored); ``"none"`` (:data:`PROXY_OFF`) goes direct. HTTPS through a proxy is
  tunnelled with CONNECT and the API's certificate is verified exactly as without one;
* ``max_connections``: connections in use at most (per proxy route).

The environment is read by httpx, not by aiohttp (whose ``trust_env`` stays off): httpx turns
``*_PROXY`` and ``NO_PROXY`` into URL patterns and routes each request to one aiohttp transport
per proxy (or the direct one), so NO_PROXY behaves exactly as in any httpx client. aiohttp then
tunnels HTTPS with CONNECT (the proxy's credentials on the CONNECT request) and sends plain HTTP
in absolute form (the credentials added to the request by :class:`_Transport`).

A proxy URL may carry credentials (``http://user:pass@proxy:3128``): they are secrets, sent only
as ``Proxy-Authorization`` to the proxy; :func:`redact_url` and :func:`scrub` mask them wherever a
URL might be shown.

Errors are httpx's, mapped from aiohttp's by what they tell about the request (the library's own
mapping reports a connection the server closed as a connect timeout, which would make a POST look
unsent): :class:`httpx.ConnectError` / :class:`httpx.ConnectTimeout` / :class:`httpx.ProxyError`
when nothing was sent, :class:`httpx.ReadTimeout`, :class:`httpx.RemoteProtocolError` and
:class:`httpx.ReadError` after. The original exception stays chained (a refused certificate is
found in the chain).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import re
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

__all__ = [
    "PROXY_OFF",
    "HttpOptions",
    "build_http_client",
    "check_proxy_url",
    "redact_url",
    "scrub",
    "tls_verify",
]

#: The ``proxy`` value that turns proxies off for a target (environment variables included).
PROXY_OFF = "none"
#: Idle connections are closed after this many seconds (before the common 5 s server timeout,
#: so that a reused connection is not one the server is closing).
KEEPALIVE_SECONDS = 4.0

_PROXY_SCHEMES = ("http", "https")
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]*)@")


def redact_url(url: str) -> str:
    """``url`` with the password of its user info masked (``http://user:***@host:3128``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return scrub(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{parts.username or ''}:***@{host}" + (f":{port}" if port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def scrub(text: str) -> str:
    """``text`` with the user info of every URL in it masked (for error messages and logs)."""
    return _USERINFO.sub(lambda m: m.group("scheme") + "***@", text)


def check_proxy_url(value: str) -> str:
    """A proxy setting, normalized: :data:`PROXY_OFF` or an ``http(s)://host[:port]`` URL.

    Raises ValueError with a message that never contains the value's credentials.
    """
    value = value.strip()
    if value.lower() == PROXY_OFF:
        return PROXY_OFF
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(
            "is not a URL: use http://host:port, http://user:password@host:port or none"
        ) from None
    if parts.scheme.lower() not in _PROXY_SCHEMES:
        raise ValueError(
            "must be an http:// or https:// proxy URL (SOCKS is not supported), or none"
        )
    if not parts.hostname:
        raise ValueError("has no host: use http://host:port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must not have a path or query: use http://host:port")
    del port
    return value.rstrip("/")


def tls_verify(
    ca_file: Path | str | None = None, insecure_skip_verify: bool = False
) -> ssl.SSLContext | bool:
    """What ``verify`` should be: ``False`` when told to skip, a context trusting ``ca_file`` (a
    bundle or a directory of hashed certificates), or ``True`` for the system's trust store."""
    if insecure_skip_verify:
        return False
    if ca_file is None:
        return True
    return _trusting(str(ca_file))


@functools.lru_cache(maxsize=64)
def _trusting(path: str) -> ssl.SSLContext:
    # One context per bundle, shared by every client: loading a trust store takes time and
    # memory (docs/performance.md).
    if os.path.isdir(path):
        return ssl.create_default_context(capath=path)
    return ssl.create_default_context(cafile=path)


@functools.cache
def _system_trust() -> ssl.SSLContext:
    """The system's (or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``'s) trust store, loaded once."""
    return httpx.create_ssl_context(trust_env=True)


def _context(verify: ssl.SSLContext | bool) -> ssl.SSLContext | bool:
    return _system_trust() if verify is True else verify


class _TargetLike(Protocol):
    timeout: float
    ca_file: Path | None
    insecure_skip_verify: bool
    concurrency: int

    @property
    def proxy(self) -> Any: ...


@dataclass(frozen=True)
class HttpOptions:
    """How a client reaches one target's hosts (see the module docstring)."""

    timeout: float = 10.0
    verify: ssl.SSLContext | bool = True
    proxy: str | None = None
    max_connections: int = 8

    @classmethod
    def for_target(cls, target: _TargetLike) -> HttpOptions:
        """The options of a configured target (``TargetConfig`` or alike)."""
        proxy = target.proxy
        if proxy is not None and not isinstance(proxy, str):
            proxy = proxy.get_secret_value()  # SecretStr
        return cls(
            timeout=target.timeout,
            verify=tls_verify(target.ca_file, target.insecure_skip_verify),
            proxy=proxy,
            max_connections=target.concurrency,
        )

    def direct(self) -> HttpOptions:
        """The same options without any proxy (the metadata service is reached directly)."""
        return HttpOptions(self.timeout, self.verify, PROXY_OFF, self.max_connections)

    def __repr__(self) -> str:
        proxy = redact_url(self.proxy) if self.proxy else self.proxy
        return (
            f"HttpOptions(timeout={self.timeout!r}, verify={self.verify!r}, proxy={proxy!r}, "
            f"max_connections={self.max_connections!r})"
        )

    def route(self) -> str:
        """The proxy as it may be shown: ``direct``, ``environment`` or the redacted URL."""
        if self.proxy is None:
            return "environment"
        if self.proxy == PROXY_OFF:
            return "direct"
        return redact_url(self.proxy)


def _httpx_error(exc: BaseException) -> type[httpx.TransportError]:
    """The httpx exception class that says what an aiohttp failure means for the request."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout
    if isinstance(exc, aiohttp.SocketTimeoutError | aiohttp.ServerTimeoutError | TimeoutError):
        return httpx.ReadTimeout
    if isinstance(exc, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        return httpx.ProxyError
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError
    closed = aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError
    if isinstance(exc, closed | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return httpx.UnsupportedProtocol
    return httpx.ReadError


def _remap(exc: BaseException) -> httpx.TransportError:
    # The library maps aiohttp's exception to httpx's and chains it as the cause.
    original = exc.__cause__ if isinstance(exc, httpx.TransportError) else exc
    if original is None:
        assert isinstance(exc, httpx.TransportError)
        return exc  # httpx's own error, nothing to correct
    error = _httpx_error(original)(scrub(str(original) or type(original).__name__))
    error.__cause__ = original
    return error


_ERRORS = (httpx.TransportError, aiohttp.ClientError, asyncio.TimeoutError, OSError)


class _RemappedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except _ERRORS as exc:
            raise _remap(exc) from None

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        except _ERRORS as exc:
            raise _remap(exc) from None


class _Transport(AiohttpTransport):
    """``httpx_aiohttp.AiohttpTransport`` with errors that tell whether the request was sent, and
    a session without a cookie jar (the API sets no cookie the exporter needs, and the jar's
    bookkeeping costs CPU on every response: docs/performance.md)."""

    def get_client(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.limits.max_connections or 0,
            keepalive_timeout=self.limits.keepalive_expiry,
            ssl=self.ssl_context,
        )
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.proxy is not None and request.url.scheme == "http":
            # aiohttp sends proxy headers on CONNECT only; a plain request through the proxy
            # carries the proxy's credentials itself (never signed, never logged).
            authorization = self.proxy.headers.get("Proxy-Authorization")
            if authorization is not None:
                request.headers["Proxy-Authorization"] = authorization
        try:
            response = await super().handle_async_request(request)
        except _ERRORS as exc:
            raise _remap(exc) from None
        if isinstance(response.stream, httpx.AsyncByteStream):
            response.stream = _RemappedStream(response.stream)
        return response


class _Client(httpx.AsyncClient):
    """httpx's client whose transports, proxied or not, are aiohttp's."""

    def __init__(self, options: HttpOptions, **kwargs: Any) -> None:
        self._options = options
        super().__init__(**kwargs)

    def _limits(self) -> httpx.Limits:
        return httpx.Limits(
            max_connections=self._options.max_connections, keepalive_expiry=KEEPALIVE_SECONDS
        )

    def _init_transport(self, *args: Any, **kwargs: Any) -> httpx.AsyncBaseTransport:
        transport = kwargs.get("transport")
        if transport is not None:
            return transport  # type: ignore[no-any-return]
        return _Transport(verify=_context(self._options.verify), limits=self._limits())

    def _init_proxy_transport(
        self, proxy: httpx.Proxy, *args: Any, **kwargs: Any
    ) -> httpx.AsyncBaseTransport:
        if proxy.auth is not None:
            # Sent as a header: aiohttp deprecates its BasicAuth object. httpx.Proxy has taken
            # the credentials out of the URL already.
            user, password = proxy.auth
            basic = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            headers = httpx.Headers(proxy.headers)
            headers["Proxy-Authorization"] = f"Basic {basic}"
            proxy = httpx.Proxy(proxy.url, headers=headers)
        return _Transport(verify=_context(self._options.verify), limits=self._limits(), proxy=proxy)


def build_http_client(
    options: HttpOptions,
    *,
    auth: httpx.Auth | None = None,
    headers: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for one target's hosts, configured by ``options``.

    Redirects are not followed. ``transport`` (tests: ``httpx.MockTransport``) replaces the
    network, proxies included. Raises ValueError, its message free of credentials, when a proxy
    (configured or from the environment) is not a usable URL.
    """
    kwargs: dict[str, Any] = {
        "auth": auth,
        "verify": options.verify,
        "timeout": options.timeout,
        "follow_redirects": False,
        "headers": dict(headers) if headers else None,
    }
    if transport is not None:
        kwargs["transport"] = transport
    elif options.proxy == PROXY_OFF:
        # An explicit transport: httpx then reads no proxy from the environment.
        kwargs["transport"] = _Transport(
            verify=_context(options.verify),
            limits=httpx.Limits(
                max_connections=options.max_connections, keepalive_expiry=KEEPALIVE_SECONDS
            ),
        )
    elif options.proxy is not None:
        kwargs["proxy"] = options.proxy
    try:
        return _Client(options, trust_env=True, **kwargs)
    except (ValueError, TypeError, httpx.InvalidURL) as exc:
        raise ValueError(f"invalid proxy setting: {scrub(str(exc))}") from None
