"""One load: the sources of pydantic-settings, the targets built from their layers, and the
messages: every problem at once, each naming the variable, the YAML key and the fix."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from exporter.config.names import PROCESS_FIELDS, env_name_for_target
from exporter.config.settings import (
    ACTIVE_LOAD,
    Settings,
    _plain_process_namer,
    _settings_problems,
)
from exporter.config.sources import FILE, EnvSource, PerTargetEnvSource, Report, YamlSource
from exporter.config.targets import _CHECK, KUBE_LIST_KEYS, Namer, _target_problems
from exporter.config.values import (
    BOOL_WORDS,
    CONFIG_ENV,
    ENV_PREFIX,
    PER_TARGET_ENV_PREFIX,
    RESOURCE_NAMES,
    ConfigError,
    _fix_key,
    _is_set,
    target_env_name,
)

FlatKey = tuple[str, ...]
# A layer maps a key path to (value, description of its source).
Layer = dict[FlatKey, tuple[Any, str]]

#: Mappings merged key by key across layers; any other value replaces the inherited one whole.
_MERGED: frozenset[FlatKey] = frozenset(
    {("labels",), ("resources",), ("kubernetes",)}
    | {("resources", name) for name in RESOURCE_NAMES}
    | {("kubernetes", key) for key in KUBE_LIST_KEYS}
)
#: Alternatives: a more specific layer that sets one drops the other one inherited.
_ALTERNATIVES = ((("project_id",), ("project_name",)), (("project_name",), ("project_id",)))


def _flatten(tree: Mapping[str, Any], origin: Callable[[FlatKey], str]) -> Layer:
    layer: Layer = {}

    def walk(node: Mapping[str, Any], prefix: FlatKey) -> None:
        for key, value in node.items():
            path = (*prefix, key)
            if path in _MERGED and isinstance(value, Mapping):
                walk(value, path)
            else:
                layer[path] = (value, origin(path))

    walk(tree, ())
    # In the order of the variables' names, as check-config lists the sources (a stable sort:
    # the labels of one variable, and a file's keys, keep their order).
    return dict(sorted(layer.items(), key=lambda item: item[1][1]))


def _from_env(prefix: str) -> Callable[[FlatKey], str]:
    return lambda path: f"environment variable {prefix}{target_env_name(path)[len(ENV_PREFIX) :]}"


def _from_file(path: FlatKey) -> str:
    return FILE


def _merge(*layers: Layer) -> Layer:
    merged: Layer = {}
    for layer in layers:
        for one, other in _ALTERNATIVES:
            if one in layer and other not in layer:
                merged.pop(other, None)
        for path, entry in layer.items():
            # A whole-value override (a malformed `resources: 3`, say) replaces the nested keys.
            for old in [p for p in merged if p[: len(path)] == path and p != path]:
                del merged[old]
            merged[path] = entry
    return merged


def _unflatten(layer: Layer) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, (value, _) in sorted(layer.items(), key=lambda item: len(item[0])):
        if value is None:
            continue  # null: not set, the default applies
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = value
    return out


class _Load:
    """One run of :func:`load_settings`: its sources, its targets, its messages."""

    def __init__(self, config_file: Path | None, env: Mapping[str, str]) -> None:
        self.report = Report(config_file, env)
        self.problems: list[str] = []
        self.has_list = False
        self.origins: dict[str, str] = {}

    def sources(self, settings_cls: type[BaseSettings]) -> tuple[PydanticBaseSettingsSource, ...]:
        """Most specific first, as pydantic-settings merges them."""
        return (
            EnvSource(settings_cls, self.report),
            PerTargetEnvSource(settings_cls, self.report),
            YamlSource(settings_cls, self.report),
        )

    # names in messages

    def target_key(self, index: int, path: FlatKey) -> str:
        prefix = f"targets[{index}]." if self.has_list else ""
        return prefix + ".".join(path)

    def namer_for(self, index: int) -> Namer:
        return lambda field: (target_env_name((field,)), self.target_key(index, (field,)))

    # the targets

    def compose(self, data: dict[str, Any]) -> dict[str, Any]:
        """The list of targets from the layers the sources read, with the problems of presence."""
        data = dict(data)
        layers = data.pop("targets", None) or {}
        for field in PROCESS_FIELDS:
            origin = self.report.env_origins.get(field) or self.report.file_origins.get(field)
            if origin is not None:
                self.origins[field] = origin
        defaults = _merge(
            _flatten(layers.get("file", {}), _from_file),
            _flatten(layers.get("env", {}), _from_env(ENV_PREFIX)),
        )
        names, entries = self._entries(defaults, layers)
        self._apply_per_target(names, entries, layers.get("per_target", {}))
        targets: list[dict[str, Any]] = []
        for i, layer in enumerate(entries):
            for path, (_, origin) in layer.items():
                self.origins[self.target_key(i, path)] = origin
            merged = _unflatten(layer)
            targets.append(merged)
            self.problems.extend(_target_problems(merged, self.namer_for(i)))
        data["targets"] = targets
        names = [n for n in names if n]
        self.problems.extend(_settings_problems(data, names, _plain_process_namer))
        return data

    def _entries(self, defaults: Layer, layers: Mapping[str, Any]) -> tuple[list[str], list[Layer]]:
        if "entries" not in layers:
            name_entry = defaults.get(("name",))
            name = str(name_entry[0]) if name_entry and name_entry[0] is not None else ""
            return [name], [defaults]
        self.has_list = True
        if ("name",) in defaults:
            self.problems.append(
                f"{ENV_PREFIX}TARGET_NAME (name) names the single target and cannot be used "
                "with a targets: list: give each entry of targets its own name instead"
            )
        inherited = {k: v for k, v in defaults.items() if k != ("name",)}
        raw = layers["entries"]
        if not isinstance(raw, list) or not raw:
            self.problems.append(
                "targets: must be a non-empty list of targets (- name: ..., endpoint: ...); "
                "remove it to configure one target with the top-level keys"
            )
            raw = []
        names: list[str] = []
        entries: list[Layer] = []
        for i, entry in enumerate(raw):
            if not isinstance(entry, Mapping):
                self.problems.append(
                    f"targets[{i}]: must be a mapping of target keys (name: ..., endpoint: ...)"
                )
                continue
            layer = _flatten(entry, _from_file)
            entry_name = entry.get("name")
            if not _is_set(entry_name):
                self.problems.append(
                    f"targets[{i}].name is required: give every entry of targets a unique name"
                )
                entry_name = f"target{i}"
            layer[("name",)] = (str(entry_name), FILE)
            names.append(str(entry_name))
            entries.append(_merge(inherited, layer))
        return names, entries

    def _apply_per_target(
        self, names: list[str], entries: list[Layer], trees: Mapping[str, Any]
    ) -> None:
        by_env_name: dict[str, int] = {}
        for i, name in enumerate(names):
            by_env_name.setdefault(env_name_for_target(name or "default"), i)
        for target_env, tree in trees.items():
            sharing = [n for n in names if env_name_for_target(n or "default") == target_env]
            if len(set(sharing)) > 1:
                self.problems.append(
                    f"{PER_TARGET_ENV_PREFIX}{target_env}__*: targets {', '.join(sharing)} share "
                    "this variable name: rename one of them so the names differ in more than "
                    "punctuation"
                )
                continue
            if target_env not in by_env_name:
                known_names = ", ".join(env_name_for_target(n or "default") for n in names)
                self.problems.append(
                    f"{PER_TARGET_ENV_PREFIX}{target_env}__*: no target is named so "
                    f"(targets here: {known_names}); the name is upper-cased with every "
                    "character other than A-Z and 0-9 replaced by '_'"
                )
                continue
            self.problems.extend(self.report.per_target_problems.get(target_env, []))
            i = by_env_name[target_env]
            prefix = f"{PER_TARGET_ENV_PREFIX}{target_env}__"
            entries[i] = _merge(entries[i], _flatten(tree, _from_env(prefix)))

    # the messages

    def finish(self, settings: Settings | None, errors: list[Any]) -> Settings:
        """The settings, or :class:`ConfigError` with every problem, secrets masked."""
        problems = [*self.report.file_problems, *self.report.env_problems, *self.problems]
        for error in errors:
            if error["type"] == _CHECK or error["loc"] == ("targets",):
                continue  # already reported, with better names, from the raw data
            problems.append(self.format_error(error["loc"], error["type"], error["msg"]))
        if problems or settings is None:
            raise ConfigError(self.report.scrub(list(dict.fromkeys(problems))))
        settings._sources = dict(self.origins)
        notices = [self.report.notices[name] for name in sorted(self.report.notices)]
        settings._notices = self.report.scrub(notices)
        settings._config_file = self.report.config_file
        return settings

    def describe(self, loc: tuple[int | str, ...]) -> str:
        parts = [str(p) for p in loc]
        if len(loc) >= 2 and loc[0] == "targets" and isinstance(loc[1], int):
            index, path = loc[1], tuple(parts[2:])
            if not path:
                return f"targets[{index}]"
            key = self.target_key(index, path)
            env = target_env_name(path)
        elif parts:
            key = ".".join(parts)
            env = ENV_PREFIX + parts[0].upper()
        else:
            return "configuration"
        source = self.origins.get(key)
        if source is None:
            # A whole mapping (labels, resources): name the source of one of its keys.
            nested = [v for k, v in self.origins.items() if k.startswith(key + ".")]
            source = nested[0] if len(set(nested)) == 1 else None
        if source == f"environment variable {env}":
            source = "the environment"
        where = f", set in {source}" if source else ""
        return f"{env} ({key}{where})"

    def format_error(self, loc: tuple[int | str, ...], kind: str, msg: str) -> str:
        name = self.describe(loc)
        if kind == "missing":
            field = str(loc[-1]) if loc else "value"
            env = name.split(" ", 1)[0]
            key = name.split("(", 1)[-1].split(",", 1)[0].rstrip(")")
            hint = ""
            if field == "endpoint":
                hint = " (the CCE base URL, e.g. https://cce.ap-southeast-1.myhuaweicloud.com)"
            return f"{name} is required: set {env} or {_fix_key(key)} in the config file{hint}"
        if kind in ("dict_type", "model_type", "model_attributes_type"):
            msg = "must be a mapping (key: value, or {key: value})"
        if kind in ("bool_parsing", "bool_type"):
            msg = f"must be true or false; accepted values: {BOOL_WORDS}"
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        return f"{name}: {msg}"


def load_settings(
    config_file: Path | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Read, merge and validate the configuration; raise :class:`ConfigError` listing every problem.

    ``env`` defaults to ``os.environ``; ``config_file`` defaults to ``$CCE_EXPORTER_CONFIG``.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    if config_file is None:
        from_env = environ.get(CONFIG_ENV, "").strip()
        config_file = Path(from_env).expanduser() if from_env else None
    else:
        config_file = Path(config_file)  # a str from a caller that skipped type=Path
    load = _Load(config_file, environ)
    settings: Settings | None = None
    errors: list[Any] = []
    token = ACTIVE_LOAD.set(load)
    try:
        settings = Settings()
    except ValidationError as exc:
        # Kept without the exception: pydantic's errors carry the input values (secrets).
        errors = list(exc.errors(include_input=False, include_url=False))
    finally:
        ACTIVE_LOAD.reset(token)
    return load.finish(settings, errors)
