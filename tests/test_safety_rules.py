"""The safety rules a planted bug could break without the rest of the suite noticing.

Each test here holds one rule that protects a user's cluster or the exporter's view of it, and
each was written against a bug it must catch (mutation testing, ``make mutate``):

* an ``exclude`` glob keeps every cluster it matches out of the schedule, not only exact names;
* the controller reads the cluster's phase again right before the hibernate/awake call, so a
  cluster that started upgrading since the listing is not acted on;
* the hook token is compared whole: a prefix of it, or a longer token that starts with it, is
  refused;
* a cluster listed as ``Deleting`` whose re-fetch answers 404 is gone from the metrics.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import generate_latest

from exporter.cce.models import Cluster
from exporter.ha.sharding import ShardConfig, ShardError, detect_ordinal
from exporter.hibernation.schedule import Action
from exporter.simulator import Simulator
from tests.test_e2e_exporter import (
    Exporter,
    cluster_series,
    control,
    running_exporter,
    sim_env,
)
from tests.test_hibernation_controller import environment
from tests.test_hibernation_hooks import TOKEN, _setup, serving

# The Berlin policy of the controller tests, with a glob among its exclusions.
EXCLUDING = """
policies:
  - name: berlin
    clusters: {names: ["dev-*"], exclude: ["dev-crit*", "dev-exact"]}
    timezone: Europe/Berlin
    awake: ["Mon-Fri 08:00-20:00"]
controller:
  poll_seconds: 15
  retry_backoff_seconds: 60
  action_timeout_seconds: 900
  max_attempts: 3
"""


async def test_an_exclude_glob_keeps_every_matching_cluster_out_of_the_schedule() -> None:
    names = ["dev-a", "dev-critical", "dev-crit", "dev-crit-db", "dev-exact", "dev-criterion"]
    async with environment(names, EXCLUDING) as env:
        env.at(datetime(2027, 3, 1, 18, 59, tzinfo=UTC))
        ctl = env.controller()
        await ctl.tick()
        env.at(datetime(2027, 3, 1, 19, 0, 5, tzinfo=UTC))  # 20:00 Berlin: hibernate
        await ctl.tick()
        await ctl.wait_idle()
        # Only the cluster no exclusion names is hibernated; "dev-criterion" matches the glob.
        assert [(a, n) for _, a, n in env.api.calls] == [("hibernate", "dev-a")]
        excluded = {n for n in names if n != "dev-a"}
        for name in excluded:
            assert env.phase(name) == "Available", name
        plan = {row["cluster"]: row["excluded"] for row in ctl.plan(1)["clusters"]}
        assert plan == {"dev-a": False, **dict.fromkeys(excluded, True)}
        # An excluded cluster gets no policy series (it is not governed by the schedule).
        governed = {
            s.labels["cluster"]
            for m in ctl.registry.collect()
            if m.name == "cce_hibernation_policy_info"
            for s in m.samples
        }
        assert governed == {"dev-a"}
        await ctl.close()


@pytest.mark.parametrize(
    ("action", "listed", "moved_to", "transition"),
    [
        # 20:00 Berlin: hibernate a cluster listed Available that started upgrading since.
        ("hibernate", "Available", "Upgrading", datetime(2027, 3, 1, 19, 0, 5, tzinfo=UTC)),
        # 08:00 Berlin: awake a cluster listed Hibernation that is being deleted since.
        ("awake", "Hibernation", "Deleting", datetime(2027, 3, 2, 7, 0, 5, tzinfo=UTC)),
    ],
)
async def test_the_phase_is_read_again_right_before_the_call(
    action: Action, listed: str, moved_to: str, transition: datetime
) -> None:
    async with environment(["dev-a"]) as env:
        cid = env.ids["dev-a"]
        env.at(transition.replace(hour=transition.hour - 1))
        if listed != "Available":
            env.sim.world.set_phase("cluster", cid, listed)
        ctl = env.controller()
        assert await ctl.tick() == []
        env.at(transition)
        listing = await env.api.list_clusters()
        assert [c.phase for c in listing] == [listed]
        # The cluster moves on after the listing, before the controller acts on it.
        env.sim.world.set_phase("cluster", cid, moved_to)
        outcomes = await ctl.tick({"sim": listing})
        assert [(o.result, o.action) for o in outcomes] == [("started", action)]
        await ctl.wait_idle()
        assert env.api.calls == []
        assert env.phase("dev-a") == moved_to
        last = ctl.state["history"][f"sim/{cid}"][-1]
        assert last["action"] == action and last["result"] == "skipped"
        assert moved_to in last["reason"]
        labels = {
            "project_id": env.sim.credentials.project_id,
            "cluster_id": cid,
            "cluster": "dev-a",
            "action": action,
        }
        sample = ctl.registry.get_sample_value
        assert sample("cce_hibernation_actions_total", {**labels, "result": "skipped"}) == 1
        assert sample("cce_hibernation_actions_total", {**labels, "result": "success"}) is None
        assert f"sim/{cid}" not in ctl.state["in_flight"]
        await ctl.close()


@pytest.mark.parametrize(
    "token",
    [TOKEN[:-1], TOKEN[: len(TOKEN) // 2], TOKEN[:1], "", TOKEN + "0", TOKEN + " x", TOKEN * 2],
    ids=["all-but-last", "half", "first-char", "empty", "one-more", "spaced-suffix", "twice"],
)
async def test_the_hook_token_is_compared_whole(token: str) -> None:
    async with environment(["dev-a"]) as env:
        ctl = await _setup(env)
        cid = env.ids["dev-a"]
        async with serving(ctl, TOKEN) as http:
            refused = await http.post(
                f"/hooks/clusters/{cid}/hibernate",
                headers={"Authorization": f"Bearer {token}".strip()},
            )
            assert refused.status_code == 401
            plan = await http.get(
                "/hooks/plan", headers={"Authorization": f"Bearer {token}".strip()}
            )
            assert plan.status_code == 401
            await ctl.wait_idle()
            assert env.api.calls == []
            # The real token, in the same server, is accepted (the refusal is the token's).
            accepted = await http.get("/hooks/plan", headers={"Authorization": f"Bearer {TOKEN}"})
            assert accepted.status_code == 200
        await ctl.close()


@pytest.fixture
async def exporting(simulator: Simulator) -> AsyncIterator[Exporter]:
    async with running_exporter(sim_env(simulator)) as exp:
        yield exp


@pytest.mark.simulator(clusters=3, nodes_per_cluster=1)
async def test_a_deleting_cluster_whose_refetch_answers_404_is_removed(
    simulator: Simulator, exporting: Exporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = exporting
    assert all((await exporter.collect_all()).values())
    added = await control(simulator, "POST", "/_sim/clusters", {"name": "going", "nodes": 2})
    cid = added["uid"]
    simulator.world.set_phase("cluster", cid, "Deleting")
    assert all((await exporter.collect_all()).values())
    scrape = await exporter.scrape()
    # Listed as Deleting and fetched again (still there): it stays, with its nodes.
    assert scrape.value("cce_cluster_status_phase", cluster_id=cid, phase="Deleting") == 1
    assert scrape.label_values_for("cce_node_info", "node_id", cluster_id=cid) == set(
        added["nodes"]
    )

    # The deletion finishes between the listing and the re-fetch: the listing still says
    # Deleting, the re-fetch (errorStatus) answers 404.
    client = exporter.service.targets[0].client
    listed = client.list_clusters
    seen: list[Any] = []

    async def list_then_delete() -> Any:
        clusters = await listed()
        if not seen:
            seen.extend(c.phase for c in clusters if c.id == cid)
            await control(simulator, "DELETE", f"/_sim/clusters/{cid}")
        return clusters

    monkeypatch.setattr(client, "list_clusters", list_then_delete)
    assert await exporter.collect("clusters")
    assert seen == ["Deleting"]
    assert cluster_series(await exporter.scrape(), cid) == {}
    assert all((await exporter.collect_all()).values())
    assert cluster_series(await exporter.scrape(), cid) == {}


def test_the_shard_ordinal_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOSTNAME", raising=False)
    monkeypatch.setenv("POD_NAME", "cce-exporter-3")
    assert detect_ordinal() == 3
    monkeypatch.setenv("POD_NAME", "workstation")
    assert detect_ordinal() is None


def test_each_cluster_belongs_to_exactly_one_of_two_shards() -> None:
    ids = [f"cluster-{i}" for i in range(40)]
    halves = [ShardConfig(0, 2), ShardConfig(1, 2)]
    owners = [[s.owns(cid) for s in halves] for cid in ids]
    assert all(sum(o) == 1 for o in owners)
    assert 10 < sum(o[0] for o in owners) < 30  # both shards get a share
    # A model is owned by its ID, like the ID itself.
    model = Cluster.model_validate({"metadata": {"uid": ids[0], "name": "x"}})
    assert [s.owns(model) for s in halves] == owners[0]
    assert ShardConfig().owns(ids[0]) and ShardConfig().owns(model)


def test_shard_settings_errors_say_how_to_fix_them() -> None:
    with pytest.raises(ShardError) as caught:
        ShardConfig(0, 0)
    assert str(caught.value) == "total_shards must be at least 1, got 0"
    plain = SimpleNamespace(shard=0, total_shards=3)  # no record of where settings came from
    with pytest.raises(ShardError) as caught:
        ShardConfig.from_settings(plain, env={})
    assert str(caught.value) == (
        "total_shards is 3 but this replica's shard is unknown: set CCE_EXPORTER_SHARD (--shard), "
        "or run as a StatefulSet pod whose POD_NAME or HOSTNAME ends in -<ordinal>"
    )
    with pytest.raises(ShardError) as caught:
        ShardConfig.from_settings(plain, env={"POD_NAME": "cce-exporter-5"})
    assert str(caught.value) == (
        "the pod ordinal 5 (from POD_NAME/HOSTNAME) is not below total_shards 3: raise "
        "CCE_EXPORTER_TOTAL_SHARDS to the StatefulSet's replica count"
    )
    assert ShardConfig.from_settings(plain, env={"HOSTNAME": "cce-exporter-2"}) == ShardConfig(2, 3)


def test_the_shard_gauges() -> None:
    text = generate_latest(ShardConfig(1, 3).registry()).decode()
    assert (
        "# HELP cce_exporter_shard_ordinal This replica's shard number (0 to total_shards-1).\n"
        in text
    )
    assert (
        "# HELP cce_exporter_total_shards How many shards this replica believes there are.\n"
        in text
    )
    assert "cce_exporter_shard_ordinal 1.0\n" in text and "cce_exporter_total_shards 3.0\n" in text
