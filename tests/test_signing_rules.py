"""AK/SK signing at its edges: refusals with their exact reasons, the clock's bounds, query
parsing corner cases, and a declared body hash that cannot vouch for a changed body."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from exporter.cce.signing import (
    SignatureError,
    parse_authorization,
    query_pairs,
    sdk_date,
    sign,
    verify,
)

URL = "https://cce.example.com/api/v3/projects/p1/clusters?b=2&a=1"
AK, SK = "AKIDEXAMPLE", "sk-secret"
DATE = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


def _headers(**extra: str) -> dict[str, str]:
    return {"Host": "cce.example.com", "X-Sdk-Date": sdk_date(DATE), **extra}


def _signed(body: bytes = b"", **extra: str) -> dict[str, str]:
    headers = _headers(**extra)
    headers["Authorization"] = sign("POST", URL, headers, body, AK, SK)
    return headers


def _verify(headers: dict[str, str], body: bytes = b"", now: datetime = DATE) -> str:
    return verify("POST", URL, headers, body, {AK: SK}.get, now)


@pytest.fixture
def shanghai_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is not UTC (as on many a developer's laptop)."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    assert time.timezone == -8 * 3600
    yield
    monkeypatch.undo()
    time.tzset()


def test_the_date_is_utc_whatever_the_local_zone(shanghai_local_time: None) -> None:
    berlin = timezone(timedelta(hours=1))
    assert sdk_date(datetime(2027, 3, 1, 13, 0, 5, tzinfo=berlin)) == "20270301T120005Z"
    assert sdk_date(datetime(2027, 3, 1, 12, 0, 5)) == "20270301T120005Z"  # naive: taken as UTC


@pytest.mark.parametrize(
    ("ak", "sk"), [("", SK), (AK, ""), ("", "")], ids=["no-ak", "no-sk", "neither"]
)
def test_signing_needs_both_keys(ak: str, sk: str) -> None:
    with pytest.raises(SignatureError) as caught:
        sign("GET", URL, _headers(), b"", ak, sk)
    assert str(caught.value) == "an access key and a secret key are required"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"Host": "cce.example.com"}, "X-Sdk-Date header missing"),
        ({"X-Sdk-Date": "20270301T120000Z"}, "Host header missing"),
    ],
)
def test_signing_needs_the_date_and_the_host(headers: dict[str, str], message: str) -> None:
    with pytest.raises(SignatureError) as caught:
        sign("GET", URL, headers, b"", AK, SK)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "signed", ["Host;x-sdk-date", "host;;x-sdk-date", "host;X-Sdk-Date"], ids=str
)
def test_signed_header_names_are_lowercase_and_present(signed: str) -> None:
    value = f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders={signed}, Signature=abc123"
    with pytest.raises(SignatureError) as caught:
        parse_authorization(value)
    assert str(caught.value) == "malformed SignedHeaders"


def test_query_pairs_corner_cases() -> None:
    assert query_pairs("a=1&&b=2&") == [("a", "1"), ("b", "2")]
    assert query_pairs("filter=a=b&x") == [("filter", "a=b"), ("x", "")]
    assert query_pairs("name=a+b%2Bc") == [("name", "a b+c")]


def test_a_naive_clock_is_utc_and_the_skew_bound_is_inclusive() -> None:
    headers = _signed()
    assert _verify(headers, now=DATE.replace(tzinfo=None)) == AK
    assert _verify(headers, now=DATE + timedelta(minutes=15)) == AK
    assert _verify(headers, now=DATE - timedelta(minutes=15)) == AK
    for late in (DATE + timedelta(minutes=15, seconds=1), DATE - timedelta(minutes=15, seconds=1)):
        with pytest.raises(SignatureError) as caught:
            _verify(headers, now=late)
        assert str(caught.value) == "request expired"


def test_a_declared_body_hash_does_not_vouch_for_a_changed_body() -> None:
    body = b'{"spec": {"replicas": 1}}'
    headers = _signed(body, **{"X-Sdk-Content-Sha256": hashlib.sha256(body).hexdigest()})
    assert _verify(headers, body) == AK
    with pytest.raises(SignatureError) as caught:
        _verify(headers, b'{"spec": {"replicas": 100}}')
    assert str(caught.value) == "signature mismatch"
    # UNSIGNED-PAYLOAD, itself signed, is the one declared value taken as it is.
    unsigned = _signed(body, **{"X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"})
    assert _verify(unsigned, b"anything") == AK
