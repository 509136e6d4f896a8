"""Configuration: environment variables ``CCE_EXPORTER_*`` and an optional YAML file.

Where a value comes from, most specific first (``docs/configuration.md`` has the full table)::

    per-target env   CCE_EXPORTER_TARGETS__<NAME>__<KEY>   one entry of targets (NAME upper-cased,
                                                            every character not A-Z/0-9 -> "_")
    file entry       targets[i].<key>
    flat env         CCE_EXPORTER_<KEY>                     defaults every target inherits
    file top level   <key>                                  defaults every target inherits
    built-in default

With no ``targets:`` list the top-level keys (file, then environment) form the one target named
``default``, so a deployment that keeps endpoint and project in a ConfigMap and the AK/SK in a
Secret mounted as environment variables just works. With a ``targets:`` list the flat keys are
the shared defaults (one AK/SK for several regions, say); a value written in an entry wins over
them because it was written for that target alone, and ``CCE_EXPORTER_TARGETS__<NAME>__<KEY>``
is how the environment reaches one entry (a per-target Secret). ``resources`` and ``labels`` merge
key by key; ``null`` in an entry removes an inherited value. Empty environment variables count as
unset (Kubernetes writes them for optional Secret keys). Relative paths in the file are relative to
the file's directory; relative paths in the environment are relative to the working directory.

Every problem is collected and raised at once as :class:`ConfigError`, one line per problem, each
naming the environment variable and the YAML key and saying how to fix it. Secrets (``sk``,
``password``, ``token``, ``hook_token``) are ``SecretStr`` and messages are built from pydantic's
errors without their input values, so no secret reaches a message, a repr or
:func:`render_effective_config`.

The settings are pydantic-settings classes: :class:`Settings` reads, in one load, an environment
source, a YAML file source and a per-target environment source (:mod:`exporter.config.sources`);
:mod:`exporter.config.loading` builds the targets from their layers and words the messages over
pydantic's errors.
"""

from __future__ import annotations

from exporter.config.loading import load_settings
from exporter.config.names import (
    PROCESS_ENV,
    PROCESS_FIELDS,
    SECRET_FIELDS,
    TARGET_ENV,
    TARGET_FIELDS,
    env_name_for_target,
)
from exporter.config.render import render_effective_config
from exporter.config.settings import Settings, from_settings, setting_default, setting_field
from exporter.config.targets import (
    KUBE_LIST_KEYS,
    KUBE_RESOURCES,
    AssumeAgencyConfig,
    AuthMethod,
    KubeClustersConfig,
    KubeNamespacesConfig,
    KubernetesConfig,
    ResourceConfig,
    ResourcesConfig,
    TargetConfig,
)
from exporter.config.values import (
    BOOL_WORDS,
    CONFIG_ENV,
    DEFAULT_INTERVALS,
    ENV_PREFIX,
    PER_TARGET_ENV_PREFIX,
    REDACTED,
    RESERVED_LABELS,
    RESOURCE_NAMES,
    ConfigError,
    PositiveDuration,
    default_addon_endpoint,
    listen_address,
    parse_duration,
    parse_listen,
)

__all__ = [
    "BOOL_WORDS",
    "CONFIG_ENV",
    "DEFAULT_INTERVALS",
    "ENV_PREFIX",
    "KUBE_LIST_KEYS",
    "KUBE_RESOURCES",
    "PER_TARGET_ENV_PREFIX",
    "PROCESS_ENV",
    "PROCESS_FIELDS",
    "REDACTED",
    "RESERVED_LABELS",
    "RESOURCE_NAMES",
    "SECRET_FIELDS",
    "TARGET_ENV",
    "TARGET_FIELDS",
    "AssumeAgencyConfig",
    "AuthMethod",
    "ConfigError",
    "KubeClustersConfig",
    "KubeNamespacesConfig",
    "KubernetesConfig",
    "PositiveDuration",
    "ResourceConfig",
    "ResourcesConfig",
    "Settings",
    "TargetConfig",
    "default_addon_endpoint",
    "env_name_for_target",
    "from_settings",
    "listen_address",
    "load_settings",
    "parse_duration",
    "parse_listen",
    "render_effective_config",
    "setting_default",
    "setting_field",
]
