"""The effective configuration as check-config prints it: YAML, secrets masked, sources noted."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr

from exporter.config.names import SECRET_FIELDS
from exporter.config.settings import Settings
from exporter.config.values import REDACTED


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
