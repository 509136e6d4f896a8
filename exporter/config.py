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
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import string
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from exporter.memory import TUNING_VARIABLES

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_INTERVALS",
    "ENV_PREFIX",
    "KUBE_RESOURCES",
    "REDACTED",
    "RESERVED_LABELS",
    "RESOURCE_NAMES",
    "AssumeAgencyConfig",
    "ConfigError",
    "KubernetesConfig",
    "ResourceConfig",
    "ResourcesConfig",
    "Settings",
    "TargetConfig",
    "load_settings",
    "parse_duration",
    "parse_listen",
    "render_effective_config",
]

ENV_PREFIX = "CCE_EXPORTER_"
CONFIG_ENV = "CCE_EXPORTER_CONFIG"
PER_TARGET_ENV_PREFIX = "CCE_EXPORTER_TARGETS__"
REDACTED = "********"

RESOURCE_NAMES: tuple[str, ...] = (
    "clusters",
    "nodes",
    "nodepools",
    "addons",
    "quotas",
    "jobs",
    "cluster_upgrades",
    "addon_upgrades",
)
DEFAULT_INTERVALS: dict[str, float] = {
    "clusters": 30.0,
    "nodes": 60.0,
    "nodepools": 60.0,
    "addons": 60.0,
    "quotas": 300.0,
    "jobs": 15.0,
    # What can be upgraded changes slowly: upgradeinfo per cluster, add-on templates per target.
    "cluster_upgrades": 3600.0,
    "addon_upgrades": 3600.0,
}

#: Labels the exporter sets itself (see METRICS.md), plus the ones Prometheus gives a meaning to.
#: ``region`` is deliberately absent: it is the static label most deployments want.
RESERVED_LABELS: frozenset[str] = frozenset(
    {
        "project_id",
        "cluster_id",
        "cluster",
        "node_id",
        "node",
        "nodepool_id",
        "nodepool",
        "addon_id",
        "addon",
        "job_id",
        "phase",
        "status",
        "state",
        "type",
        "flavor",
        "version",
        "container_network_mode",
        "az",
        "os",
        "private_ip",
        "resource",
        "resource_id",
        "unit",
        "policy",
        "timezone",
        "dry_run",
        "action",
        "result",
        "currency",
        "endpoint",
        "method",
        "code",
        "reason",
        "python_version",
        "namespace",
        "job_name",
        "owner_kind",
        "owner_name",
        "condition",
        "cronjob",
        "schedule",
        "resourcequota",
        "kind",
        "job",
        "instance",
        "le",
        "quantile",
    }
)

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_DURATION = re.compile(r"^(?:(?:\d+(?:\.\d+)?|\.\d+)(?:ms|s|m|h|d))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_HINT = "use seconds (45) or a duration such as 30s, 5m, 24h or 1h30m"


#: What pydantic accepts for a boolean, case-insensitive (named in errors).
BOOL_WORDS = "true/false, yes/no, on/off, 1/0, t/f, y/n"


class ConfigError(Exception):
    """The configuration is unusable; ``problems`` holds one line per problem, no secrets."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = "invalid configuration" + (f" ({count} problems)" if count > 1 else "")
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


# --- small parsers ----------------------------------------------------------------------------


def parse_duration(value: str | float | int) -> float:
    """Seconds from ``45``, ``"45"``, ``"30s"``, ``"5m"``, ``"24h"``, ``"1h30m"``, ``"500ms"``.

    The sign is not checked here (callers decide what is allowed); NaN and infinity are refused.
    """
    if isinstance(value, bool):
        raise ValueError(f"is a boolean, not a duration: {_DURATION_HINT}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            if not _DURATION.match(text):
                raise ValueError(f"is not a duration: {_DURATION_HINT}") from None
            seconds = sum(
                float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text)
            )
    else:
        raise ValueError(f"is not a duration: {_DURATION_HINT}")
    if not math.isfinite(seconds):
        raise ValueError(f"is not a finite duration: {_DURATION_HINT}")
    return seconds


def _positive_duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"must be greater than zero: {_DURATION_HINT}")
    return seconds


PositiveDuration = Annotated[float, BeforeValidator(_positive_duration)]


def _check_host(host: str) -> bool:
    if not host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOSTNAME.match(host)) and ".." not in host
    return True


def parse_listen(value: str) -> tuple[str, int]:
    """``(host, port)`` from ``HOST:PORT``, ``[::1]:PORT`` or ``:PORT`` (all IPv4 interfaces)."""
    text = value.strip()
    hint = "write HOST:PORT, [IPV6]:PORT or :PORT, e.g. 0.0.0.0:9877"
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(f"is not a listen address: {hint}")
        host, port_text = text[1:end], text[end + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"has an invalid IPv6 address in brackets: {hint}") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"has no port: {hint}")
        if ":" in host:
            raise ValueError(f"IPv6 addresses need brackets: {hint}, or [::]:9877")
        if host and not _check_host(host):
            raise ValueError(f"has an invalid host: {hint}")
        host = host or "0.0.0.0"  # noqa: S104 - ":PORT" means every interface, as in Go
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"has an invalid port (0-65535): {hint}")
    return host, int(port_text)


def _check_url(value: str) -> str:
    """A base URL: http(s), a host, no credentials, query or fragment; trailing slashes cut."""
    text = value.strip()
    example = "e.g. https://cce.ap-southeast-1.myhuaweicloud.com or http://127.0.0.1:8080"
    if "://" not in text:
        raise ValueError(f"has no scheme: write the full base URL, {example}")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"is not a valid URL (bad host or port): {example}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"must use http:// or https://, {example}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain user or password: configure credentials separately")
    if parts.query or parts.fragment:
        raise ValueError(f"must not have a query or fragment: {example}")
    if not _check_host(parts.hostname or "") or port == 0:
        raise ValueError(f"is not a valid URL (bad host or port): {example}")
    return text.rstrip("/")


def _is_set(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return not (isinstance(value, str) and not value.strip())


def _existing_file(value: Path | None) -> Path | None:
    if value is not None and not value.is_file():
        what = "is a directory" if value.is_dir() else "does not exist"
        raise ValueError(f"{what}: {value}; give the path of a readable file")
    return value


def _to_str(value: Any) -> Any:
    # YAML reads `zone: 1` or `project_id: 0123` as numbers; labels and IDs are text.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


# --- models -----------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class ResourceConfig(_Model):
    """Collection of one resource kind: whether, and how often (seconds)."""

    enabled: bool = True
    interval: PositiveDuration = 60.0


def _resource_default(name: str) -> Callable[[], ResourceConfig]:
    return lambda: ResourceConfig(interval=DEFAULT_INTERVALS[name])


class ResourcesConfig(_Model):
    """One :class:`ResourceConfig` per resource kind, each with its own default interval."""

    clusters: ResourceConfig = Field(default_factory=_resource_default("clusters"))
    nodes: ResourceConfig = Field(default_factory=_resource_default("nodes"))
    nodepools: ResourceConfig = Field(default_factory=_resource_default("nodepools"))
    addons: ResourceConfig = Field(default_factory=_resource_default("addons"))
    quotas: ResourceConfig = Field(default_factory=_resource_default("quotas"))
    jobs: ResourceConfig = Field(default_factory=_resource_default("jobs"))
    cluster_upgrades: ResourceConfig = Field(default_factory=_resource_default("cluster_upgrades"))
    addon_upgrades: ResourceConfig = Field(default_factory=_resource_default("addon_upgrades"))

    @model_validator(mode="before")
    @classmethod
    def _per_resource_defaults(cls, data: Any) -> Any:
        # `nodes: {enabled: false}` must keep the 60 s of nodes, not a generic default.
        if data is None:
            return {}
        if not isinstance(data, Mapping):
            return data
        out = dict(data)
        for name in RESOURCE_NAMES:
            if name in out and out[name] is None:
                out[name] = {}
            value = out.get(name)
            if isinstance(value, Mapping) and value.get("interval") is None:
                out[name] = {**value, "interval": DEFAULT_INTERVALS[name]}
        return out

    def get(self, name: str) -> ResourceConfig:
        """The configuration of resource kind ``name`` (one of :data:`RESOURCE_NAMES`)."""
        if name not in RESOURCE_NAMES:
            raise KeyError(name)
        value: ResourceConfig = getattr(self, name)
        return value

    def enabled(self) -> list[str]:
        """Names of the enabled resource kinds, in :data:`RESOURCE_NAMES` order."""
        return [name for name in RESOURCE_NAMES if self.get(name).enabled]


AuthMethod = Literal["aksk", "password", "token", "agency"]


def _default_addon_endpoint(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            return f"{parts.scheme}://{{cluster_id}}.{parts.netloc}"
    # An IP address or localhost (the simulator) cannot take a cluster-ID subdomain.
    return endpoint


def _default_iam_endpoint(endpoint: str) -> str | None:
    parts = urlsplit(endpoint)
    if parts.netloc.startswith("cce."):
        return f"{parts.scheme}://iam.{parts.netloc[4:]}"
    return None


def _check_addon_template(value: str) -> str:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
    except ValueError:
        raise ValueError("has unbalanced braces: the only placeholder is {cluster_id}") from None
    for field in fields:
        if field != "cluster_id":
            raise ValueError("has an unknown placeholder: the only placeholder is {cluster_id}")
    _check_url(value.replace("{cluster_id}", "c0ffee00-0000-4000-8000-000000000000"))
    return value.strip().rstrip("/")


class AssumeAgencyConfig(_Model):
    """An IAM agency of another account to act as (``assume_agency: {domain: ..., agency: ...}``,
    or ``domain/agency`` as one string, e.g. in ``CCE_EXPORTER_ASSUME_AGENCY``)."""

    domain: str
    agency: str
    duration: PositiveDuration = 3600.0

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        if isinstance(data, str):
            domain, sep, agency = data.strip().partition("/")
            if not sep or not domain.strip() or not agency.strip():
                raise ValueError(
                    "must be a mapping {domain: ..., agency: ...} or a string domain/agency"
                )
            return {"domain": domain.strip(), "agency": agency.strip()}
        return data

    @field_validator("domain", "agency")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("duration")
    @classmethod
    def _duration_range(cls, value: float) -> float:
        if not 900 <= value <= 86400:
            raise ValueError("must be between 15m and 24h (IAM's limits for an agency token)")
        return value


def _check_proxy(value: SecretStr | None) -> SecretStr | None:
    if value is None or not value.get_secret_value().strip():
        return None
    from exporter.cce.http import check_proxy_url

    return SecretStr(check_proxy_url(value.get_secret_value()))


# --- Kubernetes objects inside the clusters (jobs, cronjobs, resourcequotas) -------------------

KUBE_RESOURCES: tuple[str, ...] = ("jobs", "cronjobs", "resourcequotas")
KUBE_LIST_KEYS: dict[str, tuple[str, ...]] = {
    "clusters": ("names", "ids", "exclude"),
    "namespaces": ("include", "exclude"),
}


def _split_list(value: Any) -> Any:
    """``"a, b"`` (an environment variable) -> ``["a", "b"]``; lists pass; None is empty."""
    if value is None:
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _check_names(value: list[str]) -> list[str]:
    for item in value:
        if not item.strip():
            raise ValueError("has an empty entry: remove it, or give a name or glob such as prod-*")
        if len(item) > 253:
            raise ValueError("has an entry longer than 253 characters (a name or a glob)")
    return list(dict.fromkeys(item.strip() for item in value))


NameList = Annotated[list[str], BeforeValidator(_split_list)]


class KubeClustersConfig(_Model):
    """Which clusters: ``names`` (globs) or ``ids``; none of either means every cluster."""

    names: NameList = Field(default_factory=list)
    ids: NameList = Field(default_factory=list)
    exclude: NameList = Field(default_factory=list)

    _names = field_validator("names", "ids", "exclude")(_check_names)


class KubeNamespacesConfig(_Model):
    """Which namespaces (globs): ``include`` (empty: all), then ``exclude``."""

    include: NameList = Field(default_factory=list)
    exclude: NameList = Field(default_factory=list)

    _names = field_validator("include", "exclude")(_check_names)


def _check_kube_resources(value: list[str]) -> list[str]:
    bad = [v for v in value if v not in KUBE_RESOURCES]
    if bad:
        raise ValueError(
            f"unknown kind(s) {', '.join(repr(b[:40]) for b in bad)}: "
            f"choose among {', '.join(KUBE_RESOURCES)}"
        )
    return list(dict.fromkeys(value))


def _strict_int(value: Any) -> Any:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("must be a whole number, e.g. 5000")
    return value


class KubernetesConfig(_Model):
    """Kubernetes Jobs, CronJobs and ResourceQuotas of the clusters, listed through CCE (opt-in).

    ``endpoint`` is the URL template of a cluster's Kubernetes API; ``{cluster_id}`` is replaced
    by the cluster's ID (default ``https://{cluster_id}.<endpoint host>``).
    """

    enabled: bool = False
    endpoint: str = ""
    clusters: KubeClustersConfig = Field(default_factory=KubeClustersConfig)
    namespaces: KubeNamespacesConfig = Field(default_factory=KubeNamespacesConfig)
    resources: Annotated[list[str], BeforeValidator(_split_list)] = Field(
        default_factory=lambda: list(KUBE_RESOURCES)
    )
    interval: PositiveDuration = 60.0
    max_objects_per_cluster: Annotated[int, BeforeValidator(_strict_int)] = Field(
        default=5000, ge=1, le=1_000_000
    )
    finished_job_retention: PositiveDuration = 86400.0

    @model_validator(mode="before")
    @classmethod
    def _none_is_default(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if v is not None}
        return data

    _resources = field_validator("resources")(_check_kube_resources)

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        return _check_addon_template(value) if value.strip() else ""


def _default_kube_endpoint(endpoint: str) -> str | None:
    """``https://{cluster_id}.<endpoint host>``; None for an IP address or localhost."""
    template = _default_addon_endpoint(endpoint)
    return template if "{cluster_id}" in template else None


class TargetConfig(_Model):
    """One CCE project in one region: where, who, what to collect, and how hard to push the API."""

    name: str = "default"
    endpoint: str
    iam_endpoint: str | None = None
    addon_endpoint: str = ""
    project_id: str | None = None
    project_name: str | None = None
    auth_method: AuthMethod = "aksk"
    ak: str | None = None
    sk: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    domain: str | None = None
    token: SecretStr | None = None
    token_file: Path | None = None
    ca_file: Path | None = None
    insecure_skip_verify: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    timeout: PositiveDuration = 10.0
    max_retries: int = Field(default=3, ge=0)
    retry_deadline: PositiveDuration = 30.0
    concurrency: int = Field(default=8, ge=1)
    requests_per_second: float | None = Field(default=None, gt=0)
    # Bounds on one API answer: its whole exchange, and its size once decoded.
    request_deadline: PositiveDuration = 30.0
    max_response_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig)
    #: None: the proxy environment variables; "none": direct; a URL (credentials are secret).
    proxy: SecretStr | None = None
    metadata_endpoint: str = "http://169.254.169.254"
    assume_agency: AssumeAgencyConfig | None = None

    #: Whether ``addon_endpoint`` was derived (not configured): the client then tries both
    #: add-on layouts (the plain endpoint, then the per-cluster host).
    _addon_endpoint_derived: bool = PrivateAttr(default=False)

    @field_validator("proxy")
    @classmethod
    def _check_proxy(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_proxy(value)

    @field_validator("metadata_endpoint")
    @classmethod
    def _check_metadata_endpoint(cls, value: str) -> str:
        return _check_url(value)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _TARGET_NAME.match(value):
            raise ValueError(
                "must start with a letter or digit and contain only letters, digits, '_', '.' "
                "and '-', e.g. prod-eu"
            )
        return value

    @field_validator("endpoint", "iam_endpoint")
    @classmethod
    def _check_endpoints(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)

    @field_validator("addon_endpoint")
    @classmethod
    def _check_addon_endpoint(cls, value: str) -> str:
        return _check_addon_template(value) if value.strip() else ""

    @field_validator("auth_method", mode="before")
    @classmethod
    def _lower_method(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_to_str(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): _to_str(v) for k, v in value.items()}
        return value

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str]) -> dict[str, str]:
        problems = []
        bad = sorted(k for k in value if not _LABEL_NAME.match(k) or k.startswith("__"))
        if bad:
            problems.append(
                f"invalid label name(s) {', '.join(bad)}: use letters, digits and '_', "
                "not starting with a digit or '__'"
            )
        reserved = sorted(k for k in value if k in RESERVED_LABELS)
        if reserved:
            problems.append(
                f"label name(s) {', '.join(reserved)} are set by the exporter itself: "
                "choose another name, e.g. region, env or account"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("token_file", "ca_file")
    @classmethod
    def _check_files(cls, value: Path | None) -> Path | None:
        return _existing_file(value)

    @model_validator(mode="after")
    def _derive_and_check(self) -> TargetConfig:
        if not self.addon_endpoint:
            self._addon_endpoint_derived = True
            self.addon_endpoint = _default_addon_endpoint(self.endpoint)
        if self.iam_endpoint is None:
            self.iam_endpoint = _default_iam_endpoint(self.endpoint)
        if not self.kubernetes.endpoint:
            kube = _default_kube_endpoint(self.endpoint)
            if kube is None and self.kubernetes.enabled:
                raise ValueError(
                    f"{ENV_PREFIX}KUBERNETES_ENDPOINT (kubernetes.endpoint) is required when "
                    "kubernetes is enabled and the endpoint is an IP address or localhost, which "
                    "cannot take a {cluster_id}. prefix: give the URL template of a cluster's "
                    "Kubernetes API, e.g. https://{cluster_id}.cce.example.com"
                )
            self.kubernetes.endpoint = kube or ""
        problems = _target_problems(self.__dict__, _plain_namer)
        if problems:
            raise PydanticCustomError(_CHECK, "{problems}", {"problems": "; ".join(problems)})
        return self

    @property
    def explicit_addon_endpoint(self) -> str | None:
        """The add-on endpoint as configured, None when it was left to the default."""
        return None if self._addon_endpoint_derived else self.addon_endpoint

    def addon_url(self, cluster_id: str) -> str:
        """Base URL of the add-on manager for one cluster (the template with the ID filled in)."""
        return self.addon_endpoint.replace("{cluster_id}", cluster_id)


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class Settings(_Model):
    """The whole effective configuration: process settings plus one entry per target."""

    listen: str = "0.0.0.0:9877"
    state_file: Path | None = None
    policy_file: Path | None = None
    log_level: LogLevel = "INFO"
    log_format: Literal["text", "json"] = "text"
    web_config_file: Path | None = None
    state_sets: Literal["all", "current"] = "all"
    job_retention: PositiveDuration = 86400.0
    dry_run: bool = False
    hook_token: SecretStr | None = None
    hook_token_file: Path | None = None
    shard: int = Field(default=0, ge=0)
    total_shards: int = Field(default=1, ge=1)
    collect_concurrency: int = Field(default=4, ge=1)
    # Lengths past which a label value or a log field is cut (marker appended, counted).
    label_value_max_length: int = Field(default=256, ge=32)
    log_field_max_length: int = Field(default=1024, ge=64)
    leader_election: Literal["none", "file", "lease"] = "none"
    leader_election_lock_file: Path | None = None
    leader_election_namespace: str | None = None
    leader_election_lease_name: str = "cce-exporter-hibernation"
    leader_election_identity: str | None = None
    # Bounds of the web server and the hooks against hostile clients (exporter.web.WebLimits).
    web_max_connections: int | None = Field(default=None, ge=1)
    web_header_timeout: PositiveDuration = 10.0
    web_write_timeout: PositiveDuration = 30.0
    web_auth_workers: int = Field(default=1, ge=1, le=16)
    web_auth_queue: int = Field(default=8, ge=1)
    hook_max_body_bytes: int = Field(default=1048576, ge=1024)
    hook_max_json_depth: int = Field(default=32, ge=2, le=500)
    targets: list[TargetConfig] = Field(min_length=1)

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)
    _notices: list[str] = PrivateAttr(default_factory=list)
    _config_file: Path | None = PrivateAttr(default=None)

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        parse_listen(value)
        return value.strip()

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().upper()
            return "WARNING" if value == "WARN" else value
        return value

    @field_validator("log_format", "state_sets", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("policy_file", "web_config_file", "hook_token_file")
    @classmethod
    def _check_files(cls, value: Path | None) -> Path | None:
        return _existing_file(value)

    @field_validator("state_file")
    @classmethod
    def _check_state_dir(cls, value: Path | None) -> Path | None:
        if value is not None and not value.parent.is_dir():
            raise ValueError(
                f"directory {value.parent} does not exist: create it or choose another path"
            )
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        problems = _settings_problems(
            self.__dict__, [t.name for t in self.targets], _plain_process_namer
        )
        if problems:
            raise PydanticCustomError(_CHECK, "{problems}", {"problems": "; ".join(problems)})
        return self

    @property
    def listen_host(self) -> str:
        return parse_listen(self.listen)[0]

    @property
    def listen_port(self) -> int:
        return parse_listen(self.listen)[1]

    @property
    def notices(self) -> list[str]:
        """Non-fatal remarks from loading (unknown ``CCE_EXPORTER_*`` variables); log them."""
        return list(self._notices)

    @property
    def sources(self) -> dict[str, str]:
        """Where each value not left at its default came from, by YAML path."""
        return dict(self._sources)

    @property
    def config_file(self) -> Path | None:
        return self._config_file


# --- cross-field checks (shared by the models and by load_settings) ---------------------------

_CHECK = "config_check"
# A namer gives (environment variable, YAML key) for a target field.
Namer = Callable[[str], tuple[str, str]]


def _plain_namer(field: str) -> tuple[str, str]:
    return _target_env_name((field,)), field


def _plain_process_namer(field: str) -> tuple[str, str]:
    return ENV_PREFIX + field.upper(), field


def _target_problems(values: Mapping[str, Any], namer: Namer) -> list[str]:
    """Problems of presence: credentials for the auth method, project, token XOR token_file."""
    problems: list[str] = []

    def required(field: str, why: str, extra: str = "") -> None:
        if not _is_set(values.get(field)):
            env, key = namer(field)
            problems.append(
                f"{env} ({key}) is required {why}: set {env} or {_fix_key(key)} in the config "
                f"file{extra}"
            )

    env_id, key_id = namer("project_id")
    env_name, key_name = namer("project_name")
    if _is_set(values.get("project_id")) and _is_set(values.get("project_name")):
        problems.append(
            f"{env_id} and {env_name} ({key_id} / {key_name}) are both set: set only one, the "
            f"project ID, or the project name to have it resolved to its ID through IAM"
        )
    elif not _is_set(values.get("project_id")) and not _is_set(values.get("project_name")):
        problems.append(
            f"{env_id} or {env_name} ({key_id} / {key_name}) is required: set the project ID or "
            f"the project name (e.g. ap-southeast-1) with {env_id}, {env_name} or "
            f"{_fix_key(key_id)} in the config file"
        )
    method = values.get("auth_method", "aksk")
    method = method.strip().lower() if isinstance(method, str) else method
    if method == "aksk":
        required("ak", "when auth_method is aksk")
        required("sk", "when auth_method is aksk")
    elif method == "password":
        for field in ("username", "password", "domain"):
            required(field, "when auth_method is password")
    assume = _is_set(values.get("assume_agency"))
    if method == "password" or assume:
        endpoint = values.get("endpoint")
        derivable = False
        if isinstance(endpoint, str):
            try:
                derivable = _default_iam_endpoint(_check_url(endpoint)) is not None
            except ValueError:
                derivable = True  # the endpoint error is reported on its own
        if not derivable:
            why = "auth_method is password" if method == "password" else "assume_agency is set"
            required(
                "iam_endpoint",
                f"when {why} and the endpoint's host does not start with 'cce.'",
                " (the IAM base URL, e.g. https://iam.ap-southeast-1.myhuaweicloud.com)",
            )
    elif method == "token":
        has_token, has_file = _is_set(values.get("token")), _is_set(values.get("token_file"))
        env_t, key_t = namer("token")
        env_f, key_f = namer("token_file")
        if has_token and has_file:
            problems.append(
                f"{env_t} and {env_f} ({key_t} / {key_f}) are both set: "
                "with auth_method token set only one of them"
            )
        elif not has_token and not has_file:
            problems.append(
                f"{env_t} or {env_f} ({key_t} / {key_f}) is required when auth_method is token: "
                f"set {env_t}, {env_f} or {_fix_key(key_t)} / {_fix_key(key_f)} in the config file"
            )
    return problems


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _fix_key(key: str) -> str:
    # "targets[2].sk" -> "targets[].sk": the fix applies to whichever entry the user edits.
    return re.sub(r"^targets\[\d+\]", "targets[]", key)


def _settings_problems(values: Mapping[str, Any], names: list[str], namer: Namer) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for name in names:
        if name in seen:
            problems.append(
                f"targets: the name {name!r} is used by more than one target: give each entry of "
                "targets a unique name"
            )
        seen.add(name)
    shard, total = _as_int(values.get("shard", 0)), _as_int(values.get("total_shards", 1))
    if shard is not None and total is not None and total >= 1 and shard >= total:
        env_s, key_s = namer("shard")
        env_t, key_t = namer("total_shards")
        problems.append(
            f"{env_s} ({key_s}) must be less than {env_t} ({key_t}): shards are numbered "
            f"0 to total_shards-1, here 0 to {total - 1}"
        )
    if _is_set(values.get("hook_token")) and _is_set(values.get("hook_token_file")):
        env_h, key_h = namer("hook_token")
        env_f, key_f = namer("hook_token_file")
        problems.append(f"{env_h} and {env_f} ({key_h} / {key_f}) are both set: set only one")
    return problems


# --- names of settings ------------------------------------------------------------------------

PROCESS_FIELDS: tuple[str, ...] = tuple(f for f in Settings.model_fields if f != "targets")
TARGET_FIELDS: tuple[str, ...] = tuple(TargetConfig.model_fields)
#: Values never shown: in check-config, in error messages, anywhere. The AK is not a secret in the
#: cryptographic sense, but it names an account's key and is masked with the rest.
SECRET_FIELDS = frozenset({"ak", "sk", "password", "token", "hook_token"})
_PATH_FIELDS = frozenset(
    {"state_file", "policy_file", "web_config_file", "hook_token_file", "token_file", "ca_file"}
)


def _target_env_name(path: tuple[str, ...]) -> str:
    """The flat environment variable of a target key path."""
    if path[0] == "name":
        return ENV_PREFIX + "TARGET_NAME"
    if path[0] == "labels":
        return ENV_PREFIX + "LABELS"
    if path[0] == "kubernetes" and len(path) >= 2:
        return ENV_PREFIX + "_".join(part.upper() for part in path)
    if path[0] == "resources" and len(path) >= 3:
        return f"{ENV_PREFIX}{path[1].upper()}_{path[2].upper()}"
    if path[0] == "resources" and len(path) == 2:
        return f"{ENV_PREFIX}{path[1].upper()}_ENABLED / _INTERVAL"
    if path[0] == "resources":
        return f"{ENV_PREFIX}<RESOURCE>_ENABLED / _INTERVAL"
    return ENV_PREFIX + path[0].upper()


def _target_env_table() -> dict[str, tuple[str, ...]]:
    table: dict[str, tuple[str, ...]] = {}
    for field in TARGET_FIELDS:
        if field == "resources":
            for name in RESOURCE_NAMES:
                for key in ("enabled", "interval"):
                    path = ("resources", name, key)
                    table[_target_env_name(path)[len(ENV_PREFIX) :]] = path
        elif field == "kubernetes":
            for key in KubernetesConfig.model_fields:
                paths: list[tuple[str, ...]] = [
                    ("kubernetes", key, sub) for sub in KUBE_LIST_KEYS.get(key, ())
                ]
                for kube_path in paths or [("kubernetes", key)]:
                    table[_target_env_name(kube_path)[len(ENV_PREFIX) :]] = kube_path
        else:
            table[_target_env_name((field,))[len(ENV_PREFIX) :]] = (field,)
    return table


#: Suffix after ``CCE_EXPORTER_`` -> key path in a target.
TARGET_ENV: dict[str, tuple[str, ...]] = _target_env_table()
#: Suffix after ``CCE_EXPORTER_`` -> process setting.
PROCESS_ENV: dict[str, str] = {f.upper(): f for f in PROCESS_FIELDS}


def env_name_for_target(target_name: str) -> str:
    """The ``<NAME>`` part of ``CCE_EXPORTER_TARGETS__<NAME>__<KEY>`` for a target name."""
    return re.sub(r"[^A-Z0-9]", "_", target_name.upper())


# --- loading ----------------------------------------------------------------------------------

FlatKey = tuple[str, ...]
# A layer maps a key path to (value, description of its source).
Layer = dict[FlatKey, tuple[Any, str]]


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


def _read_yaml(path: Path, origin: str) -> dict[str, Any]:
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


def _suggest(key: str, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(key, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def _unknown_keys(data: Mapping[str, Any]) -> list[str]:
    """One problem per key of the file no setting has, with its path and a suggestion."""
    problems: list[str] = []
    top = set(PROCESS_FIELDS) | set(TARGET_FIELDS) | {"targets"}

    def unknown(path: str, key: str, choices: Iterable[str], extra: str = "") -> None:
        problems.append(f"{path}: unknown key {key!r} in the config file{_suggest(key, choices)}")
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


def _resolve(key: str, value: Any, base: Path | None) -> Any:
    if key in _PATH_FIELDS and isinstance(value, str) and value.strip() and base is not None:
        path = Path(value.strip()).expanduser()
        return str(path if path.is_absolute() else base / path)
    return value


def _file_target_layer(entry: Mapping[str, Any], prefix: str, base: Path | None) -> Layer:
    """Target keys of a file mapping, flattened so that resources and labels merge per key."""
    layer: Layer = {}
    source = "the config file"
    for key, value in entry.items():
        if key not in TARGET_FIELDS:
            continue
        if key == "resources" and isinstance(value, Mapping):
            # Unknown resource names and keys were reported already; drop them here.
            for res, sub in value.items():
                if str(res) not in RESOURCE_NAMES:
                    continue
                if isinstance(sub, Mapping):
                    for sub_key, sub_value in sub.items():
                        if str(sub_key) in ("enabled", "interval"):
                            layer[("resources", str(res), str(sub_key))] = (sub_value, source)
                elif sub is not None:
                    layer[("resources", str(res))] = (sub, source)
        elif key == "labels" and isinstance(value, Mapping):
            for label, label_value in value.items():
                layer[("labels", str(label))] = (label_value, source)
        elif key == "kubernetes" and isinstance(value, Mapping):
            # Merged key by key, like resources: KUBERNETES_ENABLED=true keeps the file's rest.
            # Unknown keys were reported already; dropped here.
            for sub, sub_value in value.items():
                if str(sub) not in KubernetesConfig.model_fields:
                    continue
                if str(sub) in KUBE_LIST_KEYS and isinstance(sub_value, Mapping):
                    for leaf, leaf_value in sub_value.items():
                        if str(leaf) in KUBE_LIST_KEYS[str(sub)]:
                            layer[("kubernetes", str(sub), str(leaf))] = (leaf_value, source)
                else:
                    layer[("kubernetes", str(sub))] = (sub_value, source)
        elif key in ("resources", "labels") and value is None:
            continue
        else:
            layer[(key,)] = (_resolve(key, value, base), source)
    return layer


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


def _env_target_layer(items: Mapping[str, str], env_prefix: str, problems: list[str]) -> Layer:
    """Target keys from variables ``{env_prefix}{SUFFIX}``; ``items`` maps SUFFIX -> value."""
    layer: Layer = {}
    for suffix, value in items.items():
        path = TARGET_ENV[suffix]
        env_name = env_prefix + suffix
        source = f"environment variable {env_name}"
        if path == ("labels",):
            for label, label_value in _parse_env_labels(value, env_name, problems).items():
                layer[("labels", label)] = (label_value, source)
        else:
            layer[path] = (value, source)
    return layer


#: Alternatives: a more specific layer that sets one drops the other one inherited.
_ALTERNATIVES = ((("project_id",), ("project_name",)), (("project_name",), ("project_id",)))


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


class _Loader:
    """One load: reads the layers, merges them, validates, and names settings in messages."""

    def __init__(self, config_file: Path | None, env: Mapping[str, str]) -> None:
        self.env = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX) and v.strip()}
        self.config_file = config_file
        self.problems: list[str] = []
        self.notices: list[str] = []
        self.has_list = False
        self.sources: dict[str, str] = {}
        self.target_names: list[str] = []
        self.secret_values: set[str] = set()
        for name, value in self.env.items():
            suffix = name[len(ENV_PREFIX) :].rpartition("__")[2]
            if suffix.lower() in SECRET_FIELDS:
                self.collect_secrets(value)
            elif suffix == "PROXY":
                self.collect_proxy_secret(value)

    # names in messages

    def target_key(self, index: int, path: tuple[str, ...]) -> str:
        prefix = f"targets[{index}]." if self.has_list else ""
        return prefix + ".".join(path)

    def namer_for(self, index: int) -> Namer:
        return lambda field: (_target_env_name((field,)), self.target_key(index, (field,)))

    def describe(self, loc: tuple[int | str, ...]) -> str:
        parts = [str(p) for p in loc]
        if len(loc) >= 2 and loc[0] == "targets" and isinstance(loc[1], int):
            index, path = loc[1], tuple(parts[2:])
            if not path:
                return f"targets[{index}]"
            key = self.target_key(index, path)
            env = _target_env_name(path)
        elif parts:
            key = ".".join(parts)
            env = ENV_PREFIX + parts[0].upper()
        else:
            return "configuration"
        source = self.sources.get(key)
        if source is None:
            # A whole mapping (labels, resources): name the source of one of its keys.
            nested = [v for k, v in self.sources.items() if k.startswith(key + ".")]
            source = nested[0] if len(set(nested)) == 1 else None
        if source == f"environment variable {env}":
            source = "the environment"
        where = f", set in {source}" if source else ""
        return f"{env} ({key}{where})"

    # secrets

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

    # reading

    def read(self) -> dict[str, Any]:
        file_data: dict[str, Any] = {}
        base: Path | None = None
        if self.config_file is not None:
            file_data = _read_yaml(self.config_file, self.origin)
            self.find_secrets(file_data)
            base = self.config_file.resolve().parent
            self.problems.extend(_unknown_keys(file_data))

        process_env: dict[str, str] = {}
        flat_env: dict[str, str] = {}
        per_target_env: dict[str, dict[str, str]] = {}
        for name, value in sorted(self.env.items()):
            suffix = name[len(ENV_PREFIX) :]
            if name == CONFIG_ENV or name in TUNING_VARIABLES.values():
                continue  # the tuning switches are read by exporter.memory
            if suffix in PROCESS_ENV:
                process_env[PROCESS_ENV[suffix]] = value
            elif suffix in TARGET_ENV:
                flat_env[suffix] = value
            elif name.startswith(PER_TARGET_ENV_PREFIX):
                target, sep, key = name[len(PER_TARGET_ENV_PREFIX) :].partition("__")
                if sep and target and key in TARGET_ENV and key != "TARGET_NAME":
                    per_target_env.setdefault(target, {})[key] = value
                else:
                    self.notices.append(
                        f"ignoring {name}: per-target variables are "
                        f"{PER_TARGET_ENV_PREFIX}<TARGET NAME>__<KEY>, e.g. "
                        f"{PER_TARGET_ENV_PREFIX}PROD__SK"
                    )
            else:
                known = [*PROCESS_ENV, *TARGET_ENV, CONFIG_ENV[len(ENV_PREFIX) :]]
                match = difflib.get_close_matches(suffix, known, n=1, cutoff=0.7)
                hint = f" (did you mean {ENV_PREFIX}{match[0]}?)" if match else ""
                self.notices.append(f"ignoring unknown variable {name}{hint}")

        data: dict[str, Any] = {}
        for field in PROCESS_FIELDS:
            if field in process_env:
                data[field] = process_env[field]
                self.sources[field] = f"environment variable {ENV_PREFIX}{field.upper()}"
            elif file_data.get(field) is not None:
                data[field] = _resolve(field, file_data[field], base)
                self.sources[field] = "the config file"

        defaults = _merge(
            _file_target_layer(file_data, "", base),
            _env_target_layer(flat_env, ENV_PREFIX, self.problems),
        )
        raw_targets = file_data.get("targets")
        entries: list[Layer] = []
        names: list[str] = []
        if raw_targets is None:
            name_entry = defaults.get(("name",))
            names.append(str(name_entry[0]) if name_entry and name_entry[0] is not None else "")
            entries.append(defaults)
        else:
            self.has_list = True
            if ("name",) in defaults:
                self.problems.append(
                    f"{ENV_PREFIX}TARGET_NAME (name) names the single target and cannot be used "
                    "with a targets: list: give each entry of targets its own name instead"
                )
            inherited = {k: v for k, v in defaults.items() if k != ("name",)}
            if not isinstance(raw_targets, list) or not raw_targets:
                self.problems.append(
                    "targets: must be a non-empty list of targets (- name: ..., endpoint: ...); "
                    "remove it to configure one target with the top-level keys"
                )
                raw_targets = []
            for i, entry in enumerate(raw_targets):
                if not isinstance(entry, Mapping):
                    self.problems.append(
                        f"targets[{i}]: must be a mapping of target keys (name: ..., endpoint: ...)"
                    )
                    continue
                layer = _file_target_layer(entry, f"targets[{i}].", base)
                entry_name = entry.get("name")
                if not _is_set(entry_name):
                    self.problems.append(
                        f"targets[{i}].name is required: give every entry of targets a unique name"
                    )
                    entry_name = f"target{i}"
                layer[("name",)] = (str(entry_name), "the config file")
                names.append(str(entry_name))
                entries.append(_merge(inherited, layer))

        by_env_name: dict[str, int] = {}
        for i, name in enumerate(names):
            by_env_name.setdefault(env_name_for_target(name or "default"), i)
        for target_env, items in per_target_env.items():
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
            i = by_env_name[target_env]
            prefix = f"{PER_TARGET_ENV_PREFIX}{target_env}__"
            entries[i] = _merge(entries[i], _env_target_layer(items, prefix, self.problems))

        targets: list[dict[str, Any]] = []
        for i, layer in enumerate(entries):
            for path, (_, source) in layer.items():
                self.sources[self.target_key(i, path)] = source
            merged = _unflatten(layer)
            targets.append(merged)
            self.problems.extend(_target_problems(merged, self.namer_for(i)))
        self.target_names = [n for n in names if n]
        data["targets"] = targets
        self.problems.extend(
            _settings_problems(data, self.target_names, lambda f: (ENV_PREFIX + f.upper(), f))
        )
        return data

    @property
    def origin(self) -> str:
        from_env = self.env.get(CONFIG_ENV, "").strip()
        if from_env and Path(from_env) == self.config_file:
            return f"from {CONFIG_ENV}"
        return "from --config"

    def validate(self, data: dict[str, Any]) -> Settings:
        settings: Settings | None = None
        try:
            settings = Settings.model_validate(data)
        except ValidationError as exc:
            for error in exc.errors(include_input=False, include_url=False):
                if error["type"] == _CHECK or error["loc"] == ("targets",):
                    continue  # already reported, with better names, from the raw data
                self.problems.append(self.format_error(error["loc"], error["type"], error["msg"]))
        if self.problems or settings is None:
            raise ConfigError(self.scrub(_dedupe(self.problems)))
        settings._sources = dict(self.sources)
        settings._notices = self.scrub(self.notices)
        settings._config_file = self.config_file
        return settings

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


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


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
    loader = _Loader(config_file, environ)
    return loader.validate(loader.read())


# --- rendering --------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return REDACTED
    if isinstance(value, BaseModel):
        return {
            k: REDACTED
            if k in SECRET_FIELDS and getattr(value, k) is not None
            else _plain_proxy(getattr(value, k))
            if k == "proxy"
            else _plain(getattr(value, k))
            for k in type(value).model_fields
        }
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _plain_proxy(value: SecretStr | None) -> str | None:
    """A proxy URL as check-config shows it: its password masked, the rest readable."""
    if value is None:
        return None
    from exporter.cce.http import redact_url

    return redact_url(value.get_secret_value()).replace(":***@", f":{REDACTED}@")


def render_effective_config(settings: Settings) -> str:
    """The effective configuration as YAML, secrets replaced by ``********``.

    Loadable again as a config file (with the secrets to be filled in); comments at the end say
    where each value that is not a default came from.
    """
    data = _plain(settings)
    lines = [
        "# Effective configuration of cce-exporter. Secrets are shown as ********.",
        yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True),
    ]
    sources = settings.sources
    if sources:
        lines.append("# Sources (values not listed are defaults):")
        lines.extend(f"#   {key}: {source}" for key, source in sources.items())
    lines.extend(f"# notice: {notice}" for notice in settings.notices)
    return "\n".join(lines).rstrip("\n") + "\n"
