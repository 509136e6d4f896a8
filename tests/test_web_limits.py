"""The web server under attack, in process over real loopback connections: the deadline for
request headers, the connection limit, bcrypt in its own bounded pool, hashes checked at start-up.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import bcrypt
import httpx
import pytest
import trustme

from bench.attacks import failed_login_flood
from exporter.web import Server, WebLimits, build_app
from exporter.webconfig import (
    AuthBusyError,
    BasicAuthVerifier,
    WebConfig,
    WebConfigError,
    parse_web_config,
)
from tests.test_web import TEXT, FakeExposition, FakeSource, _write_tls_files

PASSWORD = "correct horse"


@pytest.fixture(scope="module")
def hashed() -> str:
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


@asynccontextmanager
async def running(limits: WebLimits, web_config: WebConfig | None = None) -> AsyncIterator[Server]:
    source = FakeSource(current=FakeExposition(TEXT, TEXT))
    app = build_app(source, web_config=web_config, limits=limits)  # type: ignore[arg-type]
    server = Server(app, "127.0.0.1:0", web_config, limits=limits)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _until(condition: Any, within: float = 30.0) -> None:
    """Poll ``condition`` until true (a deadline, not a fixed sleep)."""
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.01)


async def _closed_by_server(reader: asyncio.StreamReader, within: float = 30.0) -> bool:
    """Whether the server closes the connection (EOF or reset) within ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def test_slow_headers_are_closed_at_the_deadline() -> None:
    async with running(WebLimits(header_timeout=0.5)) as server:
        # Silent after connecting, and a slowloris dripping a header line: both closed.
        silent_r, silent_w = await asyncio.open_connection("127.0.0.1", server.port)
        slow_r, slow_w = await asyncio.open_connection("127.0.0.1", server.port)
        slow_w.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")

        async def drip() -> None:
            for _ in range(200):
                await asyncio.sleep(0.1)
                slow_w.write(b"X")
                await slow_w.drain()

        dripping = asyncio.create_task(drip())
        assert await _closed_by_server(silent_r)
        assert await _closed_by_server(slow_r)
        dripping.cancel()
        await asyncio.gather(dripping, return_exceptions=True)
        for w in (silent_w, slow_w):
            w.close()
        # A client that sends its headers in time is served, and on a keep-alive connection the
        # next request is served too.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            for _ in range(2):
                assert (await http.get("/healthz")).status_code == 200


async def test_a_client_that_stops_reading_is_disconnected() -> None:
    big = b"x" * (32 * 1024 * 1024)  # far more than the socket buffers hold
    source = FakeSource(current=FakeExposition(big, big))
    limits = WebLimits(write_timeout=0.5)
    server = Server(build_app(source, limits=limits), "127.0.0.1:0", limits=limits)  # type: ignore[arg-type]
    await server.start()
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port, limit=2**16)
        writer.transport.pause_reading()  # type: ignore[attr-defined]
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        await _until(lambda: server.connections.open == 1)
        # Reads nothing: the server's buffers fill, and after write_timeout it gives up.
        await _until(lambda: server.connections.open == 0)
        writer.transport.abort()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            assert (await http.get("/healthz")).status_code == 200
    finally:
        await server.stop()


async def test_a_tls_client_silent_in_the_handshake_is_closed(tmp_path: Any) -> None:
    ca = trustme.CA()
    _write_tls_files(ca, tmp_path)
    config = parse_web_config(
        {"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"}},
        base_dir=tmp_path,
    )
    async with running(WebLimits(header_timeout=0.5), config) as server:
        # A plain TCP connection that never starts the handshake holds no slot for long.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await _closed_by_server(reader)
        writer.close()
        await _until(lambda: server.connections.open == 0)
        trusting = ssl.create_default_context()
        ca.configure_trust(trusting)
        async with httpx.AsyncClient(verify=trusting) as http:
            assert (await http.get(f"{server.url}/healthz")).status_code == 200


async def test_connection_limit_closes_the_oldest_idle_connection() -> None:
    async with running(WebLimits(max_connections=4, header_timeout=60)) as server:
        idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(4)]
        for _, writer in idle:
            writer.write(b"GET /heal")  # half a request line, then nothing
        # A fifth client is served: the oldest idle connection made room.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            r = await http.get("/healthz", timeout=30)
            assert r.status_code == 200
        assert await _closed_by_server(idle[0][0])
        assert server.connections.evicted >= 1
        assert server.connections.open <= 4
        for _, writer in idle:
            writer.close()


async def test_malformed_requests_are_not_logged_above_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    caplog.set_level("DEBUG", logger="uvicorn.error")  # other tests' logging set-up may raise it
    async with running(WebLimits()) as server:
        for junk in (b"NOT HTTP AT ALL\r\n\r\n", b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 5000):
            for _ in range(20):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(junk + b"\r\n")
                status = await reader.readline()
                assert b" 400 " in status
                writer.close()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            assert (await http.get("/healthz")).status_code == 200
    loud = [r for r in caplog.records if r.levelno >= 30]
    assert loud == [], [r.getMessage() for r in loud]
    assert any("Invalid HTTP request" in r.getMessage() for r in caplog.records)


async def test_default_connection_limit_stays_under_the_open_file_limit(monkeypatch: Any) -> None:
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda _: (256, 4096))
    assert WebLimits().connection_limit() == 128
    monkeypatch.setattr(resource, "getrlimit", lambda _: (65536, 65536))
    assert WebLimits().connection_limit() == 512
    assert WebLimits(max_connections=3).connection_limit() == 3


# --- basic auth ---------------------------------------------------------------------------------


async def test_bcrypt_runs_in_its_own_pool(hashed: str, monkeypatch: Any) -> None:
    threads: list[str] = []
    real = bcrypt.checkpw

    def recording(password: bytes, hashed_pw: bytes) -> bool:
        threads.append(threading.current_thread().name)
        return bool(real(password, hashed_pw))

    monkeypatch.setattr(bcrypt, "checkpw", recording)
    verifier = BasicAuthVerifier({"prom": hashed}, workers=2)
    assert await verifier.verify("prom", PASSWORD)
    assert not await verifier.verify("prom", "wrong")
    assert not await verifier.verify("nobody", "x")
    # Never asyncio's default pool, where the exposition is rendered.
    assert len(threads) == 3 and all(t.startswith("bcrypt") for t in threads), threads
    await verifier.aclose()


async def test_a_full_queue_refuses_and_suspects_make_room(hashed: str, monkeypatch: Any) -> None:
    gate = threading.Event()
    entered = threading.Event()
    real = bcrypt.checkpw

    def blocked(password: bytes, hashed_pw: bytes) -> bool:
        entered.set()
        gate.wait(30)
        return bool(real(password, hashed_pw))

    monkeypatch.setattr(bcrypt, "checkpw", blocked)
    verifier = BasicAuthVerifier({"prom": hashed}, workers=1, max_pending=2)
    running_check = asyncio.create_task(verifier.verify("prom", "wrong-0"))
    await _until(entered.is_set)
    suspects = [
        asyncio.create_task(verifier.verify("prom", f"wrong-{i}", suspect=True)) for i in (1, 2)
    ]
    await _until(lambda: len(verifier._waiting[1]) == 2)
    # The queue is full: another suspect is refused at once, without bcrypt.
    with pytest.raises(AuthBusyError):
        await verifier.verify("prom", "wrong-3", suspect=True)
    # A clean client's check makes room by refusing the newest suspect, and runs before the other.
    real_login = asyncio.create_task(verifier.verify("prom", PASSWORD))
    await _until(suspects[1].done)
    assert suspects[1].done() and isinstance(suspects[1].exception(), AuthBusyError)
    gate.set()
    assert await real_login
    assert not await running_check
    assert not await suspects[0]
    assert verifier.refused == 2
    await verifier.aclose()


async def test_a_failed_login_flood_does_not_keep_a_real_login_out() -> None:
    # A real cost (about 50 ms a check), so that 20 clients overflow a queue of 2 for sure.
    slow = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    config = WebConfig(basic_auth_users={"prom": slow})
    limits = WebLimits(auth_workers=1, auth_queue=2)
    async with running(limits, config) as server:
        result = await failed_login_flood(
            f"http://127.0.0.1:{server.port}",
            user="prom",
            password=PASSWORD,
            clients=20,
            warmup=0.5,
            logins=3,
            login_timeout=60,
        )
    assert result.survived, result
    assert result.numbers["first_login_status"] == 200
    assert result.numbers["repeat_logins_ok"] == 3
    assert result.numbers.get("flood_answers_503", 0) > 0  # the flood was shed, not queued


@pytest.mark.parametrize(
    "cut",
    [
        lambda h: h[:-1],  # one character short
        lambda h: h[:29],  # the salt and half the digest lost
        lambda h: h[:7] + "$",  # cost only
        lambda h: h[:4] + "99" + h[6:],  # an impossible cost
        lambda h: h[:-1] + "!",  # not bcrypt's alphabet
    ],
)
def test_truncated_or_unknown_hashes_are_refused_at_start_up(hashed: str, cut: Any) -> None:
    bad = cut(hashed)
    with pytest.raises(WebConfigError, match=r"basic_auth_users\.prom") as info:
        parse_web_config({"basic_auth_users": {"prom": bad}})
    assert bad not in str(info.value)
    parse_web_config({"basic_auth_users": {"prom": hashed}})  # the whole hash is fine


def test_limits_follow_every_setting_they_mirror() -> None:
    """Each limit field names its setting once: defaults and loaded values both come from it."""
    import dataclasses

    from exporter.config import Settings
    from exporter.hibernation.hooks import HookLimits
    from exporter.webguard import WebLimits

    changed = Settings.model_construct(
        web_max_connections=7,
        web_header_timeout=1.5,
        web_write_timeout=2.5,
        web_auth_workers=3,
        web_auth_queue=4,
        hook_max_body_bytes=5,
        hook_max_json_depth=6,
    )
    assert WebLimits.from_settings(changed) == WebLimits(7, 1.5, 2.5, 3, 4)
    assert HookLimits.from_settings(changed) == HookLimits(5, 6, 1.5)
    defaults = Settings.model_construct()
    for cls in (WebLimits, HookLimits):
        assert cls.from_settings(defaults) == cls()
        for f in dataclasses.fields(cls):
            assert f.default == Settings.model_fields[f.metadata["setting"]].default
