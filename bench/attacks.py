"""Hostile clients of the exporter's web server, as reusable async functions.

Each attack runs against a server on loopback, measures what a legitimate client sees while it
runs, and returns an :class:`AttackResult` (``survived`` and the numbers measured). The soak runs
them as some of its hostile kinds; the tests run each one small; ``python -m bench.attacks`` runs
one against a running exporter::

    python -m bench.attacks hangup       --url http://127.0.0.1:9877
    python -m bench.attacks flood        --url http://127.0.0.1:9877 --connections 1100
    python -m bench.attacks login-flood  --url http://127.0.0.1:9877 --user prom --password pw

* :func:`hangup_mid_scrape`: clients that ask for ``/metrics`` (uncompressed, so the answer is
  large), read a little and hang up (a plain close, or a TCP reset), as Prometheus does when its
  scrape timeout fires. The server must keep answering.
* :func:`connection_flood`: many connections opened and left half-open (a partial request line,
  then silence), while ``/healthz`` is asked on fresh connections; how many probes were answered
  and how fast.
* :func:`failed_login_flood`: clients sending basic-auth requests with wrong passwords as fast as
  they are answered, while a real login (right password, never checked before) and then repeated
  logins (remembered) are timed.

The helpers speak just enough HTTP/1.1 (one request at a time per connection, Content-Length
bodies) to stay cheap on a small machine: the attacker must not starve the server's CPU by
itself.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import sys
import time
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

__all__ = [
    "AttackResult",
    "connection_flood",
    "failed_login_flood",
    "hangup_mid_scrape",
    "http_get",
]


@dataclass
class AttackResult:
    """What one attack did and what a legitimate client saw meanwhile."""

    kind: str
    survived: bool
    numbers: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None or parts.port is None:
        raise ValueError(f"{url!r}: expected http://HOST:PORT")
    return parts.hostname, parts.port


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) still answers kill(0).
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    return True


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return status, body


def _request(host: str, path: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def http_get(
    url: str, path: str, *, headers: dict[str, str] | None = None, within: float = 5.0
) -> tuple[int, float]:
    """One GET on a fresh connection: ``(status, seconds)``; status 0 when it failed."""
    host, port = _address(url)
    start = time.perf_counter()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(_request(host, path, {**(headers or {}), "Connection": "close"}))
            status, _ = await _read_response(reader)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
        status = 0
    finally:
        if writer is not None:
            writer.close()
    return status, time.perf_counter() - start


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a client whose timeout fired does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def hangup_mid_scrape(
    url: str,
    *,
    times: int = 20,
    read_bytes: int = 4096,
    pid: int | None = None,
    within: float = 10.0,
    reset: bool = False,
) -> AttackResult:
    """``times`` scrapes of ``/metrics`` (no gzip) abandoned after ``read_bytes`` bytes, with a
    plain close (as Prometheus' scrape timeout does: the server's next writes then meet a reset
    connection, EPIPE) or, with ``reset``, a TCP reset."""
    host, port = _address(url)

    def once() -> int:
        """One abandoned scrape on a plain blocking socket (as a scraper's own process would);
        the declared length of the answer."""
        with socket.create_connection((host, port), timeout=within) as sock:
            sock.sendall(_request(host, "/metrics", {"Accept-Encoding": "identity"}))
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("closed before the headers")
                head += chunk
            length = 0
            for line in head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            sock.recv(read_bytes)
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return length

    hung_up = 0
    largest = 0
    for _ in range(times):
        try:
            largest = max(largest, await asyncio.to_thread(once))
            hung_up += 1
        except OSError:
            break  # the server is gone (or refuses): checked below
    status, seconds = await http_get(url, "/healthz", within=within)
    survived = status == 200 and _alive(pid)
    return AttackResult(
        "hangup_mid_scrape",
        survived,
        {
            "hangups": hung_up,
            "metrics_bytes": largest,
            "healthz_status_after": status,
            "healthz_seconds_after": round(seconds, 4),
        },
    )


async def connection_flood(
    url: str,
    *,
    connections: int = 1100,
    probes: int = 10,
    probe_timeout: float = 3.0,
    pid: int | None = None,
) -> AttackResult:
    """``connections`` half-open connections (a partial request line, then silence) held while
    ``probes`` ``/healthz`` requests are made on fresh connections."""
    host, port = _address(url)
    held: list[asyncio.StreamWriter] = []
    refused = 0
    try:
        for _ in range(connections):
            try:
                async with asyncio.timeout(probe_timeout):
                    _, writer = await asyncio.open_connection(host, port)
                writer.write(b"GET /metrics HTTP/1.1\r\nHo")
                held.append(writer)
            except (OSError, TimeoutError):
                refused += 1
        answered = 0
        latencies: list[float] = []
        for _ in range(probes):
            status, seconds = await http_get(url, "/healthz", within=probe_timeout)
            if status == 200:
                answered += 1
                latencies.append(seconds)
    finally:
        for writer in held:
            writer.transport.abort()
    # Connections the server already closed read as EOF; those still open were held to the end.
    status_after, _ = await http_get(url, "/healthz", within=probe_timeout * 3)
    latencies.sort()
    return AttackResult(
        "connection_flood",
        status_after == 200 and _alive(pid),
        {
            "connections_opened": len(held),
            "connections_refused": refused,
            "healthz_probes": probes,
            "healthz_answered": answered,
            "healthz_max_seconds": round(latencies[-1], 4) if latencies else -1.0,
            "healthz_median_seconds": round(latencies[len(latencies) // 2], 4)
            if latencies
            else -1.0,
            "healthz_status_after": status_after,
        },
    )


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def _flood_client(
    host: str,
    port: int,
    path: str,
    user: str,
    wrong: str,
    stop: asyncio.Event,
    counts: dict[int, int],
) -> None:
    """Wrong passwords, a different one each time (identical checks could be shared)."""
    n = 0
    while not stop.is_set():
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.open_connection(host, port)
            while not stop.is_set():
                n += 1
                writer.write(_request(host, path, _basic(user, f"{wrong}-{id(counts)}-{n}")))
                status, _ = await _read_response(reader)
                counts[status] = counts.get(status, 0) + 1
                if status == 503:
                    await asyncio.sleep(0.01)  # told to retry later: again at once, nearly
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            counts[0] = counts.get(0, 0) + 1
            await asyncio.sleep(0.01)
        finally:
            if writer is not None:
                writer.transport.abort()


async def failed_login_flood(
    url: str,
    *,
    user: str,
    password: str,
    clients: int = 150,
    warmup: float = 2.0,
    logins: int = 5,
    login_timeout: float = 30.0,
    path: str = "/metrics",
    pid: int | None = None,
) -> AttackResult:
    """``clients`` connections sending wrong passwords for ``user`` as fast as answered; after
    ``warmup`` seconds, one real login (never checked before: bcrypt runs) and ``logins`` more
    (remembered) are timed, each on a fresh connection with ``path``.

    A real login answered 503 (the server shedding password checks) is retried until it
    succeeds or ``login_timeout`` passes; its time counts from the first attempt."""
    host, port = _address(url)
    stop = asyncio.Event()
    counts: dict[int, int] = {}
    tasks = [
        asyncio.create_task(_flood_client(host, port, path, user, f"{password}-{i}", stop, counts))
        for i in range(clients)
    ]
    numbers: dict[str, float] = {"clients": clients}
    good = _basic(user, password)
    try:
        await asyncio.sleep(warmup)
        start = time.perf_counter()
        first_status = 0
        attempts = 0
        while time.perf_counter() - start < login_timeout:
            attempts += 1
            remaining = login_timeout - (time.perf_counter() - start)
            first_status, _ = await http_get(url, path, headers=good, within=remaining)
            if first_status != 503:
                break
            await asyncio.sleep(0.05)
        numbers["first_login_status"] = first_status
        numbers["first_login_seconds"] = round(time.perf_counter() - start, 4)
        numbers["first_login_attempts"] = attempts
        seconds: list[float] = []
        statuses: list[int] = []
        for _ in range(logins):
            status, took = await http_get(url, path, headers=good, within=login_timeout)
            statuses.append(status)
            seconds.append(took)
        numbers["repeat_logins_ok"] = sum(1 for s in statuses if s == 200)
        numbers["repeat_login_max_seconds"] = round(max(seconds), 4) if seconds else -1.0
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for status, n in sorted(counts.items()):
        numbers[f"flood_answers_{status}"] = n
    status_after, _ = await http_get(url, "/healthz", within=10.0)
    survived = status_after in (200, 401) and _alive(pid) and numbers["first_login_status"] == 200
    return AttackResult("failed_login_flood", survived, numbers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.attacks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("kind", choices=("hangup", "flood", "login-flood"))
    parser.add_argument("--url", required=True, help="http://HOST:PORT of the exporter")
    parser.add_argument(
        "--pid", type=int, default=None, help="the exporter's PID, to check it lives"
    )
    parser.add_argument("--connections", type=int, default=1100)
    parser.add_argument("--clients", type=int, default=150)
    parser.add_argument("--user", default="prometheus")
    parser.add_argument("--password", default="")
    args = parser.parse_args(argv)
    if args.kind == "hangup":
        result = asyncio.run(hangup_mid_scrape(args.url, pid=args.pid))
    elif args.kind == "flood":
        result = asyncio.run(connection_flood(args.url, connections=args.connections, pid=args.pid))
    else:
        result = asyncio.run(
            failed_login_flood(
                args.url, user=args.user, password=args.password, clients=args.clients, pid=args.pid
            )
        )
    print(json.dumps(result.as_dict(), indent=2))
    return 0 if result.survived else 1


if __name__ == "__main__":
    sys.exit(main())
