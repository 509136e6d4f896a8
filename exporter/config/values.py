"""Facts and small parsers of the configuration: names, defaults, durations, addresses, URLs."""

from __future__ import annotations

import ipaddress
import math
import re
import string
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator, SecretStr

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

#: Label names of the exporter's own series (see METRICS.md) that a static label could not stand
#: beside. Absent on purpose: ``region``, the static label most deployments want, and the labels
#: only of families whose own value takes a static label's place (``lock_scene``, ``scalegroup``,
#: ``target_version``...; a quota's own ``region``). tests/test_metric_families.py holds every
#: table's other label names to this set.
EXPORTER_LABELS: frozenset[str] = frozenset(
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
        "category",
        "billing_mode",
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
    }
)
#: Label names Prometheus gives a meaning to (the scrape's target labels, buckets, quantiles).
PROMETHEUS_LABELS: frozenset[str] = frozenset({"job", "instance", "le", "quantile"})
#: Label names a target's static labels cannot use: the configuration refuses them, and the
#: exposition leaves them out of every series all the same (exporter.metrics.catalog).
RESERVED_LABELS: frozenset[str] = EXPORTER_LABELS | PROMETHEUS_LABELS

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


def listen_address(value: str) -> tuple[str, int]:
    """``(host, port)`` from ``HOST:PORT``, ``[::1]:PORT`` or ``:PORT``; the host is ``""`` for
    ``:PORT`` (every interface: the server decides which address families it binds)."""
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
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"has an invalid port (0-65535): {hint}")
    return host, int(port_text)


def parse_listen(value: str) -> tuple[str, int]:
    """``(host, port)`` from ``HOST:PORT``, ``[::1]:PORT`` or ``:PORT`` (all IPv4 interfaces)."""
    host, port = listen_address(value)
    return host or "0.0.0.0", port  # noqa: S104 - ":PORT" means every interface, as in Go


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


def default_addon_endpoint(endpoint: str) -> str:
    """``https://{cluster_id}.<host of endpoint>``, keeping the endpoint's scheme and port."""
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{{cluster_id}}.{parts.netloc}"


def _default_addon_endpoint(endpoint: str) -> str:
    host = urlsplit(endpoint).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            return default_addon_endpoint(endpoint)
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


def _check_proxy(value: SecretStr | None) -> SecretStr | None:
    if value is None or not value.get_secret_value().strip():
        return None
    from exporter.cce.http import check_proxy_url

    return SecretStr(check_proxy_url(value.get_secret_value()))


def _fix_key(key: str) -> str:
    # "targets[2].sk" -> "targets[].sk": the fix applies to whichever entry the user edits.
    return re.sub(r"^targets\[\d+\]", "targets[]", key)


def target_env_name(path: tuple[str, ...]) -> str:
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
