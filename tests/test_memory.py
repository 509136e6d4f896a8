"""The malloc arena cap is applied where glibc has it, and the environment wins."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_limit_malloc_arenas_applies_once_unless_the_environment_says() -> None:
    code = "from exporter.memory import limit_malloc_arenas as f; print(f())"
    base = {"PATH": "/usr/bin:/bin"}
    import ctypes
    import ctypes.util

    libc = ctypes.util.find_library("c")
    has_mallopt = (
        sys.platform.startswith("linux")
        and libc is not None
        and hasattr(ctypes.CDLL(libc), "mallopt")
    )
    assert _run(code, base) == str(has_mallopt)
    assert _run(code, {**base, "MALLOC_ARENA_MAX": "4"}) == "False"
