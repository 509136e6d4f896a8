"""The shape of the code: small modules, short functions, a product that imports no test tooling.

No module under ``exporter/`` is over MAX_MODULE_LINES lines and no function or method over
MAX_FUNCTION_LINES (``end_lineno - lineno`` of its ``def``), unless it says why: a comment
``# long: <reason>`` on the line above the ``def`` (or above its first decorator), or, for a
module, in its first lines (a table of data is a fine reason). ``python tests/test_code_layout.py``
prints every module and function over the limits with its size.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "exporter"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
#: How far from the top of a module its ``# long:`` comment may stand.
MODULE_HEADER_LINES = 5
LONG = re.compile(r"^\s*# long: \S")

# Exceptions, each with its reason (empty: none is needed today). Keys are paths relative to the
# repository (modules) or "path::Qualified.name" (functions); prefer a '# long:' comment.
ALLOWED: dict[str, str] = {}


def modules() -> Iterator[Path]:
    yield from sorted(PACKAGE.rglob("*.py"))


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


Function = ast.FunctionDef | ast.AsyncFunctionDef


def functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, Function, int]]:
    """(qualified name, node, first line of its decorators or def) for every function."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, Function | ast.ClassDef):
            name = f"{prefix}{node.name}"
            if not isinstance(node, ast.ClassDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                yield name, node, first
            yield from functions(node, f"{name}.")
        else:
            yield from functions(node, prefix)


def unexplained_functions(source: str) -> dict[str, int]:
    """Every function without a ``# long:`` comment above it -> its size in lines."""
    lines = source.splitlines()
    return {
        name: (node.end_lineno or node.lineno) - node.lineno
        for name, node, first in functions(ast.parse(source))
        if first < 2 or LONG.match(lines[first - 2]) is None
    }


def oversized() -> dict[str, int]:
    """Every module and function over its limit without a ``# long:`` reason -> its size."""
    found: dict[str, int] = {}
    for path in modules():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        header = lines[:MODULE_HEADER_LINES]
        if len(lines) > MAX_MODULE_LINES and not any(LONG.match(line) for line in header):
            found[relative(path)] = len(lines)
        for name, size in unexplained_functions(text).items():
            if size > MAX_FUNCTION_LINES:
                found[f"{relative(path)}::{name}"] = size
    return found


def test_modules_and_functions_stay_small_or_say_why() -> None:
    over = {key: size for key, size in oversized().items() if key not in ALLOWED}
    assert not over, (
        f"over {MAX_MODULE_LINES} lines per module / {MAX_FUNCTION_LINES} per function; split "
        f"them, or put '# long: <reason>' above the def (a module: in its first lines): {over}"
    )


def test_the_allow_list_holds_only_what_is_still_too_big() -> None:
    stale = sorted(set(ALLOWED) - set(oversized()))
    assert not stale, f"no longer oversized: remove them from ALLOWED: {stale}"


def test_a_long_reason_is_the_comment_right_above_the_def() -> None:
    def body(indent: str) -> str:
        return "".join(f"{indent}x = {i}\n" for i in range(MAX_FUNCTION_LINES + 1))

    source = (
        "def short():\n    pass\n\n"
        f"def unexplained():\n{body('    ')}\n"
        f"# long: a table\n@decorator\ndef explained():\n{body('    ')}\n"
        "class C:\n"
        "    # long: the state machine, one branch per state\n"
        f"    async def method(self):\n{body('        ')}"
        "    # an ordinary comment\n"
        f"    def plain(self):\n{body('        ')}"
    )
    over = MAX_FUNCTION_LINES + 1
    assert unexplained_functions(source) == {"short": 1, "unexplained": over, "C.plain": over}


PRODUCT = ("exporter", "deploy", "alerts", "dashboards")


def test_the_product_imports_no_test_tooling() -> None:
    offenders = []
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                offenders += [
                    f"{relative(path)}: {n}" for n in names if n.split(".")[0] in ("tests", "bench")
                ]
    assert not offenders


if __name__ == "__main__":
    for key, size in sorted(oversized().items(), key=lambda item: -item[1]):
        print(f"{size:6d}  {key}{'  (allowed: ' + ALLOWED[key] + ')' if key in ALLOWED else ''}")
    sys.exit(0)
