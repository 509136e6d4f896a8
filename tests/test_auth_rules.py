"""Credentials at their edges: what a repr shows of them, the errors that name a bad token source,
and a rotated token file that is re-read only when the API refuses the old token."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from exporter.cce.auth import AkSkAuth, PasswordAuth, TokenAuth
from exporter.cce.errors import CredentialsError


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
