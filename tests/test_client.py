"""CCEClient behaviour: typed methods, retries, limits, errors and self-metrics.

Policies (retries, limits, error mapping) are tested against ``httpx.MockTransport`` with an
injected clock and sleep, so waits are asserted exactly and take no time.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Generator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from freezegun import freeze_time
from prometheus_client import CollectorRegistry

from exporter.cce.auth import AkSkAuth, PasswordAuth
from exporter.cce.client import CCEClient, TokenBucket, default_addon_endpoint
from exporter.cce.errors import (
    AuthenticationFailed,
    BadRequest,
    CCEError,
    CredentialsError,
    NotFound,
    PermissionDenied,
    RateLimited,
    RequestTimeout,
    ResponseParseError,
    ServerError,
    TransportError,
)
from exporter.cce.instrumentation import ApiMetrics
from exporter.simulator import Simulator

PROJECT = "proj-0a1b2c"
CLUSTER_ID = "c0ffee00-5539-11e9-95f7-0255ac10177e"
JOB_ID = "354331b2c-229a-11e8-9c79-0255ac101d21"
BASE = "https://cce.test.invalid"
IAM = "https://iam.test.invalid"
SECRET_TOKEN = "MIIsecret-token-value"

Handler = Callable[[httpx.Request], Awaitable[httpx.Response] | httpx.Response]


class FakeClock:
    """A monotonic clock that only moves when the client sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class HeaderAuth(httpx.Auth):
    """Adds a token header, so tests can check the secret never leaks."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["X-Auth-Token"] = SECRET_TOKEN
        yield request


def json_response(status: int, body: Any, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(), headers=headers)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def make_client(clock: FakeClock, registry: CollectorRegistry) -> Callable[..., CCEClient]:
    """A client factory over a MockTransport; tests close the client with ``async with``."""

    def make(handler: Handler, **kw: Any) -> CCEClient:
        options: dict[str, Any] = {
            "addon_endpoint": BASE,
            "iam_endpoint": IAM,
            "metrics": ApiMetrics(registry),
            "transport": httpx.MockTransport(handler),
            "clock": clock,
            "sleep": clock.sleep,
            "rng": lambda: 1.0,  # the jitter at its maximum: waits are exactly the backoff cap
        }
        options.update(kw)
        return CCEClient(BASE, HeaderAuth(), PROJECT, **options)

    return make


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# --- typed methods ------------------------------------------------------------------------------


async def test_typed_methods_build_the_documented_requests(
    make_client: Callable[..., CCEClient],
) -> None:
    seen: list[httpx.Request] = []
    cluster = {
        "kind": "Cluster",
        "metadata": {"uid": CLUSTER_ID, "name": "prod", "annotations": {"totalNodesNumber": "3"}},
        "spec": {"flavor": "cce.s1.small"},
        "status": {"phase": "Available"},
    }
    bodies = {
        f"/api/v3/projects/{PROJECT}/clusters": {"kind": "Cluster", "items": [cluster]},
        f"/api/v3/projects/{PROJECT}/clusters/{CLUSTER_ID}": cluster,
        f"/api/v3/projects/{PROJECT}/clusters/{CLUSTER_ID}/nodes": {
            "kind": "Node",
            "items": [{"metadata": {"uid": "n1", "name": "node-1"}, "status": {"phase": "Active"}}],
        },
        f"/api/v3/projects/{PROJECT}/clusters/{CLUSTER_ID}/nodepools": {
            "kind": "List",
            "items": [{"metadata": {"uid": "az1#s1.large#EulerOS 2.2"}, "status": {}}],
        },
        f"/api/v3/projects/{PROJECT}/jobs/{JOB_ID}": {
            "metadata": {"uid": JOB_ID},
            "spec": {"type": "CreateCluster", "subJobs": [{"status": {"phase": "Failed"}}]},
            "status": {"phase": "Running"},
        },
        "/api/v3/addons": {
            "kind": "Addon",
            "items": [
                {
                    "metadata": {"uid": "a1", "name": "storage-driver"},
                    "spec": {"addonTemplateName": "storage-driver", "version": "1.0.10"},
                    "status": {"status": "running", "Reason": ""},
                }
            ],
        },
        f"/api/v3/projects/{PROJECT}/quotas": {
            "quotas": [{"quotaKey": "cluster", "quotaLimit": 20, "used": 2, "unit": "count"}]
        },
        "/v3/projects": {"projects": [{"id": "p-1", "name": "cn-north-4", "enabled": True}]},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return json_response(200, bodies[request.url.path])

    client = make_client(handler)
    async with client:
        clusters = await client.list_clusters()
        one = await client.get_cluster(CLUSTER_ID)
        nodes = await client.list_nodes(CLUSTER_ID)
        pools = await client.list_nodepools(CLUSTER_ID)
        job = await client.get_job(JOB_ID)
        addons = await client.list_addons(CLUSTER_ID)
        quotas = await client.get_quotas()
        projects = await client.list_projects()

    assert [c.name for c in clusters] == ["prod"]
    assert (one.id, one.phase, one.total_nodes, one.max_nodes) == (CLUSTER_ID, "Available", 3, 50)
    assert [(n.name, n.phase) for n in nodes] == [("node-1", "Active")]
    assert [(p.id, p.phase) for p in pools] == [("az1#s1.large#EulerOS 2.2", "Normal")]
    assert (job.id, job.phase, len(job.failed_sub_jobs)) == (JOB_ID, "Running", 1)
    assert [(a.name, a.version, a.status.status) for a in addons] == [
        ("storage-driver", "1.0.10", "running")
    ]
    assert [(q.quota_key, q.quota_limit, q.used) for q in quotas] == [("cluster", 20, 2)]
    assert [(p.id, p.name) for p in projects] == [("p-1", "cn-north-4")]

    queries = {r.url.path: dict(r.url.params) for r in seen}
    assert queries[f"/api/v3/projects/{PROJECT}/clusters/{CLUSTER_ID}"] == {
        "detail": "true",
        "errorStatus": "true",
    }
    assert queries[f"/api/v3/projects/{PROJECT}/clusters/{CLUSTER_ID}/nodepools"] == {
        "showDefaultNodePool": "true"
    }
    assert queries["/api/v3/addons"] == {"cluster_id": CLUSTER_ID}
    assert queries[f"/api/v3/projects/{PROJECT}/clusters"] == {}
    assert seen[-1].url.host == "iam.test.invalid"
    assert all(r.method == "GET" for r in seen)
    assert all(r.headers["content-type"] == "application/json" for r in seen)
    assert all(r.headers["x-auth-token"] == SECRET_TOKEN for r in seen)


async def test_get_cluster_without_detail_and_nodepools_without_default(
    make_client: Callable[..., CCEClient],
) -> None:
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        if request.url.path.endswith("nodepools"):
            return json_response(200, {"items": []})
        return json_response(200, {"metadata": {"uid": CLUSTER_ID}})

    async with make_client(handler) as client:
        await client.get_cluster(CLUSTER_ID, detail=False, error_status=False)
        assert await client.list_nodepools(CLUSTER_ID, show_default=False) == []
    assert [dict(u.params) for u in seen] == [{}, {}]


async def test_ids_are_quoted_into_the_path(make_client: Callable[..., CCEClient]) -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path)
        return json_response(200, {"metadata": {"uid": "x"}})

    async with make_client(handler) as client:
        await client.get_job("a/b#c d")
    assert seen == [f"/api/v3/projects/{PROJECT}/jobs/a%2Fb%23c%20d".encode()]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", None),
        (b"{}", None),
        (b'{"jobid": "job-42"}', "job-42"),
        (b'{"status": {"jobID": "job-43"}}', "job-43"),
        (b"not json", None),
    ],
)
async def test_hibernate_and_awake_post_and_return_a_job_id_when_given(
    make_client: Callable[..., CCEClient], body: bytes, expected: str | None
) -> None:
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path))
        return httpx.Response(200, content=body)

    async with make_client(handler) as client:
        assert await client.hibernate(CLUSTER_ID) == expected
        assert await client.awake(CLUSTER_ID) == expected
    prefix = f"/api/v3/projects/{PROJECT}/clusters/{CLUSTER_ID}/operation"
    assert seen == [("POST", f"{prefix}/hibernate"), ("POST", f"{prefix}/awake")]


async def test_default_addon_host_carries_the_cluster_id() -> None:
    assert (
        default_addon_endpoint("https://cce.region.example.com:8443/")
        == "https://{cluster_id}.cce.region.example.com:8443"
    )
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.url.host == "cce.test.invalid":  # a Stack installation: no plain layout
            return json_response(404, {"code": "SVCSTG.CCE-ADDONMGR.4040000", "message": "no"})
        return json_response(200, {"items": []})

    async with CCEClient(
        BASE, HeaderAuth(), PROJECT, transport=httpx.MockTransport(handler)
    ) as client:
        assert await client.list_addons(CLUSTER_ID) == []
        assert await client.list_addons(CLUSTER_ID) == []  # remembered: the cluster host only
        with pytest.raises(CCEError, match="host name"):
            await client.list_addons("evil.example.com/x")
    on_cluster_host = f"{CLUSTER_ID}.cce.test.invalid"
    assert hosts == ["cce.test.invalid", on_cluster_host, on_cluster_host]


async def test_resolve_project_id(make_client: Callable[..., CCEClient]) -> None:
    projects = [
        {"id": "p-1", "name": "cn-north-4"},
        {"id": "p-2", "name": "cn-north-4_sub"},
        {"id": "p-3", "name": "twice"},
        {"id": "p-4", "name": "twice"},
    ]
    names: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v3/projects"
        names.append(request.url.params.get("name"))
        # Like a server that ignores the filter: the client must filter again.
        return json_response(200, {"projects": projects})

    assert (
        await CCEClient.lookup_project_id(
            IAM, HeaderAuth(), "cn-north-4", transport=httpx.MockTransport(handler)
        )
        == "p-1"
    )
    async with make_client(handler) as client:
        with pytest.raises(CCEError, match="no IAM project named 'nope'"):
            await client.resolve_project_id("nope")
        with pytest.raises(CCEError, match="2 IAM projects named 'twice'"):
            await client.resolve_project_id("twice")
    assert names == ["cn-north-4", "nope", "twice"]


async def test_iam_calls_fall_back_to_the_cce_endpoint(
    make_client: Callable[..., CCEClient],
) -> None:
    urls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url))
        return json_response(200, {"projects": [{"id": "p-9", "name": "r"}]})

    async with make_client(handler, iam_endpoint=None) as client:
        assert await client.resolve_project_id("r") == "p-9"
    assert urls == [f"{BASE}/v3/projects?name=r"]


# --- retries ------------------------------------------------------------------------------------


async def test_retry_after_is_honoured(
    make_client: Callable[..., CCEClient], clock: FakeClock, registry: CollectorRegistry
) -> None:
    answers = [
        json_response(
            429, {"error_code": "APIGW.0308", "error_msg": "throttled"}, **{"Retry-After": "7"}
        ),
        json_response(429, {}, **{"Retry-After": "2.5"}),
        json_response(200, {"quotas": []}),
    ]

    async with make_client(lambda r: answers.pop(0)) as client:
        assert await client.get_quotas() == []
    assert clock.sleeps == [7.0, 2.5]
    endpoint = "/api/v3/projects/{project_id}/quotas"
    assert sample(registry, "cce_exporter_api_retries_total", endpoint=endpoint, reason="429") == 2
    for code, count in (("429", 2), ("200", 1)):
        assert (
            sample(
                registry,
                "cce_exporter_api_requests_total",
                endpoint=endpoint,
                method="GET",
                code=code,
            )
            == count
        )


async def test_retry_after_past_the_deadline_is_not_waited(
    make_client: Callable[..., CCEClient], clock: FakeClock
) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return json_response(429, {}, **{"Retry-After": "120"})

    async with make_client(handler, retry_deadline=30) as client:
        with pytest.raises(RateLimited) as info:
            await client.get_quotas()
    assert info.value.retry_after == 120
    assert calls == 1
    assert clock.sleeps == []


async def test_backoff_is_exponential_and_bounded_by_attempts(
    make_client: Callable[..., CCEClient], clock: FakeClock, registry: CollectorRegistry
) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return json_response(503, {"error_code": "CCE.503", "error_msg": "busy"})

    async with make_client(handler, max_retries=3, backoff_base=0.5) as client:
        with pytest.raises(ServerError) as info:
            await client.list_clusters()
    assert info.value.status_code == 503
    assert calls == 4
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert (
        sample(
            registry,
            "cce_exporter_api_retries_total",
            endpoint="/api/v3/projects/{project_id}/clusters",
            reason="503",
        )
        == 3
    )


async def test_backoff_has_full_jitter_and_a_cap(
    make_client: Callable[..., CCEClient], clock: FakeClock
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502)

    async with make_client(
        handler, rng=lambda: 0.25, max_retries=6, backoff_base=1, backoff_cap=4, retry_deadline=999
    ) as client:
        with pytest.raises(ServerError):
            await client.list_clusters()
    assert clock.sleeps == [0.25, 0.5, 1.0, 1.0, 1.0, 1.0]


async def test_backoff_is_bounded_by_the_deadline(
    make_client: Callable[..., CCEClient], clock: FakeClock
) -> None:
    calls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(clock.now)
        return httpx.Response(504)

    async with make_client(handler, max_retries=10, backoff_base=1, retry_deadline=5) as client:
        with pytest.raises(ServerError):
            await client.list_clusters()
    # Waits 1 and 2 fit in 5 s; the next (4 s, ending at 7 s) would not.
    assert calls == [0.0, 1.0, 3.0]
    assert clock.sleeps == [1.0, 2.0]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequest),
        (401, AuthenticationFailed),
        (403, PermissionDenied),
        (404, NotFound),
        (405, CCEError),
        (409, CCEError),
        (500, ServerError),
        (501, ServerError),
    ],
)
async def test_no_retry_on_client_errors_and_500(
    make_client: Callable[..., CCEClient],
    clock: FakeClock,
    registry: CollectorRegistry,
    status: int,
    error: type[Exception],
) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return json_response(status, {"error_code": "X", "error_msg": "no"})

    async with make_client(handler) as client:
        with pytest.raises(error):
            await client.get_cluster(CLUSTER_ID)
    assert calls == 1
    assert clock.sleeps == []
    retries = [
        s
        for m in registry.collect()
        if m.name == "cce_exporter_api_retries"
        for s in m.samples
        if s.name.endswith("_total")
    ]
    assert retries == []


async def test_408_is_retried(make_client: Callable[..., CCEClient], clock: FakeClock) -> None:
    answers = [httpx.Response(408), json_response(200, {"items": []})]
    async with make_client(lambda r: answers.pop(0)) as client:
        assert await client.list_nodes(CLUSTER_ID) == []
    assert clock.sleeps == [0.5]


async def test_timeouts_and_connection_errors_are_retried_and_counted(
    make_client: Callable[..., CCEClient], clock: FakeClock, registry: CollectorRegistry
) -> None:
    failures: list[Exception] = [
        httpx.ReadTimeout("slow"),
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("reset"),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        if failures:
            raise failures.pop(0)
        return json_response(200, {"items": []})

    async with make_client(handler) as client:
        assert await client.list_clusters() == []
    endpoint = "/api/v3/projects/{project_id}/clusters"
    assert clock.sleeps == [0.5, 1.0, 2.0]
    for reason, count in (("timeout", 1), ("connection_error", 2)):
        assert (
            sample(registry, "cce_exporter_api_retries_total", endpoint=endpoint, reason=reason)
            == count
        )
        assert (
            sample(
                registry,
                "cce_exporter_api_requests_total",
                endpoint=endpoint,
                method="GET",
                code=reason,
            )
            == count
        )


async def test_persistent_timeouts_raise_request_timeout(
    make_client: Callable[..., CCEClient],
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow")

    async with make_client(handler, max_retries=2) as client:
        with pytest.raises(RequestTimeout, match="ReadTimeout"):
            await client.list_clusters()


async def test_persistent_connection_errors_raise_transport_error(
    make_client: Callable[..., CCEClient],
) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("connection refused")

    async with make_client(handler, max_retries=2) as client:
        with pytest.raises(TransportError, match="connection refused") as info:
            await client.list_clusters()
    assert not isinstance(info.value, RequestTimeout)
    assert calls == 3
    assert SECRET_TOKEN not in str(info.value)


@pytest.mark.parametrize(
    ("failure", "retried"),
    [
        (httpx.Response(429), True),
        (httpx.ConnectError("refused"), True),
        (httpx.ConnectTimeout("connect"), True),
        (httpx.Response(503), False),
        (httpx.Response(502), False),
        (httpx.ReadTimeout("read"), False),
        (httpx.RemoteProtocolError("reset after send"), False),
    ],
)
async def test_operations_are_retried_only_when_provably_not_applied(
    make_client: Callable[..., CCEClient], failure: httpx.Response | Exception, retried: bool
) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls > 1:
            return httpx.Response(200)
        if isinstance(failure, Exception):
            raise failure
        return failure

    async with make_client(handler) as client:
        if retried:
            assert await client.hibernate(CLUSTER_ID) is None
            assert calls == 2
        else:
            with pytest.raises(CCEError):
                await client.awake(CLUSTER_ID)
            assert calls == 1


# --- limits -------------------------------------------------------------------------------------


async def wait_for(predicate: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
    """Poll ``predicate`` on the event loop until it holds, failing after ``seconds``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


async def test_concurrency_limit_is_respected(make_client: Callable[..., CCEClient]) -> None:
    release = asyncio.Event()
    in_flight = 0
    most = 0
    served = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most, served
        in_flight += 1
        most = max(most, in_flight)
        await release.wait()
        in_flight -= 1
        served += 1
        return json_response(200, {"items": []})

    async with make_client(handler, concurrency=3) as client:
        calls = [asyncio.create_task(client.list_nodes(f"c{i}")) for i in range(12)]
        await wait_for(lambda: in_flight == 3, "three requests in flight")
        # Give the other tasks every chance to (wrongly) start as well.
        for _ in range(20):
            await asyncio.sleep(0)
        assert in_flight == 3
        assert served == 0
        release.set()
        await asyncio.gather(*calls)
    assert most == 3
    assert served == 12


async def test_a_call_waiting_for_its_backoff_holds_no_slot(
    make_client: Callable[..., CCEClient],
) -> None:
    backing_off = asyncio.Event()
    resume = asyncio.Event()
    answers = {"c-retry": [httpx.Response(503), json_response(200, {"items": []})]}

    def handler(request: httpx.Request) -> httpx.Response:
        cluster = request.url.path.split("/")[6]
        queue = answers.get(cluster)
        return queue.pop(0) if queue else json_response(200, {"items": []})

    async def sleep(seconds: float) -> None:
        backing_off.set()
        await resume.wait()

    async with make_client(handler, concurrency=1, sleep=sleep) as client:
        first = asyncio.create_task(client.list_nodes("c-retry"))
        await asyncio.wait_for(backing_off.wait(), 5)
        # The only slot is free while the first call sleeps: another call completes meanwhile.
        assert await asyncio.wait_for(client.list_nodes("c-other"), 5) == []
        resume.set()
        assert await first == []


async def test_rate_limit_is_respected(
    make_client: Callable[..., CCEClient], clock: FakeClock
) -> None:
    started: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        started.append(clock.now)
        return json_response(200, {"items": []})

    async with make_client(handler, requests_per_second=2, concurrency=8) as client:
        await asyncio.gather(*(client.list_nodes(f"c{i}") for i in range(8)))
    # A burst of 2, then one request every half second.
    assert started == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    for i, t in enumerate(started):
        assert i + 1 <= 2 + 2 * t + 1e-9


async def test_token_bucket_refills_up_to_its_burst(clock: FakeClock) -> None:
    bucket = TokenBucket(1.0, 3.0, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        await bucket.acquire()
    assert clock.sleeps == []
    clock.now += 100  # a long idle time saves up no more than the burst
    for _ in range(4):
        await bucket.acquire()
    assert clock.sleeps == pytest.approx([1.0])
    with pytest.raises(ValueError):
        TokenBucket(0, 1, clock=clock, sleep=clock.sleep)


# --- errors -------------------------------------------------------------------------------------


async def test_both_error_body_shapes_and_the_request_id(
    make_client: Callable[..., CCEClient],
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v3/addons":
            return json_response(
                404,
                {"code": "SVCSTG.CCE-ADDONMGR.4040204", "message": "Addon not exist"},
                **{"X-Request-Id": "req-addon-1"},
            )
        return json_response(
            403,
            {"error_code": "CCE.01000003", "error_msg": "Forbidden"},
            **{"X-Openstack-Request-Id": "req-cce-2"},
        )

    async with make_client(handler) as client:
        with pytest.raises(NotFound) as addon:
            await client.list_addons(CLUSTER_ID)
        with pytest.raises(PermissionDenied) as cce:
            await client.list_nodes(CLUSTER_ID)

    assert (addon.value.code, addon.value.message, addon.value.request_id) == (
        "SVCSTG.CCE-ADDONMGR.4040204",
        "Addon not exist",
        "req-addon-1",
    )
    assert addon.value.endpoint == "/api/v3/addons"
    assert (cce.value.code, cce.value.message, cce.value.request_id) == (
        "CCE.01000003",
        "Forbidden",
        "req-cce-2",
    )
    assert cce.value.endpoint == "/api/v3/projects/{project_id}/clusters/{cluster_id}/nodes"
    assert cce.value.method == "GET"
    for exc in (addon.value, cce.value):
        assert CLUSTER_ID not in str(exc)
        assert SECRET_TOKEN not in str(exc)


@pytest.mark.parametrize(
    "body",
    [
        b'{"kind": "Cluster", "items": [{"metadata": {"uid": "x"',  # truncated
        b"<html>gateway error</html>",
        b"[]",
        b"",
        b"\xff\xfe{}",
    ],
)
async def test_malformed_bodies_raise_response_parse_error(
    make_client: Callable[..., CCEClient], body: bytes
) -> None:
    async with make_client(lambda r: httpx.Response(200, content=body)) as client:
        with pytest.raises(ResponseParseError) as info:
            await client.list_clusters()
    assert info.value.endpoint == "/api/v3/projects/{project_id}/clusters"


async def test_redirects_are_not_followed(make_client: Callable[..., CCEClient]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "https://elsewhere.invalid/"})

    async with make_client(handler) as client:
        with pytest.raises(ResponseParseError, match="302"):
            await client.list_clusters()


async def test_auth_errors_pass_through_unretried(
    make_client: Callable[..., CCEClient], registry: CollectorRegistry
) -> None:
    class BrokenAuth(httpx.Auth):
        def auth_flow(
            self, request: httpx.Request
        ) -> Generator[httpx.Request, httpx.Response, None]:
            raise CredentialsError("token file unreadable")
            yield request  # pragma: no cover - makes this a generator

    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200)

    client = make_client(handler)
    client._http.auth = BrokenAuth()
    async with client:
        with pytest.raises(CredentialsError):
            await client.get_quotas()
    assert calls == 0
    assert (
        sample(
            registry,
            "cce_exporter_api_requests_total",
            endpoint="/api/v3/projects/{project_id}/quotas",
            method="GET",
            code="auth_error",
        )
        == 1
    )


# --- metrics and logs ---------------------------------------------------------------------------


async def test_metric_labels_are_templated(
    make_client: Callable[..., CCEClient], registry: CollectorRegistry
) -> None:
    answers = iter([httpx.Response(503)] + [httpx.Response(200, content=b'{"items": []}')] * 20)

    async with make_client(lambda r: next(answers)) as client:
        await client.list_clusters()
        await client.get_cluster(CLUSTER_ID)
        await client.list_nodes(CLUSTER_ID)
        await client.list_nodepools(CLUSTER_ID)
        await client.get_job(JOB_ID)
        await client.list_addons(CLUSTER_ID)
        await client.get_quotas()
        await client.hibernate(CLUSTER_ID)
        await client.list_projects("cn-north-4")

    endpoints: set[str] = set()
    for metric in registry.collect():
        for s in metric.samples:
            for value in s.labels.values():
                assert PROJECT not in value
                assert CLUSTER_ID not in value
                assert JOB_ID not in value
                assert "?" not in value
                assert "cn-north-4" not in value
            if "endpoint" in s.labels:
                endpoints.add(s.labels["endpoint"])
    assert endpoints == {
        "/api/v3/projects/{project_id}/clusters",
        "/api/v3/projects/{project_id}/clusters/{cluster_id}",
        "/api/v3/projects/{project_id}/clusters/{cluster_id}/nodes",
        "/api/v3/projects/{project_id}/clusters/{cluster_id}/nodepools",
        "/api/v3/projects/{project_id}/jobs/{job_id}",
        "/api/v3/addons",
        "/api/v3/projects/{project_id}/quotas",
        "/api/v3/projects/{project_id}/clusters/{cluster_id}/operation/hibernate",
        "/v3/projects",
    }
    assert (
        sample(
            registry,
            "cce_exporter_api_request_duration_seconds_count",
            endpoint="/api/v3/projects/{project_id}/clusters",
            method="GET",
        )
        == 2
    )


def test_auth_refresh_counter() -> None:
    registry = CollectorRegistry()
    metrics = ApiMetrics(registry)
    metrics.auth_refresh("success")
    metrics.auth_refresh("success")
    metrics.auth_refresh("failure")
    assert sample(registry, "cce_exporter_auth_refreshes_total", result="success") == 2
    assert sample(registry, "cce_exporter_auth_refreshes_total", result="failure") == 1


async def test_debug_log_has_template_status_and_request_id_but_no_secrets(
    make_client: Callable[..., CCEClient], caplog: pytest.LogCaptureFixture
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return json_response(200, {"items": []}, **{"X-Request-Id": "req-77"})

    caplog.set_level(logging.DEBUG, logger="exporter.cce.client")
    async with make_client(handler) as client:
        await client.list_nodes(CLUSTER_ID)
    lines = [r.getMessage() for r in caplog.records if r.name == "exporter.cce.client"]
    assert lines == [
        "GET /api/v3/projects/{project_id}/clusters/{cluster_id}/nodes -> 200 in 0.000s "
        "(request id req-77)"
    ]
    assert SECRET_TOKEN not in caplog.text
    assert "SECRET" not in repr(client).upper()


async def test_closing_the_client_closes_the_auth() -> None:
    class ClosableAuth(HeaderAuth):
        closed = 0

        async def aclose(self) -> None:
            self.closed += 1

    auth = ClosableAuth()
    async with CCEClient(
        BASE, auth, PROJECT, transport=httpx.MockTransport(lambda r: httpx.Response(200))
    ):
        pass
    assert auth.closed == 1


# --- against the simulator, over loopback HTTP --------------------------------------------------


#: A small simulator with a frozen clock: tokens and phases change only when a test advances it.
small_simulator = pytest.mark.simulator(clusters=4, nodes_per_cluster=3, seed=11, clock_frozen=True)


@pytest.fixture
def sim(simulator: Simulator) -> Simulator:
    """The shared ``simulator`` fixture (tests/conftest.py), under a short name."""
    return simulator


def client_on(sim: Simulator, auth: httpx.Auth, metrics: ApiMetrics) -> CCEClient:
    return CCEClient(
        sim.base_url,
        auth,
        sim.credentials.project_id,
        addon_endpoint=sim.base_url,
        iam_endpoint=sim.base_url,
        metrics=metrics,
        timeout=5,
    )


def password_auth(sim: Simulator, metrics: ApiMetrics | None = None) -> PasswordAuth:
    c = sim.credentials
    return PasswordAuth(
        sim.base_url,
        c.username,
        c.password,
        c.domain,
        project_name=c.project_name,
        on_refresh=metrics.auth_refresh if metrics else None,
    )


async def exercise_every_read(client: CCEClient, sim: Simulator) -> None:
    clusters = await client.list_clusters()
    assert sorted(c.id or "" for c in clusters) == sorted(sim.world.clusters)
    first = clusters[0]
    assert first.id is not None
    one = await client.get_cluster(first.id)
    assert (one.id, one.name) == (first.id, first.name)
    assert one.total_nodes is not None  # detail=true was sent and honoured
    nodes = await client.list_nodes(first.id)
    assert nodes and all(n.id and n.phase for n in nodes)
    pools = await client.list_nodepools(first.id)
    without_default = await client.list_nodepools(first.id, show_default=False)
    assert len(pools) == len(without_default) + 1
    addons = await client.list_addons(first.id)
    assert addons and all(a.name and a.status.status for a in addons)
    quotas = await client.get_quotas()
    assert "cluster" in {q.quota_key for q in quotas}
    job_id = next(iter(sim.world.jobs))
    job = await client.get_job(job_id)
    assert job.id == job_id and job.phase in ("Initializing", "Running", "Failed", "Success")
    assert await client.resolve_project_id(sim.credentials.project_name) == (
        sim.credentials.project_id
    )


@small_simulator
async def test_every_read_against_the_simulator_with_aksk(sim: Simulator) -> None:
    c = sim.credentials
    registry = CollectorRegistry()
    async with client_on(sim, AkSkAuth(c.ak, c.sk, c.project_id), ApiMetrics(registry)) as client:
        await exercise_every_read(client, sim)
    assert sim.app.requests["iam_tokens"] == 0
    codes = {
        s.labels["code"]
        for m in registry.collect()
        for s in m.samples
        if s.name == "cce_exporter_api_requests_total"
    }
    assert codes == {"200"}


@small_simulator
async def test_every_read_against_the_simulator_with_a_password(sim: Simulator) -> None:
    registry = CollectorRegistry()
    metrics = ApiMetrics(registry)
    async with client_on(sim, password_auth(sim, metrics), metrics) as client:
        await exercise_every_read(client, sim)
    # One token for the whole session, counted.
    assert sim.app.requests["iam_tokens"] == 1
    assert sample(registry, "cce_exporter_auth_refreshes_total", result="success") == 1


@small_simulator
async def test_hibernate_and_awake_against_the_simulator(sim: Simulator) -> None:
    c = sim.credentials
    async with client_on(sim, AkSkAuth(c.ak, c.sk), ApiMetrics(CollectorRegistry())) as client:
        available = [x for x in await client.list_clusters() if x.phase == "Available"]
        assert available, "the seed should give at least one Available cluster"
        cluster_id = available[0].id
        assert cluster_id is not None
        assert await client.hibernate(cluster_id) is None
        assert (await client.get_cluster(cluster_id)).phase == "Hibernating"
        # Hibernating an already hibernating cluster is refused, and not retried.
        with pytest.raises(BadRequest) as info:
            await client.hibernate(cluster_id)
        assert info.value.request_id  # the simulator's X-Request-Id is kept
        sim.advance(3600)
        assert (await client.get_cluster(cluster_id)).phase == "Hibernation"
        assert await client.awake(cluster_id) is None
        assert (await client.get_cluster(cluster_id)).phase == "Awaking"
    assert sim.app.requests["hibernate"] == 2
    assert sim.app.requests["awake"] == 1


@small_simulator
async def test_token_fetch_is_single_flight(sim: Simulator) -> None:
    registry = CollectorRegistry()
    metrics = ApiMetrics(registry)
    cluster_id = next(iter(sim.world.clusters))
    async with client_on(sim, password_auth(sim, metrics), metrics) as client:
        results = await asyncio.gather(*(client.list_nodes(cluster_id) for _ in range(16)))
    assert all(results)
    assert sim.app.requests["iam_tokens"] == 1
    assert sim.app.requests["nodes"] == 16
    assert sample(registry, "cce_exporter_auth_refreshes_total", result="success") == 1


@small_simulator
async def test_a_token_near_expiry_is_refreshed_before_use(sim: Simulator) -> None:
    auth = password_auth(sim)
    start = datetime.now(UTC)
    async with client_on(sim, auth, ApiMetrics(CollectorRegistry())) as client:
        with freeze_time(start, real_asyncio=True) as frozen:
            await client.get_quotas()
            assert sim.app.requests["iam_tokens"] == 1
            frozen.tick(timedelta(hours=1))
            await client.get_quotas()
            assert sim.app.requests["iam_tokens"] == 1  # still fresh: reused
            # Within the refresh margin of the 24 h lifetime: a new token before the call.
            frozen.move_to(start + timedelta(hours=23, minutes=55))
            await client.get_quotas()
            assert sim.app.requests["iam_tokens"] == 2
    assert sim.app.requests["quotas"] == 3


@small_simulator
async def test_a_rejected_token_is_refreshed_once_and_the_call_retried(sim: Simulator) -> None:
    registry = CollectorRegistry()
    metrics = ApiMetrics(registry)
    async with client_on(sim, password_auth(sim, metrics), metrics) as client:
        await client.get_quotas()
        # The simulator's clock passes the token's expiry; our clock does not know.
        sim.advance(25 * 3600)
        quotas = await client.get_quotas()
    assert quotas
    assert sim.app.requests["iam_tokens"] == 2
    assert sim.app.requests["quotas"] == 3  # the first call, the 401, the retry
    # The auth layer's retry is inside one call: no client-level retry was counted.
    assert (
        sample(
            registry,
            "cce_exporter_api_requests_total",
            endpoint="/api/v3/projects/{project_id}/quotas",
            method="GET",
            code="200",
        )
        == 2
    )


@small_simulator
async def test_wrong_password_is_an_authentication_failure(sim: Simulator) -> None:
    c = sim.credentials
    auth = PasswordAuth(
        sim.base_url, c.username, "not-the-password", c.domain, project_name=c.project_name
    )
    async with client_on(sim, auth, ApiMetrics(CollectorRegistry())) as client:
        with pytest.raises(AuthenticationFailed) as info:
            await client.list_clusters()
    assert "not-the-password" not in str(info.value)
    assert sim.app.requests["clusters"] == 0


@small_simulator
async def test_simulator_faults_are_retried_or_reported(sim: Simulator) -> None:
    c = sim.credentials
    registry = CollectorRegistry()
    async with client_on(sim, AkSkAuth(c.ak, c.sk), ApiMetrics(registry)) as client:
        client.backoff_base = 0.001  # real sleeps here: keep them tiny
        sim.faults.add("http_503", count=1, path="/quotas")
        sim.faults.add("http_429", count=1, path="/quotas", retry_after=0)
        assert await client.get_quotas()
        sim.faults.add("truncated_json", count=1, path="/quotas")
        with pytest.raises(ResponseParseError):
            await client.get_quotas()
        sim.faults.add("http_500", count=1, path="/api/v3/addons")
        cluster_id = next(iter(sim.world.clusters))
        with pytest.raises(ServerError) as info:
            await client.list_addons(cluster_id)
    assert info.value.code == "SVCSTG.CCE-ADDONMGR.500"
    endpoint = "/api/v3/projects/{project_id}/quotas"
    assert sample(registry, "cce_exporter_api_retries_total", endpoint=endpoint, reason="503") == 1
    assert sample(registry, "cce_exporter_api_retries_total", endpoint=endpoint, reason="429") == 1


async def test_attempt_timeouts_are_cut_to_the_time_left(
    make_client: Callable[..., CCEClient],
) -> None:
    timeouts: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"]["read"])
        return httpx.Response(503 if len(timeouts) == 1 else 200, content=b'{"quotas": []}')

    async with make_client(handler, timeout=10, backoff_base=4, retry_deadline=6) as client:
        assert await client.get_quotas() == []
    # First attempt: the full timeout. After a 4 s wait, 2 s of the 6 s deadline are left.
    assert timeouts == [10, 2]


@small_simulator
async def test_a_hanging_request_times_out_and_is_retried(sim: Simulator) -> None:
    c = sim.credentials
    registry = CollectorRegistry()
    async with CCEClient(
        sim.base_url,
        AkSkAuth(c.ak, c.sk),
        c.project_id,
        metrics=ApiMetrics(registry),
        timeout=0.3,
        backoff_base=0.001,
    ) as client:
        sim.faults.add("hang", count=1, path="/quotas")
        assert await client.get_quotas()
    endpoint = "/api/v3/projects/{project_id}/quotas"
    assert (
        sample(registry, "cce_exporter_api_retries_total", endpoint=endpoint, reason="timeout") == 1
    )
    assert sim.app.requests["quotas"] == 1  # the hung request never reached the handler
