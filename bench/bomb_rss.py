"""Peak RSS of one API answer that is a gzip bomb: ``python -m bench.bomb_rss [--mb 1024]``.

The simulator (its own process) answers the cluster list with a gzip stream of about ``mb`` / 1,000
MB inflating to ``mb`` MB. Each reader runs in a fresh process and reports its peak RSS:

* ``httpx`` - the body read and decoded by httpx (what the client did before it decoded answers
  itself): the whole inflated body in memory;
* ``client`` - :class:`exporter.cce.client.CCEClient` with its default cap (32 MiB decoded).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time

from bench.procs import SimProcess


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _read(kind: str, endpoint: str, project_id: str, ak: str, sk: str) -> dict[str, object]:

    from exporter.cce.auth import AkSkAuth
    from exporter.cce.client import CCEClient
    from exporter.cce.errors import CCEError
    from exporter.cce.http import PROXY_OFF, HttpOptions, build_http_client

    before = _peak_mb()
    started = time.perf_counter()
    outcome: str
    if kind == "httpx":
        options = HttpOptions(timeout=120, proxy=PROXY_OFF, max_connections=4)
        async with build_http_client(options) as http:
            response = await http.get(f"{endpoint}/api/v3/projects/{project_id}/clusters")
            outcome = f"read {len(response.content)} bytes"
    else:
        client = CCEClient(endpoint, AkSkAuth(ak, sk), project_id, max_retries=0)
        async with client:
            try:
                await client.list_clusters()
                outcome = "accepted"
            except CCEError as exc:
                outcome = f"refused: {exc}"
    return {
        "reader": kind,
        "outcome": outcome[:160],
        "seconds": round(time.perf_counter() - started, 2),
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(_peak_mb(), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bomb_rss", description=__doc__)
    parser.add_argument("--mb", type=int, default=1024, help="inflated size in MB")
    parser.add_argument("--reader", choices=("httpx", "client"), help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reader:
        s = json.loads(args.settings)
        result = asyncio.run(
            _read(
                args.reader,
                s["CCE_EXPORTER_ENDPOINT"],
                s["CCE_EXPORTER_PROJECT_ID"],
                s["CCE_EXPORTER_AK"],
                s["CCE_EXPORTER_SK"],
            )
        )
        print(json.dumps(result))
        return 0
    sim = SimProcess(1, 1).start()
    try:
        rule = {"kind": "gzip_bomb", "rate": 1.0, "path": "/clusters$", "bomb_mb": args.mb}
        sim.control("POST", "/_sim/faults", rule)
        for reader in ("client", "httpx"):
            out = subprocess.run(
                [
                    *(sys.executable, "-m", "bench.bomb_rss", "--reader", reader),
                    *("--settings", json.dumps(sim.settings)),
                ],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            print(out.stdout.strip() or f"{reader}: failed: {out.stderr.strip()[-300:]}")
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
