"""The service receives its targets from the composition root's builder: it keeps each one as it
is built (so a start-up failing half-way still closes the clients already open) and restores the
state file's phases and jobs into the trackers it is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exporter.assemble import TargetBuilder
from exporter.cce.instrumentation import ApiMetrics
from exporter.collect.service import ExporterService
from exporter.collect.statefile import StateFile
from exporter.collect.tracking import JobEntry, JobTracker, PhaseTracker
from exporter.config import Settings, TargetConfig, load_settings

ENV = {
    "CCE_EXPORTER_ENDPOINT": "https://cce.example.test",
    "CCE_EXPORTER_PROJECT_ID": "0123456789abcdef",
    "CCE_EXPORTER_AK": "AKEXAMPLE",
    "CCE_EXPORTER_SK": "SK-SECRET-123",
}


class FakeClient:
    def __init__(self, project_id: str) -> None:
        self.project_id = project_id
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


class Connections:
    """A stand-in ``connect``: one fake client per target, refusing the targets named in
    ``refuse``."""

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.refuse = refuse
        self.clients: list[FakeClient] = []

    async def __call__(self, target: TargetConfig, api_metrics: ApiMetrics) -> Any:
        if target.name in self.refuse:
            raise RuntimeError(f"cannot reach the API for {target.name}")
        client = FakeClient(f"project-of-{target.name}")
        self.clients.append(client)
        return client


def settings(tmp_path: Path, **extra: str) -> Settings:
    env = {**ENV, "CCE_EXPORTER_STATE_FILE": str(tmp_path / "state.json"), **extra}
    return load_settings(None, env)


async def test_the_service_restores_the_state_file_into_the_trackers_it_is_given(
    tmp_path: Path,
) -> None:
    config = settings(tmp_path)
    name = config.targets[0].name
    phases = PhaseTracker()
    phases.observe("cluster/c1", "Available", 100.0)
    jobs = JobTracker(config.job_retention, target=name)
    jobs.entries["job-1"] = JobEntry("job-1", "c1", "cluster", 90.0)
    StateFile(Path(config.state_file)).save(
        {"phases": {name: phases.dump()}, "jobs": {name: jobs.dump()}}
    )
    connections = Connections()
    service = ExporterService(config, build_targets=TargetBuilder(connect=connections))
    await service.setup()
    try:
        [target] = service.targets
        assert target.client is connections.clients[0]
        assert target.collector.project_id == f"project-of-{name}"
        assert target.collector.phases.dump() == phases.dump()
        assert target.collector.jobs.dump() == jobs.dump()
    finally:
        await service.close()
    assert connections.clients[0].closed


async def test_a_target_failing_to_build_still_closes_the_clients_already_built(
    tmp_path: Path,
) -> None:
    yaml = tmp_path / "config.yaml"
    yaml.write_text(
        "targets:\n  - name: first\n    project_id: p1\n  - name: second\n    project_id: p2\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in ENV.items() if k != "CCE_EXPORTER_PROJECT_ID"}
    config = load_settings(yaml, env)
    assert [t.name for t in config.targets] == ["first", "second"]
    connections = Connections(refuse=("second",))
    service = ExporterService(config, build_targets=TargetBuilder(connect=connections))
    with pytest.raises(RuntimeError, match="second"):
        await service.setup()
    assert [t.config.name for t in service.targets] == ["first"]
    await service.close()
    assert [c.closed for c in connections.clients] == [True]
