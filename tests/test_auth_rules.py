"""Credentials at their edges: what a repr shows of them, the errors that name a bad token source,
and a rotated token file that is re-read only when the API refuses the old token."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

import exporter.cce.auth as auth_module
from exporter.cce.auth import (
    AgencyAuth,
    AkSkAuth,
    AssumeAgencyAuth,
    PasswordAuth,
    TokenAuth,
    _IamTokenAuth,
    describe_credentials,
    parse_securitykey,
)
from exporter.cce.errors import APIError, CredentialsError, RequestTimeout, TransportError
from exporter.cce.http import HttpOptions, build_http_client
from exporter.cce.signing import SignatureError, parse_authorization, sdk_date, verify
from exporter.simulator import Simulator
from tests.test_auth import T0, Served, _password_auth
from tests.test_auth import served as served  # the fixture


@pytest.mark.parametrize(
    ("ak", "shown"),
    [("AKIDEXAMPLE", "'AKID...'"), ("AKIDE", "'AKID...'"), ("AKID", "'***'"), ("AK", "'***'")],
)
def test_an_aksk_repr_shows_at_most_four_characters_of_a_longer_ak(ak: str, shown: str) -> None:
    auth = AkSkAuth(ak, "sk-secret-value", project_id="p1")
    assert repr(auth) == f"AkSkAuth(ak={shown}, sk=***, project_id='p1')"


def test_a_password_repr_shows_the_scope_never_the_password() -> None:
    by_id = PasswordAuth("https://iam", "user", "pw-secret", "dom", "name", "pid")
    by_name = PasswordAuth("https://iam", "user", "pw-secret", "dom", "name")
    assert repr(by_id) == (
        "PasswordAuth(iam_endpoint='https://iam', username='user', domain='dom', "
        "project_id='pid', password=***)"
    )
    assert repr(by_name) == (
        "PasswordAuth(iam_endpoint='https://iam', username='user', domain='dom', "
        "project_name='name', password=***)"
    )


def test_password_auth_refuses_a_sync_client() -> None:
    auth = PasswordAuth("https://iam", "user", "pw-secret", "dom", "name")
    with (
        httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as client,
        pytest.raises(RuntimeError) as caught,
    ):
        client.get("http://127.0.0.1/", auth=auth)
    assert str(caught.value) == "PasswordAuth needs httpx.AsyncClient"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "token authentication needs exactly one of token or token_file"),
        (
            {"token": "t", "token_file": "f"},
            "token authentication needs exactly one of token or token_file",
        ),
        ({"token": " \n"}, "the token is empty"),
    ],
)
def test_token_auth_errors(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(CredentialsError) as caught:
        TokenAuth(**kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_token_file_errors_say_why_and_count_a_failure(tmp_path: Path) -> None:
    outcomes: list[str] = []
    missing = tmp_path / "missing"
    with pytest.raises(CredentialsError) as caught:
        TokenAuth(token_file=missing, on_refresh=outcomes.append).current_token()
    assert str(caught.value) == f"token file {missing} is unreadable: No such file or directory"
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe token")
    with pytest.raises(CredentialsError) as caught:
        TokenAuth(token_file=binary, on_refresh=outcomes.append).current_token()
    assert str(caught.value) == f"token file {binary} is not UTF-8 text"
    assert outcomes == ["failure", "failure"]


def test_a_rotated_token_file_is_not_resent_after_a_success(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["X-Auth-Token"])
        path.write_text("second-and-longer\n")  # rotated while the request was in flight
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        response = client.get("http://127.0.0.1/", auth=TokenAuth(token_file=path))
    assert response.status_code == 200
    assert seen == ["first"]  # answered: the request is not sent again with the new token


def test_a_rotated_token_file_is_read_again_after_a_401(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["X-Auth-Token"])
        if len(seen) == 1:
            path.write_text("second-and-longer\n")
            return httpx.Response(401)
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        response = client.get("http://127.0.0.1/", auth=TokenAuth(token_file=path))
    assert response.status_code == 200
    assert seen == ["first", "second-and-longer"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"iam_endpoint": ""}, "password authentication needs the IAM endpoint"),
        ({"username": ""}, "password authentication needs a user name, a password and a domain"),
        ({"domain": ""}, "password authentication needs a user name, a password and a domain"),
        ({"project_name": None}, "password authentication needs a project name or project ID"),
    ],
)
def test_password_auth_errors(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "iam_endpoint": "https://iam",
        "username": "u",
        "password": "pw-secret",
        "domain": "d",
        "project_name": "p",
        **kwargs,
    }
    with pytest.raises(CredentialsError) as caught:
        PasswordAuth(**args)
    assert str(caught.value) == message


async def test_password_auth_defaults() -> None:
    auth = PasswordAuth("https://iam.example.comX/", "u", "pw-secret", "d", "p")
    assert auth.iam_endpoint == "https://iam.example.comX"  # only the trailing slash goes
    assert auth.expires_at is None  # no token yet
    client = auth._iam_client()
    assert client.timeout == httpx.Timeout(10)
    await auth.aclose()


async def test_a_token_is_refreshed_from_the_refresh_instant_on(served: Served) -> None:
    served.cloud.iam_lifetime = timedelta(hours=1)
    now = [T0]
    auth = _password_auth(served.base, clock=lambda: now[0], refresh_margin=timedelta(minutes=10))
    async with httpx.AsyncClient(base_url=served.base, auth=auth) as client:
        await client.get("/api/a")
        now[0] = T0 + timedelta(minutes=50) - timedelta(microseconds=1)
        await client.get("/api/b")
        assert len(served.cloud.iam_requests) == 1
        now[0] = T0 + timedelta(minutes=50)  # exactly 10 minutes before expiry
        await client.get("/api/c")
        assert len(served.cloud.iam_requests) == 2
    await auth.aclose()


async def test_an_iam_refusal_is_an_api_error(served: Served) -> None:
    served.cloud.iam_status = 400
    served.cloud.iam_body = {"error_msg": "bad request body", "error_code": "IAM.0001"}
    auth = _password_auth(served.base)
    async with httpx.AsyncClient(base_url=served.base, auth=auth) as client:
        with pytest.raises(APIError) as caught:
            await client.get("/api/a")
    assert caught.value.status_code == 400
    await auth.aclose()


async def test_an_iam_timeout_names_itself() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        auth = _password_auth(f"http://127.0.0.1:{port}", timeout=0.3)
        with pytest.raises(RequestTimeout) as caught:
            await auth._valid_token()
        await auth.aclose()
    assert str(caught.value) == "IAM token request timed out (ReadTimeout)"


@pytest.mark.parametrize(
    ("body", "lifetime"),
    [
        ([1, 2], timedelta(hours=24)),  # a body that is no token: the default lifetime
        ({"token": {"expires_at": (T0 + timedelta(hours=1)).isoformat()}}, timedelta(hours=1)),
    ],
    ids=["unreadable-body", "no-issued-at"],
)
async def test_the_token_header_is_what_matters(
    served: Served, body: Any, lifetime: timedelta
) -> None:
    served.cloud.iam_send_token = False
    served.cloud.iam_body = body
    served.cloud.iam_headers = {"X-Subject-Token": "tok-from-header"}
    served.cloud.valid_tokens.add("tok-from-header")
    auth = _password_auth(served.base, clock=lambda: T0)
    assert await auth._valid_token() == "tok-from-header"
    assert auth.expires_at == T0 + lifetime
    await auth.aclose()


def test_an_aksk_repr_says_a_security_token_is_there_never_what_it_is() -> None:
    auth = AkSkAuth("AKIDEXAMPLE", "sk-secret-value", "p1", security_token="st-secret-value")
    assert repr(auth) == "AkSkAuth(ak='AKID...', sk=***, security_token=***, project_id='p1')"


def test_a_domain_scoped_password_repr_names_the_scope() -> None:
    auth = PasswordAuth("https://iam", "user", "pw-secret", "dom", domain_scope=True)
    assert repr(auth) == (
        "PasswordAuth(iam_endpoint='https://iam', username='user', domain='dom', "
        "domain_scope=True, password=***)"
    )


def test_assume_agency_needs_the_domain_the_agency_and_a_project() -> None:
    base = TokenAuth(token="t")
    for domain, agency in (("", "agency"), ("dom", "")):
        with pytest.raises(CredentialsError) as caught:
            AssumeAgencyAuth("https://iam", base, domain, agency, project_id="pid")
        assert str(caught.value) == "assume_agency needs the domain and the agency name"
    with pytest.raises(CredentialsError) as caught:
        AssumeAgencyAuth("https://iam", base, "dom", "agency")
    assert str(caught.value) == "assume_agency needs a project name or project ID"


def test_assume_agency_asks_for_the_agency_in_a_project_by_id_or_by_name() -> None:
    base = TokenAuth(token="t")
    http = HttpOptions(timeout=3.0, max_connections=1)
    by_id = AssumeAgencyAuth(
        "https://iam",
        base,
        "dom",
        "agency",
        project_id="pid",
        duration=timedelta(hours=2),
        http=http,
        refresh_margin=timedelta(minutes=3),
        deadline=7.5,
    )
    assert by_id.token_request_body() == {
        "auth": {
            "identity": {
                "methods": ["assume_role"],
                "assume_role": {
                    "domain_name": "dom",
                    "agency_name": "agency",
                    "duration_seconds": 7200,
                },
            },
            "scope": {"project": {"id": "pid"}},
        }
    }
    # The options reach the token requests the base class makes.
    assert (by_id.http, by_id._deadline, by_id._refresh_margin) == (
        http,
        7.5,
        timedelta(minutes=3),
    )
    by_name = AssumeAgencyAuth("https://iam", base, "dom", "agency", project_name="pname")
    assert by_name.token_request_body()["auth"]["scope"] == {"project": {"name": "pname"}}


def test_check_config_describes_each_kind_of_credentials_and_when_it_expires(
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("t")
    aksk = AkSkAuth("AKIDEXAMPLE", "sk-secret-value")
    password = PasswordAuth("https://iam", "alice", "pw-secret", "dom", "name")
    assume = AssumeAgencyAuth("https://iam", aksk, "dom", "ops", project_id="pid")
    assert describe_credentials(TokenAuth(token="t")) == "a fixed token"
    assert describe_credentials(TokenAuth(token_file=token_file)) == f"token from {token_file}"
    assert describe_credentials(password) == "IAM token of user alice (expires unknown)"
    assert describe_credentials(AgencyAuth("http://127.0.0.1:1")) == (
        "the instance agency's temporary credentials (not fetched yet)"
    )
    assert describe_credentials(httpx.BasicAuth("u", "p")) == "BasicAuth"
    # An expiry is shown in UTC, whatever zone it was given in.
    later = datetime(2027, 1, 2, 11, 4, 5, tzinfo=timezone(timedelta(hours=8)))
    password._expires_at = later
    assume._expires_at = later + timedelta(hours=1)
    assert describe_credentials(password) == (
        "IAM token of user alice (expires 2027-01-02T03:04:05Z)"
    )
    assert describe_credentials(assume) == (
        "token of agency ops in domain dom (expires 2027-01-02T04:04:05Z), asked for with "
        "access key AKID... (permanent)"
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"credentials": {"accessKeyId": "A", "secretAccessKey": "S", "securityToken": "T", '
        b'"expiration": "2027-01-02T03:04:05+00:00"}}',
        b'{"access_key_id": "A", "secret_access_key": "S", "security_token": "T", '
        b'"expires_at": "2027-01-02T03:04:05"}',
    ],
)
def test_a_security_key_in_the_sdks_other_spellings_is_read(body: bytes) -> None:
    assert parse_securitykey(body) == ("A", "S", "T", datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC))


def test_a_security_key_that_is_not_json_says_so_in_full() -> None:
    with pytest.raises(CredentialsError) as caught:
        parse_securitykey(b"<html>")
    assert str(caught.value) == "the metadata service's security key is not JSON"


@pytest.mark.simulator(clusters=1, nodes_per_cluster=1)
async def test_refused_agency_credentials_are_dropped_even_when_no_new_ones_come(
    simulator: Simulator,
) -> None:
    async def no_wait(seconds: float) -> None:
        pass

    auth = AgencyAuth(simulator.base_url, simulator.credentials.project_id, sleep=no_wait)
    base = simulator.base_url + f"/api/v3/projects/{simulator.credentials.project_id}/clusters"
    async with httpx.AsyncClient(auth=auth) as client:
        assert (await client.get(base)).status_code == 200
        assert auth.credentials is not None
        # Revoked early (the API refuses them) and the metadata service down: an error, and the
        # refused credentials are not kept to sign with or to show.
        simulator.app.temporary.expire_all()
        simulator.faults.add("http_503", rate=1.0, path="securitykey")
        with pytest.raises(CredentialsError, match="HTTP 503"):
            await client.get(base)
        assert auth.credentials is None
        assert describe_credentials(auth) == (
            "the instance agency's temporary credentials (not fetched yet)"
        )
    await auth.aclose()


def test_a_security_key_whose_expiry_is_not_a_timestamp_says_so_in_full() -> None:
    body = b'{"access": "A", "secret": "S", "securitytoken": "T", "expires_at": "soon"}'
    with pytest.raises(CredentialsError) as caught:
        parse_securitykey(body)
    assert str(caught.value) == "the metadata service's expires_at is not a timestamp"


@pytest.mark.parametrize(("ak", "sk"), [("", "sk-secret-value"), ("AKIDEXAMPLE", ""), ("", "")])
def test_aksk_auth_needs_both_keys(ak: str, sk: str) -> None:
    with pytest.raises(CredentialsError) as caught:
        AkSkAuth(ak, sk)
    assert str(caught.value) == "AK/SK authentication needs both an access key and a secret key"


def test_an_iam_token_auth_names_itself_when_its_endpoint_is_missing() -> None:
    with pytest.raises(CredentialsError) as caught:
        _IamTokenAuth("")
    assert str(caught.value) == "IAM token authentication needs the IAM endpoint"
    with pytest.raises(CredentialsError) as caught:
        AssumeAgencyAuth("", TokenAuth(token="t"), "dom", "agency", project_id="pid")
    assert str(caught.value) == "assume_agency needs the IAM endpoint"


def test_a_password_needs_a_password() -> None:
    with pytest.raises(CredentialsError) as caught:
        PasswordAuth("https://iam", "user", "", "dom", "name")
    assert str(caught.value) == "password authentication needs a user name, a password and a domain"


def _password_body(scope: dict[str, Any]) -> dict[str, Any]:
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": "alice", "password": "pw-secret", "domain": {"name": "dom"}}
                },
            },
            "scope": scope,
        }
    }


@pytest.mark.parametrize(
    ("scope", "body_scope"),
    [
        ({"project_id": "pid"}, {"project": {"id": "pid"}}),
        ({"project_name": "pname"}, {"project": {"name": "pname"}}),
        ({"project_name": "pname", "project_id": "pid"}, {"project": {"id": "pid"}}),  # ID wins
        ({"domain_scope": True}, {"domain": {"name": "dom"}}),
        ({"domain_scope": True, "project_id": "pid"}, {"domain": {"name": "dom"}}),
    ],
)
def test_a_password_token_is_asked_for_in_its_scope(
    scope: dict[str, Any], body_scope: dict[str, Any]
) -> None:
    auth = PasswordAuth("https://iam", "alice", "pw-secret", "dom", **scope)
    assert auth.token_request_body() == _password_body(body_scope)


class _Iam:
    """IAM as a MockTransport handler: a token valid for a day, or an answer that never ends."""

    def __init__(self) -> None:
        self.options: list[HttpOptions] = []
        self.bodies: list[Any] = []
        self.hang = False
        self.fault: Exception | None = None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        if self.fault is not None:
            raise self.fault
        if self.hang:
            return httpx.Response(201, stream=_Endless())
        token = f"token-{len(self.bodies)}"
        return httpx.Response(201, headers={"X-Subject-Token": token}, json={"token": {}})


class _Endless(httpx.AsyncByteStream):
    async def __aiter__(self):  # type: ignore[no-untyped-def]
        yield b"{"
        await asyncio.Event().wait()


@pytest.fixture
def iam(monkeypatch: pytest.MonkeyPatch) -> _Iam:
    fake = _Iam()

    def build(options: HttpOptions, **kwargs: Any) -> httpx.AsyncClient:
        fake.options.append(options)
        return build_http_client(options, transport=httpx.MockTransport(fake), **kwargs)

    monkeypatch.setattr(auth_module, "build_http_client", build)
    return fake


async def test_password_auth_passes_its_options_on(iam: _Iam) -> None:
    outcomes: list[str] = []
    now = [T0]
    auth = PasswordAuth(
        "https://iam",
        "alice",
        "pw-secret",
        "dom",
        "pname",
        timeout=3.0,
        verify=False,
        refresh_margin=timedelta(minutes=3),
        clock=lambda: now[0],
        on_refresh=outcomes.append,
    )
    assert auth.http == HttpOptions(timeout=3.0, verify=False, max_connections=2)
    assert await auth._valid_token() == "token-1"
    assert iam.options == [auth.http]
    assert iam.bodies == [auth.token_request_body()]
    assert outcomes == ["success"]
    assert auth.expires_at == T0 + timedelta(hours=24)  # no expiry in the body: a day, our clock
    now[0] = T0 + timedelta(hours=24, minutes=-3) - timedelta(microseconds=1)
    assert await auth._valid_token() == "token-1"
    now[0] += timedelta(microseconds=1)  # three minutes before expiry
    assert await auth._valid_token() == "token-2"
    assert outcomes == ["success", "success"]
    await auth.aclose()


async def test_password_auth_takes_given_http_options_as_they_are(iam: _Iam) -> None:
    given = HttpOptions(timeout=4.0, proxy="http://proxy.example:3128", max_connections=9)
    auth = PasswordAuth("https://iam", "alice", "pw-secret", "dom", "pname", http=given)
    assert auth.http is given
    await auth._valid_token()
    assert iam.options == [given]
    await auth.aclose()


def test_password_auth_defaults_to_the_system_trust_and_ten_seconds() -> None:
    auth = PasswordAuth("https://iam", "alice", "pw-secret", "dom", "pname")
    assert auth.http == HttpOptions(timeout=10, verify=True, max_connections=2)


@pytest.mark.parametrize("as_path", [True, False])
def test_password_auth_trusts_a_ca_file_given_as_a_path(tmp_path: Path, as_path: bool) -> None:
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    verify: str | Path = bundle if as_path else str(bundle)
    auth = PasswordAuth("https://iam", "alice", "pw-secret", "dom", "pname", verify=verify)
    assert isinstance(auth.http.verify, ssl.SSLContext)
    assert len(auth.http.verify.get_ca_certs()) == 1


async def test_a_token_request_past_its_deadline_says_so(iam: _Iam) -> None:
    iam.hang = True
    outcomes: list[str] = []
    auth = PasswordAuth(
        "https://iam",
        "alice",
        "pw-secret",
        "dom",
        "pname",
        deadline=0.05,
        on_refresh=outcomes.append,
    )
    with pytest.raises(RequestTimeout) as caught:
        async with asyncio.timeout(10):  # the test's own bound, should the deadline not hold
            await auth._valid_token()
    assert str(caught.value) == "IAM token request: no complete answer within the 0.05s deadline"
    assert outcomes == ["failure"]
    await auth.aclose()


@pytest.fixture
def shanghai_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone set to UTC+8 for one test."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_an_expiry_is_described_in_utc_whatever_the_local_zone(shanghai_time: None) -> None:
    auth = PasswordAuth("https://iam", "alice", "pw-secret", "dom", "name")
    auth._expires_at = datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert describe_credentials(auth) == "IAM token of user alice (expires 2027-01-02T03:04:05Z)"


async def test_a_token_request_that_fails_says_how_without_credentials(iam: _Iam) -> None:
    iam.fault = httpx.ConnectError("refused by http://user:secret@proxy.example/")
    auth = PasswordAuth("https://iam", "alice", "pw-secret", "dom", "pname")
    with pytest.raises(TransportError) as caught:
        await auth._valid_token()
    assert str(caught.value) == (
        "IAM token request failed: ConnectError: refused by http://***@proxy.example/"
    )
    await auth.aclose()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[]", "the metadata service's security key has no credential object"),
        (b'{"credential": "A"}', "the metadata service's security key has no credential object"),
        (
            b'{"credential": {"accessKeyId": " ", "secret": "S", "securitytoken": "T"}}',
            "the metadata service's security key has no access",
        ),
        (
            b'{"credential": {"access": "A", "secret": "S", "securitytoken": "T"}}',
            "the metadata service's security key has no expires_at",
        ),
    ],
)
def test_a_security_key_without_a_part_names_it_in_full(body: bytes, message: str) -> None:
    with pytest.raises(CredentialsError) as caught:
        parse_securitykey(body)
    assert str(caught.value) == message


_SIGNING_KEY = {"AKIDEXAMPLE": "sk-secret-value"}


def test_a_request_signed_again_has_one_date_and_one_signature() -> None:
    now = [T0]
    auth = AkSkAuth("AKIDEXAMPLE", "sk-secret-value", clock=lambda: now[0])
    request = httpx.Request("POST", "https://cce.example.com/api/v3/x", content=b"{}")
    auth.sign_request(request)
    first = request.headers["Authorization"]
    now[0] = T0 + timedelta(seconds=5)
    auth.sign_request(request)
    names = [key for key, _ in request.headers.multi_items()]
    assert names.count("authorization") == 1 and names.count("x-sdk-date") == 1
    assert request.headers["Authorization"] != first
    assert request.headers["X-Sdk-Date"] == sdk_date(now[0])
    verified = verify("POST", str(request.url), request.headers, b"{}", _SIGNING_KEY.get, now[0])
    assert verified == "AKIDEXAMPLE"


def test_a_request_without_a_host_header_gets_one_and_it_is_signed() -> None:
    request = httpx.Request("GET", "https://cce.example.com:8443/api/v3/projects/p1/clusters")
    del request.headers["Host"]
    AkSkAuth("AKIDEXAMPLE", "sk-secret-value", clock=lambda: T0).sign_request(request)
    assert request.headers["Host"] == "cce.example.com:8443"
    assert "host" in parse_authorization(request.headers["Authorization"])[1]
    assert verify("GET", str(request.url), request.headers, b"", _SIGNING_KEY.get, T0)


def test_a_given_host_header_is_kept_and_signed() -> None:
    request = httpx.Request(
        "GET", "https://192.0.2.10/api/v3/projects", headers={"Host": "cce.example.com"}
    )
    AkSkAuth("AKIDEXAMPLE", "sk-secret-value", clock=lambda: T0).sign_request(request)
    assert request.headers["Host"] == "cce.example.com"
    headers = dict(request.headers)
    assert verify("GET", str(request.url), headers, b"", _SIGNING_KEY.get, T0)
    headers["host"] = "192.0.2.10"
    with pytest.raises(SignatureError, match="signature mismatch"):
        verify("GET", str(request.url), headers, b"", _SIGNING_KEY.get, T0)


def test_a_request_with_two_host_headers_is_not_signed() -> None:
    request = httpx.Request(
        "GET", "https://cce.example.com/api", headers=[("Host", "a.example"), ("Host", "b.example")]
    )
    with pytest.raises(CredentialsError) as caught:
        AkSkAuth("AKIDEXAMPLE", "sk-secret-value", clock=lambda: T0).sign_request(request)
    assert str(caught.value) == "cannot sign the request: Host header missing"
