"""CCEClient: the typed async client of the CCE v3 and IAM APIs.

One client talks to one target (one project in one region) and returns models from
:mod:`exporter.cce.models`, never dicts. Every call goes through
:meth:`~exporter.cce.transport.CCETransport._send`, which owns the policies of
:mod:`exporter.cce.transport`; the typed methods only build paths and parse bodies.

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

Retries, bounds on each answer, limits, errors, metrics and logs: see
:mod:`exporter.cce.transport`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel

from exporter.cce.bodies import parse_body
from exporter.cce.endpoints import (
    _HOST_LABEL,
    ADDON_TEMPLATES,
    ADDONS,
    AWAKE,
    CLUSTER,
    CLUSTERS,
    HIBERNATE,
    JOB,
    NODEPOOLS,
    NODES,
    PROJECTS,
    QUOTAS,
    UPGRADEINFO,
    _path,
    default_addon_endpoint,
)
from exporter.cce.errors import (
    CCEError,
    NotFound,
    PagingError,
    TransportError,
)
from exporter.cce.memo import Memo
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
from exporter.cce.ratelimit import TokenBucket
from exporter.cce.transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_REQUEST_DEADLINE,
    RETRY_STATUSES,
    CCETransport,
)
from exporter.cce.transport import (
    _tls_failure as _tls_failure,
)

log = logging.getLogger(__name__)


M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")

#: Pages of one node list followed at most (2,000 nodes a page on the public cloud: 100,000).
MAX_NODE_PAGES = 50


class CCEClient(CCETransport):
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
        items, marker = await parse_body(first.content, parse, template=NODES)
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

            return await parse_body(content, parse, memo=memo, template=NODES)

        def parse_page(content: bytes) -> tuple[list[NodeSummary], str | None]:
            return parse_node_page(content, endpoint=NODES)

        nodes, marker = await parse_body(content, parse_page, template=NODES)
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
            more, marker = await parse_body(response.content, parse, template=NODES)
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
        return await parse_body(response.content, parse, memo=memo, template=ADDONS)

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
        return await parse_body(
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
        return await parse_body(response.content, parse, memo=memo, template=template)

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


__all__ = [
    "ADDONS",
    "ADDON_TEMPLATES",
    "AWAKE",
    "CLUSTER",
    "CLUSTERS",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_REQUEST_DEADLINE",
    "HIBERNATE",
    "JOB",
    "NODEPOOLS",
    "NODES",
    "PROJECTS",
    "QUOTAS",
    "RETRY_STATUSES",
    "UPGRADEINFO",
    "CCEClient",
    "CCETransport",
    "TokenBucket",
    "default_addon_endpoint",
]
