"""Child processes of the benchmark and the soak: the simulator and the exporter worker.

Both are started with the running interpreter and stopped by their own PID (SIGTERM, then SIGKILL
after a grace period). The simulator's control API (``/_sim/``) is reached with plain httpx.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import httpx


def stop(process: subprocess.Popen[Any], grace: float = 10.0) -> int:
    """SIGTERM the process by its PID, SIGKILL it if it does not exit in time; its exit code.

    Its output pipes are closed once it has exited.
    """
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(grace)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()
    return process.returncode


class SimProcess:
    """``cce-exporter simulate`` in its own process; ``settings`` holds its ``CCE_EXPORTER_*``."""

    def __init__(
        self,
        clusters: int,
        nodes_per_cluster: int,
        *,
        latency_ms: float = 0.0,
        fault_rate: float = 0.0,
        port: int = 0,
        seed: int = 1,
        kube: tuple[int, int] | None = None,
    ) -> None:
        self.args = [
            *(sys.executable, "-m", "exporter", "simulate"),
            *("--clusters", str(clusters), "--nodes-per-cluster", str(nodes_per_cluster)),
            *("--latency-ms", str(latency_ms), "--fault-rate", str(fault_rate)),
            *("--seed", str(seed), "--listen", f"127.0.0.1:{port}"),
        ]
        if kube is not None:
            self.args += ["--kube-jobs", str(kube[0]), "--kube-quotas", str(kube[1])]
        self.process: subprocess.Popen[bytes] | None = None
        self.settings: dict[str, str] = {}

    def start(self) -> SimProcess:
        self.process = subprocess.Popen(self.args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert self.process.stdout is not None
        settings: dict[str, str] = {}
        for raw in self.process.stdout:
            line = raw.decode().strip()
            if line == "READY":
                self.settings = settings
                return self
            name, _, value = line.partition("=")
            settings[name] = value
        raise RuntimeError("the simulator exited before READY")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def endpoint(self) -> str:
        return self.settings["CCE_EXPORTER_ENDPOINT"]

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    def control(self, method: str, path: str, body: Any = None) -> Any:
        """One control-API call (``/_sim/...``); the decoded JSON answer."""
        response = httpx.request(method, self.endpoint + path, json=body, timeout=30)
        response.raise_for_status()
        return response.json() if response.content else None

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = self.control("GET", "/_sim/state")
        return result

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)

    def __enter__(self) -> SimProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WorkerProcess:
    """``python -m bench.worker``: the exporter (collector + web server) in its own process."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> WorkerProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.worker", json.dumps(self.env)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        hello = self._read()
        self.port = int(hello["port"])
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _read(self) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the exporter worker exited (code {self.process.wait()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the exporter worker failed: {answer['error']}")
        return answer

    def call(self, cmd: str, **kwargs: Any) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(json.dumps({"cmd": cmd, **kwargs}) + "\n")
        self.process.stdin.flush()
        return self._read()

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None and self.process.stdin is not None:
            try:
                self.process.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.process.stdin.close()
                self.process.wait(15)
            except (OSError, subprocess.TimeoutExpired):
                pass
        stop(self.process)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
