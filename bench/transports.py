"""CPU per request of the HTTP client candidates, on loopback: ``python -m bench.transports``.

A canned-answer HTTP/1.1 server runs in a child process (its CPU is not counted); this process
sends ``--requests`` GETs at ``--concurrency`` through each candidate, after a warm-up, and
reports the process CPU time per request (median of ``--rounds``) and the wall time. Candidates:

* ``httpx-httpcore``: httpx with its default transport;
* ``httpx-aiohttp``: httpx over ``httpx_aiohttp.AiohttpTransport`` as the library ships it;
* ``exporter``: the exporter's client, :func:`exporter.cce.http.build_http_client`;
* ``aiohttp``: aiohttp's ``ClientSession`` alone, body read, no httpx (the floor).

Each response carries a ~2 kB JSON body with ``Content-Length``, as CCE's small answers do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx

BODY = json.dumps(
    {"kind": "Cluster", "metadata": {"uid": "0" * 36, "name": "c" * 20}, "spec": {"x": "y" * 1800}}
).encode()
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\nX-Request-Id: 0123456789abcdef\r\n\r\n"
    + BODY
)


class _Canned(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            _, self.buf = self.buf.split(b"\r\n\r\n", 1)
            self.transport.write(RESPONSE)


def serve() -> None:
    """The child: serve canned answers on a free loopback port, print it, run until stdin ends."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        sock = socket.create_server(("127.0.0.1", 0))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server = await loop.create_server(_Canned, sock=sock)
        print(sock.getsockname()[1], flush=True)
        await loop.run_in_executor(None, sys.stdin.read)
        server.close()

    asyncio.run(main())


Fetch = Callable[[str], Awaitable[int]]


async def _run(fetch: Fetch, url: str, requests: int, concurrency: int) -> None:
    per_worker = requests // concurrency

    async def worker() -> None:
        for _ in range(per_worker):
            size = await fetch(url)
            assert size == len(BODY), size

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def measure(name: str, url: str, requests: int, concurrency: int) -> tuple[float, float]:
    """(CPU seconds per request, wall seconds) of one round."""
    closers: list[Callable[[], Awaitable[None]]] = []
    if name == "aiohttp":
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))
        closers.append(session.close)

        async def fetch(u: str) -> int:
            async with session.get(u) as response:
                return len(await response.read())

    else:
        if name == "httpx-httpcore":
            limits = httpx.Limits(max_connections=concurrency)
            client = httpx.AsyncClient(limits=limits, trust_env=False)
        elif name == "httpx-aiohttp":
            from httpx_aiohttp import AiohttpTransport

            transport = AiohttpTransport(limits=httpx.Limits(max_connections=concurrency))
            client = httpx.AsyncClient(transport=transport)
        elif name == "exporter":
            from exporter.cce.http import PROXY_OFF, HttpOptions, build_http_client

            client = build_http_client(HttpOptions(proxy=PROXY_OFF, max_connections=concurrency))
        else:
            raise SystemExit(f"unknown candidate {name}")
        closers.append(client.aclose)
        target = httpx.URL(url)

        async def fetch(u: str) -> int:
            return len((await client.get(target)).content)

    try:
        await _run(fetch, url, concurrency * 10, concurrency)  # warm-up: connections, caches
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await _run(fetch, url, requests, concurrency)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        for close in closers:
            await close()
    return cpu / requests, wall


CANDIDATES = ("httpx-httpcore", "httpx-aiohttp", "exporter", "aiohttp")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transports", description=__doc__)
    parser.add_argument("--requests", type=int, default=3200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=list(CANDIDATES))
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.transports", "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        url = f"http://127.0.0.1:{port}/api/v3/projects/p/clusters/c"
        rows = []
        for name in args.only:
            rounds = [
                asyncio.run(measure(name, url, args.requests, args.concurrency))
                for _ in range(args.rounds)
            ]
            cpu = statistics.median(r[0] for r in rounds)
            wall = statistics.median(r[1] for r in rounds)
            rows.append(
                {
                    "candidate": name,
                    "cpu_ms_per_request": round(cpu * 1000, 3),
                    "requests_per_second": round(args.requests / wall),
                }
            )
            print(
                f"{name:16} {cpu * 1000:7.3f} ms CPU/request  {args.requests / wall:8.0f} req/s",
                flush=True,
            )
        print(
            json.dumps({"concurrency": args.concurrency, "requests": args.requests, "rows": rows})
        )
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
