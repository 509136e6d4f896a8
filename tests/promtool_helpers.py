"""The real promtool, shared by the alert, dashboard and end-to-end tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PROMTOOL = shutil.which("promtool") or (
    "/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None
)
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")


def promtool(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run promtool; the caller asserts on the result."""
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def check_rules(path: Path) -> str:
    """``promtool check rules``: assert it passes, return what it printed."""
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def run_rule_tests(*paths: Path) -> None:
    """``promtool test rules``: assert every case passes."""
    result = promtool("test", "rules", *(str(p) for p in paths))
    assert result.returncode == 0, result.stdout + result.stderr
