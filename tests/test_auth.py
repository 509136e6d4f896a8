"""The auth classes against a fake IAM + API served over loopback HTTP (uvicorn, port 0)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import uvicorn
from freezegun import freeze_time
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from exporter.cce.auth import AkSkAuth, PasswordAuth, TokenAuth
from exporter.cce.errors import (
    AuthenticationFailed,
    CredentialsError,
    RequestTimeout,
    ServerError,
    TransportError,
)
from exporter.cce.signing import SignatureError, verify

AK = "AKTESTKEY0001"
SK = "sk-Secret-Do-Not-Leak-1"
PASSWORD = "pw-Secret-Do-Not-Leak-2"
T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


@dataclass
class FakeCloud:
    """IAM and a CCE-like API in one app; every knob and every record is on this object."""

    iam_requests: list[dict[str, Any]] = field(default_factory=list)
    api_requests: list[dict[str, Any]] = field(default_factory=list)
    # IAM behaviour
    iam_status: int = 201
    iam_body: dict[str, Any] | None = None
    iam_headers: dict[str, str] = field(default_factory=dict)
    iam_send_token: bool = True
    iam_lifetime: timedelta | None = timedelta(hours=24)
    iam_gate: asyncio.Event | None = None
    clock: Callable[[], datetime] = lambda: T0
    # API behaviour
    valid_tokens: set[str] = field(default_factory=set)
    always_401: bool = False
    issued: int = 0

    async def iam(self, request: Request) -> Response:
        self.iam_requests.append(
            {"body": json.loads(await request.body()), "headers": dict(request.headers)}
        )
        if self.iam_gate is not None:
            await self.iam_gate.wait()
        if self.iam_status >= 400 or not self.iam_send_token:
            return JSONResponse(self.iam_body or {}, self.iam_status, headers=self.iam_headers)
        self.issued += 1
        token = f"tok-{self.issued}"
        self.valid_tokens.add(token)
        now = self.clock()
        body: dict[str, Any] = {"token": {"issued_at": now.isoformat()}}
        if self.iam_lifetime is not None:
            body["token"]["expires_at"] = (now + self.iam_lifetime).isoformat()
        return JSONResponse(body, 201, headers={"X-Subject-Token": token, **self.iam_headers})

    async def api(self, request: Request) -> Response:
        raw_path = request.scope["raw_path"].decode("ascii")
        query = request.scope["query_string"].decode("ascii")
        url = f"http://{request.headers['host']}{raw_path}" + (f"?{query}" if query else "")
        body = await request.body()
        record = {
            "url": url,
            "method": request.method,
            "headers": dict(request.headers),
            "body": body,
        }
        self.api_requests.append(record)
        if "authorization" in request.headers:
            try:
                ak = verify(request.method, url, request.headers, body, {AK: SK}.get, self.clock())
            except SignatureError as exc:
                return JSONResponse({"error_code": "APIGW.0301", "error_msg": str(exc)}, 401)
            return JSONResponse({"ak": ak})
        token = request.headers.get("x-auth-token")
        if self.always_401 or token not in self.valid_tokens:
            return JSONResponse({"error_code": "APIGW.0307", "error_msg": "token expired"}, 401)
        return JSONResponse({"token": token})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v3/auth/tokens", self.iam, methods=["POST"]),
                Route("/{path:path}", self.api, methods=["GET", "POST", "PUT", "DELETE"]),
            ]
        )


@dataclass
class Served:
    cloud: FakeCloud
    base: str


@contextlib.asynccontextmanager
async def _serve(cloud: FakeCloud, **ssl: Any) -> AsyncIterator[int]:
    """Run the fake on a loopback port chosen by the kernel; yields the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        cloud.app(), lifespan="off", ws="none", log_level="warning", access_log=False, **ssl
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = asyncio.get_running_loop().time() + 10
    while not server.started:
        assert asyncio.get_running_loop().time() < deadline, "fake server did not start"
        assert not task.done(), "fake server exited"
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        if cloud.iam_gate is not None:
            cloud.iam_gate.set()
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    cloud = FakeCloud()
    async with _serve(cloud) as port:
        yield Served(cloud, f"http://127.0.0.1:{port}")


def _password_auth(base: str, **kw: Any) -> PasswordAuth:
    args: dict[str, Any] = {
        "iam_endpoint": base + "/",
        "username": "alice",
        "password": PASSWORD,
        "domain": "acme",
        "project_name": "region-1",
    }
    args.update(kw)
    return PasswordAuth(**args)


# --- AK/SK --------------------------------------------------------------------------------------


async def test_aksk_signs_verifiable_requests(served: Served) -> None:
    auth = AkSkAuth(AK, SK, project_id="proj-1", clock=lambda: T0)
    async with httpx.AsyncClient(base_url=served.base, auth=auth) as client:
        r1 = await client.get(
            "/api/v3/projects/proj-1/clusters/a b+c~%25",
            params=[("type", "VM"), ("b", "2"), ("b", "1 +x")],
        )
        r2 = await client.post("/api/v3/x", json={"name": "ü", "n": 1})
    assert r1.status_code == 200, r1.text
    assert r1.json() == {"ak": AK}
    assert r2.status_code == 200, r2.text
    sent = served.cloud.api_requests[0]["headers"]
    assert sent["x-sdk-date"] == "20240301T120000Z"
    assert sent["x-project-id"] == "proj-1"
    assert sent["host"] == served.base.removeprefix("http://")
    assert sent["authorization"].startswith(f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=")
    signed = sent["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "x-sdk-date", "x-project-id"} <= set(signed)
    assert "content-length" not in signed
    assert SK not in json.dumps(served.cloud.api_requests, default=str)


async def test_aksk_signature_refused_with_wrong_key_or_stale_clock(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.base) as client:
        wrong = await client.get("/api/x", auth=AkSkAuth(AK, "not-the-sk", clock=lambda: T0))
        stale = await client.get(
            "/api/x", auth=AkSkAuth(AK, SK, clock=lambda: T0 - timedelta(hours=1))
        )
    assert (wrong.status_code, wrong.json()["error_msg"]) == (401, "signature mismatch")
    assert (stale.status_code, stale.json()["error_msg"]) == (401, "request expired")


def test_aksk_resigns_a_reused_request() -> None:
    times = iter([T0, T0 + timedelta(seconds=5)])
    auth = AkSkAuth(AK, SK, clock=lambda: next(times))
    request = httpx.Request("GET", "https://cce.example.com/api/v3/x?b=1&a=2")
    auth.sign_request(request)
    first = request.headers["Authorization"]
    auth.sign_request(request)
    assert request.headers["Authorization"] != first
    assert request.headers.get_list("Authorization") == [request.headers["Authorization"]]
    headers = {k: v for k, v in request.headers.items()}
    assert verify("GET", str(request.url), headers, b"", {AK: SK}.get, T0) == AK


# --- password / IAM token -----------------------------------------------------------------------


async def test_password_auth_issues_token_with_reference_body(served: Served) -> None:
    outcomes: list[str] = []
    auth = _password_auth(served.base, on_refresh=outcomes.append, clock=lambda: T0)
    async with httpx.AsyncClient(base_url=served.base, auth=auth) as client:
        r = await client.get("/api/v3/projects/p/clusters")
        r2 = await client.get("/api/v3/projects/p/clusters")
    await auth.aclose()
    assert r.status_code == 200 and r.json() == {"token": "tok-1"}
    assert r2.json() == {"token": "tok-1"}
    assert len(served.cloud.iam_requests) == 1
    assert served.cloud.iam_requests[0]["headers"]["content-type"] == "application/json"
    expected = json.loads(
        (
            Path(__file__).resolve().parent
            / "fixtures/cce-api/examples/iam_token_request_body.json"
        ).read_text()
    )
    user = expected["auth"]["identity"]["password"]["user"]
    user.update(name="alice", password=PASSWORD, domain={"name": "acme"})
    expected["auth"]["scope"]["project"] = {"name": "region-1"}
    assert served.cloud.iam_requests[0]["body"] == expected
    assert served.cloud.api_requests[0]["headers"]["x-auth-token"] == "tok-1"
    assert auth.expires_at == T0 + timedelta(hours=24)
    assert outcomes == ["success"]


async def test_password_auth_scopes_by_project_id(served: Served) -> None:
    auth = _password_auth(served.base, project_name=None, project_id="0123abcd")
    async with httpx.AsyncClient(base_url=served.base, auth=auth) as client:
        assert (await client.get("/api/x")).status_code == 200
    await auth.aclose()
    scope = served.cloud.iam_requests[0]["body"]["auth"]["scope"]
    assert scope == {"project": {"id": "0123abcd"}}


async def test_single_flight_for_concurrent_requests(served: Served) -> None:
    served.cloud.iam_gate = asyncio.Event()
    auth = _password_auth(served.base)
    async with httpx.AsyncClient(base_url=served.base, auth=auth) as client:
        tasks = [asyncio.create_task(client.get(f"/api/{i}")) for i in range(50)]
        # Hold IAM's answer until the first token request has arrived, so every other request
        # is already waiting for the token when it comes.
        deadline = asyncio.get_running_loop().time() + 10
        while not served.cloud.iam_requests:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.005)
        served.cloud.iam_gate.set()
        responses = await asyncio.gather(*tasks)
    await auth.aclose()
    assert [r.status_code for r in responses] == [200] * 50
    assert len(served.cloud.iam_requests) == 1
    assert {r.json()["token"] for r in responses} == {"tok-1"}


async def test_refresh_ahead_of_expiry_with_freezegun(served: Served) -> None:
    served.cloud.iam_lifetime = timedelta(hours=1)
    outcomes: list[str] = []
    with freeze_time(T0, real_asyncio=True) as frozen:
        served.cloud.clock = lambda: datetime.now(UTC)
        auth = _password_auth(
            served.base, refresh_margin=timedelta(minutes=10), on_refresh=outcomes.append
        )
        async with httpx.AsyncClient(base_url=served.base, auth=auth) as client:
            assert (await client.get("/api/a")).json()["token"] == "tok-1"
            frozen.tick(timedelta(minutes=49))
            assert (await client.get("/api/b")).json()["token"] == "tok-1"
            frozen.tick(timedelta(minutes=1, seconds=1))  # 9:59 before expiry: inside margin
            assert (await client.get("/api/c")).json()["token"] == "tok-2"
            assert auth.expires_at == datetime.now(UTC) + timedelta(hours=1)
        await auth.aclose()
    assert len(served.cloud.iam_requests) == 2
    assert outcomes == ["success", "success"]


async def test_short_lived_token_is_not_refetched_every_request(served: Served) -> None:
    served.cloud.iam_lifetime = timedelta(minutes=4)  # shorter than the 10 min margin
    now = [T0]
    auth = _password_auth(served.base, clock=lambda: now[0])
    async with httpx.AsyncClient(base_url=served.base, auth=auth) as client:
        await client.get("/api/a")
        now[0] = T0 + timedelta(minutes=1)
        await client.get("/api/b")
        now[0] = T0 + timedelta(minutes=2, seconds=1)
        await client.get("/api/c")
    await auth.aclose()
    assert len(served.cloud.iam_requests) == 2


async def test_lifetime_defaults_to_24h_without_expires_at(served: Served) -> None:
    served.cloud.iam_lifetime = None
    auth = _password_auth(served.base, clock=lambda: T0)
    async with httpx.AsyncClient(base_url=served.base, auth=auth) as client:
        await client.get("/api/a")
    await auth.aclose()
    assert auth.expires_at == T0 + timedelta(hours=24)


async def test_401_triggers_one_refresh_and_one_retry(served: Served) -> None:
    outcomes: list[str] = []
    auth = _password_auth(served.base, on_refresh=outcomes.append)
    async with httpx.AsyncClient(base_url=served.base, auth=auth) as client:
        assert (await client.get("/api/a")).json()["token"] == "tok-1"
        served.cloud.valid_tokens.clear()  # revoked server-side
        r = await client.post("/api/b", content=b"payload")
    await auth.aclose()
    assert r.status_code == 200 and r.json()["token"] == "tok-2"
    assert len(served.cloud.iam_requests) == 2
    assert [req["url"].rsplit("/", 1)[1] for req in served.cloud.api_requests] == ["a", "b", "b"]
    assert served.cloud.api_requests[2]["body"] == b"payload"  # the retry resends the body
    assert outcomes == ["success", "success"]


async def test_second_401_is_returned(served: Served) -> None:
    served.cloud.always_401 = True
    auth = _password_auth(served.base)
    async with httpx.AsyncClient(base_url=served.base, auth=auth) as client:
        r = await client.get("/api/a")
    await auth.aclose()
    assert r.status_code == 401
    assert r.json()["error_code"] == "APIGW.0307"
    assert len(served.cloud.iam_requests) == 2
    assert len(served.cloud.api_requests) == 2


async def test_concurrent_401s_share_one_refresh(served: Served) -> None:
    auth = _password_auth(served.base)
    async with httpx.AsyncClient(base_url=served.base, auth=auth) as client:
        await client.get("/api/warm")
        served.cloud.valid_tokens.clear()
        responses = await asyncio.gather(*(client.get(f"/api/{i}") for i in range(20)))
    await auth.aclose()
    assert [r.status_code for r in responses] == [200] * 20
    assert len(served.cloud.iam_requests) == 2


async def test_iam_error_body_is_parsed(served: Served) -> None:
    served.cloud.iam_status = 401
    served.cloud.iam_body = {"error_msg": "The username or password is wrong.", "error_code": "X"}
    served.cloud.iam_headers = {"X-IAM-Trace-Id": "trace-42"}
    outcomes: list[str] = []
    auth = _password_auth(served.base, on_refresh=outcomes.append)
    async with httpx.AsyncClient(base_url=served.base, auth=auth) as client:
        with pytest.raises(AuthenticationFailed) as excinfo:
            await client.get("/api/a")
    await auth.aclose()
    err = excinfo.value
    assert (err.status_code, err.code, err.request_id) == (401, "X", "trace-42")
    assert err.endpoint == "/v3/auth/tokens"
    assert err.message == "The username or password is wrong."
    assert PASSWORD not in str(err)
    assert outcomes == ["failure"]
    assert served.cloud.api_requests == []


async def test_iam_server_error(served: Served) -> None:
    served.cloud.iam_status = 503
    served.cloud.iam_body = {"code": "IAM.500", "message": "busy"}
    auth = _password_auth(served.base)
    async with httpx.AsyncClient(base_url=served.base, auth=auth) as client:
        with pytest.raises(ServerError, match=r"HTTP 503 from POST /v3/auth/tokens \[IAM.500\]"):
            await client.get("/api/a")
    await auth.aclose()


async def test_iam_without_token_header(served: Served) -> None:
    served.cloud.iam_send_token = False
    outcomes: list[str] = []
    auth = _password_auth(served.base, on_refresh=outcomes.append)
    async with httpx.AsyncClient(base_url=served.base, auth=auth) as client:
        with pytest.raises(CredentialsError, match="without an X-Subject-Token header"):
            await client.get("/api/a")
        served.cloud.iam_send_token = True  # the next request tries again and succeeds
        assert (await client.get("/api/a")).status_code == 200
    await auth.aclose()
    assert outcomes == ["failure", "success"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_iam_unreachable_and_timeout(served: Served) -> None:
    outcomes: list[str] = []
    refused = _password_auth(f"http://127.0.0.1:{_closed_port()}", on_refresh=outcomes.append)
    # A listening socket that never accepts: the connection opens, no answer ever comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        slow = _password_auth(f"http://127.0.0.1:{port}", timeout=0.3, on_refresh=outcomes.append)
        async with httpx.AsyncClient(base_url=served.base) as client:
            with pytest.raises(TransportError) as refused_exc:
                await client.get("/api/a", auth=refused)
            with pytest.raises(RequestTimeout):
                await client.get("/api/a", auth=slow)
        await refused.aclose()
        await slow.aclose()
    assert not isinstance(refused_exc.value, RequestTimeout)
    assert PASSWORD not in str(refused_exc.value)
    assert refused_exc.value.__cause__ is None
    assert outcomes == ["failure", "failure"]


async def test_password_auth_refuses_sync_clients(served: Served) -> None:
    auth = _password_auth(served.base)
    with httpx.Client(base_url=served.base) as client, pytest.raises(RuntimeError):
        client.get("/api/a", auth=auth)


async def test_password_auth_trusts_a_ca_bundle_path(tmp_path: Path) -> None:
    ca = trustme.CA()
    bundle, chain = tmp_path / "ca.pem", tmp_path / "server.pem"
    ca.cert_pem.write_to_path(str(bundle))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(chain))
    cloud = FakeCloud()
    async with _serve(cloud, ssl_certfile=str(chain)) as port:
        iam = f"https://127.0.0.1:{port}"
        trusting = _password_auth(iam, verify=bundle)
        untrusting = _password_auth(iam)  # system CAs only: the test CA is unknown
        api_tls = ssl.create_default_context()
        ca.configure_trust(api_tls)
        async with httpx.AsyncClient(base_url=iam, verify=api_tls) as client:
            assert (await client.get("/api/a", auth=trusting)).status_code == 200
            with pytest.raises(TransportError, match="ConnectError"):
                await client.get("/api/a", auth=untrusting)
        await trusting.aclose()
        await untrusting.aclose()
    assert len(cloud.iam_requests) == 1
    with pytest.raises(FileNotFoundError):
        _password_auth(iam, verify=tmp_path / "missing.pem")


@pytest.mark.parametrize(
    "kw",
    [
        {"username": ""},
        {"password": ""},
        {"domain": ""},
        {"project_name": None},
        {"iam_endpoint": ""},
    ],
)
def test_password_auth_rejects_incomplete_credentials(kw: dict[str, Any]) -> None:
    with pytest.raises(CredentialsError) as excinfo:
        _password_auth("https://iam.example", **kw)
    assert PASSWORD not in str(excinfo.value)


# --- pre-issued token ---------------------------------------------------------------------------


async def test_token_auth_from_value(served: Served) -> None:
    served.cloud.valid_tokens.add("given-token")
    async with httpx.AsyncClient(base_url=served.base, auth=TokenAuth(" given-token\n")) as c:
        r = await c.get("/api/a")
    assert r.json() == {"token": "given-token"}


def _replace(path: Path, content: str) -> None:
    # How a mounted secret rotates: a new file renamed over the old one.
    tmp = path.with_suffix(".new")
    tmp.write_text(content)
    os.replace(tmp, path)


async def test_token_auth_from_file_follows_replacement(served: Served, tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("file-token-1\n")
    served.cloud.valid_tokens |= {"file-token-1", "file-token-2"}
    outcomes: list[str] = []
    auth = TokenAuth(token_file=path, on_refresh=outcomes.append)
    async with httpx.AsyncClient(base_url=served.base, auth=auth) as client:
        assert (await client.get("/api/a")).json() == {"token": "file-token-1"}
        assert (await client.get("/api/a")).json() == {"token": "file-token-1"}
        _replace(path, "file-token-2")
        assert (await client.get("/api/b")).json() == {"token": "file-token-2"}
    assert outcomes == ["success", "success"]


async def test_token_auth_rereads_file_on_401(served: Served, tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("old-token")
    auth = TokenAuth(token_file=path)
    served.cloud.valid_tokens.add("new-token")
    auth.current_token()
    # Same size and mtime as before, same inode: only a forced re-read can notice.
    stat = path.stat()
    path.write_text("new-token")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    async with httpx.AsyncClient(base_url=served.base, auth=auth) as client:
        r = await client.get("/api/a")
    assert r.json() == {"token": "new-token"}
    sent = [req["headers"]["x-auth-token"] for req in served.cloud.api_requests]
    assert sent == ["old-token", "new-token"]


@pytest.mark.parametrize("content", [None, "", "  \n"])
def test_token_file_unreadable_or_empty(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    outcomes: list[str] = []
    auth = TokenAuth(token_file=path, on_refresh=outcomes.append)
    with pytest.raises(CredentialsError) as excinfo:
        auth.current_token()
    assert str(path) in str(excinfo.value)
    assert outcomes == ["failure"]


def test_token_file_error_does_not_show_content(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_bytes(b"secret-token-\xff\xfe")
    with pytest.raises(CredentialsError) as excinfo:
        TokenAuth(token_file=path).current_token()
    assert "secret-token" not in str(excinfo.value)


def test_token_auth_needs_exactly_one_source(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError):
        TokenAuth()
    with pytest.raises(CredentialsError):
        TokenAuth("t", tmp_path / "t")
    with pytest.raises(CredentialsError):
        TokenAuth("   ")


# --- secrets never shown ------------------------------------------------------------------------


def test_reprs_mask_secrets(tmp_path: Path) -> None:
    reprs = [
        repr(AkSkAuth(AK, SK, project_id="p")),
        repr(_password_auth("https://iam.example")),
        repr(TokenAuth("tok-secret-value")),
        repr(TokenAuth(token_file=tmp_path / "token")),
    ]
    for text in reprs:
        for secret in (SK, PASSWORD, "tok-secret-value"):
            assert secret not in text
    assert reprs[0] == "AkSkAuth(ak='AKTE...', sk=***, project_id='p')"
    assert "password=***" in reprs[1]
    assert reprs[2] == "TokenAuth(token=***)"
    assert str(tmp_path / "token") in reprs[3]


def test_aksk_rejects_missing_keys() -> None:
    with pytest.raises(CredentialsError):
        AkSkAuth(AK, "")
