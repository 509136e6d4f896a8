"""What one target is: a CCE project in one region, its credentials, resources and limits.

The models check themselves (also when built directly); :func:`_target_problems` is the check of
presence (credentials for the auth method, the project) shared with the loader, which runs it on
the raw merged values so that these problems are reported beside every other one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from exporter.config.values import (
    _LABEL_NAME,
    _TARGET_NAME,
    DEFAULT_INTERVALS,
    ENV_PREFIX,
    RESERVED_LABELS,
    RESOURCE_NAMES,
    PositiveDuration,
    _check_addon_template,
    _check_proxy,
    _check_url,
    _default_addon_endpoint,
    _default_iam_endpoint,
    _existing_file,
    _fix_key,
    _is_set,
    _to_str,
    target_env_name,
)

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


# --- cross-field checks (shared by the models and by load_settings) ---------------------------

_CHECK = "config_check"
# A namer gives (environment variable, YAML key) for a target field.
Namer = Callable[[str], tuple[str, str]]


def _plain_namer(field: str) -> tuple[str, str]:
    return target_env_name((field,)), field


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
