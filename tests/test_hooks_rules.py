"""The hooks' answers in full: what Alertmanager and a caller read back, what the history keeps.

``test_hibernation_hooks.py`` holds the behaviour; these tests hold every field of the answers (a
caller acts on them) and the token's sources, so that a changed key or value is a failure.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr

from exporter.hibernation.hooks import load_hook_token
from tests.test_hibernation_controller import environment
from tests.test_hibernation_hooks import TOKEN, _setup, alert, alertmanager_payload, auth, serving


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
