"""The base of the auth classes whose credential is fetched over HTTP and refreshed.

:class:`~exporter.cce.auth.PasswordAuth`, :class:`~exporter.cce.auth.AssumeAgencyAuth` (IAM
tokens) and :class:`~exporter.cce.agency.AgencyAuth` (the metadata service's temporary keys)
share it: async clients only, one fetch at a time, every (re)load reported to ``on_refresh``, and
an HTTP client of their own that :meth:`aclose` closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator

import httpx

from exporter.cce.aksk import RefreshCallback

__all__ = ["RefreshingAuth"]


class RefreshingAuth(httpx.Auth):
    """A credential fetched with a client of its own and refreshed; ``httpx.AsyncClient`` only."""

    requires_request_body = True  # the request is sent a second time after a 401

    def __init__(self, on_refresh: RefreshCallback | None) -> None:
        self._on_refresh = on_refresh
        self._lock: asyncio.Lock | None = None
        self._client: httpx.AsyncClient | None = None

    async def aclose(self) -> None:
        """Close the auth's own client (a new one is created if the auth is used again)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError(f"{type(self).__name__} needs httpx.AsyncClient")
        yield request  # pragma: no cover - makes this a generator, as httpx expects

    def _get_lock(self) -> asyncio.Lock:
        # Created on first use, inside the event loop that uses it.
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _report(self, outcome: str) -> None:
        if self._on_refresh is not None:
            self._on_refresh(outcome)
