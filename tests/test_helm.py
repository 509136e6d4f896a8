"""The Helm chart's renderings, pinned: the manifests for the default values and for
``tests/fixtures/helm/everything.yaml`` are committed under ``tests/golden/helm/`` and compared
exactly, so a chart or renderer edit shows up as a reviewed diff. ``UPDATE_GOLDEN=1`` rewrites them.
The files the chart reads with ``.Files.Get`` (the dashboards and alert rules, copied there by
``python -m deploy.generate`` and drift-tested in tests/test_deploy.py) are replaced by stubs for
these renderings, so the golden manifests pin the templates, not the dashboards' and rules' content.

They are rendered by ``tests/tools/helm_render.py`` (Helm cannot be installed where the tests run);
where a ``helm`` binary is on the PATH, the same renderings are also compared with
``helm template``, document by document."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tools.helm_render import as_manifest, render_chart

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "cce-exporter"
GOLDEN = Path(__file__).parent / "golden" / "helm"
VALUES = Path(__file__).parent / "fixtures" / "helm"
RELEASE, NAMESPACE = "cce-exporter", "monitoring"

#: golden file -> values file (None: the chart's own values.yaml only)
CASES: dict[str, Path | None] = {
    "defaults": None,
    "everything": VALUES / "everything.yaml",
}


#: what a stubbed file under the chart's files/ holds, by suffix (valid where the template puts it)
STUBS = {".json": "{}", ".yaml": "groups: []"}


@pytest.fixture(scope="module")
def stubbed_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the chart whose files/ hold stubs instead of the generated copies."""
    chart = tmp_path_factory.mktemp("chart") / CHART.name
    shutil.copytree(CHART, chart)
    for path in sorted((chart / "files").rglob("*")):
        if path.is_file():
            path.write_text(STUBS[path.suffix] + "\n", encoding="utf-8")
    return chart


def values_of(case: str) -> dict[str, Any]:
    path = CASES[case]
    return {} if path is None else yaml.safe_load(path.read_text(encoding="utf-8"))


def documents(manifest: str) -> list[dict[str, Any]]:
    """The manifest's documents, in a stable order (Helm sorts by kind, the renderer by file)."""
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    return sorted(docs, key=lambda d: (d["kind"], d["metadata"]["name"]))


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendering_matches_the_golden_manifest(case: str, stubbed_chart: Path) -> None:
    got = as_manifest(render_chart(stubbed_chart, values_of(case), RELEASE, NAMESPACE))
    path = GOLDEN / f"{case}.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1 and review the diff"
    assert got == path.read_text(encoding="utf-8")


def test_the_golden_manifests_differ_where_the_values_do() -> None:
    kinds = {
        case: {d["kind"] for d in documents((GOLDEN / f"{case}.yaml").read_text(encoding="utf-8"))}
        for case in CASES
    }
    assert "Deployment" in kinds["defaults"] and "StatefulSet" not in kinds["defaults"]
    assert {"StatefulSet", "Secret"} <= kinds["everything"] and "Deployment" not in kinds[
        "everything"
    ]


@pytest.mark.skipif(shutil.which("helm") is None, reason="helm is not installed")
@pytest.mark.parametrize("case", sorted(CASES))
def test_helm_template_renders_the_same_documents(case: str) -> None:
    args = ["helm", "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    if CASES[case] is not None:
        args += ["--values", str(CASES[case])]
    helm = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    ours = as_manifest(render_chart(CHART, values_of(case), RELEASE, NAMESPACE))
    assert documents(ours) == documents(helm.stdout)
