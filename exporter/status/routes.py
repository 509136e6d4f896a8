"""The console's routes: ``GET /``, ``GET /cluster?target=T&id=ID`` and ``GET /status.json``.

Query parameters (all optional, bounded, and only ever echoed escaped):

``phase``    a phase group (healthy, transitioning, hibernated, failing, other) or an exact phase
``q``        part of a cluster's name or ID
``refresh``  ``0`` turns the page's automatic refresh off

``/status.json`` takes ``phase`` and ``q`` too (they filter its ``clusters``).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from exporter.status.cluster_page import render_cluster
from exporter.status.html import MAX_QUERY, filter_clusters, render_status
from exporter.status.model import build_cluster_detail, build_status, to_json

__all__ = ["status_routes"]

_NO_STORE = {"Cache-Control": "no-store"}


def _param(request: Request, name: str) -> str:
    return request.query_params.get(name, "")[:MAX_QUERY]


def status_routes(source: Any) -> list[BaseRoute]:
    """Routes reading ``source`` (the exporter service) at each request."""

    async def index(request: Request) -> Response:
        model = build_status(source)
        page = render_status(
            model,
            phase=_param(request, "phase"),
            name=_param(request, "q"),
            refresh=_param(request, "refresh") != "0",
        )
        return HTMLResponse(page, headers=_NO_STORE)

    async def cluster(request: Request) -> Response:
        detail = build_cluster_detail(source, _param(request, "target"), _param(request, "id"))
        if detail is None:
            return HTMLResponse(
                "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>not found</title>"
                '</head><body><p>No such cluster (yet). <a href="./">All clusters</a></p>'
                "</body></html>\n",
                status_code=404,
                headers=_NO_STORE,
            )
        return HTMLResponse(render_cluster(detail, refresh=_param(request, "refresh") != "0"))

    async def status_json(request: Request) -> Response:
        model = build_status(source)
        data = to_json(model)
        phase, name = _param(request, "phase"), _param(request, "q")
        if phase or name:
            kept = {(c.target, c.id) for c in filter_clusters(model.clusters, phase, name)}
            data["clusters"] = [c for c in data["clusters"] if (c["target"], c["id"]) in kept]
        body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        return Response(body, media_type="application/json", headers=_NO_STORE)

    return [
        Route("/", index, methods=["GET"]),
        Route("/cluster", cluster, methods=["GET"]),
        Route("/status.json", status_json, methods=["GET"]),
    ]
