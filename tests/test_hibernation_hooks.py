"""The hibernation hooks, with the simulator behind the controller.

The hook routes and the simulator are called in process (httpx's ASGI transport, the controller
tests' ``environment``): the same applications and requests, without a server to start and stop
for each test. The hooks over real HTTP on loopback are tested in
``test_hooks_limits`` (a body that never ends), ``test_leader`` and
``test_hibernation_daemon_override``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from exporter.hibernation.controller import HibernationController
from exporter.hibernation.hooks import build_hook_routes, load_hook_token
from exporter.web import build_app
from tests.test_hibernation_controller import Env, environment

TOKEN = "s3cret-hook-token-0123456789"


class Source:
    def exposition(self) -> None:
        return None

    def readiness(self) -> tuple[bool, list[str]]:
        return True, []


def count_listings(env: Env, monkeypatch: pytest.MonkeyPatch) -> list[None]:
    """One entry per cluster listing asked of the API from now on."""
    listings: list[None] = []
    real = env.api.list_clusters

    async def counting() -> Any:
        listings.append(None)
        return await real()

    monkeypatch.setattr(env.api, "list_clusters", counting)
    return listings


def hooks_client(app: Any) -> httpx.AsyncClient:
    """A client of ``app`` (the web app with the hook routes), in process."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:1")


@asynccontextmanager
async def serving(
    ctl: HibernationController, token: str | None
) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(Source(), extra_routes=build_hook_routes(ctl, token))  # type: ignore[arg-type]
    async with hooks_client(app) as http:
        yield http


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _setup(env: Env) -> HibernationController:
    env.at(datetime(2027, 3, 1, 12, tzinfo=UTC))  # Monday noon: policy wants dev-* awake
    ctl = env.controller()
    await ctl.tick()
    return ctl


async def test_no_token_configured_means_404() -> None:
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)
        async with serving(ctl, None) as http:
            cid = env.ids["dev-a"]
            for method, path in [
                ("POST", f"/hooks/clusters/{cid}/hibernate"),
                ("GET", "/hooks/plan"),
                ("POST", "/hooks/alertmanager"),
            ]:
                response = await http.request(method, path, headers=auth())
                assert response.status_code == 404, path
        assert env.api.calls == []
        await ctl.close()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-of-same-length-x"},
        {"Authorization": "Bearer short"},
        {"Authorization": f"Bearer {TOKEN}extra"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ],
    ids=["none", "wrong", "shorter", "longer", "wrong-scheme", "no-scheme"],
)
async def test_bad_tokens_get_401_and_nothing_is_done(
    headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    assert len("wrong-token-of-same-length-x") == len(TOKEN)
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)
        async with serving(ctl, TOKEN) as http:
            cid = env.ids["dev-a"]
            r = await http.post(f"/hooks/clusters/{cid}/hibernate", headers=headers)
            assert r.status_code == 401
            r = await http.post(f"/hooks/clusters/{cid}/skip", headers=headers)
            assert r.status_code == 401
            r = await http.get("/hooks/plan", headers=headers)
            assert r.status_code == 401
        await ctl.wait_idle()
        assert env.api.calls == []
        assert ctl.state["overrides"] == {}
        assert "unauthorized" in caplog.text
        assert TOKEN not in caplog.text
        await ctl.close()


async def test_actions_overrides_and_plan(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    async with environment(["dev-a", "dev-b", "prod-x"]) as env:
        ctl = await _setup(env)
        a, b = env.ids["dev-a"], env.ids["dev-b"]
        async with serving(ctl, TOKEN) as http:
            r = await http.post(
                f"/hooks/clusters/{a}/hibernate",
                headers=auth(),
                json={"until": "2027-03-02T10:00:00+01:00", "reason": "offsite"},
            )
            assert r.status_code == 202, r.text
            assert r.json()["result"] == "started"
            await ctl.wait_idle()
            assert env.phase("dev-a") == "Hibernation"
            # Already hibernated: refused by the safety rules, nothing called.
            r = await http.post(f"/hooks/clusters/{a}/hibernate", headers=auth())
            assert r.status_code == 409 and "already Hibernation" in r.json()["reason"]
            # Not governed by any policy.
            r = await http.post(f"/hooks/clusters/{env.ids['prod-x']}/hibernate", headers=auth())
            assert r.status_code == 409 and "no policy" in r.json()["reason"]
            r = await http.post("/hooks/clusters/nope/awake", headers=auth())
            assert r.status_code == 404
            r = await http.post(f"/hooks/clusters/{a}/awake", headers=auth(), content=b"{")
            assert r.status_code == 400 and "not JSON" in r.json()["error"]
            r = await http.post(
                f"/hooks/clusters/{a}/awake", headers=auth(), json={"until": "tomorrow"}
            )
            assert r.status_code == 400 and "RFC 3339" in r.json()["error"]
            r = await http.post(f"/hooks/clusters/{b}/skip", headers=auth())
            assert r.status_code == 200

            r = await http.get("/hooks/plan", headers=auth(), params={"days": "1"})
            assert r.status_code == 200
            rows = {row["cluster"]: row for row in r.json()["clusters"]}
            assert set(rows) == {"dev-a", "dev-b"}
            assert rows["dev-a"]["override"] == {
                "kind": "keep_hibernated",
                "until": "2027-03-02T09:00:00Z",
                "reason": "offsite",
            }
            assert rows["dev-a"]["phase"] == "Hibernation"
            # The keep override is what is wanted now; the policy's own wish is kept beside it.
            assert rows["dev-a"]["desired"] == "hibernated"
            assert rows["dev-a"]["policy_desired"] == "awake"
            assert rows["dev-b"]["override"]["kind"] == "skip_next"
            assert rows["dev-b"]["next"][0] == {
                "action": "hibernate",
                "at": "2027-03-01T19:00:00Z",
                "skipped": True,
            }
            r = await http.delete(f"/hooks/clusters/{b}/override", headers=auth())
            assert r.status_code == 200 and r.json()["removed"] is True
            r = await http.delete(f"/hooks/clusters/{b}/override", headers=auth())
            assert r.status_code == 404
        assert [(act, n) for _, act, n in env.api.calls] == [("hibernate", "dev-a")]
        assert f"cluster={a} -> 202 started" in caplog.text
        await ctl.close()

        # Overrides survive a restart: a new controller on the same state.
        again = env.controller()
        await again.tick()
        plan = {row["cluster"]: row for row in again.plan(1)["clusters"]}
        assert plan["dev-a"]["override"]["kind"] == "keep_hibernated"
        # ... and the 08:00 Berlin wake-up on Tuesday is skipped because of it.
        env.at(datetime(2027, 3, 2, 7, 0, 5, tzinfo=UTC))
        outcomes = await again.tick()
        await again.wait_idle()
        assert [(o.cluster, o.result) for o in outcomes if o.cluster == "dev-a"] == [
            ("dev-a", "skipped")
        ]
        assert env.phase("dev-a") == "Hibernation"
        await again.close()


def alertmanager_payload(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """A webhook body shaped exactly as Alertmanager 0.27 sends it."""
    return {
        "receiver": "cce-hibernation",
        "status": "firing",
        "alerts": alerts,
        "groupLabels": {"alertname": "DevClusterIdle"},
        "commonLabels": {"alertname": "DevClusterIdle", "severity": "info"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "version": "4",
        "groupKey": '{}:{alertname="DevClusterIdle"}',
        "truncatedAlerts": 0,
    }


def alert(status: str, **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "DevClusterIdle", "severity": "info", **labels},
        "annotations": {"summary": "idle"},
        "startsAt": "2027-03-01T11:50:00.000Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2027-03-01T11:59:00.000Z",
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=up",
        "fingerprint": "c6b4a8b1d2e3f405",
    }


async def test_alertmanager_receiver() -> None:
    async with environment(["dev-a", "dev-b", "dev-c"]) as env:
        ctl = await _setup(env)
        a, b, c = env.ids["dev-a"], env.ids["dev-b"], env.ids["dev-c"]
        payload = alertmanager_payload(
            [
                alert("firing", cce_action="hibernate", cluster_id=a),
                alert("resolved", cce_action="hibernate", cluster_id=b),
                alert("firing", cluster_id=c),  # no cce_action: ignored
                alert("firing", cce_action="reboot", cluster_id=c),
            ]
        )
        async with serving(ctl, TOKEN) as http:
            r = await http.post("/hooks/alertmanager", headers=auth(), json=payload)
            assert r.status_code == 200, r.text
            results = r.json()["results"]
            assert [x["result"] for x in results] == ["started", "ignored", "ignored", "ignored"]
            await ctl.wait_idle()
            for bad, why in [
                ({"alerts": "x"}, "'alerts' must be a list"),
                ({"alerts": [{"status": "firing"}]}, "alerts[0] has no 'labels'"),
                ({"alerts": [{"status": "odd", "labels": {}}]}, "firing' or 'resolved"),
                ({"version": "3", "alerts": []}, "version"),
                ([1, 2], "JSON object"),
            ]:
                r = await http.post("/hooks/alertmanager", headers=auth(), json=bad)
                assert r.status_code == 400 and why in r.json()["error"], (bad, r.text)
        assert [(act, n) for _, act, n in env.api.calls] == [("hibernate", "dev-a")]
        assert env.phase("dev-a") == "Hibernation"
        assert env.phase("dev-b") == "Available"
        await ctl.close()


async def test_notifications_never_block_the_action() -> None:
    async with environment(["dev-a"]) as env:
        env.at(datetime(2027, 3, 1, 12, tzinfo=UTC))
        received: list[dict[str, Any]] = []
        gate = asyncio.Event()

        async def handler(request: httpx.Request) -> httpx.Response:
            import json

            received.append(json.loads(request.content))
            if len(received) == 1:
                await gate.wait()  # the "before" receiver hangs until released
            return httpx.Response(500)

        from exporter.hibernation.notify import Notifier

        notifier = Notifier(
            ["http://127.0.0.1:9/hook"], timeout=1, transport=httpx.MockTransport(handler)
        )
        ctl = env.controller(notifier=notifier)
        await ctl.tick()
        outcome = await ctl.request(env.ids["dev-a"], "hibernate", wait=True)
        assert outcome.result == "success"  # while the first notification still hangs
        gate.set()
        await ctl.wait_idle()
        assert [e["event"] for e in received] == ["hibernate.before", "hibernate.after"]
        assert received[1]["result"] == "success"
        assert notifier.failed == 2
        await ctl.close()


def test_load_hook_token(tmp_path: Any) -> None:
    from pydantic import SecretStr

    class S:
        hook_token: Any = None
        hook_token_file: Any = None

    s = S()
    assert load_hook_token(s) is None
    s.hook_token = SecretStr(" abc \n")
    assert load_hook_token(s) == "abc"
    s.hook_token = None
    (tmp_path / "t").write_text("from-file\n")
    s.hook_token_file = tmp_path / "t"
    assert load_hook_token(s) == "from-file"
