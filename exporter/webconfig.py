"""The web configuration file: TLS and basic auth for the HTTP server.

The format is the Prometheus exporter-toolkit one (``--web.config.file`` of node_exporter and
friends), so one file can serve every exporter on a host::

    tls_server_config:
      cert_file: server.crt            # relative paths are relative to this file
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: ca.crt
      min_version: TLS12
    http_server_config:
      headers:
        Strict-Transport-Security: max-age=31536000
    basic_auth_users:
      prometheus: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG

Supported subset, and why the rest is refused rather than ignored (a security setting silently
dropped is worse than a start-up error):

- ``cert``/``key``/``client_ca`` inline PEM: refused, Python's TLS loads the chain from files.
- ``client_auth_type`` ``RequestClientCert`` / ``RequireAnyClientCert``: refused, Python's TLS
  cannot ask for a client certificate without verifying it.
- ``client_allowed_sans``, ``cipher_suites``, ``curve_preferences``, ``rate_limit``: refused.
- ``prefer_server_cipher_suites`` and ``http_server_config.http2`` are accepted and ignored (the
  server speaks HTTP/1.1; OpenSSL's defaults choose the ciphers).

The file is read once at start-up (the toolkit re-reads it per request); restart to apply changes.
Every hash must be a complete bcrypt hash (``$2a$``/``$2b$``/``$2y$``, a cost of 04 to 31, 53
characters of salt and digest): a truncated or unknown one is refused at start-up, not found out at
the first login.

:class:`BasicAuthVerifier` checks ``Authorization: Basic`` credentials against the bcrypt hashes.
bcrypt is slow on purpose, so a successful check is remembered in memory, keyed by an HMAC-SHA-256
(with a per-process random key) of the user, the presented password and the stored hash: the plain
password is never kept, and a scrape every 15 s does not pay bcrypt's cost each time (failures are
never remembered, as in the exporter-toolkit). bcrypt runs in its own small thread pool, never in
asyncio's default one (the exposition is rendered there), and at most ``max_pending`` checks wait or
wait: past that, :class:`AuthBusyError` is raised at once (the server answers 503), so a
flood of wrong passwords costs at most ``workers`` cores and cannot queue up without end. Checks
from connections that already failed a login ("suspects") wait behind the others and are the ones
refused to make room, so a login on a clean connection gets through a flood sent over keep-alive
connections. Identical checks running at the same time share one bcrypt.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import re
import secrets
import ssl
from collections import OrderedDict, deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

__all__ = [
    "AuthBusyError",
    "BasicAuthVerifier",
    "TLSServerConfig",
    "WebConfig",
    "WebConfigError",
    "load_web_config",
    "parse_web_config",
]


class WebConfigError(ValueError):
    """The web config file is unreadable or invalid; the message names the file and the key."""


class AuthBusyError(RuntimeError):
    """Too many password checks are waiting: this one is refused without being made."""


#: A complete bcrypt hash: version, two-digit cost (04-31), 22 characters of salt, 31 of digest.
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(?:0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


_CLIENT_AUTH_TYPES: dict[str, ssl.VerifyMode] = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_UNSUPPORTED_CLIENT_AUTH_TYPES = ("RequestClientCert", "RequireAnyClientCert")

_TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# The toolkit allows exactly these headers; values checked where it checks them.
_ALLOWED_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Content-Security-Policy": None,
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
    "X-XSS-Protection": None,
    "Strict-Transport-Security": None,
}

_TLS_KEYS = {
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
    "prefer_server_cipher_suites",
}
_TLS_REFUSED = {
    "cert": "inline certificates are not supported; use cert_file",
    "key": "inline keys are not supported; use key_file",
    "client_ca": "an inline client CA is not supported; use client_ca_file",
    "client_allowed_sans": "not supported by cce-exporter",
    "cipher_suites": "not supported by cce-exporter (OpenSSL's defaults are used)",
    "curve_preferences": "not supported by cce-exporter (OpenSSL's defaults are used)",
}
_TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users"}
_TOP_REFUSED = {"rate_limit": "not supported by cce-exporter"}
_HTTP_KEYS = {"headers", "http2"}


@dataclass(frozen=True)
class TLSServerConfig:
    """``tls_server_config``: the server certificate and the client-certificate policy."""

    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"

    def ssl_context(self) -> ssl.SSLContext:
        """A server-side context; raises :class:`WebConfigError` when a file does not load."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _TLS_VERSIONS[self.min_version]
        ctx.maximum_version = _TLS_VERSIONS[self.max_version]
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(
                f"tls_server_config.cert_file/key_file: cannot load {self.cert_file} with "
                f"{self.key_file}: {_describe_os_error(exc)}"
            ) from None
        ctx.verify_mode = _CLIENT_AUTH_TYPES[self.client_auth_type]
        if self.client_ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=self.client_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise WebConfigError(
                    f"tls_server_config.client_ca_file: cannot load {self.client_ca_file}: "
                    f"{_describe_os_error(exc)}"
                ) from None
        return ctx


@dataclass(frozen=True)
class WebConfig:
    """The parsed web config. ``basic_auth_users`` (user -> bcrypt hash) stays out of the repr."""

    tls: TLSServerConfig | None = None
    basic_auth_users: Mapping[str, str] = field(default_factory=dict, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def auth_enabled(self) -> bool:
        return bool(self.basic_auth_users)


def _describe_os_error(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _mapping(value: object, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
    for k in value:
        if not isinstance(k, str):
            raise WebConfigError(f"{key}: keys must be strings, got {k!r}")
    return value


def _check_keys(
    data: Mapping[str, Any], prefix: str, allowed: set[str], refused: Mapping[str, str]
) -> None:
    for k in data:
        name = f"{prefix}{k}"
        if k in refused:
            raise WebConfigError(f"{name}: {refused[k]}")
        if k not in allowed:
            raise WebConfigError(
                f"{name}: unknown key; expected one of {', '.join(sorted(allowed))}"
            )


def _string(value: object, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise WebConfigError(f"{key}: expected a non-empty string")
    return value


def _path(value: object, key: str, base_dir: Path) -> Path:
    path = Path(_string(value, key))
    return path if path.is_absolute() else base_dir / path


def _choice(value: object, key: str, choices: Mapping[str, object], default: str) -> str:
    if value is None:
        return default
    text = _string(value, key)
    if text not in choices:
        raise WebConfigError(f"{key}: unknown value {text!r}; use one of {', '.join(choices)}")
    return text


def _parse_tls(raw: Mapping[str, Any], base_dir: Path) -> TLSServerConfig:
    p = "tls_server_config."
    _check_keys(raw, p, _TLS_KEYS, _TLS_REFUSED)
    for key in ("cert_file", "key_file"):
        if raw.get(key) is None:
            raise WebConfigError(f"{p}{key}: required when tls_server_config is set")
    auth_type = raw.get("client_auth_type")
    if auth_type in _UNSUPPORTED_CLIENT_AUTH_TYPES:
        raise WebConfigError(
            f"{p}client_auth_type: {auth_type} is not supported (Python's TLS cannot request a "
            "client certificate without verifying it); use VerifyClientCertIfGiven or "
            "RequireAndVerifyClientCert with client_ca_file"
        )
    client_auth_type = _choice(
        auth_type, f"{p}client_auth_type", _CLIENT_AUTH_TYPES, "NoClientCert"
    )
    client_ca_file = (
        None
        if raw.get("client_ca_file") is None
        else _path(raw["client_ca_file"], f"{p}client_ca_file", base_dir)
    )
    if client_auth_type != "NoClientCert" and client_ca_file is None:
        raise WebConfigError(
            f"{p}client_ca_file: required when client_auth_type is {client_auth_type}"
        )
    min_version = _choice(raw.get("min_version"), f"{p}min_version", _TLS_VERSIONS, "TLS12")
    max_version = _choice(raw.get("max_version"), f"{p}max_version", _TLS_VERSIONS, "TLS13")
    if _TLS_VERSIONS[min_version] > _TLS_VERSIONS[max_version]:
        raise WebConfigError(f"{p}min_version: {min_version} is above max_version {max_version}")
    prefer = raw.get("prefer_server_cipher_suites")
    if prefer is not None and not isinstance(prefer, bool):
        raise WebConfigError(f"{p}prefer_server_cipher_suites: expected true or false")
    return TLSServerConfig(
        cert_file=_path(raw["cert_file"], f"{p}cert_file", base_dir),
        key_file=_path(raw["key_file"], f"{p}key_file", base_dir),
        client_auth_type=client_auth_type,
        client_ca_file=client_ca_file,
        min_version=min_version,
        max_version=max_version,
    )


def _parse_headers(raw: Mapping[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    allowed = {k.lower(): k for k in _ALLOWED_HEADERS}
    for name, value in raw.items():
        key = f"http_server_config.headers.{name}"
        canonical = allowed.get(name.lower())
        if canonical is None:
            raise WebConfigError(
                f"{key}: this header cannot be configured; allowed: {', '.join(_ALLOWED_HEADERS)}"
            )
        if value is None or value == "":
            continue  # the toolkit's "unset if blank"
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            raise WebConfigError(f"{key}: expected a single-line string")
        accepted = _ALLOWED_HEADERS[canonical]
        if accepted is not None and value.lower() not in accepted:
            raise WebConfigError(f"{key}: {value!r} is not accepted; use {' or '.join(accepted)}")
        headers[canonical] = value
    return headers


def _parse_users(raw: Mapping[str, Any]) -> dict[str, str]:
    users: dict[str, str] = {}
    for user, hashed in raw.items():
        key = f"basic_auth_users.{user}"
        if not user or ":" in user:
            raise WebConfigError(f"{key}: a user name must be non-empty and contain no ':'")
        # The hash is sensitive too: describe it, never quote it.
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise WebConfigError(
                f"{key}: expected a bcrypt hash ($2a$/$2b$/$2y$...), e.g. from "
                "htpasswd -nBC 10 \"\" | tr -d ':\\n'"
            )
        if _BCRYPT_HASH.fullmatch(hashed) is None:
            raise WebConfigError(
                f"{key}: not a complete bcrypt hash ({len(hashed)} characters; 60 expected: "
                "$2y$, a cost of 04 to 31, $, then 53 characters of ./A-Za-z0-9); was it cut "
                "short when copied?"
            )
        users[user] = hashed
    return users


def parse_web_config(data: object, *, base_dir: Path | str = ".") -> WebConfig:
    """Validate a decoded web config document; relative file paths resolve against ``base_dir``."""
    base = Path(base_dir)
    top = _mapping(data, "web config")
    _check_keys(top, "", _TOP_KEYS, _TOP_REFUSED)
    tls_raw = top.get("tls_server_config")
    tls = None if tls_raw is None else _parse_tls(_mapping(tls_raw, "tls_server_config"), base)
    http = _mapping(top.get("http_server_config"), "http_server_config")
    _check_keys(http, "http_server_config.", _HTTP_KEYS, {})
    if http.get("http2") is not None and not isinstance(http["http2"], bool):
        raise WebConfigError("http_server_config.http2: expected true or false")
    headers = _parse_headers(_mapping(http.get("headers"), "http_server_config.headers"))
    users = _parse_users(_mapping(top.get("basic_auth_users"), "basic_auth_users"))
    config = WebConfig(tls=tls, basic_auth_users=users, headers=headers)
    if tls is not None:
        tls.ssl_context()  # fail at start-up, not at the first handshake
    return config


def load_web_config(path: str | Path) -> WebConfig:
    """Read and validate a web config file; :class:`WebConfigError` names the file and the key."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WebConfigError(f"web config {p}: cannot read: {_describe_os_error(exc)}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # The YAML error quotes the offending line, which may hold a hash: give the position only.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise WebConfigError(f"web config {p}: not valid YAML{where}") from None
    try:
        return parse_web_config({} if data is None else data, base_dir=p.parent)
    except WebConfigError as exc:
        raise WebConfigError(f"web config {p}: {exc}") from None


# A valid hash of a random password: unknown users are checked against it so that a wrong user
# name costs as much time as a wrong password (no user enumeration by timing).
@functools.cache
def _dummy_hash() -> bytes:
    return bytes(bcrypt.hashpw(secrets.token_bytes(16).hex().encode(), bcrypt.gensalt(10)))


class BasicAuthVerifier:
    """Checks basic-auth credentials against bcrypt hashes, remembering successes in memory.

    ``workers`` threads run bcrypt (their own pool); at most ``max_pending`` checks wait for them,
    more raise :class:`AuthBusyError` without any bcrypt.
    """

    def __init__(
        self,
        users: Mapping[str, str],
        *,
        cache_size: int = 256,
        workers: int = 1,
        max_pending: int = 8,
    ) -> None:
        self._users = {u: h.encode() for u, h in users.items()}
        self._key = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="bcrypt")
        self._max_pending = max(1, max_pending)
        self._free = max(1, workers)  # bcrypt slots not in use
        # Checks waiting for a slot: [0] clients with no failed login, [1] suspects.
        self._waiting: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (
            deque(),
            deque(),
        )
        self._inflight: dict[bytes, asyncio.Future[bool]] = {}
        self.refused = 0  # checks refused because too many were pending
        if self._users:
            _dummy_hash()  # made now, at start-up, not on the event loop at the first login

    def __repr__(self) -> str:
        return f"BasicAuthVerifier(users={sorted(self._users)!r})"

    def _digest(self, user: str, password: bytes, hashed: bytes) -> bytes:
        msg = b"\0".join((user.encode(), password, hashed))
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    @staticmethod
    def _checkpw(password: bytes, hashed: bytes) -> bool:
        try:
            return bool(bcrypt.checkpw(password, hashed))
        except ValueError:  # a malformed hash is a failed check, never a crash
            return False

    async def _acquire(self, suspect: bool) -> None:
        """A bcrypt slot: at once when one is free, else in the queue (suspects behind the rest);
        :class:`AuthBusyError` when the queue is full, after a suspect made room if possible."""
        if self._free > 0 and not self._waiting[0] and not self._waiting[1]:
            self._free -= 1
            return
        if len(self._waiting[0]) + len(self._waiting[1]) >= self._max_pending:
            if suspect or not self._waiting[1]:
                self.refused += 1
                raise AuthBusyError("too many password checks are waiting")
            # A check from a client with no failed login makes room by refusing a suspect's.
            self.refused += 1
            self._waiting[1].pop().set_exception(AuthBusyError("refused for a higher priority"))
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane = self._waiting[1 if suspect else 0]
        lane.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter in lane:
                lane.remove(waiter)
            elif waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release()  # given a slot just as it was cancelled
            raise

    def _release(self) -> None:
        for lane in self._waiting:
            while lane:
                waiter = lane.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._free += 1

    async def _check(self, digest: bytes, password: bytes, hashed: bytes, suspect: bool) -> bool:
        shared = self._inflight.get(digest)
        if shared is not None:  # the same credentials are being checked: wait for that one
            return await asyncio.shield(shared)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._inflight[digest] = future
        try:
            try:
                await self._acquire(suspect)
            except AuthBusyError as exc:
                future.set_exception(exc)
                future.exception()  # retrieved: sharers get it too, no "never retrieved" warning
                raise
            except asyncio.CancelledError:
                future.cancel()
                raise
            try:
                result = await asyncio.shield(
                    loop.run_in_executor(self._pool, self._checkpw, password, hashed)
                )
            finally:
                self._release()
            future.set_result(result)
            return result
        finally:
            if self._inflight.get(digest) is future:
                del self._inflight[digest]

    async def verify(self, user: str, password: str, *, suspect: bool = False) -> bool:
        """True when ``password`` is right for ``user``; bcrypt runs in the verifier's own pool.

        Raises :class:`AuthBusyError` when ``max_pending`` checks are already waiting. A
        ``suspect`` check (from a connection that already failed a login) waits behind the others
        and is the one refused to make room for them."""
        pw = password.encode("utf-8", "surrogateescape")
        hashed = self._users.get(user)
        if hashed is None:
            # As long as a wrong password, so that user names cannot be probed by timing.
            dummy = _dummy_hash()
            await self._check(self._digest(user, pw, dummy), pw, dummy, suspect)
            return False
        digest = self._digest(user, pw, hashed)
        if digest in self._cache:
            self._cache.move_to_end(digest)
            return True
        if not await self._check(digest, pw, hashed, suspect):
            return False
        self._cache[digest] = None
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return True

    def cached(self, user: str, password: str) -> bool:
        """Whether a check for these credentials would be answered from the cache (for tests)."""
        hashed = self._users.get(user)
        if hashed is None:
            return False
        return (
            self._digest(user, password.encode("utf-8", "surrogateescape"), hashed) in self._cache
        )

    async def aclose(self) -> None:
        """Stop the pool's threads (checks still queued are dropped)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
