"""HTTP hooks on the exporter's server: act on clusters, set overrides, read the plan.

Routes (``build_hook_routes``; pass them to ``exporter.web.build_app(extra_routes=...)``)::

    POST   /hooks/clusters/{cluster_id}/hibernate   body (optional): {"until": RFC 3339, "reason"}
    POST   /hooks/clusters/{cluster_id}/awake       same
    POST   /hooks/clusters/{cluster_id}/skip        skip the next scheduled transition
    DELETE /hooks/clusters/{cluster_id}/override    remove an override
    GET    /hooks/plan                              JSON: governed clusters and next transitions
    POST   /hooks/alertmanager                      Alertmanager webhook (payload version 4)

Every route needs ``Authorization: Bearer <token>``. The comparison is constant-time: both sides
are hashed to equal-length SHA-256 digests and compared with ``hmac.compare_digest``, so neither
the token's content nor its length leaks through timing. With no token configured every
``/hooks/`` path answers 404, as if the feature did not exist. Each request is logged with its
route, cluster and outcome, never with the token.

Status codes: 202 an action started, 200 a dry run / override / plan, 409 refused by a safety rule
(wrong phase, not governed, conflict), 404 unknown cluster, 400 malformed body, 401 bad token,
413 body too large, 408 body not sent in time, 503 a change that could not be saved (the state
file is not writable; nothing was changed).

Bodies are bounded (:class:`HookLimits`): at most ``max_body_bytes`` (413, refused from
``Content-Length`` before reading, or as soon as the stream passes the bound), JSON nested at most
``max_json_depth`` deep (400), read within ``body_timeout`` seconds (408). ``until`` must be an
RFC 3339 instant no more than :data:`MAX_UNTIL_YEARS` years ahead (400 otherwise, never an
overflow). An Alertmanager payload is resolved against one cluster listing at most, however many
clusters it names.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from exporter.config import Settings, from_settings, setting_field
from exporter.hibernation.controller import HibernationController, Outcome, StateNotSaved
from exporter.hibernation.schedule import Action
from exporter.limits import read_capped

log = logging.getLogger(__name__)

__all__ = ["HookLimits", "build_hook_routes", "load_hook_token", "parse_rfc3339"]

#: ``until`` further ahead than this is refused: an override for centuries is a mistake.
MAX_UNTIL_YEARS = 10


@dataclass(frozen=True)
class HookLimits:
    """Bounds of hook requests (``hook_*`` settings, ``web_header_timeout`` for the body)."""

    max_body_bytes: int = setting_field("hook_max_body_bytes")
    max_json_depth: int = setting_field("hook_max_json_depth")
    body_timeout: float = setting_field("web_header_timeout")

    @classmethod
    def from_settings(cls, settings: Settings) -> HookLimits:
        return from_settings(cls, settings)


_STATUS = {
    "started": 202,
    "success": 200,
    "dry_run": 200,
    "skipped": 409,
    "failed": 502,
    "not_found": 404,
}


class _BadRequest(ValueError):
    status = 400


class _TooLarge(_BadRequest):
    status = 413


class _TooSlow(_BadRequest):
    status = 408


def _too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and dicts more than ``limit`` deep (iterative)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def load_hook_token(settings: object) -> str | None:
    """The hook token from ``settings.hook_token`` (SecretStr or str) or ``hook_token_file``;
    None when neither is set (the hooks are then off). Surrounding whitespace is ignored."""
    value = getattr(settings, "hook_token", None)
    if value is not None:
        raw = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
        return raw.strip() or None
    path = getattr(settings, "hook_token_file", None)
    if path:
        return Path(path).read_text(encoding="utf-8").strip() or None
    return None


def parse_rfc3339(value: str) -> datetime:
    """An RFC 3339 instant with an explicit offset (``Z``, ``+02:00``) as an aware UTC datetime.

    ValueError for anything else, including instants that fall outside the datetime range once
    moved to UTC (``9999-12-31T23:59:59-01:00``)."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not an RFC 3339 time (e.g. 2027-03-01T18:00:00Z)") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset (add Z or +HH:MM)")
    try:
        utc = parsed.astimezone(UTC)
        utc.timestamp()
    except (OverflowError, ValueError, OSError):
        raise ValueError(f"{value!r} is out of the supported range of times") from None
    return utc


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


class _Hooks:
    def __init__(
        self, controller: HibernationController, token: str, limits: HookLimits | None = None
    ) -> None:
        self.controller = controller
        self._digest = _digest(token)
        self.limits = limits or HookLimits()

    def __repr__(self) -> str:
        return "_Hooks(token=***)"

    def authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        ok = hmac.compare_digest(_digest(given.strip()), self._digest)
        return ok and scheme.lower() == "bearer"

    def _done(self, request: Request, status: int, body: dict[str, Any], outcome: str) -> Response:
        cluster = request.path_params.get("cluster_id", "-")
        log.log(
            logging.WARNING if status == 401 or status >= 500 else logging.INFO,
            "hook %s %s cluster=%s -> %d %s",
            request.method,
            request.url.path,
            cluster,
            status,
            outcome,
        )
        return JSONResponse(body, status_code=status)

    async def _read(self, request: Request) -> bytes:
        cap = self.limits.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.strip().isdigit() and int(declared) > cap:
            raise _TooLarge(f"the body is larger than {cap} bytes")
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                return await read_capped(
                    request.stream(),
                    cap,
                    lambda: _TooLarge(f"the body is larger than {cap} bytes"),
                )
        except TimeoutError:
            raise _TooSlow(
                f"the body was not received within {self.limits.body_timeout:g} s"
            ) from None

    async def _body(self, request: Request) -> dict[str, Any]:
        raw = await self._read(request)
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except RecursionError:
            raise _BadRequest(
                f"the body nests deeper than {self.limits.max_json_depth} levels"
            ) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise _BadRequest(f"the body is not JSON: {str(exc)[:200]}") from None
        if _too_deep(data, self.limits.max_json_depth):
            raise _BadRequest(f"the body nests deeper than {self.limits.max_json_depth} levels")
        if not isinstance(data, dict):
            raise _BadRequest("the body must be a JSON object")
        return data

    async def guarded(self, request: Request) -> Response:
        if not self.authorized(request):
            return self._done(
                request,
                401,
                {"error": "a valid bearer token is required"},
                "unauthorized",
            )
        try:
            return await self.dispatch(request)
        except _BadRequest as exc:
            return self._done(request, exc.status, {"error": str(exc)}, f"bad request: {exc}")
        except StateNotSaved as exc:
            # Not saved, so not made: a 200 would be forgotten by the next restart.
            error = f"the change could not be saved: {exc}"
            return self._done(request, 503, {"error": error}, error)

    async def dispatch(self, request: Request) -> Response:
        path = request.url.path
        if path == "/hooks/plan":
            days = request.query_params.get("days", "7")
            try:
                value = float(days)
            except ValueError:
                raise _BadRequest(f"days={days[:40]!r} is not a number") from None
            if math.isnan(value):
                raise _BadRequest("days=nan is not a number")
            horizon = min(max(value, 0.0), 366.0)
            return self._done(request, 200, self.controller.plan(horizon), "plan")
        if path == "/hooks/alertmanager":
            return await self.alertmanager(request)
        cluster_id = request.path_params["cluster_id"]
        verb = path.rsplit("/", 1)[-1]
        if verb in ("hibernate", "awake"):
            body = await self._body(request)
            until = body.get("until")
            reason = body.get("reason", "")
            if until is not None and not isinstance(until, str):
                raise _BadRequest("'until' must be an RFC 3339 string")
            if not isinstance(reason, str):
                raise _BadRequest("'reason' must be a string")
            try:
                until_dt = parse_rfc3339(until) if until else None
            except ValueError as exc:
                raise _BadRequest(str(exc)[:300]) from None
            if until_dt is not None:
                latest = datetime.now(UTC) + timedelta(days=366 * MAX_UNTIL_YEARS)
                if until_dt > latest:
                    raise _BadRequest(f"'until' is more than {MAX_UNTIL_YEARS} years ahead")
            action: Action = "hibernate" if verb == "hibernate" else "awake"
            outcome = await self.controller.request(
                cluster_id, action, until=until_dt, reason=reason, source="hook"
            )
            return self._outcome(request, outcome)
        if verb == "skip":
            if self.controller.find(cluster_id) is None:
                await self.controller.refresh()
            error = self.controller.set_override(cluster_id, None, None, "skip requested by hook")
            if error:
                status = 404 if "not known" in error else 409
                return self._done(request, status, {"error": error}, f"refused: {error}")
            return self._done(
                request, 200, {"cluster_id": cluster_id, "override": "skip_next"}, "skip set"
            )
        # DELETE .../override
        if self.controller.find(cluster_id) is None:
            await self.controller.refresh()
        if self.controller.clear_override(cluster_id):
            return self._done(
                request, 200, {"cluster_id": cluster_id, "removed": True}, "override removed"
            )
        return self._done(
            request,
            404,
            {"cluster_id": cluster_id, "removed": False, "error": "no override"},
            "no override",
        )

    def _outcome(self, request: Request, outcome: Outcome) -> Response:
        status = _STATUS.get(outcome.result, 500)
        text = outcome.result + (f": {outcome.reason}" if outcome.reason else "")
        return self._done(request, status, outcome.as_dict(), text)

    async def alertmanager(self, request: Request) -> Response:
        body = await self._body(request)
        alerts = body.get("alerts")
        if body.get("version") not in (None, "4"):
            raise _BadRequest(
                f"unsupported Alertmanager payload version {body.get('version')!r} (4 expected)"
            )
        if not isinstance(alerts, list):
            raise _BadRequest("'alerts' must be a list (Alertmanager webhook payload version 4)")
        for index, alert in enumerate(alerts):
            if not isinstance(alert, dict) or not isinstance(alert.get("labels"), dict):
                raise _BadRequest(f"alerts[{index}] has no 'labels' object")
            if alert.get("status") not in ("firing", "resolved"):
                raise _BadRequest(f"alerts[{index}].status must be 'firing' or 'resolved'")
        # Every cluster the payload names is looked up in one listing at most (one per payload, not
        # one per unknown cluster); clusters still unknown after it are answered "not_found".
        wanted = {
            a["labels"]["cluster_id"]
            for a in alerts
            if a["status"] == "firing"
            and a["labels"].get("cce_action") in ("hibernate", "awake")
            and isinstance(a["labels"].get("cluster_id"), str)
        }
        if any(self.controller.find(cid) is None for cid in wanted):
            await self.controller.refresh()
        results: list[dict[str, Any]] = []
        for alert in alerts:
            labels = alert["labels"]
            name = str(labels.get("alertname", ""))
            if alert["status"] != "firing":
                results.append({"alertname": name, "result": "ignored", "reason": "resolved"})
                continue
            action = labels.get("cce_action")
            cluster_id = labels.get("cluster_id")
            if (
                action not in ("hibernate", "awake")
                or not isinstance(cluster_id, str)
                or not cluster_id
            ):
                results.append(
                    {
                        "alertname": name,
                        "result": "ignored",
                        "reason": "needs labels cce_action=hibernate|awake and cluster_id",
                    }
                )
                continue
            if self.controller.find(cluster_id) is None:
                outcome = Outcome(
                    "not_found", cluster_id, action, reason=f"cluster {cluster_id!r} is not known"
                )
            else:
                outcome = await self.controller.request(
                    cluster_id, action, reason=f"alert {name}"[:200], source="alertmanager"
                )
            results.append({"alertname": name, **outcome.as_dict()})
        summary = ", ".join(
            f"{r.get('cluster_id', r['alertname'])}: {r['result']}" for r in results
        )
        return self._done(request, 200, {"results": results}, summary or "no alerts")


async def _not_found(request: Request) -> Response:
    log.info(
        "hook %s %s -> 404 (hooks are off: no hook token configured)",
        request.method,
        request.url.path,
    )
    return JSONResponse({"error": "not found"}, status_code=404)


def build_hook_routes(
    controller: HibernationController, token: str | None, *, limits: HookLimits | None = None
) -> list[BaseRoute]:
    """The hook routes for ``build_app(extra_routes=...)``; all 404 when ``token`` is None."""
    if not token:
        return [Route("/hooks/{rest:path}", _not_found, methods=["GET", "POST", "DELETE", "PUT"])]
    hooks = _Hooks(controller, token, limits)
    c = "/hooks/clusters/{cluster_id}"
    return [
        Route(f"{c}/hibernate", hooks.guarded, methods=["POST"]),
        Route(f"{c}/awake", hooks.guarded, methods=["POST"]),
        Route(f"{c}/skip", hooks.guarded, methods=["POST"]),
        Route(f"{c}/override", hooks.guarded, methods=["DELETE"]),
        Route("/hooks/plan", hooks.guarded, methods=["GET"]),
        Route("/hooks/alertmanager", hooks.guarded, methods=["POST"]),
    ]
