"""ops/dashboards/alerts.yml: valid for Prometheus (`promtool check rules`), and the series a
killed replica leaves make the pool alerts fire (`promtool test rules`). promtool comes with
Debian's prometheus package, which `make test` installs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: `make test` installs Debian's prometheus"
)


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_alert_rules_are_valid():
    result = promtool("check", "rules", "ops/dashboards/alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_a_killed_replica_fires_the_pool_alerts():
    folder = ROOT / "tests" / "fixtures" / "alerts"
    result = promtool("test", "rules", "replica_killed.test.yml", cwd=folder)
    assert result.returncode == 0, result.stdout + result.stderr
