"""The process settings and the list of targets, on pydantic-settings."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from exporter.config.targets import _CHECK, Namer, TargetConfig
from exporter.config.values import (
    ENV_PREFIX,
    PositiveDuration,
    _existing_file,
    _is_set,
    parse_listen,
)

_D = TypeVar("_D")


class Load(Protocol):
    """One run of :func:`exporter.config.load_settings`, seen from the settings class."""

    def sources(self, settings_cls: type[BaseSettings]) -> tuple[PydanticBaseSettingsSource, ...]:
        """The sources of this load, most specific first."""
        ...

    def compose(self, data: dict[str, Any]) -> dict[str, Any]:
        """The merged source data with its target layers turned into the list of targets."""
        ...


#: The load under way in this context (None: a direct construction reads only its arguments).
ACTIVE_LOAD: ContextVar[Load | None] = ContextVar("cce_exporter_config_load", default=None)

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def _plain_process_namer(field: str) -> tuple[str, str]:
    return ENV_PREFIX + field.upper(), field


class Settings(BaseSettings):
    """The whole effective configuration: process settings plus one entry per target.

    Built directly (``Settings(targets=[...])``) it reads nothing but its arguments; built by
    :func:`exporter.config.load_settings` it reads the sources of that one load (the environment,
    the YAML file, the per-target variables), which the load makes active while it runs.
    """

    model_config = SettingsConfigDict(
        extra="forbid",
        coerce_numbers_to_str=True,
        validate_default=False,
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
    )

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

    @model_validator(mode="before")
    @classmethod
    def _compose(cls, data: Any) -> Any:
        # The active load turns the layers its sources read into the list of targets.
        load = ACTIVE_LOAD.get()
        return data if load is None else load.compose(data)

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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The arguments, then the active load's sources (none outside a load), first wins."""
        load = ACTIVE_LOAD.get()
        if load is None:
            return (init_settings,)
        return (init_settings, *load.sources(settings_cls))


def setting_default(name: str) -> Any:
    """The built-in default of the process setting ``name``, written once, on :class:`Settings`."""
    return Settings.model_fields[name].default


def setting_field(name: str) -> Any:
    """A dataclass field that mirrors the process setting ``name``: its default is the setting's,
    and :func:`from_settings` fills it from a loaded :class:`Settings`."""
    return dataclasses.field(default=setting_default(name), metadata={"setting": name})


def from_settings(cls: type[_D], settings: Settings) -> _D:
    """An instance of the dataclass ``cls`` with every :func:`setting_field` read from
    ``settings`` (other fields keep their defaults)."""
    values = {
        f.name: getattr(settings, f.metadata["setting"])
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if "setting" in f.metadata
    }
    return cls(**values)


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


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
