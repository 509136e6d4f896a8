"""Temporary credentials of the instance's agency (``auth_method: agency``) and cross-account
agencies (``assume_agency``), against the simulator's metadata service and IAM."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from forward_proxy import ForwardProxy
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from prometheus_client import CollectorRegistry

from exporter.assemble import TargetBuilder
from exporter.cce.auth import (
    AgencyAuth,
    AkSkAuth,
    AssumeAgencyAuth,
    describe_credentials,
    parse_securitykey,
)
from exporter.cce.client import CCEClient
from exporter.cce.errors import CCEError, CredentialsError
from exporter.cce.instrumentation import ApiMetrics
from exporter.cce.signing import sdk_date
from exporter.collect.service import ExporterService
from exporter.config import ConfigError, load_settings
from exporter.simulator import Simulator
from tests.conftest import SimProcess

pytestmark = pytest.mark.simulator(clusters=3, nodes_per_cluster=2)

T0 = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def _agency_env(sim: Simulator, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in sim.settings.items() if k not in ("CCE_EXPORTER_AK", "CCE_EXPORTER_SK")}
    env.update(
        {
            "CCE_EXPORTER_AUTH_METHOD": "agency",
            "CCE_EXPORTER_METADATA_ENDPOINT": sim.base_url,
            "CCE_EXPORTER_MAX_RETRIES": "0",
            "CCE_EXPORTER_TIMEOUT": "5s",
        }
    )
    env.update(extra)
    return env


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# --- the signature with a security token equals the official signer's ------------------------


@pytest.mark.parametrize(
    ("method", "url", "body", "token"),
    [
        ("GET", "https://cce.r.example.com/api/v3/projects/p1/clusters?detail=true&b=2", b"", "t"),
        (
            "POST",
            "https://cce.r.example.com/api/v3/projects/p1/clusters/c%20d/operation/hibernate",
            b'{"a": 1}',
            "gQpzaW0t" + "A-b_c=" * 200,
        ),
    ],
)
def test_security_token_is_sent_and_signed_as_the_official_signer_does(
    method: str, url: str, body: bytes, token: str
) -> None:
    ak, sk, project = "TMPAKEXAMPLE", "temporary-secret-Key", "0123456789abcdef"
    request = httpx.Request(method, url, content=body, headers={"Content-Type": "application/json"})
    AkSkAuth(ak, sk, project, security_token=token, clock=lambda: T0).sign_request(request)
    assert request.headers["X-Security-Token"] == token
    assert "x-security-token" in request.headers["Authorization"]

    parts = httpx.URL(url)
    official = SdkRequest(
        method=method,
        schema="https",
        host=parts.host,
        resource_path=parts.raw_path.decode().split("?")[0],
        query_params=list(parts.params.multi_items()),
        header_params={
            "Content-Type": "application/json",
            "X-Sdk-Date": sdk_date(T0),
            "Host": parts.host,
        },
        body=body,
    )
    BasicCredentials(ak, sk, project).with_security_token(token).sign_request(official)
    assert official.header_params["X-Security-Token"] == token
    assert request.headers["Authorization"] == official.header_params["Authorization"]


# --- collections with the agency's temporary credentials --------------------------------------


async def _collect(service: ExporterService) -> dict[str, bool]:
    results = await service.collect_all()
    assert results and all(results.values()), results
    return results


async def test_agency_collection_uses_only_the_temporary_credentials(
    simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    service = ExporterService(
        load_settings(None, _agency_env(simulator)), build_targets=TargetBuilder()
    )
    await service.setup()
    try:
        await _collect(service)
        exposition = service.exposition()
        assert exposition is not None
        text = b"".join(exposition.body(openmetrics=False, gzip=False)[1]).decode()
        registry = service.api_registry
        assert _sample(registry, "cce_exporter_auth_refreshes_total", result="success") == 1
        client = service.targets[0].client
        described = client.credentials_in_use()
    finally:
        await service.close()
    kinds = simulator.app.auth_kinds
    assert kinds["temporary"] >= 4 and set(kinds) == {"temporary"}, kinds
    assert simulator.app.temporary.issued_total == 1
    # Asked for with a metadata session token, as hardened instances require.
    assert simulator.app.requests["metadata_token"] == 1
    assert simulator.app.metadata_with_session == 1
    assert "temporary access key TMP" in described and "expires 20" in described
    for key in simulator.app.temporary._keys.values():
        for secret in (key.secret, key.security_token):
            assert secret not in caplog.text and secret not in text and secret not in described


async def test_metadata_is_never_reached_through_a_proxy(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        service = ExporterService(
            load_settings(None, _agency_env(simulator)), build_targets=TargetBuilder()
        )
        await service.setup()
        try:
            await _collect(service)
        finally:
            await service.close()
    assert simulator.app.requests["securitykey"] == 1
    seen = [target for _, target in proxy.seen]
    assert seen and all("/api/v3/" in t for t in seen)  # the CCE calls, not the metadata
    assert not any("securitykey" in t for t in seen)


@pytest.mark.simulator(clusters=2, nodes_per_cluster=1, temporary_seconds=2.0)
async def test_agency_collection_keeps_working_across_credential_expiry(
    simulator: Simulator,
) -> None:
    service = ExporterService(
        load_settings(None, _agency_env(simulator)), build_targets=TargetBuilder()
    )
    await service.setup()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        # Collections go on while the 2-second credentials are replaced, ahead of expiry.
        while simulator.app.temporary.issued_total < 3:
            assert loop.time() < deadline, "the credentials were not refreshed"
            await _collect(service)
            await asyncio.sleep(0.2)
        refused = _sample(
            service.api_registry,
            "cce_exporter_api_requests_total",
            endpoint="/api/v3/projects/{project_id}/clusters",
            method="GET",
            code="401",
        )
        assert refused == 0  # refreshed before expiry, never after a refusal
        # Revoked early (the service's clock ahead of ours): one refusal, new credentials, retry.
        simulator.app.temporary.expire_all()
        issued = simulator.app.temporary.issued_total
        await _collect(service)
        assert simulator.app.temporary.issued_total == issued + 1
    finally:
        await service.close()
    assert set(simulator.app.auth_kinds) == {"temporary"}


@pytest.mark.simulator(clusters=1, nodes_per_cluster=1, temporary_seconds=60.0)
async def test_failed_refresh_is_retried_and_counted(simulator: Simulator) -> None:
    outcomes: list[str] = []
    waits: list[float] = []
    now = [datetime.now(UTC)]

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    auth = AgencyAuth(
        simulator.base_url,
        simulator.credentials.project_id,
        on_refresh=outcomes.append,
        clock=lambda: now[0],
        sleep=sleep,
    )
    simulator.faults.add("http_503", count=2, path="securitykey")
    base = simulator.base_url + f"/api/v3/projects/{simulator.credentials.project_id}/clusters"
    async with httpx.AsyncClient(auth=auth) as client:
        assert (await client.get(base)).status_code == 200
        assert outcomes == ["failure", "failure", "success"]
        assert waits == [1.0, 2.0]
        # Due for refresh, the service down: the still-valid credentials keep signing, and the
        # failure is counted; no second attempt before the retry wait.
        now[0] += timedelta(seconds=40)  # 60-second credentials: refreshed 30 s before expiry
        simulator.faults.add("http_503", count=1, path="securitykey")
        assert (await client.get(base)).status_code == 200
        assert (await client.get(base)).status_code == 200
        assert outcomes[3:] == ["failure"]
        now[0] += timedelta(seconds=5)
        assert (await client.get(base)).status_code == 200
        assert outcomes[3:] == ["failure", "success"]
        # No valid credentials and the service down for good: a clear error after the attempts.
        simulator.app.temporary.expire_all()
        simulator.faults.add("http_503", rate=1.0, path="securitykey")
        with pytest.raises(CredentialsError, match="HTTP 503"):
            await client.get(base)
    await auth.aclose()
    assert outcomes[5:] == ["failure"] * 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>", "not JSON"),
        (b"[]", "no credential object"),
        (b'{"credential": {"secret": "s", "securitytoken": "t", "expires_at": "x"}}', "no access"),
        (
            b'{"credential": {"access": "a", "secret": "s", "securitytoken": "t", '
            b'"expires_at": "tomorrow"}}',
            "not a timestamp",
        ),
    ],
)
def test_bad_security_keys_are_refused_without_showing_values(body: bytes, message: str) -> None:
    with pytest.raises(CredentialsError, match=message) as excinfo:
        parse_securitykey(body)
    assert '"s"' not in str(excinfo.value) and "secret: s" not in str(excinfo.value)


def test_security_key_formats() -> None:
    access, secret, token, expires = parse_securitykey(
        b'{"credential": {"access": "A", "secret": "S", "securitytoken": "T", '
        b'"expires_at": "2020-07-17T08:16:33.396000Z"}}'
    )
    assert (access, secret, token) == ("A", "S", "T")
    assert expires == datetime(2020, 7, 17, 8, 16, 33, 396000, tzinfo=UTC)
    assert "S" not in repr(AgencyAuth("http://127.0.0.1:9"))


async def test_metadata_errors_and_hostile_answers(simulator: Simulator) -> None:
    # Nothing listening: a clear transport error, not a crash.
    auth = AgencyAuth("http://127.0.0.1:9", attempts=1)
    async with httpx.AsyncClient(auth=auth) as client:
        with pytest.raises(CCEError, match=r"metadata .* request failed"):
            await client.get(simulator.base_url + "/api/v3/addons")
    await auth.aclose()
    # An answer without an agency (404) says what to check.
    auth = AgencyAuth(simulator.base_url + "/nowhere", attempts=1)
    async with httpx.AsyncClient(auth=auth) as client:
        with pytest.raises(CredentialsError, match="agency attached"):
            await client.get(simulator.base_url + "/api/v3/addons")
    await auth.aclose()


# --- cross-account agencies -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "iam_tokens", "own_kind"),
    [("aksk", 1, "aksk"), ("password", 2, "token"), ("agency", 1, "temporary")],
)
async def test_assume_agency_target_collects_the_other_accounts_clusters(
    simulator: Simulator, method: str, iam_tokens: int, own_kind: str
) -> None:
    agency = simulator.agency
    assert agency is not None and simulator.agency_world is not None
    env = _agency_env(simulator) if method == "agency" else dict(simulator.settings)
    env.update(
        {
            "CCE_EXPORTER_AUTH_METHOD": method,
            "CCE_EXPORTER_PROJECT_ID": agency.project_id,
            "CCE_EXPORTER_ASSUME_AGENCY": f"{agency.domain}/{agency.name}",
            "CCE_EXPORTER_MAX_RETRIES": "0",
        }
    )
    service = ExporterService(load_settings(None, env), build_targets=TargetBuilder())
    await service.setup()
    try:
        await _collect(service)
        state = service.targets[0].collector.state
        collected = {c.id for c in state.clusters}
        described = service.targets[0].client.credentials_in_use()
        assert _sample(service.api_registry, "cce_exporter_auth_refreshes_total", result="success")
    finally:
        await service.close()
    theirs = set(simulator.agency_world.clusters)
    ours = set(simulator.world.clusters)
    assert collected == theirs and not collected & ours
    # One assume-role token (plus the user's own token with a password), asked for with the
    # exporter's own credentials; every CCE call with the agency's token.
    assert simulator.app.requests["iam_tokens"] == iam_tokens
    kinds = simulator.app.auth_kinds
    assert kinds[own_kind] == 1 and kinds["agency"] >= 3 and set(kinds) == {own_kind, "agency"}
    assert f"token of agency {agency.name} in domain {agency.domain}" in described


async def test_assume_agency_is_renewed_and_refused_agencies_are_clear(
    simulator: Simulator,
) -> None:
    agency = simulator.agency
    assert agency is not None
    creds = simulator.credentials
    now = [datetime.now(UTC)]
    outcomes: list[str] = []

    def assume(name: str, clock: Callable[[], datetime] = lambda: now[0]) -> AssumeAgencyAuth:
        base = AkSkAuth(creds.ak, creds.sk)
        return AssumeAgencyAuth(
            simulator.base_url,
            base,
            agency.domain,
            name,
            project_id=agency.project_id,
            on_refresh=outcomes.append,
            clock=clock,
        )

    auth = assume(agency.name)
    metrics = ApiMetrics(CollectorRegistry())
    client = CCEClient(simulator.base_url, auth, agency.project_id, metrics=metrics, max_retries=0)
    async with client:
        assert len(await client.list_clusters()) == len(simulator.agency_world.clusters)  # type: ignore[union-attr]
        now[0] += timedelta(minutes=55)  # within 10 minutes of the 1-hour token's expiry
        await client.list_clusters()
    assert outcomes == ["success", "success"]
    assert simulator.app.requests["iam_tokens"] == 2

    bad = CCEClient(
        simulator.base_url, assume("no-such-agency"), agency.project_id, metrics=metrics
    )
    async with bad:
        with pytest.raises(CCEError, match="403"):
            await bad.list_clusters()
    # The exporter's own AK/SK reaches only its own project.
    own = CCEClient(
        simulator.base_url, AkSkAuth(creds.ak, creds.sk), agency.project_id, metrics=metrics
    )
    async with own:
        with pytest.raises(CCEError, match="403"):
            await own.list_clusters()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("just-a-domain", "domain/agency"),
        ("/agency", "domain/agency"),
    ],
)
def test_bad_assume_agency_settings(simulator: Simulator, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as excinfo:
        load_settings(None, {**simulator.settings, "CCE_EXPORTER_ASSUME_AGENCY": value})
    assert "CCE_EXPORTER_ASSUME_AGENCY" in str(excinfo.value)


def test_assume_agency_file_form_and_duration_bounds(tmp_path: Any, simulator: Simulator) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("assume_agency: {domain: other, agency: cce-monitor, duration: 2h}\n")
    settings = load_settings(config, simulator.settings)
    assume = settings.targets[0].assume_agency
    assert assume is not None and (assume.domain, assume.duration) == ("other", 7200.0)
    config.write_text("assume_agency: {domain: other, agency: x, duration: 5m, extra: 1}\n")
    with pytest.raises(ConfigError) as excinfo:
        load_settings(config, simulator.settings)
    assert "15m and 24h" in str(excinfo.value) and "extra" in str(excinfo.value)


def test_describe_credentials_shows_no_secret() -> None:
    text = describe_credentials(AkSkAuth("AKEXAMPLE123", "very-secret-key"))
    assert text == "access key AKEX... (permanent)"


def test_check_config_online_says_which_credentials_and_until_when(
    start_simulator: Callable[..., SimProcess],
) -> None:
    sim = start_simulator("--clusters", "2", "--seed", "3")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCE_EXPORTER_")}
    env.update({k: v for k, v in sim.settings.items() if k not in ("CCE_EXPORTER_SK",)})
    env.update(
        {
            "CCE_EXPORTER_AUTH_METHOD": "agency",
            "CCE_EXPORTER_METADATA_ENDPOINT": sim.settings["CCE_EXPORTER_ENDPOINT"],
        }
    )
    env.pop("CCE_EXPORTER_AK", None)
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "check-config", "--online"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "target default: OK" in result.stdout
    assert "credentials: the instance agency's temporary access key TMP" in result.stdout
    assert "(expires 20" in result.stdout
