"""CCEClient: the typed async client of the CCE v3 and IAM APIs.

One client talks to one target (one project in one region) and returns models from
:mod:`exporter.cce.models`, never dicts. Every call goes through :meth:`CCEClient._send`, which
owns the policies below; the typed methods only build paths and parse bodies.

Hosts (API reference 1.1, and the SDK)
    Cluster management, jobs and quotas use ``endpoint``. Add-ons use ``addon_endpoint`` when it
    is given, a template that may contain ``{cluster_id}``. Without it both layouts are tried:
    the SDK's (``ListAddonInstances``: ``{endpoint}/api/v3/addons?cluster_id=...``, the public
    cloud) first, then the Stack reference's per-cluster host
    ``https://{cluster_id}.<endpoint host>`` on a 404 or a connection error; the layout that
    answered is remembered for the client's life (one target). IAM uses ``iam_endpoint``, or
    ``endpoint`` when it is not set.

Paging (the SDK's ``ListNodesRequest`` and ``NodePageInfo``)
    Node lists come in pages of at most 2,000 nodes on the public cloud. The first request is
    sent without ``limit`` or ``marker``; while an answer carries ``pageInfo.nextMarker`` the next
    page is asked with ``marker``. A marker seen twice, or more than :data:`MAX_NODE_PAGES` pages,
    raise :class:`~exporter.cce.errors.PagingError`. A list of one page costs one request.

Upgrades (the SDK's ``ShowClusterUpgradeInfo`` and ``ListAddonTemplates``)
    :meth:`CCEClient.get_upgrade_targets` and :meth:`CCEClient.list_addon_templates`; the
    collector asks them on their own slow interval.

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
import concurrent.futures
import functools
import json
import logging
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from exporter import __version__
from exporter.cce.errors import (
    REQUEST_ID_HEADERS,
    CCEError,
    NotFound,
    PagingError,
    RateLimited,
    RequestTimeout,
    ResponseParseError,
    TransportError,
    error_from_response,
)
from exporter.cce.http import HttpOptions, build_http_client, scrub, tls_verify
from exporter.cce.instrumentation import ApiMetrics
from exporter.cce.memo import Memo, body_digest
from exporter.cce.models import (
    Addon,
    AddonList,
    AddonTemplate,
    AddonTemplateList,
    Cluster,
    ClusterList,
    Job,
    Node,
    NodeList,
    NodePool,
    NodePoolList,
    NodeSummary,
    Project,
    ProjectList,
    Quota,
    QuotaList,
    UpgradeInfo,
    extract_job_id,
    page_marker,
    parse_node_page,
    parse_node_summaries,
    parse_response,
)
from exporter.cce.salvage import salvage_list
from exporter.limits import CompressedBodyError, inflate

log = logging.getLogger(__name__)

#: Responses at least this large are parsed in a worker thread, so that the event loop keeps
#: serving scrapes and other targets' calls (a 200-node list is about 140 kB).
THREAD_PARSE_BYTES = 64 * 1024

#: The one thread large responses are parsed in. One, not a pool: parsing holds the GIL, and
#: the event loop gets the interpreter back from one other runnable thread half the time, but
#: from six only a seventh of it (measured at 500 clusters: node lists waited ~150 ms to be read
#: instead of ~60, while six parses took turns).
_PARSER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="cce-parse")
#: The one thread large compressed answers are inflated in (zlib releases the GIL meanwhile).
_INFLATER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="cce-inflate")

#: Compressed bodies at least this large are inflated in a worker thread: gzip inflates up to a
#: thousandfold, so 8 kB may be 8 MB of output.
THREAD_INFLATE_BYTES = 8 * 1024

#: Default total deadline of one attempt, and default cap on an answer's (decoded) size.
DEFAULT_REQUEST_DEADLINE = 30.0
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")

# Templated paths: the only form an endpoint takes in metrics, logs and errors.
CLUSTERS = "/api/v3/projects/{project_id}/clusters"
CLUSTER = "/api/v3/projects/{project_id}/clusters/{cluster_id}"
HIBERNATE = "/api/v3/projects/{project_id}/clusters/{cluster_id}/operation/hibernate"
AWAKE = "/api/v3/projects/{project_id}/clusters/{cluster_id}/operation/awake"
NODES = "/api/v3/projects/{project_id}/clusters/{cluster_id}/nodes"
NODEPOOLS = "/api/v3/projects/{project_id}/clusters/{cluster_id}/nodepools"
JOB = "/api/v3/projects/{project_id}/jobs/{job_id}"
QUOTAS = "/api/v3/projects/{project_id}/quotas"
ADDONS = "/api/v3/addons"
ADDON_TEMPLATES = "/api/v3/addontemplates"
UPGRADEINFO = "/api/v3/projects/{project_id}/clusters/{cluster_id}/upgradeinfo"
PROJECTS = "/v3/projects"

#: Pages of one node list followed at most (2,000 nodes a page on the public cloud: 100,000).
MAX_NODE_PAGES = 50

#: Statuses retried for idempotent calls (see the module docstring for 503 and 500).
RETRY_STATUSES: frozenset[int] = frozenset({408, 429, 502, 503, 504})

#: List endpoints whose answers are salvaged object by object when the whole list cannot be read.
_LIST_ITEMS: dict[str, type[BaseModel]] = {
    CLUSTERS: Cluster,
    NODES: Node,
    NODEPOOLS: NodePool,
    ADDONS: Addon,
}

# A cluster ID becomes a DNS label in the add-on host name; refuse anything that is not one.
_HOST_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def _normalize_base(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "https://" + url
    return url


def default_addon_endpoint(endpoint: str) -> str:
    """``https://{cluster_id}.<host of endpoint>``, keeping the endpoint's scheme and port."""
    parts = urlsplit(_normalize_base(endpoint))
    return f"{parts.scheme}://{{cluster_id}}.{parts.netloc}"


def _path(template: str, **ids: str) -> str:
    """Fill a templated path, quoting every ID (default node-pool IDs contain ``#`` and spaces)."""
    return template.format(**{k: quote(v, safe="") for k, v in ids.items()})


@functools.lru_cache(maxsize=8192)
def _parsed_url(url: str) -> httpx.URL:
    """``httpx.URL(url)``, cached: httpx checks every character of a URL in Python (~60 us), and
    a cycle requests the same node, pool, add-on and job URLs as the one before."""
    return httpx.URL(url)


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


class TokenBucket:
    """A token bucket: ``rate`` tokens a second, at most ``burst`` saved up.

    Waiters are served one at a time, in arrival order (the lock is held while waiting).
    """

    def __init__(self, rate: float, burst: float, *, clock: Clock, sleep: Sleep) -> None:
        if rate <= 0:
            raise ValueError("requests_per_second must be positive")
        self.rate = rate
        self.burst = max(1.0, burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await self._sleep((1.0 - self._tokens) / self.rate)


class CCEClient:
    """Typed async client of one CCE target; use as ``async with CCEClient(...) as client``.

    ``list_clusters`` lists the project's clusters as the list endpoint returns them (it takes no
    query parameters); ``get_cluster`` fetches one with ``detail=true`` (node-count annotations)
    and ``errorStatus`` set, so that an ``Error`` cluster is not reported as ``Deleting``.

    ``ca_file`` replaces the system trust store with that bundle; ``insecure_skip_verify``
    disables verification (and logs a WARNING once). ``proxy``: ``None`` follows the proxy
    environment variables, a URL sends every call through that proxy, ``"none"`` goes direct (see
    :mod:`exporter.cce.http`, which builds the HTTP client); ``http``, when given, replaces these
    four and ``concurrency`` as the connection settings. ``transport``, ``clock``, ``sleep`` and
    ``rng`` (the jitter source) exist for tests.
    """

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
        if http is None:
            http = HttpOptions(
                timeout=timeout,
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
        self.http_options = http
        self._auth = auth
        self._http = build_http_client(
            self.http_options,
            auth=auth,
            transport=transport,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                # Decoded by the client itself, under a size cap (see _read_body).
                "Accept-Encoding": "gzip, deflate",
                "User-Agent": f"cce-exporter/{__version__}",
            },
        )

    def credentials_in_use(self) -> str:
        """Which credentials the client signs or authenticates with, and when temporary ones
        expire (no secret)."""
        from exporter.cce.auth import describe_credentials

        return describe_credentials(self._auth)

    def __repr__(self) -> str:
        # The auth object is deliberately left out: it holds the credentials.
        return f"CCEClient(endpoint={self.endpoint!r}, project_id={self.project_id!r})"

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

    # --- typed methods ------------------------------------------------------------------------

    async def list_clusters(self) -> list[Cluster]:
        """All clusters of the project (``GET .../clusters``; the endpoint takes no parameters)."""
        url = self.endpoint + _path(CLUSTERS, project_id=self.project_id)
        return (await self._get(ClusterList, CLUSTERS, url)).items

    async def get_cluster(
        self, cluster_id: str, *, detail: bool = True, error_status: bool = True
    ) -> Cluster:
        """One cluster; ``detail`` asks for the node-count annotations, ``error_status`` for the
        real ``Error`` phase (without it the API may report an errored cluster as ``Deleting``)."""
        url = self.endpoint + _path(CLUSTER, project_id=self.project_id, cluster_id=cluster_id)
        params: dict[str, str] = {}
        if detail:
            params["detail"] = "true"
        if error_status:
            params["errorStatus"] = "true"
        return await self._get(Cluster, CLUSTER, url, params=params)

    async def list_nodes(self, cluster_id: str) -> list[Node]:
        """All nodes of a cluster, every page of them."""
        url = self.endpoint + _path(NODES, project_id=self.project_id, cluster_id=cluster_id)

        def parse(content: bytes) -> tuple[list[Node], str | None]:
            page = parse_response(NodeList, content, endpoint=NODES)
            return page.items, page_marker(page.page_info.next_marker)

        first = await self._send("GET", NODES, url, idempotent=True)
        items, marker = await self._parse(first.content, parse, template=NODES)
        return await self._more_pages(url, list(items), marker, parse)

    async def list_node_summaries(
        self, cluster_id: str, memo: Memo[list[NodeSummary]] | None = None
    ) -> list[NodeSummary]:
        """All nodes of a cluster as :class:`NodeSummary` (what the collector keeps), read
        straight from the JSON (see :func:`~exporter.cce.models.parse_node_summaries`).

        ``memo`` (here and below): the last answer of this call; an identical body is not
        parsed again (see :mod:`exporter.cce.memo`).

        Paging (today's API, SDK ``ListNodesRequest``): the first request sends neither
        ``limit`` nor ``marker`` (the server's default page, 2,000 nodes on the public cloud,
        and what a Stack installation without paging expects); while an answer carries
        ``pageInfo.nextMarker`` the next page is asked with ``marker``. A list of one page (nearly
        all) costs one request and keeps the memo; a paged list is parsed whole each time. A
        marker that repeats, or more than :data:`MAX_NODE_PAGES` pages, raises
        :class:`~exporter.cce.errors.PagingError` (the last good list is then kept)."""
        url = self.endpoint + _path(NODES, project_id=self.project_id, cluster_id=cluster_id)
        first = await self._send("GET", NODES, url, idempotent=True)
        content = first.content
        if b'"nextMarker"' not in content:

            def parse(content: bytes) -> list[NodeSummary]:
                return parse_node_summaries(content, endpoint=NODES)

            return await self._parse(content, parse, memo=memo, template=NODES)

        def parse_page(content: bytes) -> tuple[list[NodeSummary], str | None]:
            return parse_node_page(content, endpoint=NODES)

        nodes, marker = await self._parse(content, parse_page, template=NODES)
        return await self._more_pages(url, nodes, marker, parse_page)

    async def _more_pages(
        self,
        url: str,
        items: list[R],
        marker: str | None,
        parse: Callable[[bytes], tuple[list[R], str | None]],
    ) -> list[R]:
        """Follow ``marker`` through the next pages of a node list, appending to ``items``."""
        seen: set[str] = set()
        pages = 1
        while marker is not None:
            if marker in seen:
                raise PagingError("pageInfo.nextMarker repeated", endpoint=NODES)
            if pages >= MAX_NODE_PAGES:
                raise PagingError(f"more than {MAX_NODE_PAGES} pages", endpoint=NODES)
            seen.add(marker)
            pages += 1
            response = await self._send(
                "GET", NODES, url, params={"marker": marker}, idempotent=True
            )
            more, marker = await self._parse(response.content, parse, template=NODES)
            items.extend(more)
        return items

    async def list_nodepools(
        self,
        cluster_id: str,
        show_default: bool = True,
        memo: Memo[list[NodePool]] | None = None,
    ) -> list[NodePool]:
        """All node pools of a cluster, the default pool included unless ``show_default=False``."""
        url = self.endpoint + _path(NODEPOOLS, project_id=self.project_id, cluster_id=cluster_id)
        params = {"showDefaultNodePool": "true"} if show_default else None

        def parse(content: bytes) -> list[NodePool]:
            return parse_response(NodePoolList, content, endpoint=NODEPOOLS).items

        return await self._fetch(NODEPOOLS, url, parse, params=params, memo=memo)

    async def get_job(self, job_id: str, memo: Memo[Job] | None = None) -> Job:
        """One CCE job (cluster or node operation) with its sub-jobs."""
        url = self.endpoint + _path(JOB, project_id=self.project_id, job_id=job_id)

        def parse(content: bytes) -> Job:
            return parse_response(Job, content, endpoint=JOB)

        return await self._fetch(JOB, url, parse, memo=memo)

    async def list_addons(
        self, cluster_id: str, memo: Memo[list[Addon]] | None = None
    ) -> list[Addon]:
        """The add-on instances of a cluster (the cluster in the query, and in the host name on
        the per-cluster layout); see the module docstring for the two layouts."""

        def parse(content: bytes) -> list[Addon]:
            return parse_response(AddonList, content, endpoint=ADDONS).items

        response = await self._addon_get(ADDONS, cluster_id, {"cluster_id": cluster_id})
        return await self._parse(response.content, parse, memo=memo, template=ADDONS)

    async def _addon_get(
        self, template: str, cluster_id: str, params: dict[str, str]
    ) -> httpx.Response:
        """GET an add-on manager path on the layout known to work, or find that layout."""
        known = self._addon_base_found
        if known is not None:
            url = self._fill_addon_base(known, cluster_id) + template
            return await self._send("GET", template, url, params=params, idempotent=True)
        plain = self.endpoint
        try:
            response = await self._send(
                "GET", template, plain + template, params=params, idempotent=True
            )
        except (NotFound, TransportError) as exc:
            per_cluster = default_addon_endpoint(self.endpoint)
            log.info(
                "the add-on manager did not answer on %s (%s); trying %s",
                urlsplit(plain).netloc,
                type(exc).__name__,
                urlsplit(per_cluster).netloc,
            )
            url = self._fill_addon_base(per_cluster, cluster_id) + template
            response = await self._send("GET", template, url, params=params, idempotent=True)
            self._addon_base_found = per_cluster
            return response
        self._addon_base_found = plain
        return response

    async def get_upgrade_targets(self, cluster_id: str) -> list[str]:
        """The versions a cluster can be upgraded to (``GET .../upgradeinfo``, SDK
        ``ShowClusterUpgradeInfo``; a Stack installation may answer 404)."""
        url = self.endpoint + _path(UPGRADEINFO, project_id=self.project_id, cluster_id=cluster_id)
        return (await self._get(UpgradeInfo, UPGRADEINFO, url)).target_versions

    async def list_addon_templates(self, cluster_id: str) -> list[AddonTemplate]:
        """The add-on templates (SDK ``ListAddonTemplates``), on the add-on manager's layout
        (``cluster_id`` only fills a per-cluster host name; the templates are the project's)."""
        response = await self._addon_get(ADDON_TEMPLATES, cluster_id, {})
        return await self._parse(
            response.content,
            lambda content: (
                parse_response(AddonTemplateList, content, endpoint=ADDON_TEMPLATES).items
            ),
        )

    async def get_quotas(self) -> list[Quota]:
        """The project's CCE quotas."""
        url = self.endpoint + _path(QUOTAS, project_id=self.project_id)
        return (await self._get(QuotaList, QUOTAS, url)).quotas

    async def hibernate(self, cluster_id: str) -> str | None:
        """Ask CCE to hibernate a cluster; the job ID if the answer carries one (it usually
        does not: poll the cluster until its phase is ``Hibernation``)."""
        return await self._operation(HIBERNATE, cluster_id)

    async def awake(self, cluster_id: str) -> str | None:
        """Ask CCE to wake a cluster; the job ID if the answer carries one (poll for
        ``Available`` otherwise)."""
        return await self._operation(AWAKE, cluster_id)

    async def list_projects(self, name: str | None = None) -> list[Project]:
        """IAM projects visible to the credentials (``GET {iam_endpoint}/v3/projects``),
        filtered by exact name when ``name`` is given."""
        params = {"name": name} if name else None
        projects = (
            await self._get(ProjectList, PROJECTS, self.iam_endpoint + PROJECTS, params=params)
        ).projects
        # Filter again: a server that ignores the parameter must not make us pick a wrong project.
        return [p for p in projects if name is None or p.name == name]

    async def resolve_project_id(self, project_name: str) -> str:
        """The ID of the IAM project called ``project_name``; :class:`CCEError` if there is
        none or the name is ambiguous."""
        ids = {p.id for p in await self.list_projects(project_name) if p.id}
        if len(ids) != 1:
            what = "no IAM project" if not ids else f"{len(ids)} IAM projects"
            raise CCEError(f"{what} named {project_name!r} visible to these credentials")
        return ids.pop()

    @classmethod
    async def lookup_project_id(
        cls, iam_endpoint: str, auth: httpx.Auth, project_name: str, **kwargs: Any
    ) -> str:
        """:meth:`resolve_project_id` with a short-lived client, for when no client exists yet
        (``kwargs`` as for the constructor: ``ca_file``, ``timeout``, ``transport``...)."""
        async with cls(iam_endpoint, auth, "", iam_endpoint=iam_endpoint, **kwargs) as client:
            return await client.resolve_project_id(project_name)

    # --- plumbing -----------------------------------------------------------------------------

    @staticmethod
    def _fill_addon_base(base: str, cluster_id: str) -> str:
        if "{cluster_id}" not in base:
            return base
        if not _HOST_LABEL.match(cluster_id):
            # A CCEError, not a ValueError: the ID came from the API, and the collector's error
            # boundary catches CCEError.
            raise CCEError("the cluster ID cannot be used in the add-on host name")
        return base.replace("{cluster_id}", cluster_id)

    async def _get(
        self,
        model: type[M],
        template: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
    ) -> M:
        def parse(content: bytes) -> M:
            return parse_response(model, content, endpoint=template)

        return await self._fetch(template, url, parse, params=params)

    async def _fetch(
        self,
        template: str,
        url: str,
        parse: Callable[[bytes], R],
        *,
        params: dict[str, str] | None = None,
        memo: Memo[R] | None = None,
    ) -> R:
        """GET and ``parse`` the body (see :meth:`_parse`)."""
        response = await self._send("GET", template, url, params=params, idempotent=True)
        return await self._parse(response.content, parse, memo=memo, template=template)

    async def _parse(
        self,
        content: bytes,
        parse: Callable[[bytes], R],
        *,
        memo: Memo[R] | None = None,
        template: str | None = None,
    ) -> R:
        """``parse`` a body: in a worker thread when it is large, so that the event loop keeps
        serving scrapes and other calls meanwhile. With ``memo``, a body identical to the last
        one is not parsed again. ``template``: the endpoint, for a list whose bad objects are
        dropped rather than failing it whole."""
        digest = None
        if memo is not None:
            digest = body_digest(content)
            known = memo.recall(digest)
            if known is not None:
                return known
        item_model = _LIST_ITEMS.get(template) if template is not None else None
        if item_model is not None and template is not None:
            strict = parse

            def parse(content: bytes) -> R:
                try:
                    return strict(content)
                except ResponseParseError as original:
                    # One bad object must not cost the whole list: drop it, keep the others.
                    try:
                        cleaned = salvage_list(content, item_model, endpoint=template)
                    except ResponseParseError:
                        raise original from None  # not a list with a bad object in it
                    return strict(cleaned)

        if len(content) >= THREAD_PARSE_BYTES:
            loop = asyncio.get_running_loop()
            value = await loop.run_in_executor(_PARSER, parse, content)
        else:
            value = parse(content)
        if memo is not None and digest is not None:
            value = memo.keep(digest, value)
        return value

    async def _operation(self, template: str, cluster_id: str) -> str | None:
        url = self.endpoint + _path(template, project_id=self.project_id, cluster_id=cluster_id)
        response = await self._send("POST", template, url, idempotent=False)
        if not response.content.strip():
            return None
        try:
            data = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            # The API documents no body here; one we cannot read carries no job ID for us.
            return None
        return extract_job_id(data)

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
                        await self._read_body(response)
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

    async def _read_body(self, response: httpx.Response) -> None:
        """Read the raw answer (at most ``max_response_bytes``) and decode its
        ``Content-Encoding`` here, under the same cap; the result becomes ``response.content``.

        Raises :class:`CompressedBodyError` for a body past the cap, corrupt or in a coding
        not asked for."""
        limit = self.max_response_bytes
        if response.is_stream_consumed:
            # Handed over read already (test transports): nothing is left to bound or decode.
            if len(response.content) > limit:
                raise CompressedBodyError(
                    f"the answer is larger than {limit} bytes; refused", too_large=True
                )
            return
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > limit:
                raise CompressedBodyError(
                    f"the answer is larger than {limit} bytes; refused", too_large=True
                )
            chunks.append(chunk)
        raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        coding = response.headers.get("content-encoding", "").strip().lower()
        if coding in ("", "identity") or not raw:
            body = raw
        elif len(raw) >= THREAD_INFLATE_BYTES:
            # A large compressed body is inflated off the event loop: scrapes and health checks
            # keep being served meanwhile.
            loop = asyncio.get_running_loop()
            body = await loop.run_in_executor(_INFLATER, inflate, raw, coding, limit)
        else:
            body = inflate(raw, coding, limit)
        response._content = body

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


__all__ = [
    "ADDONS",
    "ADDON_TEMPLATES",
    "AWAKE",
    "CLUSTER",
    "CLUSTERS",
    "HIBERNATE",
    "JOB",
    "NODEPOOLS",
    "NODES",
    "PROJECTS",
    "QUOTAS",
    "RETRY_STATUSES",
    "UPGRADEINFO",
    "CCEClient",
    "TokenBucket",
    "default_addon_endpoint",
]
