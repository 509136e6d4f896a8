"""The in-run baseline of a cycle: a bare client fetching the exporter's URLs, nothing else.

``python -m bench.bare`` reads one JSON object on stdin: ``{"settings": {...the simulator's
CCE_EXPORTER_* settings...}, "urls": [...], "concurrency": N, "cycles": K}``, gets an IAM token
(password method) once, then runs K cycles of the same three dependent steps the exporter's cycle
has (the cluster list; every per-cluster URL and the quotas; the job polls), each step at
``concurrency`` requests in flight, over one aiohttp session, reading every body and parsing none.
It prints ``{"cycle_seconds": [...], "cpu_seconds": [...]}``: the wall and CPU time of each cycle
of this process alone. The exporter's cycle and CPU over these are what its own work costs on top
of the network and the server, measured on the same machine at the same moment.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp


def steps(urls: list[str]) -> list[list[str]]:
    """The URLs in the exporter's order: cluster lists, then per-cluster calls, then jobs."""
    first = [u for u in urls if u.split("?")[0].endswith("/clusters")]
    last = [u for u in urls if "/jobs/" in u]
    middle = [u for u in urls if u not in first and u not in last]
    return [s for s in (first, middle, last) if s]


async def token(session: aiohttp.ClientSession, settings: dict[str, str]) -> str:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": settings["CCE_EXPORTER_USERNAME"],
                        "password": settings["CCE_EXPORTER_PASSWORD"],
                        "domain": {"name": settings["CCE_EXPORTER_DOMAIN"]},
                    }
                },
            },
            "scope": {"project": {"id": settings["CCE_EXPORTER_PROJECT_ID"]}},
        }
    }
    url = settings["CCE_EXPORTER_IAM_ENDPOINT"].rstrip("/") + "/v3/auth/tokens"
    async with session.post(url, json=body) as response:
        response.raise_for_status()
        return response.headers["X-Subject-Token"]


async def run(config: dict[str, object]) -> dict[str, list[float]]:
    settings = config["settings"]
    assert isinstance(settings, dict)
    urls = [str(u) for u in config["urls"]]  # type: ignore[attr-defined]
    concurrency = int(config["concurrency"])  # type: ignore[call-overload]
    cycles = int(config["cycles"])  # type: ignore[call-overload]
    plan = steps(urls)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        headers = {"X-Auth-Token": await token(session, settings), "Accept": "application/json"}

        async def fetch(url: str) -> None:
            async with session.get(url, headers=headers) as response:
                await response.read()
                if response.status >= 400:
                    raise RuntimeError(f"HTTP {response.status} from {url}")

        async def step(batch: list[str]) -> None:
            queue = iter(batch)

            async def worker() -> None:
                for url in queue:
                    await fetch(url)

            await asyncio.gather(*(worker() for _ in range(min(concurrency, len(batch)))))

        async def cycle() -> None:
            for batch in plan:
                await step(batch)

        await cycle()  # warm-up: connections
        walls: list[float] = []
        cpus: list[float] = []
        for _ in range(cycles):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await cycle()
            walls.append(time.perf_counter() - wall0)
            cpus.append(time.process_time() - cpu0)
    return {"cycle_seconds": walls, "cpu_seconds": cpus}


def main() -> int:
    config = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(run(config))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
