"""Deployment artefacts: the Dockerfile's structure, the wheel it installs (built and run in a fresh
virtual environment), the kustomize manifests (with `kubectl kustomize` when it is installed), the
Helm chart rendered by tests/tools/helm_render.py (and that renderer's semantics), the
configuration they ship validated by the exporter's own loaders, and the drift of the generated
files."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from deploy import generate
from exporter import __version__
from exporter.config import Settings, load_settings
from exporter.hibernation.policy import load_policy_file
from tests.tools.helm_render import (
    TemplateError,
    merge_values,
    parse,
    parse_set,
    render_chart,
    render_documents,
)
from tests.tools.helm_render import main as helm_render_main

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
SHARDS_OVERLAY = ROOT / "deploy" / "overlays" / "shards"
CHART = ROOT / "deploy" / "helm" / "cce-exporter"
HELM_EVERYTHING = ROOT / "tests" / "fixtures" / "helm" / "everything.yaml"
CONSTRAINTS = ROOT / "requirements" / "constraints.txt"
KUBECTL = shutil.which("kubectl")
PORT = int(Settings.model_fields["listen"].default.rsplit(":", 1)[1])

Doc = dict[str, Any]


# --- Dockerfile ---------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, args = full.partition(" ")
        out.append((word.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continuation line"
    return out


def stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions:
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


@pytest.fixture(scope="module")
def docker() -> list[list[tuple[str, str]]]:
    return stages(dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8")))


def test_dockerfile_is_multi_stage_and_the_runtime_copies_only_the_built_environment(
    docker: list[list[tuple[str, str]]],
) -> None:
    assert len(docker) >= 2
    build, runtime = docker[0], docker[-1]
    assert re.fullmatch(r"\$\{PYTHON_IMAGE\} AS build", build[0][1], re.IGNORECASE)
    build_runs = " ".join(args for ins, args in build if ins == "RUN")
    assert "pip wheel" in build_runs and "-c requirements/constraints.txt" in build_runs
    assert "--only-binary=:all:" in build_runs, "dependencies must not need a compiler"
    copies = [args for ins, args in runtime if ins == "COPY"]
    assert copies and all(c.startswith("--from=build ") for c in copies), copies
    runtime_runs = " ".join(args for ins, args in runtime if ins == "RUN")
    for tool in ("gcc", "build-essential", "apt-get install", "pip install"):
        assert tool not in runtime_runs, f"the runtime stage must not install {tool}"


def test_dockerfile_base_image_matches_the_supported_python_and_explains_pinning() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    match = re.search(r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)-slim", text, re.MULTILINE)
    assert match, "the base image is a slim Python image given by ARG PYTHON_IMAGE"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert Requirement(f"python{project['requires-python']}").specifier.contains(match.group(1))
    assert "@sha256:" in text and "imagetools inspect" in text, "say how to pin by digest"


def test_dockerfile_runs_as_a_fixed_non_root_user_with_the_cli_as_entrypoint(
    docker: list[list[tuple[str, str]]],
) -> None:
    runtime = docker[-1]
    users = [args for ins, args in runtime if ins == "USER"]
    assert users, "the runtime stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, f"USER must be a fixed non-root UID, got {uid}"
    index = {ins: i for i, (ins, _) in enumerate(runtime)}
    assert index["USER"] > max(i for i, (ins, _) in enumerate(runtime) if ins in ("RUN", "COPY"))
    assert json.loads(dict(runtime)["ENTRYPOINT"]) == ["cce-exporter"]
    assert json.loads(dict(runtime)["CMD"]) == ["run"]
    assert dict(runtime)["EXPOSE"] == str(PORT)
    # The Kubernetes manifests and the chart run as the same user.
    deployment = load_yaml(KUSTOMIZE / "deployment.yaml")[0]
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid)
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert values["podSecurityContext"]["runAsUser"] == int(uid)


def test_dockerfile_has_oci_labels(docker: list[list[tuple[str, str]]]) -> None:
    labels = " ".join(args for ins, args in docker[-1] if ins == "LABEL")
    found = dict(re.findall(r'(org\.opencontainers\.image\.[a-z.]+)="([^"]*)"', labels))
    for key in ("title", "description", "version", "revision", "source", "licenses"):
        assert f"org.opencontainers.image.{key}" in found, key
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert found["org.opencontainers.image.licenses"] == project["license"]
    version_arg = next(a for i, a in docker[-1] if i == "ARG" and a.startswith("VERSION="))
    assert version_arg == f"VERSION={__version__}"


SECRETISH = re.compile(r"(^|_)(SK|AK|SECRET|PASSWORD|PASSWD|TOKEN|KEY|CREDENTIALS?)($|_)", re.I)


def test_dockerfile_carries_no_secrets(docker: list[list[tuple[str, str]]]) -> None:
    for stage in docker:
        for ins, args in stage:
            if ins not in ("ENV", "ARG"):
                continue
            for word in shlex.split(args):
                name = word.split("=", 1)[0]
                assert not SECRETISH.search(name), f"{ins} {name}: secrets never go in an image"
    assert "--secret" not in DOCKERFILE.read_text(encoding="utf-8").replace("# ", "")


def dockerignore_allows(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    allowed = True
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        regex = re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        if re.fullmatch(regex, path) or re.fullmatch(regex + "/.*", path):
            allowed = negate
    return allowed


def test_dockerignore_keeps_the_context_to_what_the_build_copies(
    docker: list[list[tuple[str, str]]],
) -> None:
    copied = [
        args.split()[:-1]
        for ins, args in docker[0]
        if ins == "COPY" and not args.startswith("--from")
    ]
    sources = [s for srcs in copied for s in srcs]
    assert sources, "the build stage copies the project"
    for source in sources:
        assert (ROOT / source).exists(), source
        assert dockerignore_allows(source), f"{source} is excluded by .dockerignore"
    assert dockerignore_allows("exporter/cli.py")
    for private in (".venv/bin/python", ".git/config", "tests/test_deploy.py", "cce.env"):
        assert not dockerignore_allows(private), f"{private} must stay out of the build context"


def test_constraints_pin_every_runtime_dependency_within_the_declared_ranges() -> None:
    pins: dict[str, Version] = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep, f"not an exact pin: {line}"
            pins[generate._canonical(name)] = Version(version)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for spec in project["dependencies"]:
        req = Requirement(spec)
        name = generate._canonical(req.name)
        assert name in pins, f"{req.name} is not pinned in {CONSTRAINTS.name}"
        assert req.specifier.contains(pins[name]), f"{name}=={pins[name]} violates {spec}"
    # Every package the installed runtime closure needs is pinned (test tools are not).
    missing = set(generate.runtime_closure()) - set(pins)
    assert not missing, f"regenerate with `python -m deploy.generate constraints`: {missing}"
    assert not {"pytest", "mypy", "ruff", "hypothesis", "respx"} & set(pins)


@pytest.mark.slow
def test_the_wheel_builds_and_runs_in_a_fresh_virtual_environment(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    wheels = list(dist.glob("cce_exporter-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as whl:
        names = whl.namelist()
    assert "exporter/cli.py" in names
    assert not [n for n in names if n.startswith(("tests/", "deploy/", "bench/"))]

    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60
    )
    python = venv / "bin" / "python"
    out = subprocess.run(
        [python, "-c", "import sys; print(sys.prefix != sys.base_prefix)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "True"
    # This environment's pip installs into the new one; the pip cache makes it fast.
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
         "--disable-pip-version-check", "--only-binary=:all:", "-c", str(CONSTRAINTS),
         str(wheels[0])],
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    version = subprocess.run(
        [venv / "bin" / "cce-exporter", "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"cce-exporter {__version__}"
    # The installed copy is the wheel's, not the working tree's.
    where = subprocess.run(
        [python, "-c", "import exporter; print(exporter.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=True,
    )
    assert where.stdout.strip().startswith(str(venv))


# --- shared manifest checks ---------------------------------------------------------------------


def load_yaml(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def by_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[Doc], kind: str) -> Doc:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def check_basic_fields(docs: list[Doc]) -> None:
    seen = set()
    for doc in docs:
        assert isinstance(doc.get("apiVersion"), str) and doc["apiVersion"], doc
        assert isinstance(doc.get("kind"), str) and doc["kind"], doc
        name = doc.get("metadata", {}).get("name")
        assert isinstance(name, str) and re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name)
        assert len(name) <= 253
        labels = doc["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/name") == "cce-exporter", (doc["kind"], name)
        for value in labels.values():
            assert isinstance(value, str) and len(value) <= 63, (doc["kind"], name, value)
        key = (doc["kind"], name)
        assert key not in seen, f"duplicate {key}"
        seen.add(key)


def env_of(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env", [])}


def check_stack(docs: list[Doc], *, sharded: bool) -> Doc:
    """The invariants every rendering (kustomize, Helm, sharded or not) must hold; returns the
    workload."""
    check_basic_fields(docs)
    workload = one(docs, "StatefulSet" if sharded else "Deployment")
    assert not by_kind(docs, "Deployment" if sharded else "StatefulSet")
    spec = workload["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    assert matches(spec["selector"]["matchLabels"], pod_labels)
    pod = spec["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] > 0
    assert psc["seccompProfile"]["type"] == "RuntimeDefault"
    (container,) = pod["containers"]
    assert container["args"] == ["run"]
    csc = container["securityContext"]
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"]["drop"] == ["ALL"]
    assert csc["seccompProfile"]["type"] == "RuntimeDefault"
    assert csc["runAsNonRoot"] is True
    (port,) = container["ports"]
    assert port == {"name": "http", "containerPort": PORT, "protocol": "TCP"}
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        assert container[probe]["httpGet"]["path"] == path, probe
        assert container[probe]["httpGet"]["port"] == "http", probe
    requests = container["resources"]["requests"]
    assert requests["cpu"] and requests["memory"]
    assert "memory" in container["resources"]["limits"]

    env = env_of(container)
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["CCE_EXPORTER_LISTEN"]["value"].endswith(f":{PORT}")
    for name in env:
        assert not SECRETISH.search(name) or "valueFrom" in env[name] or name.endswith("_FILE"), (
            f"{name}: secrets come from a Secret, never a literal value"
        )
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts.values()) <= set(volumes)
    # Every file the environment names lies in a mounted volume; the state file in a writable one.
    for name in ("CCE_EXPORTER_CONFIG", "CCE_EXPORTER_POLICY_FILE", "CCE_EXPORTER_STATE_FILE"):
        path = env[name]["value"]
        assert any(path.startswith(m + "/") for m in mounts), f"{name}={path} is not mounted"
    state_dir = str(Path(env["CCE_EXPORTER_STATE_FILE"]["value"]).parent)
    assert (
        "emptyDir" in volumes[mounts[state_dir]]
        or "persistentVolumeClaim" in (volumes[mounts[state_dir]])
    )
    assert "/tmp" in mounts
    config_volume = volumes[mounts[str(Path(env["CCE_EXPORTER_CONFIG"]["value"]).parent)]]
    config_name = config_volume["configMap"]["name"]
    config_map = next(d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == config_name)
    assert {"config.yaml", "policy.yaml"} <= set(config_map["data"])
    assert [s["secretRef"]["name"] for s in container["envFrom"]]

    # The service account exists, and the Role for the Lease is bound to it.
    sa_name = pod["serviceAccountName"]
    assert sa_name in {d["metadata"]["name"] for d in by_kind(docs, "ServiceAccount")}
    assert pod["automountServiceAccountToken"] is True
    role, binding = one(docs, "Role"), one(docs, "RoleBinding")
    # Exactly what the Lease elector and the Lease state store do: get, create, update.
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "update"],
        }
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert [s["name"] for s in binding["subjects"]] == [sa_name]

    # The metrics Service selects the pods; the ServiceMonitor selects that Service only.
    services = by_kind(docs, "Service")
    metrics_services = [s for s in services if s["spec"].get("clusterIP") != "None"]
    (service,) = metrics_services
    assert matches(service["spec"]["selector"], pod_labels)
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    monitor = one(docs, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped = [s for s in services if matches(selector, s["metadata"]["labels"])]
    assert scraped == [service], "each pod must be scraped exactly once"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    # The alerts and dashboards expect job="cce-exporter": the job label comes from the Service.
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "cce-exporter"

    policy = one(docs, "NetworkPolicy")
    assert matches(policy["spec"]["podSelector"]["matchLabels"], pod_labels)
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": PORT, "protocol": "TCP"}]
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert {53, 443} <= egress_ports
    pdb = one(docs, "PodDisruptionBudget")
    assert matches(pdb["spec"]["selector"]["matchLabels"], pod_labels)
    assert pdb["spec"]["maxUnavailable"] == 1

    if sharded:
        shards = int(env["CCE_EXPORTER_TOTAL_SHARDS"]["value"])
        assert spec["replicas"] == shards >= 2
        assert (
            env["CCE_EXPORTER_SHARD"]["valueFrom"]["fieldRef"]["fieldPath"]
            == "metadata.labels['apps.kubernetes.io/pod-index']"
        )
        headless = [s for s in services if s["spec"].get("clusterIP") == "None"]
        assert [h["metadata"]["name"] for h in headless] == [spec["serviceName"]]
        assert matches(headless[0]["spec"]["selector"], pod_labels)
    else:
        assert spec["replicas"] == 1
        assert spec["strategy"]["type"] == "Recreate"
        assert "CCE_EXPORTER_SHARD" not in env and "CCE_EXPORTER_TOTAL_SHARDS" not in env

    check_rules_and_dashboards(docs)
    return workload


def check_rules_and_dashboards(docs: list[Doc]) -> None:
    rules = yaml.safe_load((ROOT / "alerts" / "cce.rules.yaml").read_text(encoding="utf-8"))
    rule = one(docs, "PrometheusRule")
    assert rule["spec"]["groups"] == rules["groups"]
    dashboards = {
        d["metadata"]["name"]: d
        for d in by_kind(docs, "ConfigMap")
        if d["metadata"]["labels"].get("grafana_dashboard") == "1"
    }
    sources = generate.dashboard_files()
    assert len(dashboards) == len(sources) >= 1
    for source in sources:
        (cm,) = [d for d in dashboards.values() if source.name in d["data"]]
        assert json.loads(cm["data"][source.name]) == json.loads(source.read_text("utf-8"))
        assert cm["metadata"]["annotations"]["grafana_folder"] == "CCE"


def pod_environment(docs: list[Doc], secret: Mapping[str, str], root: Path) -> dict[str, str]:
    """Lay the workload's ConfigMap volumes and emptyDirs out under ``root`` as the kubelet would
    and return the container's environment with paths moved under ``root``."""
    workload = next(d for d in docs if d["kind"] in ("Deployment", "StatefulSet"))
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_maps = {d["metadata"]["name"]: d for d in by_kind(docs, "ConfigMap")}
    mounts = {}
    for mount in container["volumeMounts"]:
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        mounts[mount["mountPath"]] = target
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            for key, text in config_maps[volume["configMap"]["name"]]["data"].items():
                (target / key).write_text(text, encoding="utf-8")
    env = dict(secret)
    for name, entry in env_of(container).items():
        if "value" not in entry:
            continue
        value = entry["value"]
        for mount_path, target in sorted(mounts.items(), key=lambda m: -len(m[0])):
            if value.startswith(mount_path + "/"):
                value = str(target / value[len(mount_path) + 1 :])
                break
        env[name] = value
    return env


def check_shipped_configuration(docs: list[Doc], secret: Mapping[str, str], tmp: Path) -> None:
    env = pod_environment(docs, secret, tmp)
    settings = load_settings(env=env)
    assert settings.listen.endswith(f":{PORT}")
    assert settings.policy_file is not None and settings.state_file is not None
    assert settings.targets and settings.targets[0].endpoint.startswith("https://")
    policy = load_policy_file(settings.policy_file)
    assert policy.policies == [], "the shipped policy must hibernate nothing until edited"


# --- kustomize ----------------------------------------------------------------------------------


def kustomization(directory: Path) -> Doc:
    return yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))


def build_kustomize_without_kubectl(directory: Path) -> list[Doc]:
    """What `kubectl kustomize` gives for these kustomizations (resources, one component that
    deletes the Deployment, a namespace), for machines without kubectl."""
    spec = kustomization(directory)
    docs: list[Doc] = []
    for resource in spec.get("resources", []):
        path = (directory / resource).resolve()
        docs += build_kustomize_without_kubectl(path) if path.is_dir() else load_yaml(path)
    for component in spec.get("components", []):
        comp_dir = (directory / component).resolve()
        comp = kustomization(comp_dir)
        for patch in comp.get("patches", []):
            target = yaml.safe_load(patch["patch"])
            assert target.pop("$patch") == "delete"
            docs = [
                d
                for d in docs
                if (d["kind"], d["metadata"]["name"])
                != (target["kind"], target["metadata"]["name"])
            ]
        for resource in comp["resources"]:
            docs += load_yaml(comp_dir / resource)
    if "namespace" in spec:
        for doc in docs:
            doc["metadata"]["namespace"] = spec["namespace"]
    return docs


def build_kustomize(directory: Path) -> list[Doc]:
    if KUBECTL is None:
        return build_kustomize_without_kubectl(directory)
    out = subprocess.run(
        [KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


def test_every_manifest_parses_and_the_kustomization_lists_all_of_them() -> None:
    files = sorted(p.name for p in KUSTOMIZE.glob("*.yaml"))
    for name in files:
        docs = load_yaml(KUSTOMIZE / name)
        assert docs, name
        if name != "kustomization.yaml":
            check_basic_fields(docs)
    listed = kustomization(KUSTOMIZE)["resources"]
    assert sorted(listed) == sorted(set(files) - {"kustomization.yaml", "secret.example.yaml"}), (
        "every manifest but the Secret example is a resource"
    )
    component = kustomization(KUSTOMIZE / "shards")
    assert component["kind"] == "Component"
    for resource in component["resources"]:
        check_basic_fields(load_yaml(KUSTOMIZE / "shards" / resource))


def test_the_secret_example_holds_placeholders_only() -> None:
    (secret,) = load_yaml(KUSTOMIZE / "secret.example.yaml")
    assert secret["kind"] == "Secret" and "data" not in secret
    assert set(secret["stringData"]) == {"CCE_EXPORTER_AK", "CCE_EXPORTER_SK"}
    for value in secret["stringData"].values():
        assert value.startswith("REPLACE_WITH_"), value
    deployment = one(load_yaml(KUSTOMIZE / "deployment.yaml"), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]


@pytest.mark.parametrize(("directory", "sharded"), [(KUSTOMIZE, False), (SHARDS_OVERLAY, True)])
def test_kustomize_build_holds_every_invariant(directory: Path, sharded: bool) -> None:
    docs = build_kustomize(directory)
    check_stack(docs, sharded=sharded)
    assert {d["metadata"].get("namespace") for d in docs} == {"monitoring"}
    if KUBECTL is not None:
        # The fallback builder agrees with kustomize where it matters.
        fallback = build_kustomize_without_kubectl(directory)
        assert sorted((d["kind"], d["metadata"]["name"]) for d in fallback) == sorted(
            (d["kind"], d["metadata"]["name"]) for d in docs
        )


def test_the_shipped_kustomize_configuration_is_valid_for_the_exporter(tmp_path: Path) -> None:
    docs = build_kustomize_without_kubectl(KUSTOMIZE)
    (secret,) = load_yaml(KUSTOMIZE / "secret.example.yaml")
    check_shipped_configuration(docs, secret["stringData"], tmp_path)


def test_statefulset_differs_from_the_deployment_only_where_sharding_needs() -> None:
    deployment = one(load_yaml(KUSTOMIZE / "deployment.yaml"), "Deployment")
    sts = one(load_yaml(KUSTOMIZE / "shards" / "statefulset.yaml"), "StatefulSet")
    d_pod, s_pod = deployment["spec"]["template"], sts["spec"]["template"]
    (d_c,), (s_c,) = d_pod["spec"]["containers"], s_pod["spec"]["containers"]
    s_env = env_of(s_c)
    for name in ("CCE_EXPORTER_SHARD", "CCE_EXPORTER_TOTAL_SHARDS"):
        s_env.pop(name)
    assert s_env == env_of(d_c)
    for key in set(d_c) | set(s_c):
        if key != "env":
            assert d_c.get(key) == s_c.get(key), key
    assert d_pod["metadata"] == s_pod["metadata"]
    assert {k: v for k, v in d_pod["spec"].items() if k != "containers"} == {
        k: v for k, v in s_pod["spec"].items() if k != "containers"
    }


# --- generated files ------------------------------------------------------------------------------


def test_generated_files_do_not_drift_from_their_sources() -> None:
    stale = generate.stale_files()
    assert not stale, f"run `python -m deploy.generate`: {[str(p) for p in stale]}"
    assert generate.main(["--check"]) == 0


def test_the_drift_check_notices_an_edit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Work on a copy of the tree so the real files are never touched.
    for sub in ("dashboards", "alerts", "deploy"):
        shutil.copytree(ROOT / sub, tmp_path / sub, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(generate, "DASHBOARD_DIR", tmp_path / "dashboards")
    monkeypatch.setattr(generate, "RULES_FILE", tmp_path / "alerts" / "cce.rules.yaml")
    monkeypatch.setattr(generate, "KUSTOMIZE_DIR", tmp_path / "deploy" / "kubernetes")
    monkeypatch.setattr(generate, "CHART_DIR", tmp_path / "deploy" / "helm" / "cce-exporter")
    monkeypatch.setattr(generate, "ROOT", tmp_path)
    assert generate.stale_files() == []
    rules = tmp_path / "alerts" / "cce.rules.yaml"
    rules.write_text(rules.read_text("utf-8") + "# edited\n", encoding="utf-8")
    (tmp_path / "dashboards" / "cce-new.json").write_text('{"title": "new"}\n', encoding="utf-8")
    stale = {p.relative_to(tmp_path).as_posix() for p in generate.stale_files()}
    assert stale == {
        "deploy/helm/cce-exporter/files/cce.rules.yaml",
        "deploy/helm/cce-exporter/files/dashboards/cce-new.json",
        "deploy/helm/cce-exporter/templates/grafana-dashboards.yaml",
        "deploy/kubernetes/grafana-dashboards.yaml",
    }
    assert generate.main(["--check"]) == 1
    assert generate.main([]) == 0
    assert generate.stale_files() == []
    (tmp_path / "dashboards" / "cce-new.json").unlink()
    assert "deploy/helm/cce-exporter/files/dashboards/cce-new.json" in {
        p.relative_to(tmp_path).as_posix() for p in generate.stale_files()
    }


# --- Helm chart ---------------------------------------------------------------------------------

HELM_VARIANTS: dict[str, Doc] = {
    "defaults": {},
    "sharded": {"sharding": {"enabled": True, "shards": 4}},
    "everything": yaml.safe_load(HELM_EVERYTHING.read_text(encoding="utf-8")),
}


@pytest.mark.parametrize("variant", sorted(HELM_VARIANTS))
def test_helm_rendering_holds_every_invariant(variant: str) -> None:
    values = HELM_VARIANTS[variant]
    docs = render_documents(CHART, values, release_name="cce-exporter", namespace="monitoring")
    sharded = bool(values.get("sharding", {}).get("enabled"))
    workload = check_stack(docs, sharded=sharded)
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/cce-exporter/cce-exporter:0.1.0"
    if sharded:
        assert workload["spec"]["replicas"] == values["sharding"]["shards"]
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"])


def test_helm_rendering_with_every_option_wires_each_one() -> None:
    docs = render_documents(CHART, HELM_VARIANTS["everything"], namespace="monitoring")
    workload = one(docs, "StatefulSet")
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = env_of(container)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert env["CCE_EXPORTER_HOOK_TOKEN_FILE"]["value"] == mounts["hook-token"] + "/token"
    assert volumes["hook-token"]["secret"]["secretName"] == "cce-hook"
    assert env["CCE_EXPORTER_WEB_CONFIG_FILE"]["value"] == mounts["web-config"] + "/web-config.yml"
    assert env["CCE_EXPORTER_STATE_SETS"]["value"] == "current"
    assert container["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert container["readinessProbe"]["httpGet"]["httpHeaders"][0]["name"] == "Authorization"
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["priorityClassName"] == "monitoring"
    assert workload["spec"]["template"]["metadata"]["labels"]["team"] == "platform"
    secret = one(docs, "Secret")
    assert container["envFrom"][0]["secretRef"]["name"] == secret["metadata"]["name"]
    assert secret["stringData"] == {
        "CCE_EXPORTER_AK": "AK_PLACEHOLDER",
        "CCE_EXPORTER_SK": "SK_PLACEHOLDER",
    }
    assert one(docs, "ServiceMonitor")["metadata"]["labels"]["release"] == "kps"
    assert one(docs, "ServiceMonitor")["spec"]["endpoints"][0]["scheme"] == "https"
    assert one(docs, "PrometheusRule")["metadata"]["labels"]["release"] == "kps"
    dashboards = [
        d for d in by_kind(docs, "ConfigMap") if "grafana_dashboard" in d["metadata"]["labels"]
    ]
    assert {d["metadata"].get("namespace") for d in dashboards} == {"grafana"}
    assert one(docs, "NetworkPolicy")["spec"]["ingress"][0]["from"] == [{"namespaceSelector": {}}]


def test_helm_switches_turn_parts_off() -> None:
    values = {
        "serviceMonitor": {"enabled": False},
        "prometheusRule": {"enabled": False},
        "grafanaDashboards": {"enabled": False},
        "networkPolicy": {"enabled": False},
        "podDisruptionBudget": {"enabled": False},
        "leaderElection": {"rbac": False},
        "serviceAccount": {"create": False, "name": "existing"},
    }
    docs = render_documents(CHART, values)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ConfigMap", "Deployment", "Service"]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "existing"


def test_helm_names_follow_the_release() -> None:
    names = {d["metadata"]["name"] for d in render_documents(CHART, release_name="prod")}
    assert "prod-cce-exporter" in names and "prod-cce-exporter-config" in names
    names = {d["metadata"]["name"] for d in render_documents(CHART, release_name="cce-exporter-eu")}
    assert "cce-exporter-eu" in names, "a release name containing the chart name is used as is"
    override = {"fullnameOverride": "cce"}
    assert "cce" in {d["metadata"]["name"] for d in render_documents(CHART, override)}


def test_helm_credentials_secret_needs_both_keys() -> None:
    with pytest.raises(TemplateError, match=r"templates/secret.yaml:\d+: required value missing"):
        render_documents(CHART, {"credentials": {"create": True, "ak": "AK"}})


def test_the_shipped_helm_configuration_is_valid_for_the_exporter(tmp_path: Path) -> None:
    docs = render_documents(CHART, HELM_VARIANTS["sharded"])
    secret = {"CCE_EXPORTER_AK": "AK_PLACEHOLDER", "CCE_EXPORTER_SK": "SK_PLACEHOLDER"}
    env = pod_environment(docs, secret, tmp_path)
    # The downward API fills these in a pod.
    env["CCE_EXPORTER_SHARD"] = "3"
    settings = load_settings(env=env)
    assert (settings.shard, settings.total_shards) == (3, 4)
    check_shipped_configuration(docs, secret, tmp_path / "unsharded")


def test_helm_and_kustomize_agree_on_the_pod() -> None:
    helm = one(render_documents(CHART, namespace="monitoring"), "Deployment")
    kustomized = one(build_kustomize_without_kubectl(KUSTOMIZE), "Deployment")
    (h,), (k,) = (w["spec"]["template"]["spec"]["containers"] for w in (helm, kustomized))
    for key in ("args", "ports", "resources", "securityContext", "volumeMounts"):
        assert h[key] == k[key], key
    assert env_of(h) == env_of(k)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        h_probe = {**h[probe], "httpGet": {**h[probe]["httpGet"]}}
        assert h_probe["httpGet"].pop("scheme") == "HTTP"
        assert h_probe == k[probe]
    h_pod, k_pod = helm["spec"]["template"]["spec"], kustomized["spec"]["template"]["spec"]
    assert h_pod["securityContext"] == k_pod["securityContext"]


def test_helm_render_cli_prints_every_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert helm_render_main([str(CHART), "--set", "sharding.enabled=true", "-n", "ns"]) == 0
    out = capsys.readouterr().out
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert one(docs, "StatefulSet")["spec"]["replicas"] == 3
    assert "# Source: cce-exporter/templates/workload.yaml" in out
    assert helm_render_main([str(CHART), "--set", "credentials.create=true"]) == 1
    assert "required value missing" in capsys.readouterr().err


# --- the renderer's semantics -------------------------------------------------------------------


def render_one(
    text: str, values: Doc | None = None, defines: str = "", files: Mapping[str, str] = {}
) -> str:
    """Render ``text`` as the only template of a scratch chart."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / "c"
        (chart / "templates").mkdir(parents=True)
        (chart / "Chart.yaml").write_text("name: c\nversion: 1.2.3\nappVersion: '9'\n")
        (chart / "values.yaml").write_text(yaml.safe_dump(values or {}))
        (chart / "templates" / "_h.tpl").write_text(defines)
        (chart / "templates" / "t.yaml").write_text(text)
        for name, content in files.items():
            (chart / name).parent.mkdir(parents=True, exist_ok=True)
            (chart / name).write_text(content)
        return render_chart(chart, release_name="rel", namespace="ns")["c/templates/t.yaml"]


def test_renderer_trims_whitespace_like_go_templates() -> None:
    assert render_one("a  \n  {{- 1 }}  \n b") == "a1  \n b"
    assert render_one("a {{ 1 -}}  \n  b") == "a 1b"
    assert render_one("x\n{{- /* a comment with }} inside */}}\ny") == "x\ny"


def test_renderer_conditions_use_go_truthiness() -> None:
    template = "{{ if .Values.a }}A{{ else if .Values.b }}B{{ else }}C{{ end }}"
    assert render_one(template, {"a": [1]}) == "A"
    assert render_one(template, {"a": [], "b": "x"}) == "B"
    assert render_one(template, {"a": 0, "b": {}}) == "C"
    assert render_one("{{ if not .Values.a }}N{{ end }}", {"a": False}) == "N"
    assert render_one('{{ if eq .Values.a "x" }}E{{ end }}', {"a": "x"}) == "E"
    assert render_one("{{ and 1 0 }}|{{ or 0 2 }}") == "0|2"


def test_renderer_functions_match_helm() -> None:
    values = {"m": {"b": 2, "a": [1, "x"]}, "s": "v", "n": 3}
    assert (
        render_one("k:{{ toYaml .Values.m | nindent 2 }}", values)
        == "k:\n  a:\n  - 1\n  - x\n  b: 2"
    )
    assert render_one("{{ .Values.s | quote }} {{ .Values.n | quote }}", values) == '"v" "3"'
    assert (
        render_one('{{ default "d" .Values.missing }} {{ default "d" .Values.s }}', values) == "d v"
    )
    assert render_one('{{ printf "%s-%d" .Values.s .Values.n | trunc 3 }}', values) == "v-3"
    assert render_one('{{ "abc-" | trimSuffix "-" }} {{ "ab" | indent 2 }}') == "abc   ab"
    assert (
        render_one("{{ .Chart.Name }} {{ .Chart.Version }} {{ .Chart.AppVersion }}") == "c 1.2.3 9"
    )
    assert render_one("{{ .Release.Name }} {{ .Release.Namespace }}") == "rel ns"
    assert render_one('{{ "x" | sha256sum | trunc 8 }}') == "2d711642"
    assert render_one("{{ true }} {{ .Values.none }}|") == "true |"


def test_renderer_include_passes_the_given_context() -> None:
    defines = '{{- define "t.name" -}}n={{ .x }}{{- end }}'
    assert render_one('{{ include "t.name" .Values | quote }}', {"x": 5}, defines) == '"n=5"'
    with pytest.raises(TemplateError, match=r"no template 't\.other'"):
        render_one('{{ include "t.other" . }}')


def test_renderer_reads_files_verbatim() -> None:
    files = {"files/r.yaml": "a: '{{ $labels.x }}'\n"}
    text = render_one('x:\n  {{- .Files.Get "files/r.yaml" | nindent 2 }}', files=files)
    assert yaml.safe_load(text) == {"x": {"a": "{{ $labels.x }}"}}
    assert render_one('{{ .Files.Get "../escape" }}|') == "|"


def test_renderer_refuses_what_it_does_not_implement() -> None:
    for template, message in (
        ("{{ range .Values.l }}x{{ end }}", "'range' is not supported"),
        ("{{ with .Values.l }}x{{ end }}", "'with' is not supported"),
        ("{{ $x := 1 }}", "variables are not supported"),
        ("{{ tpl .Values.s . }}", "unsupported function or keyword 'tpl'"),
        ("{{ if .Values.a }}x", "if block not closed"),
        ("{{ end }}", "end without a block"),
        ("{{ .Values.a.b.c }}", r"nil pointer evaluating \.Values\.a\.b"),
        ("{{ .Values.m }}", "needs toYaml"),
    ):
        with pytest.raises(TemplateError, match=message):
            render_one(template, {"s": "v", "m": {"k": 1}})
    with pytest.raises(TemplateError, match=r"c/templates/t.yaml:2: 'range'"):
        parse("a\n{{ range . }}{{ end }}", "c/templates/t.yaml")


def test_values_merge_and_set_like_helm() -> None:
    base = {"a": {"b": 1, "c": 2}, "d": [1]}
    assert merge_values(base, {"a": {"b": 3}, "d": [2]}) == {"a": {"b": 3, "c": 2}, "d": [2]}
    assert merge_values(base, {"a": {"c": None}}) == {"a": {"b": 1}, "d": [1]}
    assert parse_set("x.y=true") == {"x": {"y": True}}
    assert parse_set("x=3") == {"x": 3}
    with pytest.raises(TemplateError):
        parse_set("novalue")


def _yaml_files(directory: Path) -> Iterator[Path]:
    yield from sorted(directory.rglob("*.yaml"))


def test_the_chart_is_a_valid_helm_v2_chart() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart["apiVersion"] == "v2" and chart["name"] == "cce-exporter"
    assert Version(chart["version"]) and chart["appVersion"] == __version__
    # values.yaml and the non-template YAML files parse; templates are Go templates, not YAML.
    for path in _yaml_files(CHART):
        if "templates" not in path.parts:
            yaml.safe_load(path.read_text(encoding="utf-8"))
    assert os.access(CHART / "templates" / "_helpers.tpl", os.R_OK)


def doc_yaml_block(first_line: str) -> str:
    text = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    (block,) = [b for b in blocks if b.startswith(first_line)]
    return block


def test_the_documented_multi_region_examples_are_valid(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(doc_yaml_block("# config.yaml"), encoding="utf-8")
    env = {
        "CCE_EXPORTER_AK": "AK_PLACEHOLDER",
        "CCE_EXPORTER_SK": "SK_PLACEHOLDER",
        "CCE_EXPORTER_TARGETS__OTHER_ACCOUNT__AK": "OTHER_AK_PLACEHOLDER",
        "CCE_EXPORTER_TARGETS__OTHER_ACCOUNT__SK": "OTHER_SK_PLACEHOLDER",
    }
    settings = load_settings(config, env=env)
    assert [t.name for t in settings.targets] == ["ap-southeast-1", "eu-west-0", "other-account"]
    assert settings.targets[2].ak == "OTHER_AK_PLACEHOLDER"

    values = yaml.safe_load(doc_yaml_block("# my-values.yaml"))
    docs = render_documents(CHART, values)
    pod_env = pod_environment(docs, {"CCE_EXPORTER_AK": "A", "CCE_EXPORTER_SK": "S"}, tmp_path)
    names = [t.name for t in load_settings(env=pod_env).targets]
    assert names == ["ap-southeast-1", "eu-west-0"]
