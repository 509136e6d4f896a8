"""The exporter side of the benchmark, in its own process: ``python -m bench.worker``.

The parent passes the exporter's environment (``CCE_EXPORTER_*``) and talks over stdin/stdout, one
JSON object per line. The worker builds an :class:`~exporter.collect.service.ExporterService`,
serves it with the real web server on a free loopback port and answers:

``{"cmd": "cycle"}``            one ``collect_all()``; wall and CPU seconds, RSS now and peak
``{"cmd": "cycles", "n": N}``   N cycles back to back; per-cycle figures and RSS after each
``{"cmd": "profile", "top": K}`` one cycle under cProfile; the top K functions by own time
``{"cmd": "urls"}``             one cycle; the URLs of every GET it sent (for ``bench.bare``)
``{"cmd": "exposition", "path": P}`` write the current text exposition to P (for the baseline)
``{"cmd": "quit"}``

Measuring a separate process is the point: RSS and CPU are the exporter's own, not the bench's.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import io
import json
import os
import pstats
import resource
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from exporter.assemble import TargetBuilder
from exporter.collect.service import ExporterService
from exporter.config import load_settings
from exporter.memory import HeapFreezer
from exporter.web import Server, build_app


def rss_mb() -> float:
    """Resident set size now (Linux /proc), in MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU of the whole process, every thread included (rendering runs in one)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def top_functions(profile: cProfile.Profile, top: int) -> list[dict[str, Any]]:
    stats = pstats.Stats(profile, stream=io.StringIO())
    rows = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        short = filename
        for marker in ("/site-packages/", "/work/main/", os.getcwd() + "/"):
            if marker in short:
                short = short.split(marker, 1)[1]
        rows.append(
            {
                "function": f"{short}:{line}({name})",
                "calls": calls,
                "tottime": round(tottime, 4),
                "cumtime": round(cumtime, 4),
            }
        )
    rows.sort(key=lambda r: r["tottime"], reverse=True)
    return rows[:top]


class Worker:
    def __init__(self, env: dict[str, str]) -> None:
        self.settings = load_settings(None, env)
        # As cce-exporter builds it.
        self.service = ExporterService(
            self.settings, build_targets=TargetBuilder(), heap=HeapFreezer()
        )
        self.server: Server | None = None

    async def start(self) -> int:
        await self.service.setup()
        self.server = Server(build_app(self.service), "127.0.0.1:0", grace=1)
        await self.server.start()
        return self.server.port

    async def cycle(self) -> dict[str, Any]:
        cpu0 = cpu_seconds()
        t0 = time.perf_counter()
        results = await self.service.collect_all()
        seconds = time.perf_counter() - t0
        cpu = cpu_seconds() - cpu0
        exposition = self.service.exposition()
        return {
            "cycle_seconds": seconds,
            "cpu_seconds": cpu,
            "rss_mb": rss_mb(),
            "peak_rss_mb": peak_rss_mb(),
            "ok": all(results.values()),
            "failed": sorted(k for k, ok in results.items() if not ok),
            "exposition_bytes": exposition.text_size if exposition else 0,
            "exposition_gzip_bytes": exposition.gzip_size if exposition else 0,
        }

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        cmd = command.get("cmd")
        if cmd == "cycle":
            return await self.cycle()
        if cmd == "cycles":
            out = [await self.cycle() for _ in range(int(command["n"]))]
            return {"cycles": out}
        if cmd == "profile":
            profile = cProfile.Profile()
            # cProfile sees the event-loop thread only; rendering (a worker thread) is profiled
            # separately below so that the summary covers where a whole cycle's CPU goes.
            profile.enable()
            result = await self.cycle()
            profile.disable()
            result["top"] = top_functions(profile, int(command.get("top", 15)))
            return result
        if cmd == "urls":
            # One cycle, recording every GET the exporter sends (for the bare-client baseline).
            urls: list[str] = []

            async def record(request: httpx.Request) -> None:
                if request.method == "GET":
                    urls.append(str(request.url))

            clients = [target.client._http for target in self.service.targets]
            for client in clients:
                client.event_hooks["request"].append(record)
            try:
                await self.service.collect_all()
            finally:
                for client in clients:
                    client.event_hooks["request"].remove(record)
            return {"urls": urls}
        if cmd == "exposition":
            exposition = self.service.exposition()
            assert exposition is not None
            await asyncio.to_thread(Path(command["path"]).write_bytes, exposition.text)
            return {"bytes": exposition.text_size}
        if cmd == "gc":
            gc.collect()
            return {"rss_mb": rss_mb()}
        raise ValueError(f"unknown command {cmd!r}")

    async def close(self) -> None:
        if self.server is not None:
            await self.server.stop()
        await self.service.close()


async def main() -> None:
    env = json.loads(sys.argv[1])
    worker = Worker(env)
    port = await worker.start()
    loop = asyncio.get_running_loop()
    print(json.dumps({"ready": True, "port": port, "pid": os.getpid()}), flush=True)
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            command = json.loads(line)
            if command.get("cmd") == "quit":
                break
            try:
                answer = await worker.handle(command)
            except Exception as exc:  # the parent shows it; the worker stays up
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(answer), flush=True)
    finally:
        await worker.close()


if __name__ == "__main__":
    from exporter.memory import apply_process_tuning

    apply_process_tuning()  # as `cce-exporter` does at start-up
    asyncio.run(main())
