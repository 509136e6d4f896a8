"""The data path reads one way: no module imports a layer above its own.

config -> cce (client, auth, models) -> collect -> metrics -> exposition -> web, with hibernation
and ha beside collect; exporter.app, the composition root, builds them all, and only the command
line imports it. The rules are read from the source (every ``import``, module level or inside a
function), so a back-edge fails here before it tangles the next change.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "exporter"

#: Package (or module) -> what it must never import.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "exporter.config": (
        "exporter.collect",
        "exporter.metrics",
        "exporter.kube",
        "exporter.hibernation",
        "exporter.ha",
    ),
    "exporter.cce": ("exporter.collect", "exporter.metrics", "exporter.hibernation", "exporter.ha"),
    "exporter.metrics": ("exporter.collect", "exporter.hibernation", "exporter.ha"),
    "exporter.collect": ("exporter.hibernation", "exporter.ha", "exporter.kube.client"),
    "exporter.kube": ("exporter.collect", "exporter.hibernation", "exporter.ha"),
    "exporter.hibernation": ("exporter.ha",),
    "exporter.web": ("exporter.cce", "exporter.collect", "exporter.hibernation", "exporter.ha"),
    "exporter.webguard": ("exporter.cce", "exporter.collect", "exporter.web"),
}
#: Above every layer but the command line: nothing below imports them.
TOP = ("exporter.app", "exporter.cli", "exporter.web", "exporter.webguard", "exporter.status")
#: May import the top: the command line, the composition root, the web layer's own modules, the
#: console (beside the web layer), the simulator (test tooling; it borrows the web server's socket
#: set-up).
TOP_IMPORTERS = (
    "exporter.__main__",
    "exporter.cli",
    "exporter.app",
    "exporter.web",
    "exporter.webguard",
    "exporter.status",
    "exporter.simulator",
)


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    name = ".".join(parts)
    return name.removesuffix(".__init__")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "exporter" or name.startswith("exporter.")}


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


MODULES = {_module(p): _imports(p) for p in sorted(ROOT.rglob("*.py"))}


def test_the_rules_name_real_modules() -> None:
    names = set(MODULES)
    for package in (*FORBIDDEN, *TOP):
        assert any(_within(m, package) for m in names), package


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_layer_imports_one_above_it(package: str) -> None:
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in MODULES.items()
        if _within(module, package)
        for target in targets
        for above in FORBIDDEN[package]
        if _within(target, above)
    )
    assert not wrong


def test_only_the_command_line_and_the_root_import_the_top() -> None:
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in MODULES.items()
        if not any(_within(module, a) for a in TOP_IMPORTERS)
        for target in targets
        if any(_within(target, top) for top in TOP)
    )
    assert not wrong


def test_only_the_command_line_imports_the_composition_root() -> None:
    importers = sorted(m for m, targets in MODULES.items() if "exporter.app" in targets)
    assert importers == ["exporter.cli"]


def test_only_the_composition_root_imports_the_target_builder() -> None:
    importers = sorted(m for m, targets in MODULES.items() if "exporter.assemble" in targets)
    assert importers == ["exporter.app"]
