"""The client's retry rules at their edges: which failures are final, and how long it waits."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from exporter.cce.client import CCEClient, _tls_failure
from exporter.cce.errors import RequestTimeout, ResponseParseError, ServerError
from tests.test_client import clock as clock  # the fixtures
from tests.test_client import make_client as make_client
from tests.test_client import registry as registry
from tests.test_client import sample


def _chained(cause: BaseException) -> httpx.ConnectError:
    """An httpx error raised ``from cause``."""
    try:
        raise httpx.ConnectError("connect failed") from cause
    except httpx.ConnectError as outer:
        return outer


def test_a_refused_certificate_is_found_however_it_was_chained() -> None:
    refused = ssl.SSLCertVerificationError(1, "certificate verify failed")
    assert _tls_failure(_chained(refused))
    # Raised while handling it, without "from": only the implicit context links them.
    try:
        try:
            raise refused
        except ssl.SSLError:
            raise httpx.ConnectError("connect failed")  # noqa: B904
    except httpx.ConnectError as implicit:
        assert implicit.__cause__ is None and implicit.__context__ is refused
        assert _tls_failure(implicit)
    # Other TLS failures (a handshake cut short) stay retryable.
    assert not _tls_failure(_chained(ssl.SSLEOFError(8, "EOF")))


def test_a_chain_that_loops_ends() -> None:
    first, second = ValueError("first"), ValueError("second")
    first.__context__, second.__context__ = second, first
    assert not _tls_failure(first)


async def test_a_retry_with_under_a_second_left_gets_only_that_second(
    make_client: Callable[..., CCEClient],
) -> None:
    timeouts: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"]["read"])
        if len(timeouts) == 1:
            return httpx.Response(503)
        await asyncio.sleep(5)  # an answer that comes after the time left
        return httpx.Response(200, content=b'{"quotas": []}')

    options = {"timeout": 10, "backoff_base": 4, "retry_deadline": 4.5, "max_retries": 1}
    async with make_client(handler, **options) as client:
        # After the 4 s wait, 0.5 s of the 4.5 s deadline are left: for each silence and for the
        # whole exchange.
        with pytest.raises(RequestTimeout, match=r"within the 0\.5s request deadline"):
            await client.get_quotas()
    assert timeouts == [10, 0.5]


QUOTAS = "/api/v3/projects/{project_id}/quotas"


async def test_a_first_attempt_has_the_whole_request_deadline_even_past_the_retry_deadline(
    make_client: Callable[..., CCEClient],
) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.5)  # slower than the retry deadline, well within the request's
        return httpx.Response(200, content=b'{"quotas": []}')

    async with make_client(handler, retry_deadline=0.1, request_deadline=30) as client:
        assert await client.get_quotas() == []


async def test_a_redirect_of_any_3xx_is_an_error_naming_the_endpoint(
    make_client: Callable[..., CCEClient],
) -> None:
    async with make_client(lambda request: httpx.Response(300)) as client:
        with pytest.raises(ResponseParseError) as caught:
            await client.get_quotas()
    assert caught.value.endpoint == QUOTAS
    assert str(caught.value) == (
        f"unexpected HTTP 300 from GET (redirects are not followed) (endpoint {QUOTAS})"
    )


async def test_a_request_that_never_left_in_time_is_retried_as_a_timeout(
    make_client: Callable[..., CCEClient], registry: Any
) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ConnectTimeout("connect timed out", request=request)
        return httpx.Response(200, content=b'{"quotas": []}')

    async with make_client(handler, backoff_base=1) as client:
        assert await client.get_quotas() == []
    retries = "cce_exporter_api_retries_total"
    assert sample(registry, retries, endpoint=QUOTAS, reason="timeout") == 1
    assert sample(registry, retries, endpoint=QUOTAS, reason="connection_error") == 0


async def test_no_retry_whose_wait_ends_exactly_at_the_deadline(
    make_client: Callable[..., CCEClient],
) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503)

    async with make_client(handler, backoff_base=4, backoff_cap=4, retry_deadline=4) as client:
        with pytest.raises(ServerError):
            await client.get_quotas()
    assert len(calls) == 1
