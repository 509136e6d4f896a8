"""Render the cce-exporter Helm chart without Helm: ``helm template`` for a Go-template subset.

Test tooling, not part of the product (nothing under ``exporter/`` or ``deploy/`` imports it).
Helm is not installable from the package registries this project's machines reach, yet the chart's
renderings must be tested. This module implements exactly the template language the chart uses,
with Helm's semantics, and refuses everything else with an error naming the template and the
construct, so a chart edit that outgrows it fails loudly instead of rendering wrongly:

* actions ``{{ pipeline }}`` with ``{{-`` / ``-}}`` whitespace trimming and ``{{/* comments */}}``;
* ``if`` / ``else if`` / ``else`` / ``end`` (Go truthiness: false, 0, nil and empty are false),
  ``define "name"`` / ``end`` and ``include "name" ARG``;
* pipelines ``a | f b`` (the piped value is the last argument) and parenthesised sub-pipelines;
* fields ``.``, ``.Values.x.y``, ``.Release.Name`` / ``.Namespace`` / ``.Service``,
  ``.Chart.Name`` / ``.Version`` / ``.AppVersion``, ``.Files.Get "path"``; a field of a missing
  value is an error, as in Helm ("nil pointer evaluating");
* functions ``toYaml``, ``indent``, ``nindent``, ``quote``, ``default``, ``required``, ``trunc``,
  ``trimSuffix``, ``printf`` (``%s``/``%d``/``%v``), ``sha256sum``, ``not``, ``and``, ``or``,
  ``eq``, ``ne``, ``contains``, ``toString``.

``toYaml`` sorts keys as Helm's does; scalars may be quoted differently from Helm's YAML library,
which changes no parsed value.

The renderings of the default values and of ``tests/fixtures/helm/everything.yaml`` are pinned in
``tests/golden/helm/`` (``tests/test_helm.py``; ``UPDATE_GOLDEN=1`` rewrites them). Where Helm is
installed, that test also compares them, document by document, with ``helm template``; by hand::

    helm template cce-exporter deploy/helm/cce-exporter -n monitoring \\
        -f tests/fixtures/helm/everything.yaml > /tmp/helm.yaml
    python -m tests.tools.helm_render deploy/helm/cce-exporter -n monitoring \\
        -f tests/fixtures/helm/everything.yaml > /tmp/ours.yaml

and compare the parsed documents (the YAML quoting may differ, the values may not).

Usage, like ``helm template``::

    python -m tests.tools.helm_render deploy/helm/cce-exporter [-f values.yaml] [--set a.b=c] \\
        [--name-template RELEASE] [--namespace NS]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class TemplateError(Exception):
    """A template the renderer cannot or must not render (unsupported construct, bad value)."""


# --- parsing ----------------------------------------------------------------------------------

# A comment may contain "}}" (Go lexes it as a unit), hence its own alternative.
_ACTION = re.compile(r"\{\{(-\s)?(/\*.*?\*/|.*?)(\s-)?\}\}", re.DOTALL)
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*")
      | (?P<raw>`[^`]*`)
      | (?P<num>-?\d+(?:\.\d+)?)
      | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<punct>[()|])
    )""",
    re.VERBOSE,
)


@dataclass
class _Field:
    path: tuple[str, ...]


@dataclass
class _Func:
    name: str


@dataclass
class _Literal:
    value: Any


@dataclass
class _Pipeline:
    commands: list[list[Any]]  # operands: _Field, _Func, _Literal, _Pipeline


@dataclass
class _Text:
    text: str


@dataclass
class _Print:
    pipeline: _Pipeline
    where: str


@dataclass
class _If:
    branches: list[tuple[_Pipeline | None, list[Any]]]
    where: str


@dataclass
class _Define:
    name: str
    body: list[Any]


def _tokens(text: str, where: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise TemplateError(f"{where}: cannot parse {text[pos:]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _parse_pipeline(tokens: list[tuple[str, str]], where: str) -> _Pipeline:
    pos = 0

    def pipeline() -> _Pipeline:
        nonlocal pos
        commands: list[list[Any]] = [[]]
        while pos < len(tokens):
            kind, value = tokens[pos]
            if kind == "punct" and value == ")":
                break
            pos += 1
            if kind == "punct" and value == "|":
                commands.append([])
            elif kind == "punct" and value == "(":
                commands[-1].append(pipeline())
                if pos >= len(tokens) or tokens[pos] != ("punct", ")"):
                    raise TemplateError(f"{where}: unclosed parenthesis")
                pos += 1
            elif kind == "str":
                commands[-1].append(_Literal(json.loads(value)))
            elif kind == "raw":
                commands[-1].append(_Literal(value[1:-1]))
            elif kind == "num":
                commands[-1].append(_Literal(float(value) if "." in value else int(value)))
            elif kind == "field":
                path = tuple(p for p in value.split(".") if p)
                commands[-1].append(_Field(path))
            elif value in ("true", "false"):
                commands[-1].append(_Literal(value == "true"))
            elif value == "nil":
                commands[-1].append(_Literal(None))
            else:
                if value not in FUNCTIONS:
                    raise TemplateError(f"{where}: unsupported function or keyword {value!r}")
                commands[-1].append(_Func(value))
        if any(not c for c in commands):
            raise TemplateError(f"{where}: empty command in pipeline")
        return _Pipeline(commands)

    result = pipeline()
    if pos != len(tokens):
        raise TemplateError(f"{where}: unexpected ')'")
    return result


def parse(text: str, name: str) -> list[Any]:
    """Parse a template into nodes; ``name`` is used in error messages."""
    pieces: list[Any] = []  # str for text, (content, where) for actions
    pos = 0
    for m in _ACTION.finditer(text):
        before = text[pos : m.start()]
        if m.group(1):
            before = before.rstrip(" \t\r\n")
        if pieces and isinstance(pieces[-1], tuple) and pieces[-1][2]:
            before = before.lstrip(" \t\r\n")
        pieces.append(before)
        line = text.count("\n", 0, m.start()) + 1
        pieces.append((m.group(2).strip(), f"{name}:{line}", bool(m.group(3))))
        pos = m.end()
    tail = text[pos:]
    if pieces and isinstance(pieces[-1], tuple) and pieces[-1][2]:
        tail = tail.lstrip(" \t\r\n")
    pieces.append(tail)

    # Nested blocks: a stack of (kind, node, current body).
    root: list[Any] = []
    stack: list[tuple[str, Any, list[Any]]] = [("root", None, root)]
    for piece in pieces:
        body = stack[-1][2]
        if isinstance(piece, str):
            if piece:
                body.append(_Text(piece))
            continue
        content, where, _ = piece
        if content.startswith("/*"):
            if not content.endswith("*/"):
                raise TemplateError(f"{where}: unterminated comment")
            continue
        keyword, _, rest = content.partition(" ")
        rest = rest.strip()
        if keyword == "if":
            node = _If([(_parse_pipeline(_tokens(rest, where), where), [])], where)
            body.append(node)
            stack.append(("if", node, node.branches[0][1]))
        elif keyword == "else":
            kind, node, _ = stack[-1]
            if kind != "if":
                raise TemplateError(f"{where}: else outside if")
            if node.branches[-1][0] is None:
                raise TemplateError(f"{where}: else after else")
            cond = None
            if rest:
                sub, _, cond_text = rest.partition(" ")
                if sub != "if":
                    raise TemplateError(f"{where}: unsupported 'else {sub}'")
                cond = _parse_pipeline(_tokens(cond_text, where), where)
            node.branches.append((cond, []))
            stack[-1] = ("if", node, node.branches[-1][1])
        elif keyword == "end":
            if len(stack) == 1:
                raise TemplateError(f"{where}: end without a block")
            stack.pop()
        elif keyword == "define":
            if len(stack) != 1:
                raise TemplateError(f"{where}: define inside a block")
            define = _Define(json.loads(rest), [])
            body.append(define)
            stack.append(("define", define, define.body))
        elif keyword in ("range", "with", "template", "block", "break", "continue"):
            raise TemplateError(f"{where}: {keyword!r} is not supported by this renderer")
        elif content.startswith("$"):
            raise TemplateError(f"{where}: variables are not supported by this renderer")
        else:
            body.append(_Print(_parse_pipeline(_tokens(content, where), where), where))
    if len(stack) != 1:
        raise TemplateError(f"{name}: {stack[-1][0]} block not closed with end")
    return root


# --- evaluation -------------------------------------------------------------------------------


def _truthy(value: Any) -> bool:
    if value is None or value is False:
        return False
    if isinstance(value, int | float | str | list | dict | tuple):
        return bool(value)
    return True


def _to_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        # Go prints maps as map[a:b]; a chart printing a map is a bug either way.
        raise TemplateError(f"printing a {type(value).__name__} needs toYaml")
    return str(value)


def _to_yaml(value: Any) -> str:
    if value is None:
        return "null"
    text = yaml.safe_dump(value, sort_keys=True, default_flow_style=False, width=1_000_000)
    text = text.removesuffix("\n")
    return text.removesuffix("\n...")


def _indent(n: int, text: Any) -> str:
    pad = " " * int(n)
    return pad + _to_string(text).replace("\n", "\n" + pad)


def _quote(*values: Any) -> str:
    return " ".join(json.dumps(_to_string(v), ensure_ascii=False) for v in values if v is not None)


def _default(fallback: Any, *value: Any) -> Any:
    if not value or not _truthy(value[0]):
        return fallback
    return value[0]


def _required(message: str, value: Any) -> Any:
    if value is None or value == "":
        raise TemplateError(f"required value missing: {message}")
    return value


def _printf(fmt: str, *args: Any) -> str:
    def conv(match: re.Match[str]) -> str:
        nonlocal args
        if match.group(0) == "%%":
            return "%"
        if not args:
            raise TemplateError(f"printf {fmt!r}: too few arguments")
        value, args = args[0], args[1:]
        return _to_string(value)

    return re.sub(r"%%|%[sdv]", conv, fmt)


def _and(*values: Any) -> Any:
    for v in values:
        if not _truthy(v):
            return v
    return values[-1]


def _or(*values: Any) -> Any:
    for v in values:
        if _truthy(v):
            return v
    return values[-1]


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "toYaml": _to_yaml,
    "indent": _indent,
    "nindent": lambda n, text: "\n" + _indent(n, text),
    "quote": _quote,
    "default": _default,
    "required": _required,
    "trunc": lambda n, s: _to_string(s)[: int(n)] if n >= 0 else _to_string(s)[int(n) :],
    "trimSuffix": lambda suffix, s: _to_string(s).removesuffix(suffix),
    "printf": _printf,
    "sha256sum": lambda s: hashlib.sha256(_to_string(s).encode()).hexdigest(),
    "not": lambda v: not _truthy(v),
    "and": _and,
    "or": _or,
    "eq": lambda a, *bs: any(a == b for b in bs),
    "ne": lambda a, b: a != b,
    "contains": lambda sub, s: sub in _to_string(s),
    "toString": _to_string,
    "include": None,  # needs the renderer's defines; handled in _Renderer._call
}


@dataclass
class Files:
    """``.Files`` of a chart: the files under its directory, outside ``templates/``."""

    root: Path

    def Get(self, name: str) -> str:  # Helm's spelling: templates call .Files.Get
        path = (self.root / name).resolve()
        if self.root.resolve() not in path.parents or not path.is_file():
            return ""  # Helm returns "" for a missing file
        return path.read_text(encoding="utf-8")


@dataclass
class _Renderer:
    defines: dict[str, list[Any]] = field(default_factory=dict)
    depth: int = 0

    def render(self, nodes: list[Any], dot: Any) -> str:
        out: list[str] = []
        for node in nodes:
            if isinstance(node, _Text):
                out.append(node.text)
            elif isinstance(node, _Print):
                out.append(_to_string(self.pipeline(node.pipeline, dot, node.where)))
            elif isinstance(node, _If):
                for cond, body in node.branches:
                    if cond is None or _truthy(self.pipeline(cond, dot, node.where)):
                        out.append(self.render(body, dot))
                        break
            elif isinstance(node, _Define):
                continue
        return "".join(out)

    def pipeline(self, pipe: _Pipeline, dot: Any, where: str) -> Any:
        result: Any = None
        for i, command in enumerate(pipe.commands):
            piped = [result] if i > 0 else []
            result = self.command(command, piped, dot, where)
        return result

    def operand(self, op: Any, dot: Any, where: str) -> Any:
        if isinstance(op, _Literal):
            return op.value
        if isinstance(op, _Pipeline):
            return self.pipeline(op, dot, where)
        if isinstance(op, _Field):
            return self.field(op.path, dot, where)
        raise TemplateError(f"{where}: function {op.name!r} used as a value")

    def field(self, path: tuple[str, ...], dot: Any, where: str) -> Any:
        value = dot
        for i, name in enumerate(path):
            if value is None:
                shown = "." + ".".join(path[:i])
                raise TemplateError(f"{where}: nil pointer evaluating {shown}.{name}")
            if isinstance(value, Mapping):
                value = value.get(name)
            elif hasattr(value, name):
                value = getattr(value, name)
            else:
                raise TemplateError(f"{where}: can't evaluate field {name}")
        return value

    def command(self, command: list[Any], piped: list[Any], dot: Any, where: str) -> Any:
        head, rest = command[0], command[1:]
        if isinstance(head, _Func):
            args = [self.operand(a, dot, where) for a in rest] + piped
            return self._call(head.name, args, where)
        if isinstance(head, _Field) and (rest or piped):
            method = self.field(head.path, dot, where)
            if not callable(method):
                raise TemplateError(f"{where}: .{'.'.join(head.path)} is not a method")
            return method(*[self.operand(a, dot, where) for a in rest], *piped)
        if rest or piped:
            raise TemplateError(f"{where}: can't give arguments to a non-function")
        return self.operand(head, dot, where)

    def _call(self, name: str, args: list[Any], where: str) -> Any:
        if name == "include":
            if len(args) != 2:
                raise TemplateError(f"{where}: include takes a name and a value")
            if args[0] not in self.defines:
                raise TemplateError(f"{where}: no template {args[0]!r}")
            if self.depth > 50:
                raise TemplateError(f"{where}: include nested too deeply")
            self.depth += 1
            try:
                return self.render(self.defines[args[0]], args[1])
            finally:
                self.depth -= 1
        try:
            return FUNCTIONS[name](*args)
        except TemplateError as exc:
            raise TemplateError(f"{where}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise TemplateError(f"{where}: {name}: {exc}") from None


# --- the chart --------------------------------------------------------------------------------


def merge_values(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's coalescing: maps merge key by key, anything else replaces; ``null`` deletes."""
    merged = dict(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_set(assignment: str) -> dict[str, Any]:
    """``a.b=c`` -> ``{"a": {"b": c}}`` with ``c`` read as a YAML scalar (true, 3, text)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise TemplateError(f"--set {assignment!r}: expected KEY=VALUE")
    value: Any = yaml.safe_load(raw) if raw else ""
    for part in reversed(key.split(".")):
        value = {part: value}
    return value  # type: ignore[no-any-return]


def render_chart(
    chart_dir: Path,
    values: Mapping[str, Any] | None = None,
    release_name: str = "cce-exporter",
    namespace: str = "default",
) -> dict[str, str]:
    """Render every template of ``chart_dir`` -> {template path: text}, as ``helm template``
    would before splitting documents. ``values`` are merged over the chart's values.yaml."""
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text(encoding="utf-8"))
    defaults = yaml.safe_load((chart_dir / "values.yaml").read_text(encoding="utf-8")) or {}
    merged = merge_values(defaults, values or {})
    root = {
        "Values": merged,
        "Release": {
            "Name": release_name,
            "Namespace": namespace,
            "Service": "Helm",
            "IsInstall": True,
            "IsUpgrade": False,
        },
        "Chart": {
            "Name": chart["name"],
            "Version": chart["version"],
            "AppVersion": chart.get("appVersion", ""),
        },
        "Files": Files(chart_dir),
    }
    renderer = _Renderer()
    templates = sorted((chart_dir / "templates").glob("*"))
    parsed: dict[str, list[Any]] = {}
    for path in templates:
        if path.suffix not in (".yaml", ".yml", ".tpl", ".txt"):
            continue
        rel = str(path.relative_to(chart_dir.parent))
        nodes = parse(path.read_text(encoding="utf-8"), rel)
        parsed[rel] = nodes
        for node in nodes:
            if isinstance(node, _Define):
                renderer.defines[node.name] = node.body
    rendered: dict[str, str] = {}
    for rel, nodes in parsed.items():
        name = Path(rel).name
        if name.startswith("_") or name.endswith(".txt"):
            continue  # partials; NOTES.txt is not a manifest
        rendered[rel] = renderer.render(nodes, root)
    return rendered


def render_documents(
    chart_dir: Path,
    values: Mapping[str, Any] | None = None,
    release_name: str = "cce-exporter",
    namespace: str = "default",
) -> list[dict[str, Any]]:
    """The chart's manifests, parsed; empty documents (disabled templates) left out."""
    docs: list[dict[str, Any]] = []
    for rel, text in render_chart(chart_dir, values, release_name, namespace).items():
        try:
            loaded = list(yaml.safe_load_all(text))
        except yaml.YAMLError as exc:
            raise TemplateError(f"{rel} renders invalid YAML: {exc}") from None
        for doc in loaded:
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise TemplateError(f"{rel} renders a document that is not a mapping: {doc!r}")
            docs.append(doc)
    return docs


def as_manifest(rendered: Mapping[str, str]) -> str:
    """:func:`render_chart`'s output as ``helm template`` prints it: each non-empty template after
    ``---`` and a ``# Source:`` comment."""
    return "".join(
        f"---\n# Source: {rel}\n{text.strip()}\n" for rel, text in rendered.items() if text.strip()
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.tools.helm_render", description=__doc__)
    parser.add_argument("chart", type=Path)
    parser.add_argument("-f", "--values", type=Path, action="append", default=[])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--name-template", default="cce-exporter", help="release name")
    parser.add_argument("--namespace", "-n", default="default")
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    try:
        for path in args.values:
            values = merge_values(values, yaml.safe_load(path.read_text(encoding="utf-8")) or {})
        for assignment in args.set:
            values = merge_values(values, parse_set(assignment))
        rendered = render_chart(args.chart, values, args.name_template, args.namespace)
    except TemplateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(as_manifest(rendered))
    return 0


if __name__ == "__main__":
    sys.exit(main())
