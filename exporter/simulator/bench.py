"""Throughput of the simulator's node lists: ``python -m exporter.simulator.bench``.

Starts ``cce-exporter simulate`` as a separate process (500 clusters x 200 nodes by default), then
has ``--concurrency`` clients fetch AK/SK-signed node lists of random clusters over loopback for
``--seconds`` and prints requests per second, bytes per second and latency percentiles. The client
shares the machine, so on a small box the figure is a lower bound for the server alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx

from exporter.cce import signing


def _start(clusters: int, nodes: int) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "exporter", "simulate"),
            *("--clusters", str(clusters), "--nodes-per-cluster", str(nodes)),
        ],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    settings: dict[str, str] = {}
    for raw in process.stdout:
        line = raw.decode().strip()
        if line == "READY":
            return process, settings
        name, _, value = line.partition("=")
        settings[name] = value
    raise RuntimeError("the simulator exited before READY")


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), or None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _run(settings: dict[str, str], concurrency: int, seconds: float, pid: int) -> None:
    base = settings["CCE_EXPORTER_ENDPOINT"]
    ak, sk = settings["CCE_EXPORTER_AK"], settings["CCE_EXPORTER_SK"]
    project = settings["CCE_EXPORTER_PROJECT_ID"]
    host = base.removeprefix("http://")
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        def headers_for(url: str) -> dict[str, str]:
            headers = {"Host": host, "X-Sdk-Date": signing.sdk_date(datetime.now(UTC))}
            headers["Authorization"] = signing.sign("GET", url, headers, b"", ak, sk)
            return headers

        listing = await client.get(
            f"/api/v3/projects/{project}/clusters",
            headers=headers_for(f"{base}/api/v3/projects/{project}/clusters"),
        )
        listing.raise_for_status()
        cluster_ids = [c["metadata"]["uid"] for c in listing.json()["items"]]
        latencies: list[float] = []
        total_bytes = 0
        errors = 0
        deadline = time.monotonic() + seconds
        rng = random.Random(0)

        async def worker() -> None:
            nonlocal total_bytes, errors
            while time.monotonic() < deadline:
                path = f"/api/v3/projects/{project}/clusters/{rng.choice(cluster_ids)}/nodes"
                started = time.monotonic()
                response = await client.get(path, headers=headers_for(base + path))
                latencies.append(time.monotonic() - started)
                if response.status_code == 200:
                    total_bytes += len(response.content)
                else:
                    errors += 1

        started = time.monotonic()
        cpu_before = _cpu_seconds(pid)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
        cpu_after = _cpu_seconds(pid)
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    print(
        f"{len(latencies)} node lists in {elapsed:.1f}s with {concurrency} clients: "
        f"{len(latencies) / elapsed:.0f} req/s, {total_bytes / elapsed / 1e6:.1f} MB/s, "
        f"p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms, errors {errors}"
    )
    if cpu_before is not None and cpu_after is not None:
        # Below 100% of one core the simulator was waiting for the client, not the other way.
        print(f"simulator CPU: {100 * (cpu_after - cpu_before) / elapsed:.0f}% of one core")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clusters", type=int, default=500)
    parser.add_argument("--nodes-per-cluster", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    process, settings = _start(args.clusters, args.nodes_per_cluster)
    try:
        asyncio.run(_run(settings, args.concurrency, args.seconds, process.pid))
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
