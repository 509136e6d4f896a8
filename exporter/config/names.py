"""Names of the settings: fields, their environment variables, and which are secret or paths."""

from __future__ import annotations

import re

from exporter.config.settings import Settings
from exporter.config.targets import KUBE_LIST_KEYS, KubernetesConfig, TargetConfig
from exporter.config.values import ENV_PREFIX, RESOURCE_NAMES, target_env_name

PROCESS_FIELDS: tuple[str, ...] = tuple(f for f in Settings.model_fields if f != "targets")
TARGET_FIELDS: tuple[str, ...] = tuple(TargetConfig.model_fields)
#: Values never shown: in check-config, in error messages, anywhere. The AK is not a secret in the
#: cryptographic sense, but it names an account's key and is masked with the rest.
SECRET_FIELDS = frozenset({"ak", "sk", "password", "token", "hook_token"})
PATH_FIELDS = frozenset(
    {"state_file", "policy_file", "web_config_file", "hook_token_file", "token_file", "ca_file"}
)


def _target_env_table() -> dict[str, tuple[str, ...]]:
    table: dict[str, tuple[str, ...]] = {}
    for field in TARGET_FIELDS:
        if field == "resources":
            for name in RESOURCE_NAMES:
                for key in ("enabled", "interval"):
                    path = ("resources", name, key)
                    table[target_env_name(path)[len(ENV_PREFIX) :]] = path
        elif field == "kubernetes":
            for key in KubernetesConfig.model_fields:
                paths: list[tuple[str, ...]] = [
                    ("kubernetes", key, sub) for sub in KUBE_LIST_KEYS.get(key, ())
                ]
                for kube_path in paths or [("kubernetes", key)]:
                    table[target_env_name(kube_path)[len(ENV_PREFIX) :]] = kube_path
        else:
            table[target_env_name((field,))[len(ENV_PREFIX) :]] = (field,)
    return table


#: Suffix after ``CCE_EXPORTER_`` -> key path in a target.
TARGET_ENV: dict[str, tuple[str, ...]] = _target_env_table()
#: Suffix after ``CCE_EXPORTER_`` -> process setting.
PROCESS_ENV: dict[str, str] = {f.upper(): f for f in PROCESS_FIELDS}


def env_name_for_target(target_name: str) -> str:
    """The ``<NAME>`` part of ``CCE_EXPORTER_TARGETS__<NAME>__<KEY>`` for a target name."""
    return re.sub(r"[^A-Z0-9]", "_", target_name.upper())
