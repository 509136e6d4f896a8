"""The signer against the official Huawei Cloud SDK signer, and the verifier against both."""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.cce.signing import (
    SignatureError,
    canonical_query,
    canonical_uri,
    parse_authorization,
    sdk_date,
    sign,
    verify,
)

# Text with the characters that trip encoders: spaces, %, +, ~, /, quotes, unicode, emoji.
_ODD = " %+~/?&=#;:@!$'()*,[]\"\\\t^`{}|<>é中\U0001f600"
_texts = st.text(
    alphabet=st.one_of(
        st.sampled_from(_ODD),
        st.sampled_from(string.ascii_letters + string.digits + "-._"),
        st.characters(exclude_categories=("Cs",)),
    ),
    max_size=12,
)
# Dot segments are normalised away by URL libraries before sending, so no client sends them.
_segments = _texts.filter(lambda s: s not in (".", ".."))
_RESERVED = {"host", "x-sdk-date", "authorization", "x-sdk-content-sha256", "content-type"}
_header_names = st.text(
    alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=16
).filter(lambda n: n.lower() not in _RESERVED and n.lower() != "x-project-id")
_ascii_values = st.text(alphabet=string.printable.replace("\r", "").replace("\n", ""), max_size=20)
_unicode_values = st.text(
    alphabet=st.characters(exclude_categories=("Cs", "Cc")) | st.sampled_from(" \t"), max_size=20
)


@dataclass
class Case:
    method: str
    host: str
    segments: list[str]
    trailing_slash: bool
    resource_path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    ak: str
    sk: str
    project_id: str | None
    when: datetime


@st.composite
def cases(draw: st.DrawFn, ascii_headers: bool = False) -> Case:
    segments = draw(st.lists(_segments, min_size=0, max_size=5))
    # The SDK quotes each path parameter with safe="" into the templated resource path.
    resource_path = "/" + "/".join(quote(s, safe="") for s in segments)
    trailing_slash = bool(segments) and draw(st.booleans())
    if trailing_slash:
        resource_path += "/"
    keys = st.text(
        alphabet=st.sampled_from(_ODD) | st.sampled_from(string.ascii_letters), min_size=1
    )
    query = draw(st.lists(st.tuples(keys, _texts), max_size=6))
    if query and draw(st.booleans()):
        query.append(query[0])  # a repeated key and value
    host = draw(st.sampled_from(["cce.region.example.com", "127.0.0.1:8443", "h.example:443"]))
    when = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)))
    headers = {"X-Sdk-Date": sdk_date(when), "Host": host}
    content_type = draw(
        st.sampled_from(
            [None, "application/json", "application/json;charset=utf-8", "text/plain", "x/y"]
        )
    )
    if content_type:
        headers["Content-Type"] = content_type
    values = _ascii_values if ascii_headers else _unicode_values
    extra = draw(st.dictionaries(_header_names, values, max_size=4))
    lowered = {k.lower() for k in headers}
    for name, value in extra.items():
        if name.lower() not in lowered:
            lowered.add(name.lower())
            headers[name] = value
    return Case(
        method=draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "get"])),
        host=host,
        segments=segments,
        trailing_slash=trailing_slash,
        resource_path=resource_path,
        query=query,
        headers=headers,
        body=draw(st.binary(max_size=64)),
        ak=draw(st.text(alphabet=string.ascii_uppercase + string.digits, min_size=1, max_size=20)),
        sk=draw(st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1)),
        project_id=draw(st.none() | st.text(alphabet="0123456789abcdef", min_size=1, max_size=32)),
        when=when,
    )


def official_sign(case: Case) -> tuple[str, str, dict[str, str]]:
    """Sign as the SDK's HTTP path does; returns (Authorization, URL sent, headers signed)."""
    request = SdkRequest(
        method=case.method,
        schema="https",
        host=case.host,
        resource_path=case.resource_path,
        query_params=list(case.query),
        header_params=dict(case.headers),
        body=case.body,
    )
    # process_auth_request submits exactly this call to its executor.
    BasicCredentials(case.ak, case.sk, case.project_id).sign_request(request)
    authorization = request.header_params["Authorization"]
    # The signer may add X-Project-Id and X-Sdk-Content-Sha256; it also rewrites values to
    # latin-1-decoded UTF-8 for sending, so take the added names only and the original values.
    signed = dict(case.headers)
    for name in ("X-Project-Id", "X-Sdk-Content-Sha256"):
        if name in request.header_params:
            signed[name] = request.header_params[name]
    return authorization, request.url, signed


def httpx_url(case: Case) -> str:
    """The request as httpx builds it: unsorted params, sub-delimiters left bare in the path."""
    path = "/" + "/".join(quote(s, safe="!$&'()*+,;=:@~") for s in case.segments)
    if case.trailing_slash:
        path += "/"
    return str(httpx.URL(f"https://{case.host}{path}", params=case.query))


def _settings() -> settings:
    return settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings()
@given(cases())
def test_sign_matches_official_signer(case: Case) -> None:
    expected, sent_url, signed_headers = official_sign(case)
    # The URL the SDK sends (canonical, sorted query) and the URL httpx builds from the
    # unsorted parameters (``+`` for spaces, original order) both sign identically.
    assert sign(case.method, sent_url, signed_headers, case.body, case.ak, case.sk) == expected
    assert (
        sign(case.method, httpx_url(case), signed_headers, case.body, case.ak, case.sk) == expected
    )


@_settings()
@given(cases(ascii_headers=True))
def test_verify_accepts_official_and_own_signatures(case: Case) -> None:
    official, sent_url, signed_headers = official_sign(case)
    lookup = {case.ak: case.sk}.get
    now = case.when.replace(tzinfo=UTC) + timedelta(seconds=30)
    received = {**signed_headers, "Authorization": official}
    assert verify(case.method, sent_url, received, case.body, lookup, now) == case.ak
    ours = sign(case.method, httpx_url(case), signed_headers, case.body, case.ak, case.sk)
    received = {**signed_headers, "Authorization": ours}
    assert verify(case.method, httpx_url(case), received, case.body, lookup, now) == case.ak


# --- fixed examples -----------------------------------------------------------------------------

AK = "AKEXAMPLE0001"
SK = "sk-very-secret-Value"
WHEN = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
URL = "https://cce.region.example.com/api/v3/projects/p1/clusters?type=VirtualMachine&b=2&b=1"


def _signed_request(body: bytes = b'{"a":1}') -> tuple[dict[str, str], bytes]:
    headers = {
        "Host": "cce.region.example.com",
        "X-Sdk-Date": sdk_date(WHEN),
        "Content-Type": "application/json",
        "X-Project-Id": "p1",
    }
    headers["Authorization"] = sign("POST", URL, headers, body, AK, SK)
    return headers, body


def _lookup(ak: str) -> str | None:
    return SK if ak == AK else None


def test_authorization_format_and_date() -> None:
    headers, _ = _signed_request()
    assert sdk_date(WHEN) == "20240506T070809Z"
    ak, signed, signature = parse_authorization(headers["Authorization"])
    assert headers["Authorization"].startswith(f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=")
    assert ak == AK
    assert signed == ["content-type", "host", "x-project-id", "x-sdk-date"]
    assert len(signature) == 64
    assert SK not in headers["Authorization"]


def test_sdk_date_converts_to_utc() -> None:
    from datetime import timezone

    assert sdk_date(datetime(2024, 5, 6, 9, 8, 9, tzinfo=timezone(timedelta(hours=2)))) == (
        "20240506T070809Z"
    )
    assert sdk_date(datetime(2024, 5, 6, 7, 8, 9)) == "20240506T070809Z"


def test_canonical_pieces() -> None:
    assert canonical_uri("/a%20b/c+d/%7e") == "/a%20b/c%2Bd/~/"
    assert canonical_uri("/v3/") == "/v3/"
    assert canonical_uri("") == "/"
    assert canonical_query([("b", "2"), ("a", "x y"), ("b", "1")]) == "a=x%20y&b=1&b=2"


def test_verify_accepts_own_signature() -> None:
    headers, body = _signed_request()
    assert verify("POST", URL, headers, body, _lookup, WHEN + timedelta(minutes=14)) == AK
    # Header names are case-insensitive on the receiving side.
    lowered = {k.lower(): v for k, v in headers.items()}
    assert verify("post", URL, lowered, body, _lookup, WHEN) == AK


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"sk": "wrong"}, "signature mismatch"),
        ({"body": b'{"a":2}'}, "signature mismatch"),
        ({"url": URL.replace("clusters", "clusterz")}, "signature mismatch"),
        ({"url": URL.replace("b=1", "b=3")}, "signature mismatch"),
        ({"url": URL + "&extra=1"}, "signature mismatch"),
        ({"method": "PUT"}, "signature mismatch"),
        ({"header": ("X-Project-Id", "p2")}, "signature mismatch"),
        ({"header": ("Host", "evil.example.com")}, "signature mismatch"),
        ({"now": WHEN + timedelta(minutes=16)}, "request expired"),
        ({"now": WHEN - timedelta(minutes=16)}, "request expired"),
        ({"ak": "AKUNKNOWN"}, "unknown access key"),
        ({"auth": "garbage"}, "malformed Authorization header"),
        ({"auth": "SDK-HMAC-SHA256 Access=AK, Signature=00"}, "malformed Authorization header"),
        ({"auth": "Bearer abc"}, "malformed Authorization header"),
        ({"alg": "SDK-HMAC-SM3"}, "unsupported signing algorithm"),
        ({"header": ("X-Sdk-Date", "yesterday")}, "malformed X-Sdk-Date header"),
        ({"drop": "Authorization"}, "missing Authorization header"),
        ({"drop": "X-Project-Id"}, "signed header x-project-id missing"),
    ],
)
def test_verify_rejects(change: dict[str, object], reason: str) -> None:
    body = b'{"a":1}'
    url = URL
    method = "POST"
    now = WHEN
    headers, _ = _signed_request(body)
    if "sk" in change:
        headers["Authorization"] = sign(
            "POST",
            URL,
            {k: v for k, v in headers.items() if k != "Authorization"},
            body,
            AK,
            str(change["sk"]),
        )
    if "ak" in change:
        headers["Authorization"] = headers["Authorization"].replace(AK, str(change["ak"]))
    if "alg" in change:
        headers["Authorization"] = headers["Authorization"].replace(
            "SDK-HMAC-SHA256", str(change["alg"])
        )
    if "auth" in change:
        headers["Authorization"] = str(change["auth"])
    if "header" in change:
        name, value = change["header"]  # type: ignore[misc]
        headers[name] = value
    if "drop" in change:
        del headers[str(change["drop"])]
    body = change.get("body", body)  # type: ignore[assignment]
    url = str(change.get("url", url))
    method = str(change.get("method", method))
    now = change.get("now", now)  # type: ignore[assignment]
    with pytest.raises(SignatureError) as excinfo:
        verify(method, url, headers, body, _lookup, now)
    assert str(excinfo.value) == reason
    assert SK not in str(excinfo.value)


def test_verify_requires_date_and_host_signed() -> None:
    # A date outside the signature could be refreshed by whoever replays a captured request.
    headers = {"Host": "h", "X-Sdk-Date": sdk_date(WHEN)}
    auth = sign("GET", "https://h/", headers, b"", AK, SK).replace("host;x-sdk-date", "host")
    with pytest.raises(SignatureError, match="x-sdk-date is not a signed header"):
        verify("GET", "https://h/", {**headers, "Authorization": auth}, b"", _lookup, WHEN)


def test_unsigned_payload_only_when_declared_and_signed() -> None:
    headers = {
        "Host": "h",
        "X-Sdk-Date": sdk_date(WHEN),
        "Content-Type": "application/octet-stream",
        "X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD",
    }
    headers["Authorization"] = sign("PUT", "https://h/x", headers, b"blob", AK, SK)
    # The body is not covered by design of UNSIGNED-PAYLOAD; anything else still is.
    assert verify("PUT", "https://h/x", headers, b"other", _lookup, WHEN) == AK
    headers["X-Sdk-Content-Sha256"] = "0" * 64
    with pytest.raises(SignatureError, match="signature mismatch"):
        verify("PUT", "https://h/x", headers, b"blob", _lookup, WHEN)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"Host": "h"}, "X-Sdk-Date header missing"),
        ({"X-Sdk-Date": "20240101T000000Z"}, "Host header missing"),
        ({"Host": "h", "X-Sdk-Date": "2024-01-01"}, "malformed X-Sdk-Date header"),
    ],
)
def test_sign_refuses_incomplete_headers(headers: dict[str, str], message: str) -> None:
    with pytest.raises(SignatureError, match=message) as excinfo:
        sign("GET", "https://h/", headers, b"", AK, SK)
    assert SK not in str(excinfo.value)
