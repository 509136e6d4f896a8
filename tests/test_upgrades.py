"""What can be upgraded: upgradeinfo and the add-on templates, each on its own slow interval."""

from __future__ import annotations

import logging

import pytest

from exporter.cce.models import (
    Addon,
    AddonTemplate,
    Cluster,
    addon_upgrade_available,
    version_key,
)
from exporter.collect.target import UPGRADE_SKIP_PHASES
from exporter.simulator import Simulator
from tests.test_e2e_exporter import running_exporter, sim_env


def requests(sim: Simulator) -> tuple[int, int]:
    return sim.app.requests["upgradeinfo"], sim.app.requests["addontemplates"]


@pytest.mark.simulator(clusters=10, nodes_per_cluster=2, seed=3)
async def test_upgrades_are_exported_and_asked_once_per_interval(simulator: Simulator) -> None:
    world = simulator.world
    async with running_exporter(sim_env(simulator)) as exporter:
        assert all((await exporter.service.collect_all()).values())
        scrape = await exporter.scrape()
        collector = exporter.service.targets[0].collector
        checked = [c for c in collector.state.clusters if c.phase not in UPGRADE_SKIP_PHASES]
        assert checked
        for cluster in checked:
            targets = world.clusters[cluster.id or ""].upgrade_targets()
            value = scrape.value("cce_cluster_upgrade_available", cluster_id=cluster.id or "")
            assert value == (1 if targets else 0)
            offered = scrape.label_values_for(
                "cce_cluster_upgrade_target_info", "target_version", cluster_id=cluster.id or ""
            )
            assert offered == set(targets)
        assert {
            scrape.value("cce_cluster_upgrade_available", cluster_id=c.id or "") for c in checked
        } == {0.0, 1.0}
        older = 0
        for cluster in checked:
            for addon in world.clusters[cluster.id or ""].addons.values():
                value = scrape.value("cce_addon_upgrade_available", addon_id=addon.uid)
                assert value == (1 if addon.installed else 0), addon.template.name
                older += bool(addon.installed)
        assert older
        first = requests(simulator)
        assert first[0] == len(checked) and first[1] == 1

        # A full collection within the interval asks neither again.
        exporter.clock.advance(600)
        assert all((await exporter.service.collect_all()).values())
        assert requests(simulator) == first
        # Past it, both are asked again.
        exporter.clock.advance(3600)
        assert all((await exporter.service.collect_all()).values())
        assert requests(simulator) == (2 * first[0], 2)


@pytest.mark.simulator(clusters=4, nodes_per_cluster=1, seed=3)
async def test_an_installation_without_the_calls_is_skipped_with_one_log_line(
    simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    simulator.world.features.update(upgradeinfo=False, addontemplates=False)
    caplog.set_level(logging.INFO, logger="exporter.collect.target")
    async with running_exporter(sim_env(simulator)) as exporter:
        for _ in range(3):
            results = await exporter.service.collect_all()
            assert all(results.values()), results
            exporter.clock.advance(7200)
        scrape = await exporter.scrape()
    assert scrape.values("cce_cluster_upgrade_available") == []
    assert scrape.values("cce_addon_upgrade_available") == []
    lines = [r.getMessage() for r in caplog.records if "does not offer" in r.getMessage()]
    assert len(lines) == 2, lines
    assert any("upgradeinfo" in line for line in lines)
    assert any("addontemplates" in line for line in lines)
    # Asked once each (every cluster's upgradeinfo in the first round), never again.
    upgradeinfo, templates = requests(simulator)
    assert templates == 1 and 1 <= upgradeinfo <= 4
    # Nothing to collect is a current success: readiness and staleness leave them alone.
    assert set(scrape.values("cce_exporter_collect_success", resource="cluster_upgrades")) == {1}
    last = scrape.value("cce_exporter_last_success_timestamp_seconds", resource="addon_upgrades")
    assert last == exporter.clock.now - 7200  # the last round, two hours of clock ago


def _addon(version: str) -> Addon:
    return Addon.model_validate(
        {"metadata": {"uid": "a"}, "spec": {"addonTemplateName": "coredns", "version": version}}
    )


def _cluster(version: str, type_: str = "VirtualMachine") -> Cluster:
    return Cluster.model_validate({"spec": {"version": version, "type": type_}})


def _templates(*versions: tuple[str, str, list[str], bool]) -> dict[str, AddonTemplate]:
    template = AddonTemplate.model_validate(
        {
            "metadata": {"name": "coredns"},
            "spec": {
                "versions": [
                    {
                        "version": v,
                        "stable": stable,
                        "supportVersions": [{"clusterType": kind, "clusterVersion": patterns}],
                    }
                    for v, kind, patterns, stable in versions
                ]
            },
        }
    )
    return {"coredns": template}


@pytest.mark.parametrize(
    ("installed", "cluster", "versions", "expected"),
    [
        ("1.2.3", _cluster("v1.28.3-r0"), [("1.2.4", "VirtualMachine", ["v1.*"], True)], True),
        ("1.2.3", _cluster("v1.28.3-r0"), [("1.2.3", "VirtualMachine", ["v1.*"], True)], False),
        ("1.2.3", _cluster("v1.28.3-r0"), [("1.10.0", "VirtualMachine", ["v1.28.*"], True)], True),
        ("1.2.3", _cluster("v1.28.3-r0"), [("1.3.0", "VirtualMachine", ["v1.29.*"], True)], False),
        (
            "1.2.3",
            _cluster("v1.28.3-r0", "ARM64"),
            [("1.3", "VirtualMachine", ["v1.*"], True)],
            False,
        ),
        ("1.2.3", _cluster("v1.28.3-r0"), [("1.3.0", "VirtualMachine", ["v1.*"], False)], False),
        (
            "1.2.3",
            _cluster("v1.28.3-r0"),
            [("1.3.0", "VirtualMachine", ["(unclosed"], True)],
            False,
        ),
        ("1.2.3", _cluster("v1.28.3-r0"), [("1.3.0", "VirtualMachine", ["a" * 500], True)], False),
        ("", _cluster("v1.28.3-r0"), [("1.3.0", "VirtualMachine", ["v1.*"], True)], None),
    ],
)
def test_which_addon_versions_count_as_an_upgrade(
    installed: str,
    cluster: Cluster,
    versions: list[tuple[str, str, list[str], bool]],
    expected: bool | None,
) -> None:
    assert addon_upgrade_available(_addon(installed), cluster, _templates(*versions)) is expected
    assert addon_upgrade_available(_addon("1.0"), cluster, {}) is None


def test_version_order() -> None:
    assert version_key("v1.28.3-r0") < version_key("v1.28.10-r0") < version_key("v1.29.0-r0")
    assert version_key("garbage") == ()
