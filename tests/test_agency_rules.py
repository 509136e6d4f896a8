"""The instance agency's temporary credentials at their edges, against a fake metadata service.

The metadata service and the API are ``httpx.MockTransport`` handlers (no network, no
simulator); time is a fake clock and the waits between attempts are recorded, not slept. What is
held here: the session token (asked for with its TTL, reused until 0.9 of it, renewed on a 401,
done without where the service does not know it), the credentials' refresh instant (the margin,
at most half the lifetime), the attempts and the doubling waits (capped at a minute) of a failed
fetch, the edges of expiry, the exact errors of a failed exchange, a 401 from the API, and
concurrent requests sharing one fetch.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

import exporter.cce.agency as agency_module
from exporter.cce.agency import (
    METADATA_SECURITYKEY_PATH,
    METADATA_TOKEN_PATH,
    AgencyAuth,
    TemporaryCredentials,
)
from exporter.cce.errors import CCEError, CredentialsError, RequestTimeout, TransportError
from exporter.cce.http import PROXY_OFF, HttpOptions, build_http_client
from exporter.cce.signing import sdk_date

T0 = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
ENDPOINT = "http://169.254.169.254"
API = "https://cce.example.com/api/v3/projects/p1/clusters"
US = timedelta(microseconds=1)
#: The session token is asked for again after 0.9 of its 6-hour TTL.
SESSION_REUSE = timedelta(seconds=6 * 3600 * 0.9)
OUTAGE = "__outage__"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Metadata:
    """A fake ECS metadata service: session tokens and security keys, every request recorded.

    Keys are numbered (``TMPAK1``, ``TMPAK2``...) and valid for ``lifetime`` from the clock's
    time when they are handed out. ``key_faults`` (responses or exceptions) are answered to the
    next key requests, before any good key; ``key_down`` answers every key request with a 503.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.requests: list[httpx.Request] = []
        self.options: list[HttpOptions] = []
        self.lifetime = timedelta(hours=1)
        self.issued = 0
        self.sessions = 0
        self.session_status = 200
        self.session_statuses: list[int] = []  # of the next session token requests, in order
        self.session_body: bytes | None = None  # None: "session-N"
        self.session_faults: list[httpx.Response | Exception] = []
        self.key_faults: list[httpx.Response | Exception] = []
        self.key_down = False
        self.key_body: bytes | None = None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        await asyncio.sleep(0)  # let a concurrent request run meanwhile
        if request.url.path == METADATA_TOKEN_PATH:
            if self.session_faults:
                return _answer(self.session_faults.pop(0))
            self.sessions += 1
            body = self.session_body
            if body is None:
                body = f"session-{self.sessions}\n".encode()
            status = self.session_statuses.pop(0) if self.session_statuses else self.session_status
            return httpx.Response(status, content=body)
        if request.url.path == METADATA_SECURITYKEY_PATH:
            assert len(self.requests) < 100, "the metadata service is asked without end"
            if self.key_faults:
                return _answer(self.key_faults.pop(0))
            if self.key_down:
                return httpx.Response(503)
            if self.key_body is not None:
                return httpx.Response(200, content=self.key_body)
            self.issued += 1
            n = self.issued
            return httpx.Response(200, content=key_body(n, self.clock() + self.lifetime))
        return httpx.Response(404)

    def log(self) -> list[tuple[str, str, str | None]]:
        """(method, path, session token sent) of every request, in order."""
        return [(r.method, r.url.path, r.headers.get("X-Metadata-Token")) for r in self.requests]

    def key_requests(self) -> int:
        return sum(r.url.path == METADATA_SECURITYKEY_PATH for r in self.requests)


def _answer(fault: httpx.Response | Exception) -> httpx.Response:
    if isinstance(fault, Exception):
        raise fault
    return fault


def key_body(n: int, expires_at: datetime) -> bytes:
    return json.dumps(
        {
            "credential": {
                "access": f"TMPAK{n}",
                "secret": f"temporary-secret-{n}",
                "securitytoken": f"security-token-{n}",
                "expires_at": expires_at.isoformat(),
            }
        }
    ).encode()


class Api:
    """The API: records the access key each request was signed with; refuses the listed ones."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.signed_with: list[str] = []  # a retried request is the same object, signed again
        self.refused: set[str] = set()
        self.status = 200
        self.gate: asyncio.Event | None = None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = access_key(request)
        self.signed_with.append(key)
        if self.gate is not None:
            await self.gate.wait()
        if key in self.refused:
            return httpx.Response(401)
        return httpx.Response(self.status)

    def keys(self) -> list[str]:
        return list(self.signed_with)


def access_key(request: httpx.Request) -> str:
    authorization = request.headers["Authorization"]
    return authorization.split("Access=", 1)[1].split(",", 1)[0]


class Rig:
    """An AgencyAuth wired to the fake metadata service, the API, a clock and recorded waits."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.clock = Clock()
        self.metadata = Metadata(self.clock)
        self.api = Api()
        self.waits: list[float] = []
        self.outcomes: list[str] = []

        def build(options: HttpOptions, **kwargs: Any) -> httpx.AsyncClient:
            self.metadata.options.append(options)
            transport = httpx.MockTransport(self.metadata)
            return build_http_client(options, transport=transport, **kwargs)

        monkeypatch.setattr(agency_module, "build_http_client", build)

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    def auth(self, endpoint: str = ENDPOINT, **kwargs: Any) -> AgencyAuth:
        kwargs.setdefault("clock", self.clock)
        kwargs.setdefault("sleep", self.sleep)
        kwargs.setdefault("on_refresh", self.outcomes.append)
        return AgencyAuth(endpoint, "p1", **kwargs)

    def client(self, auth: AgencyAuth) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.api), auth=auth)


@pytest.fixture
def rig(monkeypatch: pytest.MonkeyPatch) -> Rig:
    return Rig(monkeypatch)


async def _at(rig: Rig, client: httpx.AsyncClient, moment: datetime) -> bool:
    """One API request at ``moment``: whether it made the auth ask for a security key."""
    rig.clock.now = moment
    before = rig.metadata.key_requests()
    response = await client.get(API)
    assert response.status_code == 200
    return rig.metadata.key_requests() > before


# --- options and the first fetch -------------------------------------------------------------


async def test_the_metadata_service_is_reached_directly_with_short_timeouts_by_default(
    rig: Rig,
) -> None:
    auth = rig.auth("http://metadataX//", attempts=1)
    assert auth.metadata_endpoint == "http://metadataX"  # only the trailing slashes go
    assert auth.http == HttpOptions(timeout=5.0, max_connections=2, proxy=PROXY_OFF)
    assert auth.http.route() == "direct"
    async with rig.client(auth) as client:
        await client.get(API)
    assert rig.metadata.options == [HttpOptions(timeout=5.0, max_connections=2, proxy=PROXY_OFF)]
    assert [str(r.url) for r in rig.metadata.requests] == [
        "http://metadatax/meta-data/latest/api/token",
        "http://metadatax/openstack/latest/securitykey",
    ]


async def test_given_options_are_used_without_their_proxy(rig: Rig) -> None:
    given = HttpOptions(timeout=2.5, proxy="http://proxy.example:3128", max_connections=7)
    auth = rig.auth(http=given)
    assert auth.http == HttpOptions(timeout=2.5, proxy=PROXY_OFF, max_connections=7)
    async with rig.client(auth) as client:
        await client.get(API)
    assert rig.metadata.options == [auth.http]


def test_an_agency_needs_the_metadata_endpoint() -> None:
    with pytest.raises(CredentialsError) as caught:
        AgencyAuth("")
    assert str(caught.value) == "agency authentication needs the metadata endpoint"
    auth = AgencyAuth(ENDPOINT)
    assert (auth.credentials, auth.expires_at) == (None, None)  # nothing fetched yet


async def test_the_first_request_asks_for_a_session_token_then_the_key_and_signs_with_it(
    rig: Rig,
) -> None:
    auth = rig.auth()
    async with rig.client(auth) as client:
        assert (await client.get(API)).status_code == 200
    assert rig.metadata.log() == [
        ("PUT", METADATA_TOKEN_PATH, None),
        ("GET", METADATA_SECURITYKEY_PATH, "session-1"),
    ]
    assert rig.metadata.requests[0].headers["X-Metadata-Token-Ttl-Seconds"] == "21600"
    (sent,) = rig.api.requests
    assert access_key(sent) == "TMPAK1"
    assert sent.headers["X-Security-Token"] == "security-token-1"
    assert sent.headers["X-Project-Id"] == "p1"
    assert sent.headers["X-Sdk-Date"] == sdk_date(T0)  # the auth's clock signs
    assert "x-security-token" in sent.headers["Authorization"]  # and it is signed
    assert rig.outcomes == ["success"]
    assert auth.credentials == TemporaryCredentials(
        "TMPAK1", "temporary-secret-1", "security-token-1", T0 + timedelta(hours=1)
    )
    assert auth.expires_at == T0 + timedelta(hours=1)
    assert repr(auth.credentials) == (
        "TemporaryCredentials(access='TMPA...', expires_at=2026-03-04 06:06:07+00:00)"
    )


def test_a_sync_client_is_refused() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with httpx.Client(transport=transport) as client, pytest.raises(RuntimeError) as caught:
        client.get(API, auth=AgencyAuth(ENDPOINT))
    assert str(caught.value) == "AgencyAuth needs httpx.AsyncClient"


# --- when the credentials are refreshed --------------------------------------------------------


@pytest.mark.parametrize(
    ("lifetime", "margin", "refresh_after"),
    [
        (timedelta(hours=1), timedelta(minutes=10), timedelta(minutes=50)),
        (timedelta(hours=1), timedelta(minutes=3), timedelta(minutes=57)),
        # A margin over half the lifetime: refreshed at half of it.
        (timedelta(minutes=10), timedelta(minutes=10), timedelta(minutes=5)),
        (timedelta(hours=2), timedelta(hours=3), timedelta(hours=1)),
    ],
)
async def test_credentials_are_reused_until_their_refresh_instant(
    rig: Rig, lifetime: timedelta, margin: timedelta, refresh_after: timedelta
) -> None:
    rig.metadata.lifetime = lifetime
    auth = rig.auth(refresh_margin=margin)
    async with rig.client(auth) as client:
        assert await _at(rig, client, T0)
        assert not await _at(rig, client, T0 + timedelta(seconds=1))
        assert not await _at(rig, client, T0 + refresh_after - US)
        assert await _at(rig, client, T0 + refresh_after)
    assert rig.api.keys() == ["TMPAK1"] * 3 + ["TMPAK2"]
    assert rig.outcomes == ["success", "success"]
    assert rig.metadata.sessions == 1  # the session token is reused


async def test_the_session_token_is_reused_until_nine_tenths_of_its_ttl(rig: Rig) -> None:
    auth = rig.auth()
    async with rig.client(auth) as client:
        assert await _at(rig, client, T0)
        # Credentials that expired: new ones, asked for with the same session token. These last
        # only until the session token's renewal instant.
        rig.metadata.lifetime = US
        assert await _at(rig, client, T0 + SESSION_REUSE - US)
        assert await _at(rig, client, T0 + SESSION_REUSE)
    assert rig.metadata.log() == [
        ("PUT", METADATA_TOKEN_PATH, None),
        ("GET", METADATA_SECURITYKEY_PATH, "session-1"),
        ("GET", METADATA_SECURITYKEY_PATH, "session-1"),
        ("PUT", METADATA_TOKEN_PATH, None),
        ("GET", METADATA_SECURITYKEY_PATH, "session-2"),
    ]


async def test_a_refused_session_token_is_renewed_once(rig: Rig) -> None:
    rig.metadata.key_faults = [httpx.Response(401)]
    async with rig.client(rig.auth()) as client:
        assert (await client.get(API)).status_code == 200
    assert rig.metadata.log() == [
        ("PUT", METADATA_TOKEN_PATH, None),
        ("GET", METADATA_SECURITYKEY_PATH, "session-1"),
        ("PUT", METADATA_TOKEN_PATH, None),
        ("GET", METADATA_SECURITYKEY_PATH, "session-2"),
    ]
    assert rig.metadata.requests[2].headers["X-Metadata-Token-Ttl-Seconds"] == "21600"
    assert rig.outcomes == ["success"]


async def test_a_refused_session_token_not_renewed_is_left_out_of_the_next_try(rig: Rig) -> None:
    rig.metadata.key_faults = [httpx.Response(401)]
    rig.metadata.session_statuses = [200, 503]
    async with rig.client(rig.auth()) as client:
        assert (await client.get(API)).status_code == 200
    assert rig.metadata.log() == [
        ("PUT", METADATA_TOKEN_PATH, None),
        ("GET", METADATA_SECURITYKEY_PATH, "session-1"),
        ("PUT", METADATA_TOKEN_PATH, None),
        ("GET", METADATA_SECURITYKEY_PATH, None),
    ]
    assert "X-Metadata-Token" not in rig.metadata.requests[3].headers


async def test_a_key_refused_with_a_new_session_token_too_is_an_error(rig: Rig) -> None:
    rig.metadata.key_faults = [httpx.Response(401), httpx.Response(401)]
    async with rig.client(rig.auth(attempts=1)) as client:
        with pytest.raises(CredentialsError) as caught:
            await client.get(API)
    assert str(caught.value) == (
        "the metadata service answered HTTP 401 for the security key: is an agency attached to "
        "this instance (ECS > Management Information > Agency)?"
    )
    assert [m for m, _, _ in rig.metadata.log()] == ["PUT", "GET", "PUT", "GET"]
    assert rig.outcomes == ["failure"]


@pytest.mark.parametrize("status", [404, 405, 503])
async def test_a_service_without_session_tokens_is_read_without_one(rig: Rig, status: int) -> None:
    rig.metadata.session_status = status
    rig.metadata.session_body = b"no such thing"
    rig.metadata.lifetime = US  # every request needs new credentials
    async with rig.client(rig.auth()) as client:
        assert await _at(rig, client, T0)
        assert await _at(rig, client, T0 + timedelta(hours=1))
        assert await _at(rig, client, T0 + SESSION_REUSE)
    # Not asked for again before the time a session token would have been renewed.
    assert rig.metadata.log() == [
        ("PUT", METADATA_TOKEN_PATH, None),
        ("GET", METADATA_SECURITYKEY_PATH, None),
        ("GET", METADATA_SECURITYKEY_PATH, None),
        ("PUT", METADATA_TOKEN_PATH, None),
        ("GET", METADATA_SECURITYKEY_PATH, None),
    ]
    assert all("X-Metadata-Token" not in r.headers for r in rig.metadata.requests)


async def test_an_empty_session_token_is_not_sent(rig: Rig) -> None:
    rig.metadata.session_body = b" \n"
    async with rig.client(rig.auth()) as client:
        await client.get(API)
    assert rig.metadata.log()[1] == ("GET", METADATA_SECURITYKEY_PATH, None)


@pytest.mark.parametrize(
    "body",
    [b"token-\xff", "t\u00f6ken".encode(), b"tok\x00en", b"tok\r\nX-Other: 1"],
    ids=["not-utf8", "not-ascii", "nul", "crlf"],
)
async def test_a_session_token_that_is_not_printable_ascii_is_refused(
    rig: Rig, body: bytes
) -> None:
    rig.metadata.session_body = body
    async with rig.client(rig.auth(attempts=1)) as client:
        with pytest.raises(CredentialsError) as caught:
            await client.get(API)
    assert str(caught.value) == "the metadata service's session token is not printable ASCII"
    assert rig.outcomes == ["failure"]
    assert [m for m, _, _ in rig.metadata.log()] == ["PUT"]  # never sent back


async def test_a_session_token_is_read_without_surrounding_white_space(rig: Rig) -> None:
    rig.metadata.session_body = b"  \t tok-en_1=/+.~ \r\n"
    async with rig.client(rig.auth()) as client:
        await client.get(API)
    assert rig.metadata.log()[1] == ("GET", METADATA_SECURITYKEY_PATH, "tok-en_1=/+.~")


# --- failed fetches ----------------------------------------------------------------------------

_AGENCY_503 = (
    "the metadata service answered HTTP 503 for the security key: is an agency attached to this "
    "instance (ECS > Management Information > Agency)?"
)


@pytest.mark.parametrize(
    ("options", "waits"),
    [
        ({}, [1.0, 2.0]),  # three attempts, one second apart, then doubling
        ({"attempts": 1}, []),
        ({"attempts": 0}, []),  # at least one
        ({"attempts": 4, "retry_wait": 0.5}, [0.5, 1.0, 2.0]),
        ({"attempts": 3, "retry_wait": 40.0}, [40.0, 60.0]),  # at most a minute
    ],
)
async def test_without_valid_credentials_a_failed_fetch_is_tried_again_then_refused(
    rig: Rig, options: dict[str, Any], waits: list[float]
) -> None:
    rig.metadata.key_down = True
    async with rig.client(rig.auth(**options)) as client:
        with pytest.raises(CredentialsError) as caught:
            await client.get(API)
    assert str(caught.value) == _AGENCY_503
    assert rig.waits == waits
    assert rig.outcomes == ["failure"] * (len(waits) + 1)
    assert rig.metadata.key_requests() == len(waits) + 1
    assert rig.api.requests == []


async def test_a_fetch_that_fails_twice_then_succeeds_signs_with_the_new_key(rig: Rig) -> None:
    rig.metadata.key_faults = [httpx.Response(503), httpx.Response(500)]
    async with rig.client(rig.auth()) as client:
        assert (await client.get(API)).status_code == 200
    assert rig.waits == [1.0, 2.0]
    assert rig.outcomes == ["failure", "failure", "success"]
    assert rig.api.keys() == ["TMPAK1"]


async def test_a_failed_refresh_keeps_the_valid_credentials_and_waits_longer_each_time(
    rig: Rig,
) -> None:
    auth = rig.auth()
    async with rig.client(auth) as client:
        assert await _at(rig, client, T0)
        rig.metadata.key_down = True
        moment = T0 + timedelta(minutes=50)  # due for refresh
        assert await _at(rig, client, moment)
        # Each failure: the current credentials sign, and nothing is asked for until the wait
        # is over; the wait doubles, at most a minute.
        for wait in (1, 2, 4, 8, 16, 32, 60, 60):
            assert not await _at(rig, client, moment + timedelta(seconds=wait) - US)
            moment += timedelta(seconds=wait)
            assert await _at(rig, client, moment)
        assert rig.outcomes == ["success"] + ["failure"] * 9
        assert set(rig.api.keys()) == {"TMPAK1"}
        assert rig.waits == []  # valid credentials: no attempt waits
        # Back: new credentials, and the next failure waits one second again.
        rig.metadata.key_down = False
        assert not await _at(rig, client, moment + timedelta(seconds=60) - US)
        moment += timedelta(seconds=60)
        assert await _at(rig, client, moment)
        assert rig.outcomes[-1] == "success"
        assert rig.api.keys()[-1] == "TMPAK2"
        rig.metadata.key_down = True
        moment += timedelta(minutes=50)
        assert await _at(rig, client, moment)
        assert not await _at(rig, client, moment + timedelta(seconds=1) - US)
        assert await _at(rig, client, moment + timedelta(seconds=1))
        assert rig.outcomes[-2:] == ["failure", "failure"]


async def test_credentials_are_not_used_from_their_expiry_on_even_while_a_retry_waits(
    rig: Rig,
) -> None:
    rig.metadata.lifetime = timedelta(minutes=10)
    async with rig.client(rig.auth()) as client:
        assert await _at(rig, client, T0)
        rig.metadata.key_down = True
        # A failure half a second before expiry: the next try is half a second after it.
        assert await _at(rig, client, T0 + timedelta(minutes=10) - timedelta(seconds=0.5))
        rig.clock.now = T0 + timedelta(minutes=10)
        with pytest.raises(CredentialsError) as caught:
            await client.get(API)
    assert str(caught.value) == _AGENCY_503
    assert rig.waits == [1.0, 2.0]  # no valid credentials: the attempts
    assert rig.outcomes == ["success"] + ["failure"] * 4
    assert rig.api.keys() == ["TMPAK1", "TMPAK1"]


async def test_credentials_that_expire_as_they_are_handed_out_are_refused(rig: Rig) -> None:
    rig.metadata.key_body = key_body(1, T0)
    async with rig.client(rig.auth(attempts=1)) as client:
        with pytest.raises(CredentialsError) as caught:
            await client.get(API)
        assert str(caught.value) == "the metadata service handed out expired credentials"
        rig.metadata.key_body = key_body(2, T0 + US)  # one microsecond left is enough
        assert (await client.get(API)).status_code == 200
    assert rig.api.keys() == ["TMPAK2"]


class _Hang(httpx.AsyncByteStream):
    """A response body that never ends."""

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        yield b"{"
        await asyncio.Event().wait()


def _big(size: int) -> bytes:
    body = key_body(1, T0 + timedelta(hours=1))
    return body + b" " * (size - len(body))


@pytest.mark.parametrize(
    ("where", "fault", "message", "error"),
    [
        (
            "key",
            httpx.ReadTimeout("timed out"),
            "metadata security key request timed out (ReadTimeout)",
            RequestTimeout,
        ),
        (
            "session",
            httpx.ConnectTimeout("timed out"),
            "metadata session token request timed out (ConnectTimeout)",
            RequestTimeout,
        ),
        (
            "key",
            httpx.ConnectError("refused by http://user:pw@169.254.169.254/"),
            "metadata security key request failed: ConnectError: refused by "
            "http://***@169.254.169.254/",
            TransportError,
        ),
        (
            "session",
            httpx.RemoteProtocolError("closed"),
            "metadata session token request failed: RemoteProtocolError: closed",
            TransportError,
        ),
        (
            "key",
            httpx.Response(200, content=_big(64 * 1024 + 1)),
            "the metadata service's security key is too large",
            CredentialsError,
        ),
        (
            "session",
            httpx.Response(200, content=b"t" * (64 * 1024 + 1)),
            "the metadata service's session token is too large",
            CredentialsError,
        ),
        (
            "key",
            httpx.Response(200, stream=_Hang()),
            "metadata security key request: no complete answer within the 0.05s deadline",
            RequestTimeout,
        ),
        (
            "session",
            httpx.Response(200, stream=_Hang()),
            "metadata session token request: no complete answer within the 0.05s deadline",
            RequestTimeout,
        ),
    ],
    ids=[
        "key-timeout",
        "session-timeout",
        "key-transport",
        "session-transport",
        "key-too-large",
        "session-too-large",
        "key-deadline",
        "session-deadline",
    ],
)
async def test_a_failed_metadata_exchange_says_which_and_why(
    rig: Rig,
    where: str,
    fault: httpx.Response | Exception,
    message: str,
    error: type[CCEError],
) -> None:
    faults = rig.metadata.key_faults if where == "key" else rig.metadata.session_faults
    faults.append(fault)
    async with rig.client(rig.auth(attempts=1, deadline=0.05)) as client:
        with pytest.raises(CCEError) as caught:
            async with asyncio.timeout(10):  # the test's own bound, should the deadline not hold
                await client.get(API)
    assert type(caught.value) is error
    assert str(caught.value) == message
    assert rig.outcomes == ["failure"]


async def test_a_failure_reading_the_key_again_after_a_new_session_token_says_so(
    rig: Rig,
) -> None:
    rig.metadata.key_faults = [httpx.Response(401), httpx.ReadTimeout("timed out")]
    async with rig.client(rig.auth(attempts=1)) as client:
        with pytest.raises(RequestTimeout) as caught:
            await client.get(API)
    assert str(caught.value) == "metadata security key request timed out (ReadTimeout)"


async def test_an_answer_of_exactly_the_size_limit_is_read(rig: Rig) -> None:
    rig.metadata.key_body = _big(64 * 1024)
    async with rig.client(rig.auth()) as client:
        assert (await client.get(API)).status_code == 200
    assert rig.api.keys() == ["TMPAK1"]


# --- the API's refusals and concurrent requests ------------------------------------------------


async def test_a_401_from_the_api_gets_new_credentials_and_one_retry(rig: Rig) -> None:
    rig.api.refused = {"TMPAK1"}
    async with rig.client(rig.auth()) as client:
        assert (await client.get(API)).status_code == 200
    assert rig.api.keys() == ["TMPAK1", "TMPAK2"]
    assert rig.outcomes == ["success", "success"]


async def test_other_refusals_are_answered_as_they_are(rig: Rig) -> None:
    rig.api.status = 403
    async with rig.client(rig.auth()) as client:
        assert (await client.get(API)).status_code == 403
        rig.api.status = 200
        assert (await client.get(API)).status_code == 200
    assert rig.api.keys() == ["TMPAK1", "TMPAK1"]
    assert rig.metadata.key_requests() == 1


async def _together(
    rig: Rig, *requests: Callable[[], Awaitable[httpx.Response]]
) -> list[httpx.Response | BaseException]:
    """Run the requests at once; the API holds each until all of them have reached it."""
    gate = rig.api.gate = asyncio.Event()
    tasks = [asyncio.ensure_future(request()) for request in requests]

    async def open_when_all_arrived() -> None:
        while len(rig.api.requests) < len(requests):
            await asyncio.sleep(0)
        gate.set()

    opener = asyncio.ensure_future(open_when_all_arrived())
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    await opener
    return list(results)


async def test_concurrent_requests_share_one_fetch(rig: Rig) -> None:
    async with rig.client(rig.auth()) as client:
        results = await _together(rig, lambda: client.get(API), lambda: client.get(API))
    assert [r.status_code for r in results if isinstance(r, httpx.Response)] == [200, 200]
    assert rig.metadata.key_requests() == 1
    assert rig.outcomes == ["success"]


async def test_concurrent_refusals_of_the_same_credentials_replace_them_once(rig: Rig) -> None:
    auth = rig.auth()
    async with rig.client(auth) as client:
        await client.get(API)
        rig.api.requests.clear()
        rig.api.signed_with.clear()
        rig.api.refused = {"TMPAK1"}
        results = await _together(rig, lambda: client.get(API), lambda: client.get(API))
    assert [r.status_code for r in results if isinstance(r, httpx.Response)] == [200, 200]
    assert sorted(rig.api.keys()) == ["TMPAK1", "TMPAK1", "TMPAK2", "TMPAK2"]
    assert rig.metadata.key_requests() == 2
    assert rig.outcomes == ["success", "success"]


async def test_concurrent_refusals_with_the_service_down_are_clear_errors(rig: Rig) -> None:
    auth = rig.auth(attempts=1)
    async with rig.client(auth) as client:
        await client.get(API)
        rig.api.requests.clear()
        rig.api.signed_with.clear()
        rig.api.refused = {"TMPAK1"}
        rig.metadata.key_down = True
        results = await _together(rig, lambda: client.get(API), lambda: client.get(API))
    assert [str(r) for r in results] == [_AGENCY_503, _AGENCY_503]
    assert all(type(r) is CredentialsError for r in results)
    assert auth.credentials is None  # the refused credentials are not kept
    assert rig.outcomes == ["success", "failure", "failure"]
