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
from typing import Annotated, Any, ClassVar

import bcrypt
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

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
_UNSUPPORTED_CLIENT_AUTH_TYPES = {
    name: f"{name} is not supported (Python's TLS cannot request a client certificate without "
    "verifying it); use VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file"
    for name in ("RequestClientCert", "RequireAnyClientCert")
}

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


# --- the document, as pydantic models ------------------------------------------------------------
#
# The models say what the file may hold; `_describe` below turns pydantic's first error into the
# wording operators read (the key's dotted path, then what is wrong), so the messages are the
# ones the exporter has always given. Checks pydantic has no word for raise `_refuse`.


def _refuse(
    message: str, key: str | None = None, *, instead: str | None = None, **ctx: str
) -> PydanticCustomError:
    """A refusal in the exporter's words (``message`` is formatted with ``ctx``). ``key`` names
    the entry of the mapping being validated that it is about (a header, a user); ``instead``
    names the sibling key to blame rather than the one being validated."""
    where = {"key": key} if key is not None else {"instead": instead} if instead else {}
    return PydanticCustomError("web_config", message, {**ctx, **where})


def _one_of(choices: Mapping[str, object], refused: Mapping[str, str]) -> AfterValidator:
    """A string that must be one of ``choices``; ``refused`` values get their own explanation."""

    def check(value: str) -> str:
        if value in refused:
            raise _refuse(refused[value])
        if value not in choices:
            raise _refuse(
                "unknown value {value}; use one of {choices}",
                value=repr(value),
                choices=", ".join(choices),
            )
        return value

    return AfterValidator(check)


_Text = Annotated[StrictStr, Field(min_length=1)]
_ClientAuthType = Annotated[_Text, _one_of(_CLIENT_AUTH_TYPES, _UNSUPPORTED_CLIENT_AUTH_TYPES)]
_TLSVersion = Annotated[_Text, _one_of(_TLS_VERSIONS, {})]


class _Section(BaseModel):
    """A mapping of known keys; a key set to null counts as absent, as in the exporter-toolkit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Keys the exporter-toolkit knows but cce-exporter refuses, with the reason.
    refused: ClassVar[Mapping[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: object) -> object:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None or k not in cls.model_fields}
        return data


class _TLSSection(_Section):
    refused: ClassVar[Mapping[str, str]] = {
        "cert": "inline certificates are not supported; use cert_file",
        "key": "inline keys are not supported; use key_file",
        "client_ca": "an inline client CA is not supported; use client_ca_file",
        "client_allowed_sans": "not supported by cce-exporter",
        "cipher_suites": "not supported by cce-exporter (OpenSSL's defaults are used)",
        "curve_preferences": "not supported by cce-exporter (OpenSSL's defaults are used)",
    }

    # Declared in the order the values are checked, so that the first mistake is the one named.
    client_auth_type: _ClientAuthType = "NoClientCert"
    client_ca_file: _Text | None = Field(default=None, validate_default=True)
    min_version: _TLSVersion = "TLS12"
    max_version: _TLSVersion = "TLS13"
    prefer_server_cipher_suites: StrictBool | None = None  # accepted, ignored
    cert_file: _Text
    key_file: _Text

    @field_validator("client_ca_file")
    @classmethod
    def _ca_to_verify_with(cls, value: str | None, info: ValidationInfo) -> str | None:
        auth = info.data.get("client_auth_type", "NoClientCert")
        if value is None and auth != "NoClientCert":
            raise _refuse("required when client_auth_type is {auth}", auth=auth)
        return value

    @field_validator("max_version")
    @classmethod
    def _min_not_above_max(cls, value: str, info: ValidationInfo) -> str:
        low = info.data.get("min_version")
        if low is not None and _TLS_VERSIONS[low] > _TLS_VERSIONS[value]:
            raise _refuse(
                "{low} is above max_version {high}", instead="min_version", low=low, high=value
            )
        return value

    def resolve(self, base_dir: Path) -> TLSServerConfig:
        """The settings with file paths relative to ``base_dir`` (an absolute path stays)."""
        return TLSServerConfig(
            cert_file=base_dir / self.cert_file,
            key_file=base_dir / self.key_file,
            client_auth_type=self.client_auth_type,
            client_ca_file=None if self.client_ca_file is None else base_dir / self.client_ca_file,
            min_version=self.min_version,
            max_version=self.max_version,
        )


class _HTTPSection(_Section):
    http2: StrictBool | None = None  # accepted, ignored: the server speaks HTTP/1.1
    headers: dict[str, Any] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _allowed_headers(cls, raw: dict[str, Any]) -> dict[str, str]:
        headers: dict[str, str] = {}
        allowed = {k.lower(): k for k in _ALLOWED_HEADERS}
        for name, value in raw.items():
            canonical = allowed.get(name.lower())
            if canonical is None:
                raise _refuse(
                    "this header cannot be configured; allowed: {allowed}",
                    name,
                    allowed=", ".join(_ALLOWED_HEADERS),
                )
            if value is None or value == "":
                continue  # the toolkit's "unset if blank"
            if not isinstance(value, str) or "\n" in value or "\r" in value:
                raise _refuse("expected a single-line string", name)
            accepted = _ALLOWED_HEADERS[canonical]
            if accepted is not None and value.lower() not in accepted:
                raise _refuse(
                    "{value} is not accepted; use {accepted}",
                    name,
                    value=repr(value),
                    accepted=" or ".join(accepted),
                )
            headers[canonical] = value
        return headers


class _Document(_Section):
    refused: ClassVar[Mapping[str, str]] = {"rate_limit": "not supported by cce-exporter"}

    tls_server_config: _TLSSection | None = None
    http_server_config: _HTTPSection = Field(default_factory=_HTTPSection)
    basic_auth_users: dict[str, Any] = Field(default_factory=dict)

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt_hashes(cls, raw: dict[str, Any]) -> dict[str, str]:
        for user, hashed in raw.items():
            if not user or ":" in user:
                raise _refuse("a user name must be non-empty and contain no ':'", user)
            # The hash is sensitive too: describe it, never quote it.
            if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
                raise _refuse(
                    "expected a bcrypt hash ($2a$/$2b$/$2y$...), e.g. from "
                    "htpasswd -nBC 10 \"\" | tr -d ':\\n'",
                    user,
                )
            if _BCRYPT_HASH.fullmatch(hashed) is None:
                raise _refuse(
                    "not a complete bcrypt hash ({length} characters; 60 expected: $2y$, a cost "
                    "of 04 to 31, $, then 53 characters of ./A-Za-z0-9); was it cut short when "
                    "copied?",
                    user,
                    length=str(len(hashed)),
                )
        return raw


#: The sections by their key, for the names of a section's keys in an error.
_SECTIONS: dict[str, type[_Section]] = {
    "tls_server_config": _TLSSection,
    "http_server_config": _HTTPSection,
}
_RANKS = {"invalid_key": 0, "extra_forbidden": 1, "missing": 2}  # then the values


def _kind_and_place(error: ErrorDetails) -> tuple[str, tuple[str, ...]]:
    kind, loc = error["type"], tuple(str(part) for part in error["loc"])
    if kind == "string_type" and loc[-1:] == ("[key]",):  # a key of a mapping that is no string
        return "invalid_key", loc[:-1]
    return kind, loc


def _first(errors: list[ErrorDetails]) -> ErrorDetails:
    """The error to report, in the order a reader meets them: the top level's keys, then section
    by section: its keys, the missing ones, then the values."""

    def order(error: ErrorDetails) -> tuple[int, int]:
        kind, loc = _kind_and_place(error)
        rank = _RANKS.get(kind, 3) if len(loc) <= 2 else 3  # a header's name is a value
        if len(loc) <= 1 and rank <= 1:
            return (-1, rank)
        return (list(_Document.model_fields).index(loc[0]) if loc else -1, rank)

    return min(errors, key=order)


def _describe(error: ErrorDetails) -> str:
    """Pydantic's error in the words of the exporter-toolkit's keys (never quoting a value that
    may be a secret)."""
    kind, loc = _kind_and_place(error)
    value = error["input"]
    ctx = error.get("ctx") or {}
    if "key" in ctx:
        loc = (*loc, str(ctx["key"]))
    if "instead" in ctx:
        loc = (*loc[:-1], str(ctx["instead"]))
    path = ".".join(loc)
    if kind == "extra_forbidden":
        # A section's key is placed at (section, key), a top-level one at (key,): "" is no section.
        section = _SECTIONS.get(".".join(loc[:-1]), _Document)
        if loc[-1] in section.refused:
            return f"{path}: {section.refused[loc[-1]]}"
        return f"{path}: unknown key; expected one of {', '.join(sorted(section.model_fields))}"
    if kind == "invalid_key":
        return f"{'.'.join(loc[:-1]) or 'web config'}: keys must be strings, got {value!r}"
    if kind == "missing":
        return f"{path}: required when {'.'.join(loc[:-1])} is set"
    if kind in {"string_type", "string_too_short"}:
        return f"{path}: expected a non-empty string"
    if kind == "bool_type":
        return f"{path}: expected true or false"
    if kind in {"model_type", "dict_type"}:
        return f"{path or 'web config'}: expected a mapping, got {type(value).__name__}"
    # The exporter's own refusals (``_refuse``, worded already), and any kind not foreseen above.
    return f"{path or 'web config'}: {error['msg']}"


def parse_web_config(data: object, *, base_dir: Path | str = ".") -> WebConfig:
    """Validate a decoded web config document; relative file paths resolve against ``base_dir``."""
    try:
        doc = _Document.model_validate({} if data is None else data)
    except ValidationError as exc:
        raise WebConfigError(_describe(_first(exc.errors()))) from None
    tls = None if doc.tls_server_config is None else doc.tls_server_config.resolve(Path(base_dir))
    config = WebConfig(
        tls=tls, basic_auth_users=doc.basic_auth_users, headers=doc.http_server_config.headers
    )
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
        return parse_web_config(data, base_dir=p.parent)
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
            # A check from a client with no failed login makes room by refusing a suspect's (one
            # whose wait was cancelled already, and is not yet out of the queue, just leaves it).
            refused = self._waiting[1].pop()
            if not refused.done():
                self.refused += 1
                refused.set_exception(AuthBusyError("refused for a higher priority"))
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
