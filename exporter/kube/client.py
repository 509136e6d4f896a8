"""The Kubernetes API of a CCE cluster, reached through CCE with the target's credentials.

No HTTP stack of its own: every request goes through the target's CCE client
(:func:`fetcher_for` is the one place that knows how), so authentication (AK/SK signing or IAM
token), retries, limits, TLS settings and the ``cce_exporter_api_*`` metrics are those of the
target. The base URL of a cluster's API is the configured template with ``{cluster_id}`` filled
in (default ``https://{cluster_id}.<CCE endpoint host>``).

Lists are polled (CCE's Kubernetes API keeps no long connections, so no watch) and paged:
``limit=500``, the first page with ``resourceVersion=0`` (served from the API server's watch cache
rather than etcd; such a server may answer the whole list in one page, which is fine), the next
ones with ``continue``. Paging stops at ``max_items`` objects or :data:`MAX_PAGES` pages; what is
left is reported as dropped. A ``410 Gone`` (the continue token expired between two pages) starts
the list over once.

CronJobs moved from ``batch/v1beta1`` to ``batch/v1`` (Kubernetes 1.21; v1beta1 gone in 1.25):
which one a cluster serves is discovered with ``GET /apis/batch/v1`` (and ``/v1beta1``) and
cached per cluster for :data:`DISCOVERY_TTL` seconds, or until a list answers 404.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from exporter.cce.errors import APIError, CCEError, NotFound
from exporter.cce.memo import Memo
from exporter.kube.models import KubeList, parse_api_resources, parse_list

__all__ = [
    "DISCOVERY_TTL",
    "MAX_PAGES",
    "PAGE_SIZE",
    "Fetch",
    "KubeClient",
    "Listing",
    "fetcher_for",
]

R = TypeVar("R")

PAGE_SIZE = 500
#: Pages of one list at most, whatever the server says (a server looping on continue tokens).
MAX_PAGES = 2000
DISCOVERY_TTL = 3600.0


class Fetch(Protocol):
    """A GET through the target's client: the parsed body. With ``memo``, a body identical to
    the last one of that memo is not parsed again."""

    def __call__(
        self,
        template: str,
        url: str,
        parse: Callable[[bytes], Any],
        params: dict[str, str] | None,
        memo: Memo[Any] | None = None,
    ) -> Awaitable[Any]: ...


# The templated paths (the endpoint label of the API self-metrics).
JOBS = "/apis/batch/v1/jobs"
CRONJOBS = {"v1": "/apis/batch/v1/cronjobs", "v1beta1": "/apis/batch/v1beta1/cronjobs"}
RESOURCEQUOTAS = "/api/v1/resourcequotas"
BATCH = {"v1": "/apis/batch/v1", "v1beta1": "/apis/batch/v1beta1"}

_HOST_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


class _Fetcher(Protocol):
    async def _fetch(
        self,
        template: str,
        url: str,
        parse: Callable[[bytes], Any],
        *,
        params: dict[str, str] | None = None,
        memo: Memo[Any] | None = None,
    ) -> Any: ...


def fetcher_for(client: _Fetcher) -> Fetch:
    """A :data:`Fetch` that sends through ``client`` (a :class:`~exporter.cce.client.CCEClient`).

    The only function that knows how the CCE client is asked for an arbitrary GET: when the
    client's request path changes, this is what to repoint.
    """

    async def fetch(
        template: str,
        url: str,
        parse: Callable[[bytes], Any],
        params: dict[str, str] | None,
        memo: Memo[Any] | None = None,
    ) -> Any:
        return await client._fetch(template, url, parse, params=params, memo=memo)

    return fetch


@dataclass(frozen=True, slots=True)
class Listing:
    """A whole list: the objects kept, how many were left out, and the pages it took."""

    items: tuple[Any, ...]
    dropped: int
    pages: int
    skipped: int


class KubeClient:
    """Lists Jobs, CronJobs and ResourceQuotas of clusters; see the module docstring."""

    def __init__(
        self,
        fetch: Fetch,
        endpoint_template: str,
        *,
        page_size: int = PAGE_SIZE,
        max_pages: int = MAX_PAGES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.template = endpoint_template.rstrip("/")
        self.page_size = page_size
        self.max_pages = max_pages
        self._clock = clock
        # cluster ID -> (when discovered, batch version serving cronjobs or None)
        self._cronjob_version: dict[str, tuple[float, str | None]] = {}
        # (cluster ID, path, page) -> the last answer: an unchanged page is not parsed again
        self._memos: dict[tuple[str, str, int], Memo[Any]] = {}

    def base(self, cluster_id: str) -> str:
        """The cluster's API base URL. The ID comes from the API: refused unless it is a DNS
        label, since it becomes part of a host name (a CCEError, caught at the job boundary)."""
        if not _HOST_LABEL.match(cluster_id):
            raise CCEError("the cluster ID cannot be used in the Kubernetes API host name")
        return self.template.replace("{cluster_id}", cluster_id)

    def forget(self, keep: set[str]) -> None:
        """Drop cached discoveries of clusters not in ``keep``."""
        for cluster_id in [c for c in self._cronjob_version if c not in keep]:
            del self._cronjob_version[cluster_id]
        for key in [k for k in self._memos if k[0] not in keep]:
            del self._memos[key]

    async def cronjob_version(self, cluster_id: str) -> str | None:
        """``v1`` or ``v1beta1``: the batch version serving CronJobs; None if neither does."""
        cached = self._cronjob_version.get(cluster_id)
        if cached is not None and self._clock() - cached[0] < DISCOVERY_TTL:
            return cached[1]
        found: str | None = None
        for version in ("v1", "v1beta1"):
            path = BATCH[version]
            try:
                names = await self._fetch(
                    path,
                    self.base(cluster_id) + path,
                    functools.partial(parse_api_resources, endpoint=path),
                    None,
                )
            except NotFound:
                continue
            if "cronjobs" in names:
                found = version
                break
        self._cronjob_version[cluster_id] = (self._clock(), found)
        return found

    async def list(self, cluster_id: str, kind: str, *, max_items: int) -> Listing:
        """Every object of ``kind`` in the cluster, at most ``max_items`` of them."""
        if kind == "jobs":
            path = JOBS
        elif kind == "resourcequotas":
            path = RESOURCEQUOTAS
        elif kind == "cronjobs":
            version = await self.cronjob_version(cluster_id)
            if version is None:
                return Listing((), 0, 0, 0)
            path = CRONJOBS[version]
        else:
            raise ValueError(f"unknown kind {kind}")
        try:
            return await self._pages(cluster_id, kind, path, max_items)
        except NotFound:
            if kind == "cronjobs":
                # The cluster was upgraded past the version we knew: discover again next time.
                self._cronjob_version.pop(cluster_id, None)
            raise

    async def _pages(self, cluster_id: str, kind: str, path: str, max_items: int) -> Listing:
        url = self.base(cluster_id) + path

        def parse(content: bytes) -> KubeList:
            return parse_list(kind, content, endpoint=path, max_items=max_items)

        restarted = False
        while True:
            items: list[Any] = []
            skipped = 0
            pages = 0
            params: dict[str, str] = {"limit": str(self.page_size), "resourceVersion": "0"}
            try:
                while True:
                    memo = self._memos.get((cluster_id, path, pages))
                    if memo is None:
                        memo = self._memos[(cluster_id, path, pages)] = Memo()
                    page: KubeList = await self._fetch(path, url, parse, params, memo)
                    pages += 1
                    skipped += page.skipped
                    room = max_items - len(items)
                    items.extend(page.items[:room])
                    over = max(0, len(page.items) - room) + page.unparsed
                    if page.continue_token is None:
                        return Listing(tuple(items), over, pages, skipped)
                    if over or len(items) >= max_items or pages >= self.max_pages:
                        # The rest is not fetched: counted from what the server says is left.
                        return Listing(tuple(items), over + (page.remaining or 0), pages, skipped)
                    params = {"limit": str(self.page_size), "continue": page.continue_token}
            except APIError as exc:
                if exc.status_code == 410 and not restarted:
                    restarted = True  # the continue token expired: once more from the start
                    continue
                raise
