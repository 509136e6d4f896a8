"""The web config file (exporter-toolkit format) and the basic-auth verifier."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import trustme

from exporter.webconfig import (
    BasicAuthVerifier,
    WebConfig,
    WebConfigError,
    load_web_config,
    parse_web_config,
)

PASSWORD = "correct horse"


@pytest.fixture(scope="module")
def hashed() -> str:
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


@pytest.fixture
def tls_dir(tmp_path: Path) -> Path:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    (tmp_path / "server.crt").write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    return tmp_path


def test_full_config_resolves_paths_relative_to_the_file(tls_dir: Path, hashed: str) -> None:
    path = tls_dir / "web.yml"
    path.write_text(
        f"""
tls_server_config:
  cert_file: server.crt
  key_file: {tls_dir / "server.key"}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
  min_version: TLS13
  prefer_server_cipher_suites: true
http_server_config:
  http2: false
  headers:
    strict-transport-security: max-age=31536000
    X-Frame-Options: deny
    X-XSS-Protection: ""
basic_auth_users:
  prom: '{hashed}'
"""
    )
    config = load_web_config(path)
    assert config.tls is not None
    assert config.tls.cert_file == tls_dir / "server.crt"
    assert config.tls.key_file == tls_dir / "server.key"
    assert config.tls.client_ca_file == tls_dir / "ca.crt"
    assert config.tls.client_auth_type == "RequireAndVerifyClientCert"
    ctx = config.tls.ssl_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert config.headers == {
        "Strict-Transport-Security": "max-age=31536000",
        "X-Frame-Options": "deny",
    }
    assert config.basic_auth_users == {"prom": hashed}
    assert config.auth_enabled
    assert hashed not in repr(config)


def test_empty_file_means_no_tls_no_auth(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("# nothing\n")
    assert load_web_config(path) == WebConfig()
    assert not WebConfig().auth_enabled


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"tls_config": {}}, r"tls_config: unknown key"),
        ({"rate_limit": {"interval": "1s"}}, r"rate_limit: not supported"),
        ([1, 2], r"web config: expected a mapping"),
        ({"tls_server_config": {"cert_file": "a.crt"}}, r"tls_server_config\.key_file: required"),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "cert": "PEM"}},
            r"tls_server_config\.cert: inline certificates are not supported",
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "client_auth_type": "Any"}},
            r"tls_server_config\.client_auth_type: unknown value 'Any'",
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "a",
                    "key_file": "b",
                    "client_auth_type": "RequireAnyClientCert",
                }
            },
            r"tls_server_config\.client_auth_type: RequireAnyClientCert is not supported",
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "a",
                    "key_file": "b",
                    "client_auth_type": "RequireAndVerifyClientCert",
                }
            },
            r"tls_server_config\.client_ca_file: required when client_auth_type",
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "min_version": "TLS14"}},
            r"tls_server_config\.min_version: unknown value 'TLS14'",
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "a",
                    "key_file": "b",
                    "min_version": "TLS13",
                    "max_version": "TLS12",
                }
            },
            r"tls_server_config\.min_version: TLS13 is above max_version TLS12",
        ),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "cipher_suites": []}},
            r"tls_server_config\.cipher_suites: not supported",
        ),
        (
            {"http_server_config": {"headers": {"X-Powered-By": "me"}}},
            r"http_server_config\.headers\.X-Powered-By: this header cannot be configured",
        ),
        (
            {"http_server_config": {"headers": {"X-Frame-Options": "allow"}}},
            r"http_server_config\.headers\.X-Frame-Options: 'allow' is not accepted",
        ),
        (
            {"http_server_config": {"headers": {"Content-Security-Policy": "a\r\nX: y"}}},
            r"Content-Security-Policy: expected a single-line string",
        ),
        (
            {"http_server_config": {"http3": True}},
            r"http_server_config\.http3: unknown key",
        ),
        ({"basic_auth_users": {"a:b": "$2b$04$x"}}, r"basic_auth_users\.a:b: a user name"),
        ({"basic_auth_users": "prom"}, r"basic_auth_users: expected a mapping"),
    ],
)
def test_invalid_configs_name_the_key(data: Any, message: str) -> None:
    with pytest.raises(WebConfigError, match=message):
        parse_web_config(data)


def test_a_plain_password_is_refused_without_being_quoted() -> None:
    with pytest.raises(WebConfigError, match=r"basic_auth_users\.prom: expected a bcrypt") as err:
        parse_web_config({"basic_auth_users": {"prom": "hunter2-plain"}})
    assert "hunter2-plain" not in str(err.value)


def test_yaml_error_gives_position_not_content(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users:\n  prom: [$2y$10$secrethashvalue\n")
    with pytest.raises(WebConfigError, match=r"not valid YAML at line \d+") as err:
        load_web_config(path)
    assert "secrethash" not in str(err.value)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match=r"web config .*nope\.yml: cannot read"):
        load_web_config(tmp_path / "nope.yml")


def test_unloadable_certificate_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n")
    with pytest.raises(WebConfigError, match=r"tls_server_config\.cert_file/key_file: cannot load"):
        load_web_config(path)


def test_unloadable_client_ca_names_the_key(tls_dir: Path) -> None:
    (tls_dir / "bad-ca.crt").write_text("not a certificate\n")
    data = {
        "tls_server_config": {
            "cert_file": "server.crt",
            "key_file": "server.key",
            "client_auth_type": "VerifyClientCertIfGiven",
            "client_ca_file": "bad-ca.crt",
        }
    }
    with pytest.raises(WebConfigError, match=r"tls_server_config\.client_ca_file: cannot load"):
        parse_web_config(data, base_dir=tls_dir)


# --- BasicAuthVerifier -------------------------------------------------------------------------


@pytest.fixture
def checkpw_calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Counts real bcrypt checks (the cost the cache exists to avoid)."""
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return bool(real(password, hashed))

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    return calls


async def test_verifier_right_wrong_unknown(hashed: str, checkpw_calls: list[bytes]) -> None:
    verifier = BasicAuthVerifier({"prom": hashed})
    assert await verifier.verify("prom", PASSWORD)
    assert not await verifier.verify("prom", "wrong")
    assert not await verifier.verify("PROM", PASSWORD)
    assert not await verifier.verify("nobody", PASSWORD)
    # An unknown user still costs a bcrypt check, against a hash that is not the user's.
    assert len(checkpw_calls) == 4
    assert checkpw_calls[3] != hashed.encode()
    assert PASSWORD not in repr(verifier)
    assert hashed not in repr(verifier)


async def test_verifier_caches_successes_only(hashed: str, checkpw_calls: list[bytes]) -> None:
    verifier = BasicAuthVerifier({"prom": hashed})
    assert not verifier.cached("prom", PASSWORD)
    assert await verifier.verify("prom", PASSWORD)
    assert verifier.cached("prom", PASSWORD)
    for _ in range(5):
        assert await verifier.verify("prom", PASSWORD)
    assert len(checkpw_calls) == 1

    for _ in range(2):
        assert not await verifier.verify("prom", "wrong")
    assert not verifier.cached("prom", "wrong")
    assert len(checkpw_calls) == 3


async def test_verifier_cache_is_bounded(checkpw_calls: list[bytes]) -> None:
    users = {u: bcrypt.hashpw(u.encode(), bcrypt.gensalt(4)).decode() for u in ("a", "b")}
    verifier = BasicAuthVerifier(users, cache_size=1)
    assert await verifier.verify("a", "a")
    assert await verifier.verify("b", "b")
    assert verifier.cached("b", "b")
    assert not verifier.cached("a", "a")
    assert await verifier.verify("a", "a")
    assert len(checkpw_calls) == 3


async def test_verifier_accepts_htpasswd_2y_hashes() -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$", 1)
    config = parse_web_config({"basic_auth_users": {"prom": hashed}})
    verifier = BasicAuthVerifier(config.basic_auth_users)
    assert await verifier.verify("prom", "pw")
    assert not await verifier.verify("prom", "pW")


async def test_verifier_malformed_hash_fails_closed() -> None:
    verifier = BasicAuthVerifier({"prom": "$2b$04$tooshort"})
    assert not await verifier.verify("prom", "anything")
