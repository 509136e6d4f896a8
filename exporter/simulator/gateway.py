"""The simulator's HTTP front: ASGI, fault injection, routing and authentication.

A plain ASGI callable rather than a framework router: the hot path (a cached node list) is a regex
match, one signature check and a byte send, and fault injection needs the raw ``receive`` channel
(a hanging request ends when the client goes away). The routes themselves are the API's
(:mod:`exporter.simulator.api`) and the control API's (:mod:`exporter.simulator.app`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from exporter.cce import signing
from exporter.simulator.clock import SimClock
from exporter.simulator.faults import (
    FaultRule,
    Faults,
    gzip_bomb,
    loop_marker,
    pad_names,
    spoil_objects,
)
from exporter.simulator.formats import SimError, dump_json
from exporter.simulator.identity import (
    DEFAULT_TEMPORARY_SECONDS,
    Agency,
    Credentials,
    TemporaryKeys,
    Tokens,
)
from exporter.simulator.kube import KubeSim
from exporter.simulator.world import World

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass
class Request:
    method: str
    path: str
    raw_path: str
    query_string: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


Handler = Callable[[Request], Response]
_JSON = (b"content-type", b"application/json")


def _ok(body: bytes, status: int = 200) -> Response:
    return Response(status, body, [_JSON])


def _answer(handler: Callable[[Any], tuple[bytes, int]]) -> Handler:
    """A handler answering ``(JSON body, status)`` as a :data:`Handler`."""
    return lambda request: _ok(*handler(request))


def _error(status: int, code: str, message: str) -> Response:
    return _ok(dump_json({"error_code": code, "error_msg": message}), status)


def _control_json(obj: object, status: int = 200) -> Response:
    return _ok(json.dumps(obj, sort_keys=True).encode(), status)


_P = r"/api/v3/projects/(?P<project_id>[^/]+)"
_C = _P + r"/clusters/(?P<cluster_id>[^/]+)"


ApiRoute = tuple[str, str, str, Handler, bool]
T = TypeVar("T")


def _find(
    routes: Sequence[tuple[str, re.Pattern[str], T]], request: Request
) -> tuple[T | None, bool]:
    """The first route for the request's path and method (its path parameters are set on the
    request), and whether a route matches the path with another method (a 405, not a 404)."""
    allowed = False
    for method, regex, found in routes:
        m = regex.match(request.path)
        if m is None:
            continue
        if method != request.method:
            allowed = True
            continue
        request.params = m.groupdict()
        return found, allowed
    return None, allowed


ControlRoute = tuple[str, str, Handler]


class Gateway:
    """ASGI, faults, routing and authentication; subclasses give the routes and handlers."""

    def __init__(
        self,
        *,
        world: World,
        clock: SimClock,
        faults: Faults,
        credentials: Credentials,
        latency_ms: float = 0.0,
        max_skew: timedelta = timedelta(minutes=15),
        temporary_seconds: float = DEFAULT_TEMPORARY_SECONDS,
        agency: Agency | None = None,
        agency_world: World | None = None,
        kube: KubeSim | None = None,
    ) -> None:
        self.world = world
        self.kube = kube if kube is not None else KubeSim(world)
        #: Temporary AK/SKs of the metadata service; another account's agency and its world.
        self.temporary = TemporaryKeys(clock, temporary_seconds)
        self.agency = agency
        self.agency_world = agency_world
        #: Requests by the kind of credentials they carried (aksk, temporary, token, agency).
        self.auth_kinds: Counter[str] = Counter()
        #: Metadata session tokens handed out; security keys asked for with one.
        self.metadata_sessions: set[str] = set()
        self.metadata_with_session = 0
        self.clock = clock
        self.faults = faults
        self.credentials = credentials
        self.tokens = Tokens(clock)
        self.latency_ms = latency_ms
        self.max_skew = max_skew
        self.requests: Counter[str] = Counter()
        self._request_seq = 0
        self._stopping: asyncio.Event | None = None
        api = self._api_routes()
        # The clusters' Kubernetes API (exporter.simulator.kube): handlers answer (body, status).
        for method, rx, name, kube_handler in self.kube.routes():
            api.append((method, rx, name, _answer(kube_handler), False))
        self._routes = [(m, re.compile(f"^{rx}/?$"), (n, h, a)) for m, rx, n, h, a in api]
        self._control = [(m, re.compile(f"^{rx}/?$"), h) for m, rx, h in self._control_routes()]

    def _api_routes(self) -> list[ApiRoute]:
        """(method, regex, route name, handler, add-on manager error shape) of the API."""
        return []

    def _control_routes(self) -> list[ControlRoute]:
        """(method, regex, handler) of the control API."""
        return []

    # --- ASGI -----------------------------------------------------------------------------------

    def stop_hanging(self) -> None:
        """Release requests held by the ``hang`` fault (called before the server shuts down)."""
        if self._stopping is not None:
            self._stopping.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if self._stopping is None:
            self._stopping = asyncio.Event()
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            headers[raw_name.decode("latin-1").lower()] = raw_value.decode("latin-1")
        query_string = scope["query_string"].decode("latin-1")
        raw_path = scope.get("raw_path")
        request = Request(
            method=scope["method"],
            path=scope["path"],
            raw_path=raw_path.decode("latin-1") if raw_path else scope["path"],
            query_string=query_string,
            query=dict(parse_qsl(query_string, keep_blank_values=True)),
            headers=headers,
            body=body,
        )
        if request.path.startswith("/_sim/"):
            await self._send(send, self._handle_control(request))
            return
        await self._handle_api(request, receive, send)

    async def _send(self, send: Send, response: Response) -> None:
        self._request_seq += 1
        headers = [
            *response.headers,
            (b"content-length", str(len(response.body)).encode()),
            (b"x-request-id", f"{self._request_seq:032x}".encode()),
        ]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    async def _handle_api(self, request: Request, receive: Receive, send: Send) -> None:
        fault = self.faults.pick(request.path)
        if self.latency_ms > 0:
            await asyncio.sleep(self.latency_ms / 1000)
        if fault is not None:
            early = await self._early_fault(fault, request, receive)
            if early is None:
                return  # the client went away during a hang
            if isinstance(early, Response):
                await self._send(send, early)
                return
        response = self._dispatch(request)
        if fault is not None and fault.kind == "gzip_bomb":
            response = Response(
                200, gzip_bomb(fault.bomb_mb), [_JSON, (b"content-encoding", b"gzip")]
            )
        elif fault is not None and 200 <= response.status < 300 and response.body:
            if fault.kind == "malformed_json":
                cut = len(response.body) // 2
                response.body = response.body[:cut] + b'",}{' + response.body[cut:]
            elif fault.kind == "truncated_json":
                response.body = response.body[: max(1, len(response.body) // 2)]
            elif fault.kind == "oversized_names":
                response.body = pad_names(response.body, fault.name_bytes)
            elif fault.kind == "bad_object":
                response.body = spoil_objects(response.body)
            elif fault.kind == "marker_loop":
                response.body = loop_marker(response.body, request.query.get("marker"))
            elif fault.kind == "drip":
                await self._drip(send, receive, response, fault.drip_ms / 1000)
                return
        await self._send(send, response)

    async def _drip(self, send: Send, receive: Receive, response: Response, every: float) -> None:
        """Send ``response`` one byte every ``every`` seconds, until done or the client leaves."""
        assert self._stopping is not None
        self._request_seq += 1
        headers = [
            *response.headers,
            (b"content-length", str(len(response.body)).encode()),
            (b"x-request-id", f"{self._request_seq:032x}".encode()),
        ]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        gone = asyncio.ensure_future(receive())
        try:
            body = response.body
            for i in range(len(body)):
                last = i == len(body) - 1
                await send(
                    {"type": "http.response.body", "body": body[i : i + 1], "more_body": not last}
                )
                if last:
                    return
                await asyncio.wait({gone}, timeout=every)
                if gone.done() or self._stopping.is_set():
                    return
        finally:
            gone.cancel()

    async def _early_fault(
        self, fault: FaultRule, request: Request, receive: Receive
    ) -> Response | bool | None:
        """A fault answered instead of the handler, True to go on, None if the client left."""
        kind = fault.kind
        addon = request.path.startswith("/api/v3/addon")
        if kind == "latency":
            await asyncio.sleep(fault.latency_ms / 1000)
            return True
        if kind == "hang":
            return True if not await self._hang(receive, fault.hang_seconds) else None
        if kind == "expired_token":
            return _error(401, "APIGW.0307", "The token must be updated.")
        if kind == "http_429":
            response = _error(429, "APIGW.0308", "The throttling threshold has been reached.")
            response.headers.append((b"retry-after", str(fault.retry_after).encode()))
            return response
        status = int(kind.removeprefix("http_")) if kind.startswith("http_") else 0
        if status == 500:
            if addon:
                return _ok(
                    SimError(500, "SVCSTG.CCE-ADDONMGR.500", "internal error", addon=True).body(),
                    500,
                )
            return _error(500, "CCE.01500001", "Internal server error")
        if status in (502, 503, 504):
            text = {502: "Bad gateway", 503: "Service unavailable", 504: "Gateway timeout"}
            return _error(status, f"APIGW.0{status - 300}", text[status])
        return True

    async def _hang(self, receive: Receive, seconds: float) -> bool:
        """Hold the request; True if the client disconnected (then nothing is sent)."""
        assert self._stopping is not None
        disconnect = asyncio.ensure_future(receive())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            done, _ = await asyncio.wait(
                {disconnect, stopping}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            disconnect.cancel()
            stopping.cancel()
        if disconnect in done and not disconnect.cancelled():
            return disconnect.result().get("type") == "http.disconnect"
        return False

    def _dispatch(self, request: Request) -> Response:
        found, allowed = _find(self._routes, request)
        if found is None:
            if allowed:
                return _error(405, "APIGW.0105", "Method not allowed")
            return _error(404, "APIGW.0101", "The API does not exist or has not been published")
        name, handler, addon = found
        self.requests[name] += 1
        try:
            if name not in ("iam_tokens", "securitykey", "metadata_token"):
                scope = self._authenticate(request)
                if self.agency_world is not None and scope == self._agency_project():
                    return self._in_world(self.agency_world, handler, request)
            return handler(request)
        except SimError as exc:
            if addon and not exc.addon:
                exc = SimError(exc.status, exc.code, exc.message, addon=True)
            return _ok(exc.body(), exc.status)
        except Exception:
            logger.exception("simulator handler %s failed", name)
            return _error(500, "CCE.01500001", "Internal server error")

    # --- authentication ---------------------------------------------------------------------

    def _agency_project(self) -> str | None:
        return self.agency.project_id if self.agency is not None else None

    def _in_world(self, world: World, handler: Handler, request: Request) -> Response:
        """Run a handler on another account's world (handlers are synchronous: nothing else
        runs while the world is swapped)."""
        own, self.world = self.world, world
        try:
            return handler(request)
        finally:
            self.world = own

    def _authenticate(self, request: Request) -> str | None:
        """Check the request's credentials; the project they act in (None: domain scope)."""
        token = request.headers.get("x-auth-token")
        project_id = request.params.get("project_id")
        scope: str | None = self.credentials.project_id
        if token:
            entry = self.tokens.get(token)
            if entry is None:
                raise SimError(401, "APIGW.0301", "Incorrect IAM authentication information")
            if entry.expires <= self.clock.now_ns():
                raise SimError(401, "APIGW.0307", "The token must be updated.")
            if project_id is not None and entry.project_id != project_id:
                raise SimError(
                    403, "CCE.01403001", "The token is not scoped to the project in the path"
                )
            scope = entry.project_id
            agency = scope is not None and scope == self._agency_project()
            self.auth_kinds["agency" if agency else "token"] += 1
        elif "authorization" in request.headers:
            host = request.headers.get("host", "")
            url = f"http://{host}{request.raw_path}"
            if request.query_string:
                url += "?" + request.query_string
            credentials = self.credentials

            def lookup(ak: str) -> str | None:
                if ak == credentials.ak:
                    return credentials.sk
                key = self.temporary.get(ak)
                return key.secret if key is not None else None

            try:
                ak = signing.verify(
                    request.method,
                    url,
                    request.headers,
                    request.body,
                    lookup,
                    datetime.now(UTC),
                    self.max_skew,
                )
                if ak != credentials.ak:
                    self._check_security_token(ak, request.headers)
            except signing.SignatureError as exc:
                raise SimError(
                    401, "APIGW.0301", f"Incorrect IAM authentication information: {exc}"
                ) from None
            self.auth_kinds["aksk" if ak == credentials.ak else "temporary"] += 1
        else:
            raise SimError(
                401, "APIGW.0301", "Incorrect IAM authentication information: no credentials"
            )
        if project_id is not None and project_id != scope:
            raise SimError(403, "CCE.01403001", "No permission on the project in the path")
        return scope

    def _check_security_token(self, ak: str, headers: dict[str, str]) -> None:
        """A temporary AK is valid only with its own security token, signed, before expiry."""
        key = self.temporary.get(ak)
        assert key is not None  # verify() found its secret
        _, signed, _ = signing.parse_authorization(headers.get("authorization", ""))
        if "x-security-token" not in signed:
            raise signing.SignatureError("x-security-token is not a signed header")
        if not secrets.compare_digest(headers.get("x-security-token", ""), key.security_token):
            raise signing.SignatureError("security token mismatch")
        if self.temporary.expired(key):
            raise SimError(401, "APIGW.0307", "The security token has expired.")

    # --- control API ------------------------------------------------------------------------

    def _handle_control(self, request: Request) -> Response:
        handler, allowed = _find(self._control, request)
        if handler is None:
            if allowed:
                return _control_json({"error": "method not allowed"}, 405)
            return _control_json({"error": "no such control route"}, 404)
        try:
            return handler(request)
        except SimError as exc:
            return _control_json({"error": exc.message}, exc.status)
        except (ValueError, TypeError, KeyError) as exc:
            return _control_json({"error": f"bad request: {exc}"}, 400)
