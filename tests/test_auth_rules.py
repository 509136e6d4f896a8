"""Credentials at their edges: what a repr shows of them, the errors that name a bad token source,
and a rotated token file that is re-read only when the API refuses the old token."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.cce.auth import AgencyAuth, AkSkAuth, AssumeAgencyAuth, PasswordAuth, TokenAuth
from exporter.cce.errors import APIError, CredentialsError, RequestTimeout
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


@pytest.mark.parametrize(
    ("auth", "name"),
    [
        (PasswordAuth("https://iam", "user", "pw-secret", "dom", "name"), "PasswordAuth"),
        (
            AssumeAgencyAuth("https://iam", AkSkAuth("AK", "SK"), "other", "agency", "p"),
            "AssumeAgencyAuth",
        ),
        (AgencyAuth("http://127.0.0.1:9"), "AgencyAuth"),
    ],
)
def test_fetched_credentials_refuse_a_sync_client(auth: httpx.Auth, name: str) -> None:
    with (
        httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as client,
        pytest.raises(RuntimeError) as caught,
    ):
        client.get("http://127.0.0.1/", auth=auth)
    assert str(caught.value) == f"{name} needs httpx.AsyncClient"


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
