"""CCETransport: one logical call to CCE or IAM, with the policies every call shares.

The typed methods of :class:`~exporter.cce.client.CCEClient` go through
:meth:`CCETransport._send`, which owns the policies below.

Retries
    Retried, with exponential backoff and full jitter (``uniform(0, min(cap, base * 2**n))``):
    429 (waiting ``Retry-After`` when the server sends it), 408, 502, 503, 504, timeouts and
    connection errors. The reference (3.2) advises against retrying 503; this client retries it
    anyway, but only after the backoff, because in practice 503 is what gateways answer while a
    backend restarts. Never retried: every other 4xx (400, 401, 403, 404, 409...), 500 and 501
    (the add-on manager answers 500 for persistent faults), refused certificates.
    Retries are bounded twice: at most ``max_retries`` after the first attempt, and never past
    ``retry_deadline`` seconds after the call started (a wait, ``Retry-After`` included, that
    would end past the deadline is not started: the last error is raised instead; each attempt's
    timeout is also cut to the time left).

    ``hibernate`` and ``awake`` are POSTs and not idempotent: they are retried only on 429 and on
    errors that prove the request never left (connect errors and connect/pool timeouts), never on
    read timeouts or 5xx answers after the request was sent.

Bounds on each answer
    Every attempt runs under a total deadline, ``request_deadline`` (connect, send, the auth
    flow with its IAM token request, and every byte of the answer), apart from ``timeout``,
    which bounds each silence: a server that trickles one byte a second is cut off at the
    deadline (:class:`~exporter.cce.errors.RequestTimeout`, retried like a timeout). The answer
    is read as raw bytes and decoded here, not by the transport: at most
    ``max_response_bytes`` raw, and a ``gzip``/``deflate`` body is inflated step by step and
    refused (:class:`~exporter.cce.errors.ResponseParseError`, not retried) as soon as it passes
    ``max_response_bytes`` (see :func:`exporter.limits.inflate`); large compressed bodies are
    inflated in a worker thread. A list answer with one unreadable object (a lone surrogate in
    a name, a value of the wrong type) loses that object only (:mod:`exporter.cce.salvage`).

Limits
    ``concurrency`` requests in flight at most, and ``requests_per_second`` (a token bucket with a
    one-second burst) when set; both shared by every call of the client. A call waiting for its
    backoff holds no concurrency slot.

Errors (see :mod:`exporter.cce.errors`)
    HTTP >= 400 -> the matching :class:`~exporter.cce.errors.APIError` with the templated
    endpoint and the request ID; a body that is not the expected JSON ->
    :class:`~exporter.cce.errors.ResponseParseError`; a timeout ->
    :class:`~exporter.cce.errors.RequestTimeout`; any other failure to get an answer ->
    :class:`~exporter.cce.errors.TransportError`. Messages and logs never carry headers, bodies,
    tokens or signatures.

Metrics and logs
    Every attempt is counted in :class:`~exporter.cce.instrumentation.ApiMetrics` under its
    templated endpoint, and logged at DEBUG (method, templated endpoint, status, duration,
    request ID).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import httpx
from prometheus_client import CollectorRegistry

from exporter import __version__
from exporter.cce.bodies import read_body
from exporter.cce.endpoints import (
    _normalize_base,
    _parsed_url,
)
from exporter.cce.errors import (
    REQUEST_ID_HEADERS,
    CCEError,
    RateLimited,
    RequestTimeout,
    ResponseParseError,
    TransportError,
    error_from_response,
)
from exporter.cce.http import HttpOptions, build_http_client, scrub, tls_verify
from exporter.cce.instrumentation import ApiMetrics
from exporter.cce.ratelimit import Clock, Sleep, TokenBucket
from exporter.limits import CompressedBodyError

# The client's logger name, as before this module was split off the client: log settings name it.
log = logging.getLogger("exporter.cce.client")

#: Default total deadline of one attempt, and default cap on an answer's (decoded) size.
DEFAULT_REQUEST_DEADLINE = 30.0
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024


#: Statuses retried for idempotent calls (see the module docstring for 503 and 500).
RETRY_STATUSES: frozenset[int] = frozenset({408, 429, 502, 503, 504})


def _request_id(headers: httpx.Headers) -> str | None:
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return str(value)[:128]
    return None


def _tls_failure(exc: BaseException) -> bool:
    """Whether an httpx error was caused by a refused certificate (other TLS errors, such as a
    handshake cut short, can be transient and stay retryable)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ssl.SSLCertVerificationError):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


class CCETransport:
    """The HTTP side of :class:`~exporter.cce.client.CCEClient`: hosts, connection, limits,
    retries, metrics and error mapping (the constructor is documented there)."""

    def __init__(
        self,
        endpoint: str,
        auth: httpx.Auth,
        project_id: str,
        *,
        addon_endpoint: str | None = None,
        iam_endpoint: str | None = None,
        ca_file: Path | None = None,
        insecure_skip_verify: bool = False,
        proxy: str | None = None,
        http: HttpOptions | None = None,
        timeout: float = 10,
        request_deadline: float = DEFAULT_REQUEST_DEADLINE,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_retries: int = 3,
        retry_deadline: float = 30,
        backoff_base: float = 0.5,
        backoff_cap: float = 10,
        concurrency: int = 8,
        requests_per_second: float | None = None,
        metrics: ApiMetrics | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if max_retries < 0:
            raise ValueError("max_retries must not be negative")
        self.endpoint = _normalize_base(endpoint)
        #: An explicit add-on endpoint is the only one used; None means "try both layouts".
        self.addon_endpoint: str | None = (
            _normalize_base(addon_endpoint) if addon_endpoint else None
        )
        #: The layout that answered (the explicit endpoint, or the one found): a URL template.
        self._addon_base_found: str | None = self.addon_endpoint
        # Without an IAM endpoint, IAM calls go to the CCE endpoint (one host serving both, as
        # the auth layer assumes too).
        self.iam_endpoint = _normalize_base(iam_endpoint) if iam_endpoint else self.endpoint
        self.project_id = project_id
        self.timeout = timeout
        self.request_deadline = request_deadline
        self.max_response_bytes = max_response_bytes
        self.max_retries = max_retries
        self.retry_deadline = retry_deadline
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.metrics = metrics if metrics is not None else ApiMetrics(CollectorRegistry())
        self._clock = clock
        self._sleep = sleep
        self._random = rng
        self._slots = asyncio.Semaphore(concurrency)
        self._bucket = (
            TokenBucket(requests_per_second, requests_per_second, clock=clock, sleep=sleep)
            if requests_per_second
            else None
        )
        self._auth = auth
        self.http_options = self._options(http, ca_file, insecure_skip_verify, proxy, concurrency)
        self._http = build_http_client(
            self.http_options,
            auth=auth,
            transport=transport,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                # Decoded here, under a size cap (exporter.cce.bodies.read_body).
                "Accept-Encoding": "gzip, deflate",
                "User-Agent": f"cce-exporter/{__version__}",
            },
        )

    def _options(
        self,
        http: HttpOptions | None,
        ca_file: Path | None,
        insecure_skip_verify: bool,
        proxy: str | None,
        concurrency: int,
    ) -> HttpOptions:
        """The connection settings: ``http`` when given, else built from the other four."""
        if http is None:
            http = HttpOptions(
                timeout=self.timeout,
                verify=tls_verify(ca_file, insecure_skip_verify),
                proxy=proxy,
                max_connections=concurrency,
            )
        if http.verify is False:
            log.warning(
                "TLS certificate verification is disabled for %s: the API's identity is not "
                "checked, and credentials could be sent to an impostor",
                urlsplit(self.endpoint).netloc,
            )
        return http

    def credentials_in_use(self) -> str:
        """Which credentials the client signs or authenticates with, and when temporary ones
        expire (no secret)."""
        from exporter.cce.auth import describe_credentials

        return describe_credentials(self._auth)

    def __repr__(self) -> str:
        # The auth object is deliberately left out: it holds the credentials.
        return f"{type(self).__name__}(endpoint={self.endpoint!r}, project_id={self.project_id!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool, and the auth's own resources (PasswordAuth's IAM client):
        the client owns the auth it was given."""
        await self._http.aclose()
        close = getattr(self._auth, "aclose", None)
        if close is not None:
            await close()

    def _backoff(self, retry: int) -> float:
        """Full jitter: uniform in ``[0, min(cap, base * 2**(retry-1))]``."""
        return float(self._random() * min(self.backoff_cap, self.backoff_base * 2 ** (retry - 1)))

    async def _send(
        self,
        method: str,
        template: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        idempotent: bool,
    ) -> httpx.Response:
        """One logical call: attempts, retries, limits, metrics and error mapping."""
        deadline = self._clock() + self.retry_deadline
        retries = 0
        while True:
            left = deadline - self._clock()
            timeout = min(self.timeout, left) if retries and left > 0 else self.timeout
            total = (
                min(self.request_deadline, left) if retries and left > 0 else self.request_deadline
            )
            outcome = await self._attempt(method, template, url, params, timeout, total)
            error: CCEError
            reason: str
            wait: float | None = None
            if isinstance(outcome, httpx.Response):
                status = outcome.status_code
                if status < 300:
                    return outcome
                if status < 400:
                    raise ResponseParseError(
                        f"unexpected HTTP {status} from {method} (redirects are not followed)",
                        endpoint=template,
                    )
                error = error_from_response(
                    status, outcome.content, outcome.headers, method=method, endpoint=template
                )
                reason = str(status)
                retryable = status in RETRY_STATUSES and (idempotent or status == 429)
                if isinstance(error, RateLimited):
                    wait = error.retry_after
            else:
                error, reason, retryable = outcome
                retryable = retryable and (idempotent or reason == "not_sent")
                if reason == "not_sent":
                    reason = "timeout" if isinstance(error, RequestTimeout) else "connection_error"
            if not retryable or retries >= self.max_retries:
                raise error
            retries += 1
            if wait is None:
                wait = self._backoff(retries)
            if self._clock() + wait >= deadline:
                log.debug(
                    "%s %s: not retrying, a %.2fs wait would pass the %.0fs deadline",
                    method,
                    template,
                    wait,
                    self.retry_deadline,
                )
                raise error
            self.metrics.retry(template, reason)
            log.debug(
                "%s %s: retry %d/%d in %.2fs (%s)",
                method,
                template,
                retries,
                self.max_retries,
                wait,
                reason,
            )
            # No concurrency slot is held here: _attempt released it.
            await self._sleep(wait)

    async def _attempt(
        self,
        method: str,
        template: str,
        url: str,
        params: dict[str, str] | None,
        attempt_timeout: float,
        attempt_deadline: float,
    ) -> httpx.Response | tuple[CCEError, str, bool]:
        """One HTTP exchange under the limits; a response, or ``(error, reason, retryable)``.

        ``reason`` is ``not_sent`` when the request provably never left (connect failures), which
        makes even a non-idempotent call safe to retry. The whole exchange, the auth flow and
        every byte of the answer included, ends within ``attempt_deadline`` seconds.
        """
        async with self._slots:
            if self._bucket is not None:
                await self._bucket.acquire()
            start = self._clock()
            try:
                async with asyncio.timeout(attempt_deadline):
                    request = self._http.build_request(
                        method, _parsed_url(url), params=params, timeout=attempt_timeout
                    )
                    response = await self._http.send(request, stream=True)
                    try:
                        await read_body(response, self.max_response_bytes)
                    finally:
                        await response.aclose()
            except TimeoutError:
                # The total deadline (asyncio.timeout); the request may have been sent.
                self._record(method, template, "timeout", start, None)
                error: CCEError = RequestTimeout(
                    f"{method} {template}: no complete answer within the "
                    f"{attempt_deadline:g}s request deadline"
                )
                return error, "timeout", True
            except httpx.TimeoutException as exc:
                self._record(method, template, "timeout", start, None)
                not_sent = isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
                error = RequestTimeout(
                    f"{method} {template}: {type(exc).__name__} after {attempt_timeout:g}s"
                )
                return error, "not_sent" if not_sent else "timeout", True
            except httpx.TransportError as exc:
                self._record(method, template, "connection_error", start, None)
                if _tls_failure(exc):
                    # A certificate problem does not go away by asking again.
                    error = TransportError(
                        f"{method} {template}: TLS certificate verification failed: "
                        + scrub(str(exc))
                    )
                    return error, "tls", False
                not_sent = isinstance(exc, httpx.ConnectError)
                error = TransportError(
                    f"{method} {template}: {type(exc).__name__}: {scrub(str(exc))}"
                )
                return error, "not_sent" if not_sent else "connection_error", True
            except CompressedBodyError as exc:
                # The server answered: counted under its status. Asking again gets the same body.
                self._record(method, template, response.status_code, start, response)
                return ResponseParseError(f"{method}: {exc}", endpoint=template), "body", False
            except CCEError:
                # Raised by the auth flow (IAM refused the password, token file unreadable...):
                # the auth layer already did its one retry.
                self._record(method, template, "auth_error", start, None)
                raise
            # httpx's response and its body stream refer to each other: a reference cycle per
            # request. The body is read already; dropping the stream breaks the cycle, so the
            # response is freed as soon as it is used rather than by the cyclic collector.
            response.stream = httpx.ByteStream(b"")
            self._record(method, template, response.status_code, start, response)
            return response

    def _record(
        self,
        method: str,
        template: str,
        code: int | str,
        start: float,
        response: httpx.Response | None,
    ) -> None:
        seconds = self._clock() - start
        self.metrics.observe(template, method, code, seconds)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s %s -> %s in %.3fs (request id %s)",
                method,
                template,
                code,
                seconds,
                _request_id(response.headers) if response is not None else None,
            )
