"""A hostile API: answers that drip, gzip bombs, 100 KB names and lists with one unreadable object.

Each case runs against the simulator's hostile fault kinds over loopback HTTP. An outer
``asyncio.wait_for`` with a generous bound turns "hangs forever" into a clean failure; the
assertions are about outcomes (which error, what was kept), never about durations.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import threading
from typing import Any

import httpx
import pytest

from exporter.cce import bodies as bodies_module
from exporter.cce import client as client_module
from exporter.cce.auth import AkSkAuth, PasswordAuth
from exporter.cce.client import CCEClient
from exporter.cce.errors import RequestTimeout, ResponseParseError
from exporter.limits import MARKER, TruncatingFilter, counts, inflate, limits, read_capped
from exporter.simulator import Simulator
from tests.test_e2e_exporter import parse, running_exporter, sim_env

#: Far beyond any deadline these tests configure: reaching it means the call hung.
HANG = 60.0


def aksk_client(sim: Simulator, **kwargs: Any) -> CCEClient:
    s = sim.settings
    auth = AkSkAuth(s["CCE_EXPORTER_AK"], s["CCE_EXPORTER_SK"])
    kwargs.setdefault("max_retries", 0)
    return CCEClient(sim.base_url, auth, sim.credentials.project_id, **kwargs)


# --- the total deadline -------------------------------------------------------------------------


async def test_a_dripping_answer_fails_at_the_request_deadline(simulator: Simulator) -> None:
    # One byte every 100 ms never leaves the connection silent for the 5 s read timeout.
    simulator.faults.add("drip", rate=1.0, path="/clusters$", drip_ms=100)
    async with aksk_client(simulator, timeout=5, request_deadline=1.0) as client:
        with pytest.raises(RequestTimeout, match="request deadline"):
            await asyncio.wait_for(client.list_clusters(), HANG)
        # A request the fault does not touch goes through on the same client.
        assert await client.get_quotas() is not None


async def test_a_dripping_iam_answer_fails_the_token_request_at_the_deadline(
    simulator: Simulator,
) -> None:
    s = simulator.settings
    simulator.faults.add("drip", rate=1.0, path="/v3/auth/tokens", drip_ms=100)
    auth = PasswordAuth(
        simulator.base_url,
        s["CCE_EXPORTER_USERNAME"],
        s["CCE_EXPORTER_PASSWORD"],
        s["CCE_EXPORTER_DOMAIN"],
        project_id=simulator.credentials.project_id,
        timeout=5,
        deadline=1.0,
    )
    client = CCEClient(
        simulator.base_url,
        auth,
        simulator.credentials.project_id,
        timeout=5,
        request_deadline=20.0,
        max_retries=0,
    )
    async with client:
        with pytest.raises(RequestTimeout, match="IAM token request"):
            await asyncio.wait_for(client.list_clusters(), HANG)
        # Once IAM answers normally again, the next call gets a token and its answer.
        simulator.faults.clear()
        assert len(await client.list_clusters()) == len(simulator.world.clusters)


# --- the decompressed size cap ------------------------------------------------------------------


async def test_a_gzip_bomb_is_refused_at_the_cap_in_a_worker_thread(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    real = bodies_module.inflate

    def spy(data: bytes, coding: str, limit: int) -> bytes:
        threads.append(threading.current_thread().name)
        return real(data, coding, limit)

    monkeypatch.setattr(bodies_module, "inflate", spy)
    # 64 MB of spaces in about 64 kB of gzip; the client accepts 4 MB.
    simulator.faults.add("gzip_bomb", count=1, path="/clusters$", bomb_mb=64)
    async with aksk_client(simulator, max_response_bytes=4 * 1024 * 1024) as client:
        with pytest.raises(ResponseParseError, match="inflates to more than 4194304 bytes"):
            await asyncio.wait_for(client.list_clusters(), HANG)
        assert threads and all(name.startswith("cce-inflate") for name in threads), threads
        # The next answer (no bomb) is read as usual.
        assert len(await client.list_clusters()) == len(simulator.world.clusters)


def _gzip_transport(body: bytes, encoding: str = "gzip") -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        # A stream, not content: the client reads and decodes the raw bytes itself.
        return httpx.Response(
            200, headers={"content-encoding": encoding}, stream=httpx.ByteStream(body)
        )

    return httpx.MockTransport(handler)


class _NoAuth(httpx.Auth):
    def auth_flow(self, request: httpx.Request) -> Any:
        yield request


@pytest.mark.parametrize(
    ("body", "encoding", "outcome"),
    [
        (gzip.compress(b'{"items": [{"metadata": {"uid": "u1", "name": "a"}}]}'), "gzip", 1),
        (b'{"items": []}', "identity", 0),
        (gzip.compress(b'{"items": []}')[:-6], "gzip", "incomplete gzip body"),
        (b"not gzip at all", "gzip", "corrupt gzip body"),
        (b'{"items": []}', "br", "unsupported Content-Encoding"),
        (gzip.compress(b" " * 300_000), "gzip", "inflates to more than 200000 bytes"),
    ],
)
async def test_encoded_answers_are_decoded_or_refused_clearly(
    body: bytes, encoding: str, outcome: int | str
) -> None:
    client = CCEClient(
        "http://127.0.0.1:9",
        _NoAuth(),
        "p",
        transport=_gzip_transport(body, encoding),
        max_response_bytes=200_000,
        max_retries=0,
    )
    async with client:
        if isinstance(outcome, int):
            assert len(await client.list_clusters()) == outcome
        else:
            with pytest.raises(ResponseParseError, match=outcome):
                await client.list_clusters()


def test_inflate_never_produces_more_than_the_cap_plus_one_step() -> None:
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))
    with pytest.raises(ValueError, match="inflates to more than"):
        inflate(bomb, "gzip", 1024 * 1024)
    assert inflate(gzip.compress(b"x" * 1000), "x-gzip", 1000) == b"x" * 1000


# --- one bad object in a list -------------------------------------------------------------------


async def test_a_capped_read_stops_at_the_first_chunk_past_the_cap() -> None:
    pulled: list[int] = []

    async def huge() -> Any:
        for n in range(1, 1001):  # a megabyte: only the cap stops the reader early
            pulled.append(n)
            yield b"x" * 1000

    with pytest.raises(ValueError, match="too large"):
        await read_capped(huge(), 10_500, lambda: ValueError("too large"))
    assert pulled == list(range(1, 12))  # 11 chunks: the 11th passed the cap, none after it

    async def chunks(*parts: bytes) -> Any:
        for part in parts:
            yield part

    assert await read_capped(chunks(b"ab", b"cd"), 4, lambda: ValueError("no")) == b"abcd"
    assert await read_capped(chunks(), 0, lambda: ValueError("no")) == b""


async def test_one_unreadable_cluster_is_dropped_and_counted_the_others_kept(
    simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    simulator.faults.add("bad_object", count=1, path="/clusters$")
    before = counts()[1].get(client_module.CLUSTERS, 0)
    async with aksk_client(simulator) as client:
        with caplog.at_level(logging.WARNING, logger="exporter.cce.salvage"):
            clusters = await client.list_clusters()
    # The first object (lone surrogate in its name) is gone; the second (values of the wrong
    # types) is kept with those fields empty; every other cluster is there as listed.
    assert len(clusters) == len(simulator.world.clusters) - 1
    assert any(c.name is None and c.id for c in clusters)
    assert counts()[1][client_module.CLUSTERS] == before + 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "item 0: invalid text at metadata.name" in warnings[0].message


async def test_a_list_that_is_not_json_still_fails_with_the_parse_error(
    simulator: Simulator,
) -> None:
    simulator.faults.add("truncated_json", count=1, path="/clusters$")
    async with aksk_client(simulator) as client:
        with pytest.raises(ResponseParseError, match="ClusterList"):
            await client.list_clusters()


# --- oversized names: bounded metrics and logs --------------------------------------------------


@pytest.mark.simulator(clusters=12, nodes_per_cluster=2, seed=4)
async def test_100_kb_names_give_a_bounded_exposition_with_a_counted_marker(
    simulator: Simulator,
) -> None:
    simulator.faults.add(
        "oversized_names", rate=1.0, path="/clusters(/[^/]*)?$", name_bytes=100_000
    )
    async with running_exporter(sim_env(simulator)) as exporter:
        before = counts()[0].get("label_value", 0)
        await exporter.collect_all()
        response = await exporter.http.get("/metrics")
    text = response.text
    # 12 names of 100 kB appear in every cluster, node, pool and add-on series: whole, they
    # would make tens of megabytes. Cut to the limit, the exposition stays small.
    assert len(text) < 2_000_000, len(text)
    scrape = parse(text)
    names = scrape.label_values("cce_cluster_info", "cluster")
    assert len(names) == 12
    assert all(len(n) == limits.label_value_max and n.endswith(MARKER) for n in names)
    assert counts()[0]["label_value"] > before
    assert scrape.value("cce_exporter_truncations_total", kind="label_value") > 0


def test_log_fields_and_arguments_are_cut_to_the_limit() -> None:
    record = logging.LogRecord(
        "x", logging.WARNING, __file__, 1, "cluster %s failed: %s (%d)", None, None
    )
    record.args = ("n" * 100_000, ValueError("e" * 50_000), 7)
    record.cluster = "c" * 100_000
    before = counts()[0].get("log_field", 0)
    assert TruncatingFilter().filter(record)
    message = record.getMessage()
    assert len(message) < 3 * limits.log_field_max and message.endswith("(7)")
    assert message.count(MARKER) == 2
    assert len(record.cluster) == limits.log_field_max
    assert counts()[0]["log_field"] == before + 3


# --- the new settings refuse nonsense -----------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "word"),
    [
        ("REQUEST_DEADLINE", "0", "REQUEST_DEADLINE"),
        ("REQUEST_DEADLINE", "forever", "REQUEST_DEADLINE"),
        ("MAX_RESPONSE_BYTES", "12", "MAX_RESPONSE_BYTES"),
        ("MAX_RESPONSE_BYTES", "1e999", "MAX_RESPONSE_BYTES"),
        ("LABEL_VALUE_MAX_LENGTH", "3", "LABEL_VALUE_MAX_LENGTH"),
        ("LOG_FIELD_MAX_LENGTH", "-1", "LOG_FIELD_MAX_LENGTH"),
    ],
)
def test_bounds_settings_refuse_nonsense(key: str, value: str, word: str) -> None:
    from exporter.config import ConfigError, load_settings
    from tests.test_config import BASE_ENV

    with pytest.raises(ConfigError, match=word):
        load_settings(None, env={**BASE_ENV, f"CCE_EXPORTER_{key}": value})


def test_bounds_settings_reach_the_client() -> None:
    from prometheus_client import CollectorRegistry

    from exporter.cce.factory import build_client
    from exporter.cce.instrumentation import ApiMetrics
    from exporter.config import load_settings
    from tests.test_config import BASE_ENV

    env = {
        **BASE_ENV,
        "CCE_EXPORTER_REQUEST_DEADLINE": "45s",
        "CCE_EXPORTER_MAX_RESPONSE_BYTES": "2048",
    }
    target = load_settings(None, env=env).targets[0]
    client = build_client(target, ApiMetrics(CollectorRegistry()))
    assert (client.request_deadline, client.max_response_bytes) == (45.0, 2048)


def test_the_daemon_log_handler_cuts_long_fields() -> None:
    import io

    from exporter.logs import setup_logging

    stream = io.StringIO()
    root = logging.getLogger()
    before = list(root.handlers), root.level
    setup_logging("INFO", "json", stream)
    try:
        logging.getLogger("exporter.test").warning(
            "collecting nodes failed (%s)",
            "cluster=" + "x" * 200_000,
            extra={"cluster": "y" * 50_000},
        )
    finally:
        for handler in list(root.handlers):
            if getattr(handler, "_cce_exporter", False):
                root.removeHandler(handler)
        root.handlers[:] = before[0]
        root.setLevel(before[1])
    line = stream.getvalue()
    assert line.count("\n") == 1 and len(line) < 4 * limits.log_field_max
    assert MARKER in line
