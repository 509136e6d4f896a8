"""Hostile hook requests: oversized and deeply nested bodies, `until` at the edges of the datetime
range, an Alertmanager payload naming many unknown clusters. A body that never ends is sent over
real HTTP on loopback; the others in process (see ``test_hibernation_hooks``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from exporter.hibernation.controller import HibernationController
from exporter.hibernation.hooks import HookLimits, build_hook_routes, parse_rfc3339
from exporter.web import Server, build_app
from tests.test_hibernation_hooks import (
    TOKEN,
    Source,
    _setup,
    alert,
    alertmanager_payload,
    auth,
    count_listings,
    environment,
    hooks_client,
)


def _app(ctl: HibernationController, limits: HookLimits | None) -> Any:
    return build_app(Source(), extra_routes=build_hook_routes(ctl, TOKEN, limits=limits))  # type: ignore[arg-type]


@asynccontextmanager
async def serving(
    ctl: HibernationController, limits: HookLimits | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    async with hooks_client(_app(ctl, limits)) as http:
        yield http


@asynccontextmanager
async def listening(
    ctl: HibernationController, limits: HookLimits | None = None
) -> AsyncIterator[Server]:
    """The hooks on a real server on loopback."""
    server = Server(_app(ctl, limits), "127.0.0.1:0")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_bodies_are_capped_and_depth_limited() -> None:
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)
        cid = env.ids["dev-a"]
        path = f"/hooks/clusters/{cid}/hibernate"
        async with serving(ctl, HookLimits(max_body_bytes=4096, max_json_depth=8)) as http:
            # Declared too large: refused before reading.
            big = b'{"reason": "' + b"x" * 10_000 + b'"}'
            r = await http.post(path, headers=auth(), content=big)
            assert r.status_code == 413, r.text
            # Streamed without a length (chunked): refused once past the cap.

            async def chunks() -> AsyncIterator[bytes]:
                yield b'{"reason": "'
                for _ in range(100):
                    yield b"x" * 1000
                yield b'"}'

            r = await http.post(path, headers=auth(), content=chunks())
            assert r.status_code == 413, r.text
            # Nested past the limit (and far past the interpreter's recursion limit): 400.
            for body in ('{"a":' * 9 + "1" + "}" * 9, '{"a":' + "[" * 1500 + "]" * 1500 + "}"):
                r = await http.post(path, headers=auth(), content=body)
                assert r.status_code == 400, (body[:20], r.text)
                assert "nests deeper than 8" in r.json()["error"]
            # Within every bound: still works.
            r = await http.post(path, headers=auth(), json={"reason": "ok", "x": [[[1]]]})
            assert r.status_code == 202, r.text
        await ctl.wait_idle()
        assert [(a, n) for _, a, n in env.api.calls] == [("hibernate", "dev-a")]
        await ctl.close()


async def test_a_body_that_never_ends_is_408() -> None:
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)
        cid = env.ids["dev-a"]
        async with listening(ctl, HookLimits(body_timeout=0.05)) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(
                f"POST /hooks/clusters/{cid}/hibernate HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {TOKEN}\r\nContent-Length: 100\r\n\r\n{{".encode()
            )
            async with asyncio.timeout(30):
                status_line = await reader.readline()
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
            assert b" 408 " in status_line
            assert body == b'{"error":"the body was not received within 0.05 s"}'
            writer.close()
        assert env.api.calls == []
        await ctl.close()


@pytest.mark.parametrize(
    "until",
    [
        "9999-12-31T23:59:59-01:00",  # past datetime.max once in UTC
        "0001-01-01T00:00:00+01:00",  # before datetime.min once in UTC
        "9999-12-31T23:59:59Z",  # in range, but centuries ahead
        "2027-13-01T00:00:00Z",
    ],
)
async def test_until_out_of_range_is_400(until: str) -> None:
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)
        cid = env.ids["dev-a"]
        async with serving(ctl) as http:
            for verb in ("hibernate", "awake"):
                r = await http.post(
                    f"/hooks/clusters/{cid}/{verb}", headers=auth(), json={"until": until}
                )
                assert r.status_code == 400, r.text
        assert env.api.calls == []
        assert ctl.state["overrides"] == {}
        await ctl.close()


async def test_plan_days_that_are_not_numbers_are_400() -> None:
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)
        async with serving(ctl) as http:
            for days in ("nan", "NaN", "x" * 10_000, ""):
                r = await http.get("/hooks/plan", params={"days": days}, headers=auth())
                assert r.status_code == 400, (days[:10], r.text)
                assert len(r.text) < 300
            for days in ("inf", "-1", "1e308", "3"):
                r = await http.get("/hooks/plan", params={"days": days}, headers=auth())
                assert r.status_code == 200, (days, r.text)
        await ctl.close()


def test_parse_rfc3339_never_overflows() -> None:
    for value in ("9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"):
        with pytest.raises(ValueError, match="out of the supported range"):
            parse_rfc3339(value)
    assert parse_rfc3339("9999-12-31T23:59:59+00:00").year == 9999


async def test_alertmanager_payload_lists_the_clusters_once(monkeypatch: Any) -> None:
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)
        listings = count_listings(env, monkeypatch)
        unknown = [
            alert("firing", cce_action="hibernate", cluster_id=f"no-such-{i:03d}")
            for i in range(500)
        ]
        known = alert("firing", cce_action="hibernate", cluster_id=env.ids["dev-a"])
        async with serving(ctl) as http:
            r = await http.post(
                "/hooks/alertmanager", headers=auth(), json=alertmanager_payload([*unknown, known])
            )
            assert r.status_code == 200, r.text
            results = r.json()["results"]
        assert len(listings) == 1
        assert [x["result"] for x in results] == ["not_found"] * 500 + ["started"]
        await ctl.wait_idle()
        await ctl.close()
