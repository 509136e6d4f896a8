"""The simulator's HTTP application: IAM, CCE, the add-on manager and the ``/_sim/`` control API.

A plain ASGI callable rather than a framework router: the hot path (a cached node list) is a regex
match, one signature check and a byte send, and fault injection needs the raw ``receive`` channel
(a hanging request ends when the client goes away). Served by uvicorn (see ``server.py``).

Authentication works as on the real service, on every CCE, add-on and IAM-projects route: an
``SDK-HMAC-SHA256`` signature checked with :func:`exporter.cce.signing.verify` against the
simulator's one AK/SK (the date is checked against real time, since clients sign with their own
clock), or an ``X-Auth-Token`` issued by the simulated IAM and not expired on the *simulator*
clock (advancing the clock 24 hours expires every token). Anything else is a 401 with an
API-gateway body. The project in a CCE path must be the simulator's project (else 403).

Error bodies: ``{"error_code", "error_msg"}`` everywhere except the add-on manager's routes, which
answer ``{"code", "message"}`` with ``error_code``/``error_msg`` beside them (the SDK's
``CceExceptionHandler`` reads no ``code``), and the node list's paging and ``upgradeinfo`` errors,
which answer today's ``{"errorCode", "errorMessage"}``. ``errorStatus`` is honoured on the cluster
list as well as on get (the reference leaves the list open); without it an ``Error`` cluster reads
``Deleting``. The cluster list takes the SDK's ``status``, ``type`` and ``version`` filters; the
node list pages (``limit``, ``marker``, ``pageInfo.nextMarker``).

Control API (JSON, no authentication, never faulted)::

    GET    /_sim/state                              world summary, faults, clock, tokens, requests
    POST   /_sim/clusters                           {"name"?, "phase"?, "nodes"?, "flavor"?}
    DELETE /_sim/clusters/{id}
    POST   /_sim/clusters/{id}/nodes                {"count"?, "phase"?}
    DELETE /_sim/clusters/{id}/nodes/{node_id}
    POST   /_sim/clusters/{id}/fail-next-wakeup     the next awake fails for lack of capacity
    POST   /_sim/phase                              {"kind": cluster|node|nodepool|addon, "id",
                                                     "phase", "cluster_id"?, "reason"?, "message"?,
                                                     "version"? (an add-on's installed version)}
    POST   /_sim/clusters/{id}/status               {"certificate"?: CertificateValid|...Expired,
                                                     "rotation"?: RotationFailed|...|null,
                                                     "agency"?, "lock"?: {"scene", "source"}|null}
    POST   /_sim/clusters/{id}/nodes/{node}/status  {"probe_age_seconds"?: n|null,
                                                     "configuration_up_to_date"?}
    POST   /_sim/clusters/{id}/nodepools/{pool}/conditions  {"conditions": [{"type", "status",
                                                     "reason"}]}
    POST   /_sim/features                           {"upgradeinfo"?, "addontemplates"?,
                                                     "plain_addons"?, "node_page_max"?}
    POST   /_sim/faults                             {"kind", "rate" | "count", "path"? (regex),
                                                     "latency_ms"?, "hang_seconds"?, "retry_after"?,
                                                     "drip_ms"?, "bomb_mb"?, "name_bytes"?}
    DELETE /_sim/faults                             clear every rule and the global rate
    POST   /_sim/clock/advance                      {"seconds"}
    POST   /_sim/tokens/expire                      expire every token issued so far
    POST   /_sim/securitykeys                       {"lifetime_seconds"}: of new temporary keys
    POST   /_sim/securitykeys/expire                expire every temporary AK/SK issued so far

The metadata service (``GET /openstack/latest/securitykey``, no authentication) hands out
temporary AK/SKs with a security token (see :mod:`exporter.simulator.identity`); IAM's
``assume_role`` token method returns a token acting in another account's project, whose
clusters are a world of their own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import secrets
import string
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from exporter.cce import signing
from exporter.simulator.clock import NS, SimClock
from exporter.simulator.faults import (
    ALL_FAULT_KINDS,
    FaultRule,
    Faults,
    gzip_bomb,
    loop_marker,
    pad_names,
    spoil_objects,
)
from exporter.simulator.formats import SimError, dump_json, iam_time
from exporter.simulator.identity import DEFAULT_TEMPORARY_SECONDS, Agency, TemporaryKeys
from exporter.simulator.kube import KubeSim
from exporter.simulator.resources import Cluster
from exporter.simulator.world import World

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

TOKEN_LIFETIME_NS = 24 * 3600 * NS


@dataclass(frozen=True)
class Credentials:
    """The simulator's fake account, derived from the seed. ``repr`` never shows a secret."""

    ak: str = field(repr=False)
    sk: str = field(repr=False)
    username: str
    password: str = field(repr=False)
    domain: str
    domain_id: str
    user_id: str
    project_id: str
    project_name: str

    @classmethod
    def from_seed(cls, seed: int) -> Credentials:
        rng = random.Random(f"credentials-{seed}")
        upper = string.ascii_uppercase + string.digits
        alnum = string.ascii_letters + string.digits

        def pick(alphabet: str, n: int) -> str:
            return "".join(rng.choice(alphabet) for _ in range(n))

        return cls(
            ak="SIM" + pick(upper, 17),
            sk=pick(alnum, 40),
            username=f"sim-user-{seed}",
            password=pick(alnum, 20),
            domain=f"sim-domain-{seed}",
            domain_id=f"{rng.getrandbits(128):032x}",
            user_id=f"{rng.getrandbits(128):032x}",
            project_id=f"{rng.getrandbits(128):032x}",
            project_name="sim-region-1",
        )


@dataclass
class TokenEntry:
    project_id: str | None
    issued: int
    expires: int


class Tokens:
    """Tokens issued by the simulated IAM; expiry is on the simulator clock."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock
        self._tokens: dict[str, TokenEntry] = {}
        self.issued_total = 0

    def issue(
        self, project_id: str | None, lifetime_ns: int = TOKEN_LIFETIME_NS
    ) -> tuple[str, TokenEntry]:
        now = self._clock.now_ns()
        # Real tokens are long opaque PKI blobs starting with MII; the length does not matter here.
        token = "MIIsim" + secrets.token_urlsafe(96)
        entry = TokenEntry(project_id=project_id, issued=now, expires=now + lifetime_ns)
        self._tokens[token] = entry
        self.issued_total += 1
        return token, entry

    def get(self, token: str) -> TokenEntry | None:
        return self._tokens.get(token)

    def expire_all(self) -> int:
        now = self._clock.now_ns()
        for entry in self._tokens.values():
            entry.expires = min(entry.expires, now)
        return len(self._tokens)

    def active(self) -> int:
        now = self._clock.now_ns()
        return sum(1 for e in self._tokens.values() if e.expires > now)


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


class SimulatorApp:
    """The ASGI application. ``world``, ``faults``, ``tokens`` and ``clock`` are shared state."""

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
        api: list[tuple[str, str, str, Handler, bool]] = [
            # (method, regex, route name, handler, addon-manager error shape)
            ("POST", r"/v3/auth/tokens", "iam_tokens", self._iam_tokens, False),
            ("GET", r"/v3/projects", "iam_projects", self._iam_projects, False),
            ("GET", r"/v3/auth/projects", "iam_auth_projects", self._iam_projects, False),
            ("GET", _P + r"/clusters", "clusters", self._clusters, False),
            ("GET", _C, "cluster", self._cluster, False),
            ("POST", _C + r"/operation/hibernate", "hibernate", self._hibernate, False),
            ("POST", _C + r"/operation/awake", "awake", self._awake, False),
            ("GET", _C + r"/nodes", "nodes", self._nodes, False),
            ("GET", _C + r"/upgradeinfo", "upgradeinfo", self._upgradeinfo, False),
            ("GET", _C + r"/nodes/(?P<node_id>[^/]+)", "node", self._node, False),
            ("GET", _C + r"/nodepools", "nodepools", self._nodepools, False),
            ("GET", _C + r"/nodepools/(?P<nodepool_id>[^/]+)", "nodepool", self._nodepool, False),
            ("GET", _P + r"/jobs/(?P<job_id>[^/]+)", "job", self._job, False),
            ("GET", _P + r"/quotas", "quotas", self._quotas, False),
            ("GET", r"/api/v3/addons", "addons", self._addons, True),
            ("GET", r"/api/v3/addons/(?P<addon_id>[^/]+)", "addon", self._addon, True),
            ("GET", r"/api/v3/addontemplates", "addontemplates", self._addontemplates, True),
            ("GET", r"/openstack/latest/securitykey", "securitykey", self._securitykey, False),
            ("PUT", r"/meta-data/latest/api/token", "metadata_token", self._metadata_token, False),
        ]
        # The clusters' Kubernetes API (exporter.simulator.kube): handlers answer (body, status).
        for method, rx, name, kube_handler in self.kube.routes():
            api.append((method, rx, name, _answer(kube_handler), False))
        self._routes = [(m, re.compile(f"^{rx}/?$"), n, h, a) for m, rx, n, h, a in api]
        control: list[tuple[str, str, Handler]] = [
            ("GET", r"/_sim/state", self._c_state),
            ("POST", r"/_sim/clusters", self._c_add_cluster),
            ("DELETE", r"/_sim/clusters/(?P<cluster_id>[^/]+)", self._c_remove_cluster),
            ("POST", r"/_sim/clusters/(?P<cluster_id>[^/]+)/nodes", self._c_add_nodes),
            (
                "DELETE",
                r"/_sim/clusters/(?P<cluster_id>[^/]+)/nodes/(?P<node_id>[^/]+)",
                self._c_remove_node,
            ),
            (
                "POST",
                r"/_sim/clusters/(?P<cluster_id>[^/]+)/fail-next-wakeup",
                self._c_fail_wakeup,
            ),
            ("POST", r"/_sim/phase", self._c_phase),
            ("POST", r"/_sim/clusters/(?P<cluster_id>[^/]+)/status", self._c_cluster_status),
            (
                "POST",
                r"/_sim/clusters/(?P<cluster_id>[^/]+)/nodes/(?P<node_id>[^/]+)/status",
                self._c_node_status,
            ),
            (
                "POST",
                r"/_sim/clusters/(?P<cluster_id>[^/]+)/nodepools/(?P<nodepool_id>[^/]+)/conditions",
                self._c_pool_conditions,
            ),
            ("POST", r"/_sim/features", self._c_features),
            ("POST", r"/_sim/faults", self._c_add_fault),
            ("DELETE", r"/_sim/faults", self._c_clear_faults),
            ("POST", r"/_sim/clock/advance", self._c_advance),
            ("POST", r"/_sim/tokens/expire", self._c_expire_tokens),
            ("POST", r"/_sim/securitykeys", self._c_securitykeys),
            ("POST", r"/_sim/securitykeys/expire", self._c_expire_securitykeys),
        ]
        self._control = [(m, re.compile(f"^{rx}/?$"), h) for m, rx, h in control]

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
        allowed = False
        for method, regex, name, handler, addon in self._routes:
            m = regex.match(request.path)
            if m is None:
                continue
            if method != request.method:
                allowed = True
                continue
            request.params = m.groupdict()
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
        if allowed:
            return _error(405, "APIGW.0105", "Method not allowed")
        return _error(404, "APIGW.0101", "The API does not exist or has not been published")

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

    # --- metadata service ---------------------------------------------------------------------

    def _metadata_token(self, request: Request) -> Response:
        token = secrets.token_urlsafe(32)
        self.metadata_sessions.add(token)
        return Response(200, token.encode(), [(b"content-type", b"text/plain")])

    def _securitykey(self, request: Request) -> Response:
        # Like a metadata service that accepts both: no session token, or a valid one.
        session = request.headers.get("x-metadata-token")
        if session is not None and session not in self.metadata_sessions:
            return _error(401, "Metadata.0401", "The metadata token is invalid or expired.")
        self.metadata_with_session += 1 if session else 0
        return _ok(dump_json(self.temporary.issue()))

    # --- IAM --------------------------------------------------------------------------------

    def _iam_tokens(self, request: Request) -> Response:
        creds = self.credentials
        try:
            auth = json.loads(request.body)["auth"]
            identity = auth["identity"]
            if "assume_role" in identity.get("methods", []):
                return self._assume_role(request, auth)
            user = identity["password"]["user"]
            if "password" not in identity.get("methods", []):
                raise KeyError("methods")
        except (ValueError, KeyError, TypeError):
            return _error(400, "IAM.0001", "The request body is invalid")
        domain = user.get("domain") or {}
        if (
            user.get("name") != creds.username
            or not secrets.compare_digest(str(user.get("password", "")), creds.password)
            or (domain.get("name") or domain.get("id")) not in (creds.domain, creds.domain_id)
        ):
            return _error(401, "IAM.0101", "The username or password is wrong.")
        scope = auth.get("scope") or {}
        project = scope.get("project") if isinstance(scope, dict) else None
        project_id: str | None = None
        if isinstance(project, dict):
            wanted_id, wanted_name = project.get("id"), project.get("name")
            if wanted_id == creds.project_id or (
                wanted_id is None and wanted_name == creds.project_name
            ):
                project_id = creds.project_id
            else:
                return _error(401, "IAM.0102", "The project does not exist or is not accessible.")
        token, entry = self.tokens.issue(project_id)
        body: dict[str, Any] = {
            "token": {
                "expires_at": iam_time(entry.expires),
                "issued_at": iam_time(entry.issued),
                "methods": ["password"],
                "user": {
                    "id": creds.user_id,
                    "name": creds.username,
                    "domain": {"id": creds.domain_id, "name": creds.domain},
                },
                "catalog": [],
                "roles": [{"id": "0", "name": "cce_adm"}],
            }
        }
        if project_id is not None:
            body["token"]["project"] = {
                "id": creds.project_id,
                "name": creds.project_name,
                "domain": {"id": creds.domain_id, "name": creds.domain},
            }
        response = _ok(dump_json(body), 201)
        response.headers.append((b"x-subject-token", token.encode()))
        return response

    def _assume_role(self, request: Request, auth: dict[str, Any]) -> Response:
        """IAM's assume-role token: the caller (this account's own credentials) acts as another
        account's agency in one of that account's projects."""
        self._authenticate(request)  # raises for missing or bad credentials
        agency = self.agency
        if agency is None or not agency.matches(auth["identity"].get("assume_role")):
            return _error(403, "IAM.0003", "The agency does not exist or is not delegated to you.")
        project = (auth.get("scope") or {}).get("project") or {}
        if not isinstance(project, dict) or not (
            project.get("id") == agency.project_id
            or (project.get("id") is None and project.get("name") == agency.project_name)
        ):
            return _error(401, "IAM.0102", "The project does not exist or is not accessible.")
        try:
            seconds = int(auth["identity"]["assume_role"].get("duration_seconds", 3600))
        except (TypeError, ValueError):
            return _error(400, "IAM.0001", "The request body is invalid")
        if not 900 <= seconds <= 86400:
            return _error(400, "IAM.0001", "duration_seconds must be between 900 and 86400")
        token, entry = self.tokens.issue(agency.project_id, seconds * NS)
        body = {
            "token": {
                "expires_at": iam_time(entry.expires),
                "issued_at": iam_time(entry.issued),
                "methods": ["assume_role"],
                "project": {
                    "id": agency.project_id,
                    "name": agency.project_name,
                    "domain": {"id": agency.domain_id, "name": agency.domain},
                },
                "assumed_by": {"user": {"name": self.credentials.username}},
                "catalog": [],
                "roles": [{"id": "0", "name": "cce_adm"}],
            }
        }
        response = _ok(dump_json(body), 201)
        response.headers.append((b"x-subject-token", token.encode()))
        return response

    def _iam_projects(self, request: Request) -> Response:
        creds = self.credentials
        projects = [
            {
                "domain_id": creds.domain_id,
                "is_domain": False,
                "parent_id": creds.domain_id,
                "name": creds.project_name,
                "description": "",
                "links": {
                    "next": None,
                    "previous": None,
                    "self": f"/v3/projects/{creds.project_id}",
                },
                "id": creds.project_id,
                "enabled": True,
            }
        ]
        name = request.query.get("name")
        if name is not None:
            projects = [p for p in projects if p["name"] == name]
        links = {"next": None, "previous": None, "self": "/v3/projects"}
        return _ok(dump_json({"projects": projects, "links": links}))

    # --- CCE ----------------------------------------------------------------------------------

    def _clusters(self, request: Request) -> Response:
        return _ok(
            self.world.cluster_list_bytes(
                error_status=bool(request.query.get("errorStatus")),
                detail=request.query.get("detail", "").lower() == "true",
                status=request.query.get("status") or None,
                type=request.query.get("type") or None,
                version=request.query.get("version") or None,
            )
        )

    def _upgradeinfo(self, request: Request) -> Response:
        return _ok(self.world.upgradeinfo_bytes(request.params["cluster_id"]))

    def _cluster(self, request: Request) -> Response:
        return _ok(
            self.world.cluster_bytes(
                request.params["cluster_id"],
                detail=request.query.get("detail", "").lower() == "true",
                error_status=bool(request.query.get("errorStatus")),
            )
        )

    def _hibernate(self, request: Request) -> Response:
        self.world.hibernate(request.params["cluster_id"])
        return Response(200, b"", [_JSON])

    def _awake(self, request: Request) -> Response:
        self.world.awake(request.params["cluster_id"])
        return Response(200, b"", [_JSON])

    def _nodes(self, request: Request) -> Response:
        raw_limit = request.query.get("limit")
        limit: int | None = None
        if raw_limit is not None:
            if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 2000:
                raise SimError(
                    400, "CCE.01400001", "limit must be an integer from 1 to 2000", camel=True
                )
            limit = int(raw_limit)
        return _ok(
            self.world.node_list_bytes(
                request.params["cluster_id"], limit=limit, marker=request.query.get("marker")
            )
        )

    def _node(self, request: Request) -> Response:
        return _ok(self.world.node_bytes(request.params["cluster_id"], request.params["node_id"]))

    def _nodepools(self, request: Request) -> Response:
        show = request.query.get("showDefaultNodePool", "").lower() == "true"
        return _ok(self.world.nodepool_list_bytes(request.params["cluster_id"], show_default=show))

    def _nodepool(self, request: Request) -> Response:
        return _ok(
            self.world.nodepool_bytes(request.params["cluster_id"], request.params["nodepool_id"])
        )

    def _job(self, request: Request) -> Response:
        return _ok(self.world.job_bytes(request.params["job_id"]))

    def _quotas(self, request: Request) -> Response:
        return _ok(self.world.quotas_bytes())

    def _addon_cluster_id(self, request: Request) -> str:
        cluster_id = request.query.get("cluster_id")
        if cluster_id:
            return cluster_id
        # The real service also knows the cluster from the host name: {cluster_id}.<endpoint>.
        prefix = request.headers.get("host", "").split(".", 1)[0]
        if prefix in self.world.clusters:
            return prefix
        raise SimError(400, "SVCSTG.CCE-ADDONMGR.4000003", "Request Body Error", addon=True)

    def _addons(self, request: Request) -> Response:
        cluster_id = self._addon_cluster_id(request)
        on_cluster_host = request.headers.get("host", "").split(".", 1)[0] == cluster_id
        if not on_cluster_host and not self.world.features.get("plain_addons", True):
            # A Stack installation: the add-on manager answers only on {cluster_id}.<host>.
            raise SimError(404, "SVCSTG.CCE-ADDONMGR.4040000", "Not Found", addon=True)
        return _ok(self.world.addon_list_bytes(cluster_id))

    def _addon(self, request: Request) -> Response:
        cluster_id = request.query.get("cluster_id") or None
        return _ok(self.world.addon_bytes(request.params["addon_id"], cluster_id))

    def _addontemplates(self, request: Request) -> Response:
        if not self.world.features.get("addontemplates", True):
            raise SimError(404, "SVCSTG.CCE-ADDONMGR.4040000", "Not Found", addon=True)
        return _ok(self.world.addontemplates_bytes(request.query.get("addon_template_name")))

    # --- control API ------------------------------------------------------------------------

    def _handle_control(self, request: Request) -> Response:
        allowed = False
        for method, regex, handler in self._control:
            m = regex.match(request.path)
            if m is None:
                continue
            if method != request.method:
                allowed = True
                continue
            request.params = m.groupdict()
            try:
                return handler(request)
            except SimError as exc:
                return _control_json({"error": exc.message}, exc.status)
            except (ValueError, TypeError, KeyError) as exc:
                return _control_json({"error": f"bad request: {exc}"}, 400)
        if allowed:
            return _control_json({"error": "method not allowed"}, 405)
        return _control_json({"error": "no such control route"}, 404)

    @staticmethod
    def _json_body(request: Request) -> dict[str, Any]:
        if not request.body.strip():
            return {}
        data = json.loads(request.body)
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        return data

    def state(self) -> dict[str, Any]:
        return {
            "now": iam_time(self.clock.now_ns()),
            "clock_offset_seconds": self.clock.offset_seconds,
            "project_id": self.credentials.project_id,
            "world": self.world.summary(),
            "faults": self.faults.state(),
            "fault_kinds": list(ALL_FAULT_KINDS),
            "tokens": {"issued": self.tokens.issued_total, "active": self.tokens.active()},
            "temporary_credentials": {
                "issued": self.temporary.issued_total,
                "active": self.temporary.active(),
                "lifetime_seconds": self.temporary.lifetime_seconds,
            },
            "auth_kinds": dict(self.auth_kinds),
            "requests": dict(self.requests),
        }

    def _c_state(self, request: Request) -> Response:
        return _control_json(self.state())

    @staticmethod
    def _cluster_ref(cluster: Cluster) -> dict[str, Any]:
        return {"uid": cluster.uid, "name": cluster.name, "nodes": list(cluster.nodes)}

    def _c_add_cluster(self, request: Request) -> Response:
        data = self._json_body(request)
        cluster = self.world.add_cluster(
            name=data.get("name"),
            phase=str(data.get("phase", "Available")),
            nodes=int(data.get("nodes", 0)),
            flavor=data.get("flavor"),
        )
        return _control_json(self._cluster_ref(cluster), 201)

    def _c_remove_cluster(self, request: Request) -> Response:
        self.world.remove_cluster(request.params["cluster_id"])
        return _control_json({"removed": request.params["cluster_id"]})

    def _c_add_nodes(self, request: Request) -> Response:
        data = self._json_body(request)
        nodes = self.world.add_nodes(
            request.params["cluster_id"], int(data.get("count", 1)), phase=data.get("phase")
        )
        return _control_json({"uids": [n.uid for n in nodes]}, 201)

    def _c_remove_node(self, request: Request) -> Response:
        self.world.remove_node(request.params["cluster_id"], request.params["node_id"])
        return _control_json({"removed": request.params["node_id"]})

    def _c_fail_wakeup(self, request: Request) -> Response:
        self.world.fail_next_wakeup(request.params["cluster_id"])
        return _control_json({"fail_next_wakeup": request.params["cluster_id"]})

    def _c_phase(self, request: Request) -> Response:
        data = self._json_body(request)
        self.world.set_phase(
            str(data["kind"]),
            str(data["id"]),
            str(data["phase"]),
            cluster_id=data.get("cluster_id"),
            reason=data.get("reason"),
            message=data.get("message"),
            version=data.get("version"),
        )
        return _control_json({"ok": True})

    def _c_cluster_status(self, request: Request) -> Response:
        data = self._json_body(request)
        lock = data.get("lock", ...)
        if lock is not ... and lock and not isinstance(lock, dict):
            raise ValueError("lock is an object {scene, source} or null")
        self.world.set_cluster_status(
            request.params["cluster_id"],
            certificate=data.get("certificate"),
            rotation=data.get("rotation", ...),
            agency=data.get("agency"),
            lock=(
                ...
                if lock is ...
                else None
                if not lock
                else (str(lock.get("scene", "")), str(lock.get("source", "")))
            ),
        )
        return _control_json({"ok": True})

    def _c_node_status(self, request: Request) -> Response:
        data = self._json_body(request)
        self.world.set_node_status(
            request.params["cluster_id"],
            request.params["node_id"],
            probe_age_seconds=data.get("probe_age_seconds", ...),
            configuration_up_to_date=data.get("configuration_up_to_date"),
        )
        return _control_json({"ok": True})

    def _c_pool_conditions(self, request: Request) -> Response:
        data = self._json_body(request)
        conditions = {
            str(c["type"]): (str(c.get("status", "True")), str(c.get("reason", "")))
            for c in data.get("conditions", [])
        }
        self.world.set_pool_conditions(
            request.params["cluster_id"], request.params["nodepool_id"], conditions
        )
        return _control_json({"ok": True})

    def _c_features(self, request: Request) -> Response:
        data = self._json_body(request)
        for key, value in data.items():
            if key == "node_page_max":
                self.world.node_page_max = max(1, min(2000, int(value)))
            elif key in ("upgradeinfo", "addontemplates", "plain_addons"):
                self.world.features[key] = bool(value)
            else:
                raise ValueError(f"unknown feature {key!r}")
        self.world.invalidate()
        return _control_json({**self.world.features, "node_page_max": self.world.node_page_max})

    def _c_add_fault(self, request: Request) -> Response:
        data = self._json_body(request)
        rule = self.faults.add(
            str(data["kind"]),
            rate=data.get("rate"),
            count=data.get("count"),
            path=data.get("path"),
            latency_ms=data.get("latency_ms"),
            hang_seconds=data.get("hang_seconds"),
            retry_after=data.get("retry_after"),
            drip_ms=data.get("drip_ms"),
            bomb_mb=data.get("bomb_mb"),
            name_bytes=data.get("name_bytes"),
        )
        return _control_json(rule.describe(), 201)

    def _c_clear_faults(self, request: Request) -> Response:
        self.faults.clear()
        self.faults.rate = 0.0
        return _control_json(self.faults.state())

    def _c_advance(self, request: Request) -> Response:
        data = self._json_body(request)
        self.clock.advance(float(data["seconds"]))
        self.world.invalidate()
        return _control_json({"now": iam_time(self.clock.now_ns())})

    def _c_expire_tokens(self, request: Request) -> Response:
        return _control_json({"expired": self.tokens.expire_all()})

    def _c_securitykeys(self, request: Request) -> Response:
        data = self._json_body(request)
        lifetime = float(data["lifetime_seconds"])
        if not lifetime > 0:
            raise ValueError("lifetime_seconds must be positive")
        self.temporary.lifetime_seconds = lifetime
        return _control_json({"lifetime_seconds": lifetime})

    def _c_expire_securitykeys(self, request: Request) -> Response:
        return _control_json({"expired": self.temporary.expire_all()})
