"""The sources of one load, as pydantic-settings sources, and what they report on the side.

* :class:`EnvSource`: ``CCE_EXPORTER_<KEY>``. pydantic-settings' environment source matches the
  process settings; the flat target keys (defaults every target inherits) come out as a tree.
* :class:`PerTargetEnvSource`: ``CCE_EXPORTER_TARGETS__<NAME>__<KEY>``, one tree per name.
* :class:`YamlSource`: the file, its process settings and its target trees (top level, entries).

Target keys travel under ``targets`` as trees shaped like the YAML (``{"env": ..., "file": ...,
"entries": [...], "per_target": {...}}``); the load turns them into the list of targets. What only
a source can tell (unknown keys, malformed variables, secret values to mask) goes to the
:class:`Report` of the load.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource

from exporter.config.names import (
    PATH_FIELDS,
    PROCESS_ENV,
    PROCESS_FIELDS,
    SECRET_FIELDS,
    TARGET_ENV,
    TARGET_FIELDS,
)
from exporter.config.targets import KUBE_LIST_KEYS, KubernetesConfig
from exporter.config.values import (
    CONFIG_ENV,
    ENV_PREFIX,
    PER_TARGET_ENV_PREFIX,
    REDACTED,
    RESOURCE_NAMES,
)
from exporter.config.yamlfile import read_yaml, unknown_keys
from exporter.memory import TUNING_VARIABLES

FILE = "the config file"


class Report:
    """What the sources of one load found besides values: problems, notices, secrets, origins."""

    def __init__(self, config_file: Path | None, env: Mapping[str, str]) -> None:
        #: The ``CCE_EXPORTER_*`` variables; an empty one counts as unset (optional Secret keys).
        self.env = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX) and v.strip()}
        self.config_file = config_file
        self.file_problems: list[str] = []
        self.env_problems: list[str] = []
        self.per_target_problems: dict[str, list[str]] = {}
        self.notices: dict[str, str] = {}
        #: Process setting -> where its value came from, per source.
        self.env_origins: dict[str, str] = {}
        self.file_origins: dict[str, str] = {}
        self.secret_values: set[str] = set()
        for name, value in self.env.items():
            suffix = name[len(ENV_PREFIX) :].rpartition("__")[2]
            if suffix.lower() in SECRET_FIELDS:
                self.collect_secrets(value)
            elif suffix == "PROXY":
                self.collect_proxy_secret(value)

    @property
    def origin(self) -> str:
        from_env = self.env.get(CONFIG_ENV, "").strip()
        if from_env and Path(from_env) == self.config_file:
            return f"from {CONFIG_ENV}"
        return "from --config"

    def scrub(self, lines: list[str]) -> list[str]:
        """Mask every secret value wherever it appears (a secret pasted into the wrong key)."""
        secrets = sorted(self.secret_values, key=len, reverse=True)
        out = []
        for line in lines:
            for secret in secrets:
                line = line.replace(secret, REDACTED)
            out.append(line)
        return out

    def collect_secrets(self, value: Any) -> None:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            text = str(value).strip()
            # Very short values would mask ordinary words; no real secret is that short.
            if len(text) >= 4:
                self.secret_values.add(text)
        elif isinstance(value, Mapping):
            for item in value.values():
                self.collect_secrets(item)
        elif isinstance(value, list):
            for item in value:
                self.collect_secrets(item)

    def collect_proxy_secret(self, value: Any) -> None:
        """The user info of a proxy URL is a secret (the rest of the URL is not)."""
        if isinstance(value, str):
            try:
                parts = urlsplit(value.strip())
            except ValueError:
                self.collect_secrets(value)  # unreadable: mask all of it
                return
            for part in (parts.password, parts.username and parts.netloc.rpartition("@")[0]):
                if part:
                    self.collect_secrets(part)

    def find_secrets(self, data: Any) -> None:
        if isinstance(data, Mapping):
            for key, value in data.items():
                if str(key) == "proxy":
                    self.collect_proxy_secret(value)
                elif str(key) in SECRET_FIELDS:
                    self.collect_secrets(value)
                else:
                    self.find_secrets(value)
        elif isinstance(data, list):
            for item in data:
                self.find_secrets(item)


# --- target trees ------------------------------------------------------------------------------


def _parse_env_labels(text: str, env_name: str, problems: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            problems.append(
                f"{env_name}: expected name=value pairs separated by commas, "
                "e.g. region=ap-southeast-1,env=prod"
            )
            return {}
        labels[name.strip()] = value.strip()
    return labels


def _put(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def env_target_tree(
    items: Mapping[str, str], env_prefix: str, problems: list[str]
) -> dict[str, Any]:
    """Target keys from variables ``{env_prefix}{SUFFIX}``; ``items`` maps SUFFIX -> value."""
    tree: dict[str, Any] = {}
    for suffix, value in items.items():
        path = TARGET_ENV[suffix]
        parsed: Any = value
        if path == ("labels",):
            parsed = _parse_env_labels(value, env_prefix + suffix, problems)
        _put(tree, path, parsed)
    return tree


def _resolve(key: str, value: Any, base: Path | None) -> Any:
    if key in PATH_FIELDS and isinstance(value, str) and value.strip() and base is not None:
        path = Path(value.strip()).expanduser()
        return str(path if path.is_absolute() else base / path)
    return value


def _known(value: Mapping[Any, Any], keys: Any) -> dict[str, Any]:
    return {str(k): v for k, v in value.items() if str(k) in keys}


def file_target_tree(entry: Mapping[str, Any], base: Path | None) -> dict[str, Any]:
    """The target keys of a file mapping. Unknown keys (reported on their own) are left out, and
    a null ``resources``, ``labels`` or resource entry is as if absent."""
    tree: dict[str, Any] = {}
    for key, value in _known(entry, TARGET_FIELDS).items():
        if key == "resources" and isinstance(value, Mapping):
            tree[key] = {
                res: _known(sub, ("enabled", "interval")) if isinstance(sub, Mapping) else sub
                for res, sub in _known(value, RESOURCE_NAMES).items()
                if sub is not None
            }
        elif key == "labels" and isinstance(value, Mapping):
            tree[key] = {str(k): v for k, v in value.items()}
        elif key == "kubernetes" and isinstance(value, Mapping):
            tree[key] = {
                sub: _known(sub_value, KUBE_LIST_KEYS[sub])
                if sub in KUBE_LIST_KEYS and isinstance(sub_value, Mapping)
                else sub_value
                for sub, sub_value in _known(value, KubernetesConfig.model_fields).items()
            }
        elif key not in ("resources", "labels") or value is not None:
            tree[key] = _resolve(key, value, base)
    return tree


# --- the sources -------------------------------------------------------------------------------


class EnvSource(EnvSettingsSource):
    """``CCE_EXPORTER_<KEY>``: process settings, and the flat target keys every target inherits."""

    def __init__(self, settings_cls: type[BaseSettings], report: Report) -> None:
        self.report = report
        super().__init__(settings_cls, case_sensitive=False, env_prefix=ENV_PREFIX)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Only exact (upper-case) names of process settings; the rest is not pydantic's to match.
        env = self.report.env
        return {k.lower(): v for k, v in env.items() if k[len(ENV_PREFIX) :] in PROCESS_ENV}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name == "targets":
            return None, field_name, False  # targets are built from the trees, not one variable
        return super().get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        for field in data:
            self.report.env_origins[field] = f"environment variable {ENV_PREFIX}{field.upper()}"
        flat: dict[str, str] = {}
        for name, value in sorted(self.report.env.items()):
            suffix = name[len(ENV_PREFIX) :]
            if suffix in TARGET_ENV:
                flat[suffix] = value
            elif not (
                suffix in PROCESS_ENV
                or name == CONFIG_ENV
                or name in TUNING_VARIABLES.values()  # read by exporter.memory
                or name.startswith(PER_TARGET_ENV_PREFIX)
            ):
                known = [*PROCESS_ENV, *TARGET_ENV, CONFIG_ENV[len(ENV_PREFIX) :]]
                match = difflib.get_close_matches(suffix, known, n=1, cutoff=0.7)
                hint = f" (did you mean {ENV_PREFIX}{match[0]}?)" if match else ""
                self.report.notices[name] = f"ignoring unknown variable {name}{hint}"
        tree = env_target_tree(flat, ENV_PREFIX, self.report.env_problems)
        return {**data, "targets": {"env": tree}}


class PerTargetEnvSource(PydanticBaseSettingsSource):
    """``CCE_EXPORTER_TARGETS__<NAME>__<KEY>``: one target's keys, by the target's env name."""

    def __init__(self, settings_cls: type[BaseSettings], report: Report) -> None:
        super().__init__(settings_cls)
        self.report = report

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # the variables name targets, not fields: see __call__

    def __call__(self) -> dict[str, Any]:
        items: dict[str, dict[str, str]] = {}
        for name, value in sorted(self.report.env.items()):
            if not name.startswith(PER_TARGET_ENV_PREFIX):
                continue
            target, sep, key = name[len(PER_TARGET_ENV_PREFIX) :].partition("__")
            if sep and target and key in TARGET_ENV and key != "TARGET_NAME":
                items.setdefault(target, {})[key] = value
            else:
                self.report.notices[name] = (
                    f"ignoring {name}: per-target variables are "
                    f"{PER_TARGET_ENV_PREFIX}<TARGET NAME>__<KEY>, e.g. "
                    f"{PER_TARGET_ENV_PREFIX}PROD__SK"
                )
        trees = {}
        for target, keys in items.items():
            problems = self.report.per_target_problems.setdefault(target, [])
            trees[target] = env_target_tree(keys, f"{PER_TARGET_ENV_PREFIX}{target}__", problems)
        return {"targets": {"per_target": trees}} if trees else {}


class YamlSource(PydanticBaseSettingsSource):
    """The YAML file: process settings, top-level target keys and the ``targets:`` entries.

    Not pydantic-settings' own YAML source: that one skips a missing file silently and lets a
    duplicate key's later value win; here both are errors.
    """

    def __init__(self, settings_cls: type[BaseSettings], report: Report) -> None:
        super().__init__(settings_cls)
        self.report = report

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # the file is read whole: see __call__

    def __call__(self) -> dict[str, Any]:
        path = self.report.config_file
        if path is None:
            return {}
        data = read_yaml(path, self.report.origin)
        self.report.find_secrets(data)
        self.report.file_problems.extend(unknown_keys(data))
        base = path.resolve().parent
        out: dict[str, Any] = {}
        for field in PROCESS_FIELDS:
            if data.get(field) is not None:
                out[field] = _resolve(field, data[field], base)
                self.report.file_origins[field] = FILE
        layers: dict[str, Any] = {"file": file_target_tree(data, base)}
        entries = data.get("targets")
        if entries is not None:
            if isinstance(entries, list):
                entries = [
                    file_target_tree(e, base) if isinstance(e, Mapping) else e for e in entries
                ]
            layers["entries"] = entries
        return {**out, "targets": layers}
