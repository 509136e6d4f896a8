"""The web config's rules at their edges: every refusal names the key, in the words the operator
reads; the values that pass are the ones the server uses; the basic-auth cache keeps its bound."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Annotated, Any

import bcrypt
import pytest
from pydantic import TypeAdapter, ValidationError

from exporter.webconfig import (
    AuthBusyError,
    BasicAuthVerifier,
    WebConfig,
    WebConfigError,
    _describe,
    _one_of,
    load_web_config,
    parse_web_config,
)
from tests.test_web_limits import _until
from tests.test_webconfig import tls_dir  # noqa: F401  (a fixture)

CERTS = {"cert_file": "c.crt", "key_file": "c.key"}
TOP = "basic_auth_users, http_server_config, tls_server_config"
VERSIONS = "TLS10, TLS11, TLS12, TLS13"
HEADERS = (
    "Content-Security-Policy, X-Frame-Options, X-Content-Type-Options, X-XSS-Protection, "
    "Strict-Transport-Security"
)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1], "web config: expected a mapping, got list"),
        ({1: "x"}, "web config: keys must be strings, got 1"),
        ({"tls_server_config": {None: 1}}, "tls_server_config: keys must be strings, got None"),
        ({"basic_auth_users": {1: "x"}}, "basic_auth_users: keys must be strings, got 1"),
        (
            {"http_server_config": {"headers": {True: "x"}}},
            "http_server_config.headers: keys must be strings, got True",
        ),
        ({"bogus": 1}, f"bogus: unknown key; expected one of {TOP}"),
        (
            {"http_server_config": {"http3": True}},
            "http_server_config.http3: unknown key; expected one of headers, http2",
        ),
        ({"tls_server_config": "x"}, "tls_server_config: expected a mapping, got str"),
        ({"http_server_config": 5}, "http_server_config: expected a mapping, got int"),
        (
            {"http_server_config": {"http2": "yes"}},
            "http_server_config.http2: expected true or false",
        ),
        (
            {"http_server_config": {"headers": []}},
            "http_server_config.headers: expected a mapping, got list",
        ),
        (
            {"tls_server_config": {"cert_file": "", "key_file": "k"}},
            "tls_server_config.cert_file: expected a non-empty string",
        ),
        (
            {"tls_server_config": {"cert_file": 5, "key_file": "k"}},
            "tls_server_config.cert_file: expected a non-empty string",
        ),
        (  # YAML's !!binary
            {"tls_server_config": {"cert_file": b"c.crt", "key_file": "k"}},
            "tls_server_config.cert_file: expected a non-empty string",
        ),
        (
            {"tls_server_config": {"cert_file": "c", "key_file": ""}},
            "tls_server_config.key_file: expected a non-empty string",
        ),
        (
            {"tls_server_config": {**CERTS, "client_ca_file": ""}},
            "tls_server_config.client_ca_file: expected a non-empty string",
        ),
        (
            {"tls_server_config": {**CERTS, "min_version": "TLS14"}},
            f"tls_server_config.min_version: unknown value 'TLS14'; use one of {VERSIONS}",
        ),
        (
            {"tls_server_config": {**CERTS, "max_version": ""}},
            "tls_server_config.max_version: expected a non-empty string",
        ),
        (
            {"tls_server_config": {**CERTS, "prefer_server_cipher_suites": "yes"}},
            "tls_server_config.prefer_server_cipher_suites: expected true or false",
        ),
        (
            {"tls_server_config": {**CERTS, "client_auth_type": "RequestClientCert"}},
            "tls_server_config.client_auth_type: RequestClientCert is not supported (Python's "
            "TLS cannot request a client certificate without verifying it); use "
            "VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file",
        ),
        (
            {"http_server_config": {"headers": {"Server": "x"}}},
            f"http_server_config.headers.Server: this header cannot be configured; "
            f"allowed: {HEADERS}",
        ),
        (
            {"http_server_config": {"headers": {"X-Frame-Options": "allow"}}},
            "http_server_config.headers.X-Frame-Options: 'allow' is not accepted; "
            "use deny or sameorigin",
        ),
        (
            {"basic_auth_users": {"u": "plain"}},
            "basic_auth_users.u: expected a bcrypt hash ($2a$/$2b$/$2y$...), e.g. from "
            "htpasswd -nBC 10 \"\" | tr -d ':\\n'",
        ),
    ],
)
def test_refusals_name_the_key(data: Any, message: str) -> None:
    with pytest.raises(WebConfigError) as caught:
        parse_web_config(data)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"bogus": 1, 1: "x"}, "web config: keys must be strings, got 1"),
        (
            {"basic_auth_users": {"u": "x"}, "rate_limit": {}, "tls_server_config": {"x": 1}},
            "rate_limit: not supported by cce-exporter",
        ),
        (
            {"tls_server_config": {"cert_file": 5, "bogus": 1}},
            "tls_server_config.bogus: unknown key; expected one of cert_file, client_auth_type, "
            "client_ca_file, key_file, max_version, min_version, prefer_server_cipher_suites",
        ),
        (
            {"tls_server_config": {"cert_file": "", "client_auth_type": "RequestClientCert"}},
            "tls_server_config.key_file: required when tls_server_config is set",
        ),
        (
            {
                "tls_server_config": {
                    **CERTS,
                    "cert_file": "",
                    "client_auth_type": "VerifyClientCertIfGiven",
                    "min_version": "TLS14",
                }
            },
            "tls_server_config.client_ca_file: required when client_auth_type is "
            "VerifyClientCertIfGiven",
        ),
        (
            {"tls_server_config": {**CERTS, "key_file": 1, "max_version": "TLS10"}},
            "tls_server_config.min_version: TLS12 is above max_version TLS10",
        ),
        (
            {"tls_server_config": {"cert_file": ""}, "http_server_config": {"http3": 1}},
            "tls_server_config.key_file: required when tls_server_config is set",
        ),
        (
            {"http_server_config": {"headers": {"Server": "x"}, "http2": "yes"}},
            "http_server_config.http2: expected true or false",
        ),
        (
            {"http_server_config": {"headers": {2: "x"}, "http2": "yes"}},
            "http_server_config.http2: expected true or false",
        ),
    ],
)
def test_of_several_mistakes_the_first_in_reading_order_is_named(data: Any, message: str) -> None:
    """Top-level keys first, then section by section: its keys, the missing ones, the values."""
    with pytest.raises(WebConfigError) as caught:
        parse_web_config(data)
    assert str(caught.value) == message


def test_a_value_out_of_a_fixed_set_names_the_choices_or_why_it_is_refused() -> None:
    choice = TypeAdapter(Annotated[str, _one_of({"a": 1, "b c": 2}, {"z": "z is refused: why"})])
    assert choice.validate_python("a") == "a"
    assert choice.validate_python("b c") == "b c"
    for value, message in [
        ("x", "unknown value 'x'; use one of a, b c"),
        ("A", "unknown value 'A'; use one of a, b c"),
        ("z", "z is refused: why"),
    ]:
        with pytest.raises(ValidationError) as caught:
            choice.validate_python(value)
        assert [e["msg"] for e in caught.value.errors()] == [message]


def test_no_document_is_an_empty_one() -> None:
    assert parse_web_config(None) == WebConfig()


@pytest.mark.parametrize(
    ("loc", "message"),
    [
        ((), "web config: something new"),
        (("tls_server_config", "x"), "tls_server_config.x: something new"),
    ],
)
def test_an_error_of_a_kind_not_foreseen_keeps_pydantics_words_under_its_key(
    loc: tuple[str, ...], message: str
) -> None:
    error: Any = {"type": "new_kind", "loc": loc, "msg": "something new", "input": 1}
    assert _describe(error) == message


SECRET = "$2y$10$" + "s3cr3t" * 8  # a hash cut short: 55 characters


@pytest.mark.parametrize(
    "data",
    [
        {"basic_auth_users": {"u": SECRET}},
        {"basic_auth_users": {"u": [SECRET]}},
        {"basic_auth_users": {"u": {"hash": SECRET}}},
        {"basic_auth_users": SECRET},
        {"bogus": SECRET},
        {"rate_limit": SECRET},
        {"http_server_config": {"http2": SECRET}},
        {"http_server_config": {"headers": SECRET}},
        {"tls_server_config": SECRET},
        {"tls_server_config": {**CERTS, "prefer_server_cipher_suites": SECRET}},
        {"tls_server_config": {**CERTS, "cert": SECRET}},
        {"tls_server_config": {**CERTS, "client_ca_file": [SECRET]}},
    ],
    ids=lambda data: "-".join(str(k) for k in data) if isinstance(data, dict) else "x",
)
def test_a_refusal_never_quotes_a_value_that_may_be_a_hash(data: Any) -> None:
    with pytest.raises(WebConfigError) as caught:
        parse_web_config(data)
    assert "s3cr3t" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_null_value_is_an_absent_key_but_a_refused_key_stays_refused() -> None:
    config = parse_web_config(
        {"tls_server_config": None, "http_server_config": {"headers": None, "http2": None}}
    )
    assert config.tls is None and config.headers == {}
    with pytest.raises(WebConfigError) as caught:
        parse_web_config({"tls_server_config": {**CERTS, "cert": None}})
    assert (
        str(caught.value)
        == "tls_server_config.cert: inline certificates are not supported; use cert_file"
    )


@pytest.mark.parametrize(
    "value", ["a\nb", "a\rb", "line\r\n", 5], ids=["lf", "cr", "crlf", "not-a-string"]
)
def test_a_header_value_is_one_line_of_text(value: Any) -> None:
    with pytest.raises(WebConfigError) as caught:
        parse_web_config({"http_server_config": {"headers": {"Content-Security-Policy": value}}})
    assert str(caught.value) == (
        "http_server_config.headers.Content-Security-Policy: expected a single-line string"
    )


def test_blank_headers_are_unset_and_the_others_kept() -> None:
    config = parse_web_config(
        {
            "http_server_config": {
                "headers": {
                    "X-Frame-Options": "",
                    "x-xss-protection": None,
                    "x-content-type-options": "nosniff",
                    "X-Frame-options": "DENY",
                }
            }
        }
    )
    assert config.headers == {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}


def test_every_bcrypt_prefix_is_accepted() -> None:
    users = {f"u{v}": f"${v}$10$" + "a" * 53 for v in ("2a", "2b", "2y")}
    assert parse_web_config({"basic_auth_users": users}).basic_auth_users == users


def test_tls_settings_are_kept_and_paths_resolve_against_the_base(
    tls_dir: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = {
        "tls_server_config": {
            "cert_file": "server.crt",
            "key_file": str(tls_dir / "server.key"),
            "min_version": "TLS12",
            "max_version": "TLS12",
            "prefer_server_cipher_suites": True,
        }
    }
    tls = parse_web_config(data, base_dir=tls_dir).tls
    assert tls is not None
    assert (tls.cert_file, tls.key_file) == (tls_dir / "server.crt", tls_dir / "server.key")
    assert (tls.min_version, tls.max_version) == ("TLS12", "TLS12")
    # Without a base directory, relative paths are relative to the working directory.
    monkeypatch.chdir(tls_dir)
    tls = parse_web_config(data).tls
    assert tls is not None and tls.cert_file == Path("server.crt")


def test_unloadable_files_say_why(tls_dir: Path) -> None:  # noqa: F811
    with pytest.raises(WebConfigError) as caught:
        parse_web_config(
            {"tls_server_config": {"cert_file": "server.crt", "key_file": "no.key"}},
            base_dir=tls_dir,
        )
    assert str(caught.value) == (
        f"tls_server_config.cert_file/key_file: cannot load {tls_dir / 'server.crt'} with "
        f"{tls_dir / 'no.key'}: No such file or directory"
    )
    data = {
        "tls_server_config": {
            "cert_file": "server.crt",
            "key_file": "server.key",
            "client_auth_type": "RequireAndVerifyClientCert",
            "client_ca_file": "no-ca.crt",
        }
    }
    with pytest.raises(WebConfigError) as caught:
        parse_web_config(data, base_dir=tls_dir)
    assert str(caught.value) == (
        f"tls_server_config.client_ca_file: cannot load {tls_dir / 'no-ca.crt'}: "
        "No such file or directory"
    )


def test_load_errors_name_the_file_and_the_position(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yml"
    with pytest.raises(WebConfigError) as caught:
        load_web_config(missing)
    assert str(caught.value) == f"web config {missing}: cannot read: No such file or directory"
    binary = tmp_path / "binary.yml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(WebConfigError) as caught:
        load_web_config(binary)
    assert str(caught.value) == (
        f"web config {binary}: cannot read: "
        "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"
    )
    broken = tmp_path / "broken.yml"
    broken.write_text("basic_auth_users:\n  u: [1, 2\n")
    with pytest.raises(WebConfigError) as caught:
        load_web_config(broken)
    assert str(caught.value) == f"web config {broken}: not valid YAML at line 3, column 1"
    empty = tmp_path / "empty.yml"
    empty.write_text("")
    assert load_web_config(empty).basic_auth_users == {}


async def test_the_credentials_cache_keeps_the_most_recent_256() -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    verifier = BasicAuthVerifier({f"user{i}": hashed for i in range(257)})
    for i in range(257):
        assert await verifier.verify(f"user{i}", "pw")
    assert not verifier.cached("user0", "pw")  # the oldest went
    assert verifier.cached("user1", "pw") and verifier.cached("user256", "pw")
    assert not verifier.cached("nobody", "pw")


async def test_a_password_that_is_not_utf8_is_checked_not_crashed() -> None:
    raw = b"\xffpw"  # what a client sent, decoded with surrogateescape by the server
    hashed = bcrypt.hashpw(raw, bcrypt.gensalt(4)).decode()
    verifier = BasicAuthVerifier({"u": hashed})
    password = raw.decode("utf-8", "surrogateescape")
    assert await verifier.verify("u", password)
    assert verifier.cached("u", password)
    assert not await verifier.verify("u", "pw")


def test_a_control_character_is_not_valid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users:\n  u: \x07\n")
    with pytest.raises(WebConfigError) as caught:
        load_web_config(path)
    assert str(caught.value) == f"web config {path}: not valid YAML"


def test_a_cut_hash_is_refused_with_what_a_whole_one_looks_like() -> None:
    hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4)).decode()
    with pytest.raises(WebConfigError) as info:
        parse_web_config({"basic_auth_users": {"prom": hashed[:-1]}})
    assert str(info.value) == (
        "basic_auth_users.prom: not a complete bcrypt hash (59 characters; 60 expected: "
        "$2y$, a cost of 04 to 31, $, then 53 characters of ./A-Za-z0-9); was it cut "
        "short when copied?"
    )


class _Gate:
    """bcrypt.checkpw held until ``open()``: counts the checks that entered it."""

    def __init__(self, monkeypatch: Any) -> None:
        self.gate = threading.Event()
        self.finished = threading.Event()
        self.entered = 0
        self._lock = threading.Lock()
        real = bcrypt.checkpw

        def blocked(password: bytes, hashed_pw: bytes) -> bool:
            with self._lock:
                self.entered += 1
            self.gate.wait(30)
            self.finished.set()
            return bool(real(password, hashed_pw))

        monkeypatch.setattr(bcrypt, "checkpw", blocked)

    def open(self) -> None:
        self.gate.set()


async def test_closing_the_verifier_does_not_wait_for_a_check_in_progress(monkeypatch: Any) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    gate = _Gate(monkeypatch)
    verifier = BasicAuthVerifier({"prom": hashed}, workers=1)
    check = asyncio.create_task(verifier.verify("prom", "pw"))
    await _until(lambda: gate.entered == 1)
    await verifier.aclose()
    # Closing returned while bcrypt was still busy (a shutdown must not hang on a check).
    assert not gate.finished.is_set()
    gate.open()
    assert await check


async def test_by_default_one_check_runs_and_eight_wait(monkeypatch: Any) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    gate = _Gate(monkeypatch)
    verifier = BasicAuthVerifier({"prom": hashed})
    running = asyncio.create_task(verifier.verify("prom", "wrong-0"))
    await _until(lambda: gate.entered == 1)
    waiting = [asyncio.create_task(verifier.verify("prom", f"wrong-{i}")) for i in range(1, 9)]
    await _until(lambda: len(verifier._waiting[0]) == 8)
    with pytest.raises(AuthBusyError):
        await verifier.verify("prom", "wrong-9")
    gate.open()
    assert not any(await asyncio.gather(running, *waiting))
    await verifier.aclose()


async def test_the_check_queue_at_its_edges(monkeypatch: Any) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    gate = _Gate(monkeypatch)
    verifier = BasicAuthVerifier({"prom": hashed}, workers=2, max_pending=2)
    # The same credentials at once: one bcrypt run, both answered by it.
    same = [asyncio.create_task(verifier.verify("prom", "pw")) for _ in range(2)]
    other = asyncio.create_task(verifier.verify("prom", "wrong-1"))
    await _until(lambda: gate.entered == 2)
    # Both slots busy: a client's check waits in its lane, a suspect's in the other.
    plain = asyncio.create_task(verifier.verify("nobody", "x"))
    suspect = asyncio.create_task(verifier.verify("prom", "wrong-2", suspect=True))
    await _until(lambda: (len(verifier._waiting[0]), len(verifier._waiting[1])) == (1, 1))
    # The queue is full: a suspect is refused at once, each refusal counted.
    for n in (1, 2):
        with pytest.raises(AuthBusyError) as caught:
            await verifier.verify("prom", f"wrong-{n + 2}", suspect=True)
        assert str(caught.value) == "too many password checks are waiting"
        assert verifier.refused == n
    # A client's check makes room by refusing the waiting suspect.
    late = asyncio.create_task(verifier.verify("prom", "wrong-5"))
    await _until(suspect.done)
    assert str(suspect.exception()) == "refused for a higher priority"
    assert verifier.refused == 3
    # A check given up while waiting leaves the queue.
    late.cancel()
    with pytest.raises(asyncio.CancelledError):
        await late
    assert len(verifier._waiting[0]) == 1  # the unknown user's check only
    gate.open()
    assert [await t for t in same] == [True, True]
    assert not await other and not await plain
    assert gate.entered == 3  # pw once, wrong-1, the unknown user's dummy; none for late
    # Every slot came back: two checks at once again, a third waits.
    gate.gate.clear()
    entered = gate.entered
    again = [asyncio.create_task(verifier.verify("prom", f"again-{i}")) for i in range(3)]
    await _until(lambda: gate.entered == entered + 2)
    await _until(lambda: len(verifier._waiting[0]) == 1)
    gate.open()
    assert not any(await asyncio.gather(*again))
    await verifier.aclose()


async def test_a_queue_of_no_size_still_holds_one_check(monkeypatch: Any) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    gate = _Gate(monkeypatch)
    verifier = BasicAuthVerifier({"prom": hashed}, max_pending=0)
    running = asyncio.create_task(verifier.verify("prom", "wrong-0"))
    await _until(lambda: gate.entered == 1)
    waiting = asyncio.create_task(verifier.verify("prom", "wrong-1"))
    await _until(lambda: len(verifier._waiting[0]) == 1)
    third = asyncio.create_task(verifier.verify("prom", "wrong-2"))
    await _until(lambda: third.done() or len(verifier._waiting[0]) == 2)
    assert isinstance(third.exception(), AuthBusyError)
    gate.open()
    assert not any(await asyncio.gather(running, waiting))
    await verifier.aclose()


async def _holding_the_only_slot(
    monkeypatch: Any, **limits: int
) -> tuple[_Gate, BasicAuthVerifier]:
    """A verifier with one bcrypt slot, taken here as a check in bcrypt would hold it."""
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    gate = _Gate(monkeypatch)
    verifier = BasicAuthVerifier({"prom": hashed}, workers=1, **limits)
    await verifier._acquire(False)
    return gate, verifier


async def test_a_check_cancelled_just_as_it_is_given_a_slot_gives_it_back(monkeypatch: Any) -> None:
    gate, verifier = await _holding_the_only_slot(monkeypatch)
    given = asyncio.create_task(verifier.verify("prom", "wrong-1"))
    await _until(lambda: len(verifier._waiting[0]) == 1)
    verifier._release()  # the slot goes to the waiting check...
    given.cancel()  # ... whose client is gone before it could run
    with pytest.raises(asyncio.CancelledError):
        await given
    assert verifier._free == 1
    # The next check runs at once, and only one at a time.
    checks = [asyncio.create_task(verifier.verify("prom", f"wrong-{i}")) for i in (2, 3)]
    await _until(lambda: gate.entered == 1 and len(verifier._waiting[0]) == 1)
    gate.open()
    assert not any(await asyncio.gather(*checks))
    assert gate.entered == 2
    await verifier.aclose()


async def test_a_suspect_refused_just_as_it_is_cancelled_gives_no_slot(monkeypatch: Any) -> None:
    gate, verifier = await _holding_the_only_slot(monkeypatch, max_pending=1)
    suspect = asyncio.create_task(verifier.verify("prom", "wrong-1", suspect=True))
    await _until(lambda: len(verifier._waiting[1]) == 1)
    # A client's check refuses the suspect to make room (run here up to its wait), and the
    # suspect's client is gone before the refusal reaches it.
    client = verifier.verify("prom", "wrong-2")
    waiter = client.send(None)
    suspect.cancel()
    with pytest.raises(asyncio.CancelledError):
        await suspect
    assert verifier.refused == 1
    # The suspect never had a slot: it gives none back, and the client's check still waits.
    assert not waiter.done() and verifier._free == 0
    verifier._release()
    gate.open()
    assert not await asyncio.ensure_future(client)
    assert gate.entered == 1
    await verifier.aclose()


async def test_a_suspect_whose_wait_was_cancelled_leaves_room_without_a_refusal(
    monkeypatch: Any,
) -> None:
    gate, verifier = await _holding_the_only_slot(monkeypatch, max_pending=1)
    suspect = asyncio.create_task(verifier.verify("prom", "wrong-1", suspect=True))
    await _until(lambda: len(verifier._waiting[1]) == 1)
    suspect.cancel()  # its wait is cancelled at once; it leaves the queue when it runs next
    # Before it runs, a client's check comes (run here up to its wait): it takes the room.
    client = verifier.verify("prom", "wrong-2")
    waiter = client.send(None)
    with pytest.raises(asyncio.CancelledError):
        await suspect
    assert not waiter.done() and verifier.refused == 0
    assert (len(verifier._waiting[0]), len(verifier._waiting[1])) == (1, 0)
    verifier._release()
    gate.open()
    assert not await asyncio.ensure_future(client)
    await verifier.aclose()


async def test_an_unknown_users_check_costs_its_own_bcrypt_in_its_own_lane(
    monkeypatch: Any,
) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    gate = _Gate(monkeypatch)
    verifier = BasicAuthVerifier({"prom": hashed}, workers=2)
    # Two unknown users at once: each as long as a wrong password, neither sharing the other's.
    unknown = [asyncio.create_task(verifier.verify(f"nobody-{i}", f"x{i}")) for i in (1, 2)]
    await _until(lambda: gate.entered == 2)
    # From a suspect, an unknown user's check waits in the suspects' lane.
    suspect = asyncio.create_task(verifier.verify("nobody-3", "x3", suspect=True))
    await _until(lambda: len(verifier._waiting[0]) + len(verifier._waiting[1]) == 1)
    assert (len(verifier._waiting[0]), len(verifier._waiting[1])) == (0, 1)
    gate.open()
    assert not any(await asyncio.gather(*unknown, suspect))
    assert gate.entered == 3
    await verifier.aclose()
