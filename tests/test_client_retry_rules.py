"""The client's retry rules at their edges: which failures are final, and how long it waits."""

from __future__ import annotations

import ssl

import httpx

from exporter.cce.client import _tls_failure


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
