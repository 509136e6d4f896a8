"""Huawei Cloud ``SDK-HMAC-SHA256`` request signing and verification, as pure functions.

This reproduces the signer of the official Python SDK (``huaweicloudsdkcore.signer.Signer``,
reached through ``BasicCredentials.process_auth_request``) byte for byte; a property test compares
the two. The algorithm::

    CanonicalRequest = METHOD \\n CanonicalURI \\n CanonicalQuery \\n CanonicalHeaders \\n
                       SignedHeaders \\n hex(sha256(body))
    StringToSign     = "SDK-HMAC-SHA256" \\n X-Sdk-Date \\n hex(sha256(CanonicalRequest))
    Signature        = hex(hmac_sha256(SK, StringToSign))
    Authorization    = "SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<h1;h2>, Signature=<hex>"

* CanonicalURI: the path is percent-decoded, split on ``/``, every segment re-encoded with only
  ``~`` and unreserved characters left bare, and a trailing ``/`` is always appended.
* CanonicalQuery: the ``(key, value)`` pairs sorted (key first, then value; repeated keys kept),
  both re-encoded the same way, joined with ``&``; a key without ``=`` has an empty value.
* SignedHeaders: every header given, lower-cased and sorted, except names containing ``_``;
  CanonicalHeaders is ``name:value-stripped\\n`` for each of them.
* The body hash is the hash of the empty string for an empty body, and the value of an
  ``X-Sdk-Content-Sha256`` header (``UNSIGNED-PAYLOAD``) when one is given.

:func:`sign` is the client half (it needs ``X-Sdk-Date`` and ``Host`` among the headers);
:func:`verify` is the server half the simulator uses. Neither puts the SK in any message.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote, unquote_plus, urlsplit

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
HEADER_DATE = "X-Sdk-Date"
HEADER_HOST = "Host"
HEADER_CONTENT_SHA256 = "X-Sdk-Content-Sha256"
HEADER_AUTHORIZATION = "Authorization"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_EMPTY_HASH = hashlib.sha256(b"").hexdigest()

_AUTH_RE = re.compile(
    r"^\s*(?P<alg>\S+)\s+Access=(?P<ak>[^,\s]+)\s*,\s*SignedHeaders=(?P<signed>[^,\s]+)\s*,"
    r"\s*Signature=(?P<sig>[0-9a-fA-F]+)\s*$"
)


class SignatureError(Exception):
    """A request could not be signed, or its signature was refused; the message says why."""


def sdk_date(now: datetime) -> str:
    """``now`` in the ``X-Sdk-Date`` format (UTC, ``%Y%m%dT%H%M%SZ``); naive times are UTC."""
    if now.tzinfo is not None:
        now = now.astimezone(UTC)
    return now.strftime(DATE_FORMAT)


def parse_sdk_date(value: str) -> datetime:
    """An ``X-Sdk-Date`` value as an aware UTC datetime; :class:`SignatureError` if malformed."""
    return _parse_sdk_date(value)


@functools.lru_cache(maxsize=8)
def _parse_sdk_date(value: str) -> datetime:
    # Cached: every request signed in the same second carries the same date (strptime is slow).
    try:
        # strptime as the official signer uses it: the value is parsed, then re-formatted into
        # the string to sign, so leniencies of strptime (one-digit fields) carry over exactly.
        return datetime.strptime(value, DATE_FORMAT).replace(tzinfo=UTC)
    except (TypeError, ValueError):
        raise SignatureError("malformed X-Sdk-Date header") from None


@functools.lru_cache(maxsize=8)
def _format_date(date: datetime) -> str:
    return date.strftime(DATE_FORMAT)


def _encode(value: str) -> str:
    return quote(value, safe="~")


@functools.lru_cache(maxsize=8192)
def canonical_uri(path: str) -> str:
    """The canonical form of a raw (percent-encoded) URL path (cached: the same paths are
    signed every collection cycle)."""
    segments = unquote(path or "/").split("/")
    url_path = "/".join(_encode(segment) for segment in segments)
    if not url_path.endswith("/"):
        url_path += "/"
    return url_path


def query_pairs(query: str) -> list[tuple[str, str]]:
    """Decode a raw query string into ``(key, value)`` pairs, in order, repeats kept.

    ``+`` means a space, as in the form encoding httpx and most servers use; the official SDK
    never puts a bare ``+`` on the wire (it sends ``%2B``), so both readings agree for it.
    """
    pairs: list[tuple[str, str]] = []
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((unquote_plus(key), unquote_plus(value)))
    return pairs


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """The canonical query string of decoded ``(key, value)`` pairs."""
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(pairs))


def _header_lookup(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _payload_hash(body: bytes, content_sha256: str | None) -> str:
    if not body:
        return _EMPTY_HASH
    if content_sha256:
        return content_sha256
    return hashlib.sha256(body).hexdigest()


def _signature(
    method: str,
    url: str,
    header_values: Mapping[str, str],
    signed: list[str],
    payload_hash: str,
    date: datetime,
    sk: str,
) -> str:
    parts = urlsplit(url)
    canonical_headers = "".join(f"{name}:{header_values[name]}\n" for name in signed)
    canonical_request = "\n".join(
        (
            method.upper(),
            canonical_uri(parts.path),
            canonical_query(query_pairs(parts.query)),
            canonical_headers,
            ";".join(signed),
            payload_hash,
        )
    )
    string_to_sign = "\n".join(
        (
            ALGORITHM,
            _format_date(date),
            hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
        )
    )
    return hmac.new(sk.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def sign(method: str, url: str, headers: Mapping[str, str], body: bytes, ak: str, sk: str) -> str:
    """The ``Authorization`` header value for a request.

    ``url`` is the URL as sent (path and query percent-encoded); ``headers`` are exactly the
    headers to sign and must contain ``X-Sdk-Date`` and ``Host``. Every header whose name has no
    ``_`` is signed, as the official signer does.
    """
    if not ak or not sk:
        raise SignatureError("an access key and a secret key are required")
    raw_date = _header_lookup(headers, HEADER_DATE)
    if raw_date is None:
        raise SignatureError("X-Sdk-Date header missing")
    if _header_lookup(headers, HEADER_HOST) is None:
        raise SignatureError("Host header missing")
    date = parse_sdk_date(raw_date)
    values: dict[str, str] = {}
    signed: list[str] = []
    for key, value in headers.items():
        lowered = key.lower()
        values[lowered] = str(value).strip()
        if "_" not in key:
            signed.append(lowered)
    signed.sort()
    payload_hash = _payload_hash(body, _header_lookup(headers, HEADER_CONTENT_SHA256))
    signature = _signature(method, url, values, signed, payload_hash, date, sk)
    return f"{ALGORITHM} Access={ak}, SignedHeaders={';'.join(signed)}, Signature={signature}"


def parse_authorization(value: str) -> tuple[str, list[str], str]:
    """``(ak, signed_headers, signature)`` of an ``Authorization`` value, or SignatureError."""
    m = _AUTH_RE.match(value)
    if m is None:
        raise SignatureError("malformed Authorization header")
    if m.group("alg") != ALGORITHM:
        raise SignatureError("unsupported signing algorithm")
    signed = m.group("signed").split(";")
    if any(not name or name != name.lower() for name in signed):
        raise SignatureError("malformed SignedHeaders")
    return m.group("ak"), signed, m.group("sig").lower()


def verify(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    lookup_sk: Callable[[str], str | None],
    now: datetime,
    max_skew: timedelta = timedelta(minutes=15),
) -> str:
    """Check a signed request (server side) and return its access key.

    ``headers`` is a case-insensitive or plain mapping of the headers received. Raises
    :class:`SignatureError` with ``missing Authorization header``, ``malformed ...``,
    ``unsupported signing algorithm``, ``request expired``, ``unknown access key`` or
    ``signature mismatch``.
    """
    authorization = _header_lookup(headers, HEADER_AUTHORIZATION)
    if authorization is None:
        raise SignatureError("missing Authorization header")
    ak, signed, signature = parse_authorization(authorization)
    # The date and host must be covered, or a captured request could be replayed later or
    # elsewhere with a fresh unsigned date.
    for required in ("x-sdk-date", "host"):
        if required not in signed:
            raise SignatureError(f"{required} is not a signed header")
    values: dict[str, str] = {}
    for name in signed:
        value = _header_lookup(headers, name)
        if value is None:
            raise SignatureError(f"signed header {name} missing")
        values[name] = str(value).strip()
    date = parse_sdk_date(values["x-sdk-date"])
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if abs(now - date) > max_skew:
        raise SignatureError("request expired")
    sk = lookup_sk(ak)
    if not sk:
        raise SignatureError("unknown access key")
    # Trust X-Sdk-Content-Sha256 only for UNSIGNED-PAYLOAD and only when it is itself signed;
    # any other value is checked against the body by hashing the body ourselves.
    declared = values.get(HEADER_CONTENT_SHA256.lower())
    payload_hash = _payload_hash(body, declared if declared == UNSIGNED_PAYLOAD else None)
    expected = _signature(method, url, values, signed, payload_hash, date, sk)
    if not hmac.compare_digest(expected, signature):
        raise SignatureError("signature mismatch")
    return ak
