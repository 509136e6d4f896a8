"""Reading the YAML file: duplicate keys refused, errors without the offending line, unknown keys
named with a suggestion."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from exporter.config.names import PROCESS_FIELDS, TARGET_FIELDS
from exporter.config.targets import KUBE_LIST_KEYS, KubernetesConfig
from exporter.config.values import RESOURCE_NAMES, ConfigError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (the later one would silently win)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            continue  # unhashable: construct_mapping reports it
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path, origin: str) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(
            [f"config file {path} ({origin}) does not exist: fix the path or create the file"]
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError([f"config file {path} ({origin}) cannot be read: {reason}"]) from None
    # The error is raised outside the except block so it chains nothing: str() of a YAML error
    # quotes the offending line, which may hold a secret.
    problem: str | None = None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        problem = f"config file {path}: invalid YAML{where}: {what}"
    except yaml.YAMLError:
        problem = f"config file {path}: invalid YAML"
    if problem is not None:
        raise ConfigError([problem])
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            [f"config file {path}: the top level must be a mapping of keys (endpoint: ...)"]
        )
    return {str(k): v for k, v in data.items()}


def suggest(key: str, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(key, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def unknown_keys(data: Mapping[str, Any]) -> list[str]:
    """One problem per key of the file no setting has, with its path and a suggestion."""
    problems: list[str] = []
    top = set(PROCESS_FIELDS) | set(TARGET_FIELDS) | {"targets"}

    def unknown(path: str, key: str, choices: Iterable[str], extra: str = "") -> None:
        problems.append(f"{path}: unknown key {key!r} in the config file{suggest(key, choices)}")
        if extra:
            problems[-1] += extra

    def target_keys(prefix: str, entry: Mapping[Any, Any], allowed: set[str]) -> None:
        for raw_key, value in entry.items():
            key = str(raw_key)
            if key not in allowed:
                hint = ""
                if key in PROCESS_FIELDS:
                    hint = f": {key} is a process setting, move it to the top level of the file"
                unknown(prefix + key, key, allowed, hint)
            elif key == "kubernetes" and isinstance(value, Mapping):
                kube_keys = tuple(KubernetesConfig.model_fields)
                for raw_sub, sub_value in value.items():
                    sub = str(raw_sub)
                    if sub not in kube_keys:
                        unknown(f"{prefix}kubernetes.{sub}", sub, kube_keys)
                    elif sub in KUBE_LIST_KEYS and isinstance(sub_value, Mapping):
                        for raw_leaf in sub_value:
                            leaf = str(raw_leaf)
                            if leaf not in KUBE_LIST_KEYS[sub]:
                                unknown(
                                    f"{prefix}kubernetes.{sub}.{leaf}",
                                    leaf,
                                    KUBE_LIST_KEYS[sub],
                                    f"; kubernetes.{sub} has {', '.join(KUBE_LIST_KEYS[sub])}",
                                )
            elif key == "resources" and isinstance(value, Mapping):
                for raw_res, res in value.items():
                    res_name = str(raw_res)
                    if res_name not in RESOURCE_NAMES:
                        unknown(
                            f"{prefix}resources.{res_name}",
                            res_name,
                            RESOURCE_NAMES,
                            f"; resources are {', '.join(RESOURCE_NAMES)}",
                        )
                    elif isinstance(res, Mapping):
                        for raw_sub in res:
                            sub = str(raw_sub)
                            if sub not in ("enabled", "interval"):
                                unknown(
                                    f"{prefix}resources.{res_name}.{sub}",
                                    sub,
                                    ("enabled", "interval"),
                                    "; a resource has enabled and interval",
                                )

    target_keys("", data, top)
    targets = data.get("targets")
    if isinstance(targets, list):
        for i, entry in enumerate(targets):
            if isinstance(entry, Mapping):
                target_keys(f"targets[{i}].", entry, set(TARGET_FIELDS))
    return problems
