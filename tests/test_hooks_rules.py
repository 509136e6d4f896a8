"""The hooks' answers in full: what Alertmanager and a caller read back, what the history keeps.

``test_hibernation_hooks.py`` holds the behaviour; these tests hold every field of the answers (a
caller acts on them) and the token's sources, so that a changed key or value is a failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr

from exporter.config import Settings
from exporter.hibernation.controller import MemoryStateStore, StateNotSaved
from exporter.hibernation.hooks import (
    HookLimits,
    _Hooks,
    build_hook_routes,
    load_hook_token,
    parse_rfc3339,
)
from exporter.web import build_app
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
    serving,
)
from tests.test_signing_rules import shanghai_local_time  # noqa: F401  (a fixture)


async def test_alertmanager_answers_every_alert_in_full(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    long_name = "Night" + "x" * 300
    async with environment(["dev-a", "dev-b", "dev-c"]) as env:
        ctl = await _setup(env)
        a, b, c = env.ids["dev-a"], env.ids["dev-b"], env.ids["dev-c"]
        payload = alertmanager_payload(
            [
                {
                    **alert("firing", cce_action="hibernate", cluster_id=a),
                    "labels": {"alertname": long_name, "cce_action": "hibernate", "cluster_id": a},
                },
                alert("resolved", cce_action="hibernate", cluster_id=b),
                alert("firing", cluster_id=c),
                alert("firing", cce_action="awake", cluster_id=""),
                alert("firing", cce_action="awake", cluster_id=c),
                {"status": "firing", "labels": {"cce_action": "hibernate", "cluster_id": 7}},
            ]
        )
        async with serving(ctl, TOKEN) as http:
            r = await http.post("/hooks/alertmanager", headers=auth(), json=payload)
            assert r.status_code == 200, r.text
            await ctl.wait_idle()
        needs = "needs labels cce_action=hibernate|awake and cluster_id"
        names = [x["labels"].get("alertname") for x in payload["alerts"]]
        assert r.json() == {
            "results": [
                {
                    "alertname": long_name,
                    "result": "started",
                    "cluster_id": a,
                    "cluster": "dev-a",
                    "action": "hibernate",
                    "reason": "",
                },
                {"alertname": names[1], "result": "ignored", "reason": "resolved"},
                {"alertname": names[2], "result": "ignored", "reason": needs},
                {"alertname": names[3], "result": "ignored", "reason": needs},
                {
                    "alertname": names[4],
                    "result": "skipped",
                    "cluster_id": c,
                    "cluster": "dev-c",
                    "action": "awake",
                    "reason": "the cluster is already Available",
                },
                {"alertname": "", "result": "ignored", "reason": needs},
            ]
        }
        # The history says who asked; the log names the alert (cut to 200 characters).
        history = ctl.state["history"][f"sim/{a}"]
        assert [(h["action"], h["result"], h["source"]) for h in history] == [
            ("hibernate", "success", "alertmanager")
        ]
        assert f"({('alert ' + long_name)[:200]})" in caplog.text
        summary = f"{a}: started, {names[1]}: ignored, {names[2]}: ignored, {names[3]}: ignored"
        assert f"{summary}, {c}: skipped, : ignored" in caplog.text
        await ctl.close()


async def test_alertmanager_errors_name_what_is_wrong(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)
        async with serving(ctl, TOKEN) as http:
            answers = {}
            for key, body in {
                "version": {"version": "3", "alerts": []},
                "alerts": {"alerts": "x"},
            }.items():
                r = await http.post("/hooks/alertmanager", headers=auth(), json=body)
                assert r.status_code == 400
                answers[key] = r.json()
            r = await http.post("/hooks/alertmanager", headers=auth(), json={"alerts": []})
            assert (r.status_code, r.json()) == (200, {"results": []})
        assert answers == {
            "version": {"error": "unsupported Alertmanager payload version '3' (4 expected)"},
            "alerts": {"error": "'alerts' must be a list (Alertmanager webhook payload version 4)"},
        }
        assert "-> 200 no alerts" in caplog.text
        await ctl.close()


async def test_hooks_off_answer_a_plain_404() -> None:
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)
        async with serving(ctl, None) as http:
            r = await http.post(f"/hooks/clusters/{env.ids['dev-a']}/hibernate", headers=auth())
            assert (r.status_code, r.json()) == (404, {"error": "not found"})
        await ctl.close()


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (SimpleNamespace(), None),  # neither attribute: hooks off, not an error
        (SimpleNamespace(hook_token="  plain  "), "plain"),
        (SimpleNamespace(hook_token=SecretStr(" secret\n")), "secret"),
        (SimpleNamespace(hook_token="   "), None),
        (SimpleNamespace(hook_token=None, hook_token_file=None), None),
        (SimpleNamespace(hook_token=None, hook_token_file=""), None),
    ],
)
def test_hook_token_sources(settings: Any, expected: str | None) -> None:
    assert load_hook_token(settings) == expected


def test_hook_token_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_bytes("t\u00f6ken-\u2603\n".encode())
    assert load_hook_token(SimpleNamespace(hook_token_file=path)) == "t\u00f6ken-\u2603"
    assert load_hook_token(SimpleNamespace(hook_token_file=str(path))) == "t\u00f6ken-\u2603"
    path.write_text(" \n")
    assert load_hook_token(SimpleNamespace(hook_token_file=path)) is None
    # A value beats the file.
    both = SimpleNamespace(hook_token="value", hook_token_file=path)
    assert load_hook_token(both) == "value"


async def test_each_request_is_logged_with_its_outcome(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="exporter.hibernation.hooks")
    async with environment(["dev-a", "dev-b"]) as env:
        ctl = await _setup(env)
        a, b = env.ids["dev-a"], env.ids["dev-b"]
        async with serving(ctl, TOKEN) as http:
            assert (
                await http.post(f"/hooks/clusters/{a}/hibernate", headers=auth())
            ).status_code == 202
            assert (
                await http.post(f"/hooks/clusters/{b}/awake", headers=auth())
            ).status_code == 409
            await ctl.wait_idle()
        lines = [r.getMessage() for r in caplog.records if r.name == "exporter.hibernation.hooks"]
        assert lines == [
            f"hook POST /hooks/clusters/{a}/hibernate cluster={a} -> 202 started",
            f"hook POST /hooks/clusters/{b}/awake cluster={b} -> 409 skipped: "
            "the cluster is already Available",
        ]
        await ctl.close()


async def test_a_body_that_is_not_an_object_is_refused_by_name() -> None:
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)
        cid = env.ids["dev-a"]
        async with serving(ctl, TOKEN) as http:
            r = await http.post(f"/hooks/clusters/{cid}/hibernate", headers=auth(), json=[1, 2])
            assert (r.status_code, r.json()) == (400, {"error": "the body must be a JSON object"})
            r = await http.post(f"/hooks/clusters/{cid}/hibernate", headers=auth(), content=b"{x")
            assert r.status_code == 400
            assert r.json()["error"].startswith("the body is not JSON: ")
        assert env.api.calls == []
        await ctl.close()


def test_rfc3339_times(shanghai_local_time: None) -> None:  # noqa: F811
    expected = datetime(2027, 3, 1, 9, tzinfo=UTC)
    for text in ("2027-03-01T09:00:00Z", "2027-03-01T09:00:00z", " 2027-03-01T10:00:00+01:00 "):
        parsed = parse_rfc3339(text)
        assert parsed == expected and parsed.utcoffset() == timedelta(0), text
    with pytest.raises(ValueError) as caught:
        parse_rfc3339("2027-03-01T09:00:00")
    assert str(caught.value) == "'2027-03-01T09:00:00' has no UTC offset (add Z or +HH:MM)"
    with pytest.raises(ValueError) as caught:
        parse_rfc3339("tomorrow")
    assert str(caught.value) == "'tomorrow' is not an RFC 3339 time (e.g. 2027-03-01T18:00:00Z)"


async def test_the_plan_horizon_is_the_days_asked_within_bounds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="exporter.hibernation.hooks")
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)  # Monday noon
        async with serving(ctl, TOKEN) as http:

            async def upcoming(days: str) -> int:
                r = await http.get("/hooks/plan", params={"days": days}, headers=auth())
                assert r.status_code == 200, r.text
                return len(r.json()["clusters"][0]["next"])

            assert await upcoming("0") == 0
            assert await upcoming("-3") == 0
            assert await upcoming("1") == 2  # 20:00 tonight, 08:00 tomorrow
            assert await upcoming("7") == 10
            # Bounded at 366 days: the 367th adds nothing.
            assert await upcoming("366") == await upcoming("10000")
            assert (await http.post("/hooks/plan", headers=auth())).status_code == 405
            r = await http.get("/hooks/plan", params={"days": "soon"}, headers=auth())
            assert (r.status_code, r.json()) == (400, {"error": "days='soon' is not a number"})
        assert "-> 200 plan" in caplog.text
        await ctl.close()


async def test_awake_and_skip_routes_in_full() -> None:
    async with environment(["dev-a", "dev-b", "prod-x"]) as env:
        ctl = await _setup(env)
        a, b, prod = env.ids["dev-a"], env.ids["dev-b"], env.ids["prod-x"]
        env.sim.world.set_phase("cluster", a, "Hibernation")
        async with serving(ctl, TOKEN) as http:
            r = await http.post(
                f"/hooks/clusters/{a}/awake",
                headers=auth(),
                json={"until": "2027-03-01T18:00:00Z"},
            )
            assert (r.status_code, r.json()["action"], r.json()["result"]) == (
                202,
                "awake",
                "started",
            )
            await ctl.wait_idle()
            assert [(act, n) for _, act, n in env.api.calls] == [("awake", "dev-a")]
            entry = ctl.state["history"][f"sim/{a}"][-1]
            assert (entry["action"], entry["result"], entry["source"]) == (
                "awake",
                "success",
                "hook",
            )
            plan = (await http.get("/hooks/plan", headers=auth())).json()
            row = next(c for c in plan["clusters"] if c["cluster_id"] == a)
            assert row["override"] == {
                "kind": "keep_awake",
                "until": "2027-03-01T18:00:00Z",
                "reason": "",
            }
            for body, message in [
                ({"until": 5}, "'until' must be an RFC 3339 string"),
                ({"reason": 5}, "'reason' must be a string"),
            ]:
                r = await http.post(f"/hooks/clusters/{b}/awake", headers=auth(), json=body)
                assert (r.status_code, r.json()) == (400, {"error": message})
            # Skip: set, refused for a cluster no policy governs, unknown cluster.
            r = await http.post(f"/hooks/clusters/{b}/skip", headers=auth())
            assert (r.status_code, r.json()) == (200, {"cluster_id": b, "override": "skip_next"})
            r = await http.post(f"/hooks/clusters/{prod}/skip", headers=auth())
            assert (r.status_code, r.json()) == (
                409,
                {"error": "no policy selects cluster 'prod-x'; it is never acted on"},
            )
            r = await http.post("/hooks/clusters/nope/skip", headers=auth())
            assert (r.status_code, r.json()) == (404, {"error": "cluster 'nope' is not known"})
            # A cluster created since the controller last listed: found by listing again.
            late = env.sim.world.add_cluster(name="dev-late", phase="Available").uid
            r = await http.post(f"/hooks/clusters/{late}/skip", headers=auth())
            assert (r.status_code, r.json()) == (200, {"cluster_id": late, "override": "skip_next"})
        assert env.phase("dev-b") == "Available"
        await ctl.close()


async def test_refusals_answer_and_log_in_full(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="exporter.hibernation.hooks")
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)
        cid = env.ids["dev-a"]
        async with serving(ctl, TOKEN) as http:
            r = await http.get("/hooks/plan", headers={"Authorization": "Bearer nope"})
            assert (r.status_code, r.json()) == (401, {"error": "a valid bearer token is required"})
            r = await http.post(f"/hooks/clusters/{cid}/hibernate", headers=auth(), content=b"[")
            assert r.status_code == 400
            assert (await http.get("/hooks/plan", headers=auth())).status_code == 200
        lines = [r.getMessage() for r in caplog.records if r.name == "exporter.hibernation.hooks"]
        assert lines[0] == "hook GET /hooks/plan cluster=- -> 401 unauthorized"
        assert lines[1].startswith(
            f"hook POST /hooks/clusters/{cid}/hibernate cluster={cid} -> 400 bad request: "
            "the body is not JSON: "
        )
        assert lines[2] == "hook GET /hooks/plan cluster=- -> 200 plan"
        await ctl.close()


async def test_a_token_with_inner_spaces_and_one_from_a_non_utf8_environment() -> None:
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)
        async with serving(ctl, "two words") as http:
            ok = await http.get("/hooks/plan", headers={"Authorization": "Bearer two words"})
            assert ok.status_code == 200
            bad = await http.get("/hooks/plan", headers={"Authorization": "Bearer words"})
            assert bad.status_code == 401
        # os.environ decodes undecodable bytes to surrogates: such a token must not crash.
        async with serving(ctl, "tok-\udcff") as http:
            r = await http.get("/hooks/plan", headers={"Authorization": "Bearer tok-"})
            assert r.status_code == 401
        await ctl.close()


async def test_hooks_off_answer_404_to_every_method() -> None:
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)
        async with serving(ctl, None) as http:
            for method in ("GET", "POST", "DELETE", "PUT"):
                r = await http.request(method, "/hooks/anything", headers=auth())
                assert (r.status_code, r.json()) == (404, {"error": "not found"}), method
        await ctl.close()


async def test_the_override_route_in_full(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="exporter.hibernation.hooks")
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)
        cid = env.ids["dev-a"]
        async with serving(ctl, TOKEN) as http:
            r = await http.post(f"/hooks/clusters/{cid}/skip", headers=auth())
            assert r.status_code == 200
            plan = (await http.get("/hooks/plan", headers=auth())).json()
            assert plan["clusters"][0]["override"]["reason"] == "skip requested by hook"
            r = await http.delete(f"/hooks/clusters/{cid}/override", headers=auth())
            assert (r.status_code, r.json()) == (200, {"cluster_id": cid, "removed": True})
            r = await http.delete(f"/hooks/clusters/{cid}/override", headers=auth())
            assert (r.status_code, r.json()) == (
                404,
                {"cluster_id": cid, "removed": False, "error": "no override"},
            )
            r = await http.post("/hooks/clusters/nope/skip", headers=auth())
            assert r.status_code == 404
        lines = [r.getMessage() for r in caplog.records if r.name == "exporter.hibernation.hooks"]
        assert f"hook POST /hooks/clusters/{cid}/skip cluster={cid} -> 200 skip set" in lines
        assert (
            f"hook DELETE /hooks/clusters/{cid}/override cluster={cid} -> 200 override removed"
            in lines
        )
        assert (
            f"hook DELETE /hooks/clusters/{cid}/override cluster={cid} -> 404 no override" in lines
        )
        assert (
            "hook POST /hooks/clusters/nope/skip cluster=nope -> 404 refused: "
            "cluster 'nope' is not known"
        ) in lines
        await ctl.close()


def test_hook_limits_come_from_the_settings_and_keep_their_defaults_without_them() -> None:
    settings = SimpleNamespace(
        hook_max_body_bytes=4096, hook_max_json_depth=8, web_header_timeout=2.5
    )
    assert HookLimits.from_settings(settings) == HookLimits(
        max_body_bytes=4096, max_json_depth=8, body_timeout=2.5
    )
    assert HookLimits.from_settings(Settings.model_construct()) == HookLimits(1024 * 1024, 32, 10.0)


async def test_alertmanager_lists_the_clusters_only_for_a_firing_action_on_an_unknown_one(
    monkeypatch: Any,
) -> None:
    async with environment(["dev-a", "dev-b"]) as env:
        ctl = await _setup(env)
        listings = count_listings(env, monkeypatch)

        async def post(*alerts: dict[str, Any]) -> list[str]:
            body = alertmanager_payload(list(alerts))
            r = await http.post("/hooks/alertmanager", headers=auth(), json=body)
            assert r.status_code == 200, r.text
            return [x["result"] for x in r.json()["results"]]

        async with serving(ctl, TOKEN) as http:
            # Known clusters, resolved alerts and other actions need no listing.
            known = alert("firing", cce_action="hibernate", cluster_id=env.ids["dev-a"])
            assert await post(known) == ["started"]
            await ctl.wait_idle()
            assert await post(
                alert("resolved", cce_action="hibernate", cluster_id="no-such-1"),
                alert("firing", cce_action="restart", cluster_id="no-such-2"),
            ) == ["ignored", "ignored"]
            assert not listings
            # A cluster the controller has not seen yet (created since its last listing) is
            # looked up, for an awake as for a hibernate.
            ctl.clusters.pop(("sim", env.ids["dev-b"]))
            late = alert("firing", cce_action="awake", cluster_id=env.ids["dev-b"])
            assert await post(late) != ["not_found"]
            assert len(listings) == 1
        await ctl.wait_idle()
        await ctl.close()


async def test_alertmanager_answers_an_unknown_cluster_in_full() -> None:
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)
        async with serving(ctl, TOKEN) as http:
            body = alertmanager_payload([alert("firing", cce_action="awake", cluster_id="gone")])
            r = await http.post("/hooks/alertmanager", headers=auth(), json=body)
        assert r.status_code == 200, r.text
        assert r.json()["results"] == [
            {
                "alertname": "DevClusterIdle",
                "result": "not_found",
                "cluster_id": "gone",
                "cluster": "",
                "action": "awake",
                "reason": "cluster 'gone' is not known",
            }
        ]
        await ctl.close()


def test_the_hooks_repr_never_shows_the_token() -> None:
    hooks = _Hooks(None, TOKEN)  # type: ignore[arg-type]  # the controller is not read
    assert repr(hooks) == "_Hooks(token=***)"


async def test_an_empty_token_means_the_hooks_are_off() -> None:
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)
        async with serving(ctl, "") as http:
            r = await http.post(
                f"/hooks/clusters/{env.ids['dev-a']}/hibernate",
                headers={"Authorization": "Bearer "},
            )
            assert (r.status_code, r.json()) == (404, {"error": "not found"})
        assert env.api.calls == []
        await ctl.close()


async def test_the_scheme_is_read_in_any_case_and_spaces_around_the_token_are_ignored() -> None:
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)
        async with serving(ctl, TOKEN) as http:
            for header, status in [
                (f"bearer {TOKEN}", 200),
                (f"BEARER   {TOKEN}  ", 200),
                (f"Bearer{TOKEN}", 401),
                ("Bearer", 401),
                (f"Token {TOKEN}", 401),
            ]:
                r = await http.get("/hooks/plan", headers={"Authorization": header})
                assert r.status_code == status, header
        await ctl.close()


async def test_the_plan_covers_seven_days_unless_asked() -> None:
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)  # Monday noon
        async with serving(ctl, TOKEN) as http:
            r = await http.get("/hooks/plan", headers=auth())
            assert r.status_code == 200
            week = await http.get("/hooks/plan", params={"days": "7"}, headers=auth())
            assert r.json() == week.json()
            assert len(r.json()["clusters"][0]["next"]) == 10
        await ctl.close()


async def test_bodies_at_the_edges_of_their_bounds() -> None:
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)
        awake = f"/hooks/clusters/{env.ids['dev-a']}/awake"  # already awake: 409 once read
        limits = HookLimits(max_body_bytes=32, max_json_depth=3)
        app = build_app(Source(), extra_routes=build_hook_routes(ctl, TOKEN, limits=limits))  # type: ignore[arg-type]
        async with hooks_client(app) as http:

            async def post(body: bytes) -> tuple[int, str]:
                r = await http.post(awake, headers=auth(), content=body)
                return r.status_code, r.json().get("error", "")

            # Only white space: no body.
            assert (await post(b" \n\t "))[0] == 409
            # Nested exactly as deep as allowed, then one deeper (also after a plain value).
            assert (await post(b'{"a": {"b": [1]}}'))[0] == 409
            deeper = "the body nests deeper than 3 levels"
            assert await post(b'{"a": {"b": [[1]]}}') == (400, deeper)
            assert await post(b'{"a": [[[1]], 1]}') == (400, deeper)
            assert await post(b'{"a": [1, [[1]]]}') == (400, deeper)
            # Exactly as large as allowed, then one byte more.
            exact = b'{"reason": "' + b"x" * 18 + b'"}'
            assert len(exact) == 32
            assert (await post(exact))[0] == 409
            assert await post(exact + b" ") == (413, "the body is larger than 32 bytes")

            async def streamed() -> AsyncIterator[bytes]:  # no length declared: cut when read
                yield exact
                yield b" "

            r = await http.post(awake, headers=auth(), content=streamed())
            assert (r.status_code, r.json()) == (413, {"error": "the body is larger than 32 bytes"})
        assert env.api.calls == []
        await ctl.close()


async def test_until_at_most_ten_years_ahead_and_empty_is_none() -> None:
    async with environment(["dev-a", "dev-b", "dev-c"]) as env:
        ctl = await _setup(env)
        now = datetime.now(UTC)

        def stamp(days: float) -> str:
            return (now + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")

        async with serving(ctl, TOKEN) as http:
            path = f"/hooks/clusters/{env.ids['dev-a']}/hibernate"
            r = await http.post(path, headers=auth(), json={"until": stamp(3660 + 1)})
            assert (r.status_code, r.json()) == (
                400,
                {"error": "'until' is more than 10 years ahead"},
            )
            r = await http.post(path, headers=auth(), json={"until": stamp(3660 - 1)})
            assert r.status_code == 202, r.text
            # An empty 'until' is no 'until': no override is set.
            r = await http.post(
                f"/hooks/clusters/{env.ids['dev-b']}/hibernate", headers=auth(), json={"until": ""}
            )
            assert r.status_code == 202, r.text
        await ctl.wait_idle()
        assert set(ctl.state["overrides"]) == {f"sim/{env.ids['dev-a']}"}
        await ctl.close()


class _Unwritable(MemoryStateStore):
    def save(self, value: Any) -> None:
        raise StateNotSaved("cannot write the state file /state/state.json: Read-only file system")


async def test_a_change_that_cannot_be_saved_answers_503_in_full(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="exporter.hibernation.hooks")
    async with environment(["dev-a"]) as env:
        env.store = _Unwritable()
        ctl = await _setup(env)
        cid = env.ids["dev-a"]
        error = (
            "the change could not be saved: cannot write the state file /state/state.json: "
            "Read-only file system"
        )
        async with serving(ctl, TOKEN) as http:
            r = await http.post(f"/hooks/clusters/{cid}/skip", headers=auth())
            assert (r.status_code, r.json()) == (503, {"error": error})
        lines = [r.getMessage() for r in caplog.records if r.name == "exporter.hibernation.hooks"]
        assert lines == [f"hook POST /hooks/clusters/{cid}/skip cluster={cid} -> 503 {error}"]
        assert ctl.state["overrides"] == {}
        await ctl.close()


async def test_a_cluster_is_looked_up_in_a_new_listing_only_when_not_known(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)
        cid = env.ids["dev-a"]
        listings = count_listings(env, monkeypatch)
        async with serving(ctl, TOKEN) as http:
            assert (
                await http.post(f"/hooks/clusters/{cid}/skip", headers=auth())
            ).status_code == 200
            assert (
                await http.delete(f"/hooks/clusters/{cid}/override", headers=auth())
            ).status_code == 200
            assert len(listings) == 0
            assert (
                await http.delete("/hooks/clusters/nope/override", headers=auth())
            ).status_code == 404
            assert len(listings) == 1
            assert (await http.post("/hooks/clusters/nope/skip", headers=auth())).status_code == 404
            assert len(listings) == 2
        await ctl.close()


async def test_refused_values_are_quoted_and_cut_in_full() -> None:
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)
        path = f"/hooks/clusters/{env.ids['dev-a']}/hibernate"
        async with serving(ctl, TOKEN) as http:
            r = await http.post(path, headers=auth(), content=b"{")
            assert r.json() == {
                "error": "the body is not JSON: Expecting property name enclosed in double "
                "quotes: line 1 column 2 (char 1)"
            }
            long = "y" * 400
            r = await http.post(path, headers=auth(), json={"until": long})
            message = f"{long!r} is not an RFC 3339 time (e.g. 2027-03-01T18:00:00Z)"
            assert (r.status_code, r.json()) == (400, {"error": message[:300]})
            for days, error in [
                ("d" * 50, f"days={'d' * 40!r} is not a number"),
                ("nan", "days=nan is not a number"),
            ]:
                r = await http.get("/hooks/plan", params={"days": days}, headers=auth())
                assert (r.status_code, r.json()) == (400, {"error": error})
        assert env.api.calls == []
        await ctl.close()


async def test_each_route_answers_only_its_method() -> None:
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)
        c = f"/hooks/clusters/{env.ids['dev-a']}"
        async with serving(ctl, TOKEN) as http:
            for method, path in [
                ("GET", f"{c}/hibernate"),
                ("PUT", f"{c}/awake"),
                ("GET", f"{c}/skip"),
                ("POST", f"{c}/override"),
                ("DELETE", "/hooks/plan"),
                ("GET", "/hooks/alertmanager"),
            ]:
                r = await http.request(method, path, headers=auth())
                assert r.status_code == 405, (method, path)
        assert env.api.calls == [] and ctl.state["overrides"] == {}
        await ctl.close()


async def test_a_declared_length_past_the_cap_is_refused_before_reading() -> None:
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)
        limits = HookLimits(max_body_bytes=32, body_timeout=0.05)
        app = build_app(Source(), extra_routes=build_hook_routes(ctl, TOKEN, limits=limits))  # type: ignore[arg-type]
        never = asyncio.Event()

        async def first_byte_then_nothing() -> AsyncIterator[bytes]:
            yield b"{"
            await never.wait()

        async with hooks_client(app) as http:
            r = await http.post(
                f"/hooks/clusters/{env.ids['dev-a']}/hibernate",
                headers={**auth(), "Content-Length": "33"},
                content=first_byte_then_nothing(),
            )
            # Refused from the header alone: not left to time out while the body is awaited.
            assert (r.status_code, r.json()) == (413, {"error": "the body is larger than 32 bytes"})
        assert env.api.calls == []
        await ctl.close()
