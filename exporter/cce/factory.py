"""Builds a target's API client (and its authentication) from the target's configuration.

The one place that turns a :class:`~exporter.config.TargetConfig` into a working
:class:`~exporter.cce.client.CCEClient`: the daemon, ``once``, ``check-config --online`` and the
hibernation commands all connect through :func:`connect` (or :func:`build_client` when the
project ID is known).
"""

from __future__ import annotations

from datetime import timedelta

import httpx

from exporter.cce.auth import AgencyAuth, AkSkAuth, AssumeAgencyAuth, PasswordAuth, TokenAuth
from exporter.cce.client import CCEClient
from exporter.cce.http import HttpOptions
from exporter.cce.instrumentation import ApiMetrics
from exporter.config import TargetConfig

__all__ = ["build_auth", "build_client", "connect", "describe_auth"]


def build_auth(target: TargetConfig, api_metrics: ApiMetrics) -> httpx.Auth:
    """The ``httpx.Auth`` for a target's configured method (wrapped in an assume-agency token
    when the target names another account's agency)."""
    http = HttpOptions.for_target(target)
    assume = target.assume_agency
    iam = target.iam_endpoint or target.endpoint
    # The exporter's own credentials: with assume_agency they identify the exporter's account,
    # not the target's project.
    own_project = None if assume is not None else target.project_id
    base: httpx.Auth
    if target.auth_method == "aksk":
        assert target.ak is not None and target.sk is not None
        base = AkSkAuth(target.ak, target.sk.get_secret_value(), project_id=own_project)
    elif target.auth_method == "password":
        assert target.username and target.password is not None and target.domain
        base = PasswordAuth(
            iam,
            target.username,
            target.password.get_secret_value(),
            target.domain,
            project_name=None if assume is not None else target.project_name,
            project_id=own_project,
            domain_scope=assume is not None,
            http=http,
            on_refresh=api_metrics.auth_refresh,
            deadline=target.request_deadline,
        )
    elif target.auth_method == "agency":
        base = AgencyAuth(
            target.metadata_endpoint,
            own_project,
            http=http,
            on_refresh=api_metrics.auth_refresh,
            deadline=target.request_deadline,
        )
    else:
        token = target.token.get_secret_value() if target.token is not None else None
        base = TokenAuth(
            token=token, token_file=target.token_file, on_refresh=api_metrics.auth_refresh
        )
    if assume is None:
        return base
    return AssumeAgencyAuth(
        iam,
        base,
        assume.domain,
        assume.agency,
        project_id=target.project_id,
        project_name=target.project_name,
        duration=timedelta(seconds=assume.duration),
        http=http,
        on_refresh=api_metrics.auth_refresh,
        deadline=target.request_deadline,
    )


def describe_auth(target: TargetConfig) -> str:
    """Which credentials a target uses, in words (no secret)."""
    own = {
        "aksk": "access key",
        "password": f"IAM user {target.username}",
        "token": "token file" if target.token_file is not None else "token",
        "agency": f"the instance agency's temporary credentials ({target.metadata_endpoint})",
    }[target.auth_method]
    if target.assume_agency is not None:
        a = target.assume_agency
        return f"agency {a.agency} of domain {a.domain}, assumed with {own}"
    return own


def build_client(
    target: TargetConfig, api_metrics: ApiMetrics, project_id: str | None = None
) -> CCEClient:
    """The target's client for ``project_id`` (default: the configured one)."""
    return CCEClient(
        target.endpoint,
        build_auth(target, api_metrics),
        project_id or target.project_id or "",
        addon_endpoint=target.explicit_addon_endpoint,
        iam_endpoint=target.iam_endpoint,
        http=HttpOptions.for_target(target),
        timeout=target.timeout,
        request_deadline=target.request_deadline,
        max_response_bytes=target.max_response_bytes,
        max_retries=target.max_retries,
        retry_deadline=target.retry_deadline,
        concurrency=target.concurrency,
        requests_per_second=target.requests_per_second,
        metrics=api_metrics,
    )


async def connect(target: TargetConfig, api_metrics: ApiMetrics) -> CCEClient:
    """The target's client, its project ID asked of IAM first when only the project's name is
    configured."""
    client = build_client(target, api_metrics)
    if target.project_id:
        return client
    try:
        project_id = await client.resolve_project_id(target.project_name or "")
    finally:
        # Closed on failure too: the caller gives up, and the connection would leak.
        await client.aclose()
    return build_client(target, api_metrics, project_id)
