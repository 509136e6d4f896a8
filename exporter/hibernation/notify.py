"""Outgoing notifications: a JSON POST to each configured webhook before and after every action.

Fire and forget, on purpose: one attempt per receiver with a short timeout, at most ``max_pending``
deliveries in flight (more are dropped and logged, so a dead receiver cannot pile up tasks), and no
retry, so a failing receiver never delays, blocks or fails the action it reports on. The body is
the event the controller passes (cluster, action, phase, result, reason) and nothing secret.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from exporter import __version__

log = logging.getLogger(__name__)

__all__ = ["Notifier", "action_event"]


def action_event(
    when: str,
    ident: tuple[str, str],
    cluster: str,
    action: str,
    result: str,
    reason: str,
    source: str,
) -> dict[str, Any]:
    """The body of a notification ``when`` (``before``/``after``) an action; the sender adds
    ``at`` (RFC 3339)."""
    return {
        "event": f"{action}.{when}",
        "target": ident[0],
        "cluster_id": ident[1],
        "cluster": cluster,
        "action": action,
        "result": result,
        "reason": reason,
        "source": source,
    }


class Notifier:
    """Posts events to webhooks in the background; :meth:`notify` never raises or waits."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout: float = 5.0,
        max_pending: int = 32,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.urls = list(urls)
        self.timeout = timeout
        self.max_pending = max_pending
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    def notify(self, event: Mapping[str, Any]) -> None:
        for url in self.urls:
            if len(self._tasks) >= self.max_pending:
                self.dropped += 1
                log.warning(
                    "notification to %s dropped: %d deliveries still pending",
                    urlsplit(url).netloc,
                    len(self._tasks),
                )
                continue
            task = asyncio.get_running_loop().create_task(self._send(url, dict(event)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, url: str, body: dict[str, Any]) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.timeout,
                transport=self._transport,
                follow_redirects=False,
                headers={"User-Agent": f"cce-exporter/{__version__}"},
            )
        host = urlsplit(url).netloc  # never the full URL: it may carry a secret path or query
        try:
            response = await self._client.post(url, json=body)
        except httpx.HTTPError as exc:
            self.failed += 1
            log.warning("notification to %s failed: %s", host, type(exc).__name__)
            return
        if response.status_code >= 400:
            self.failed += 1
            log.warning("notification to %s answered HTTP %d", host, response.status_code)
        else:
            self.sent += 1

    async def drain(self) -> None:
        """Wait for the deliveries in flight (each is bounded by the timeout)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        await self.drain()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
