"""Debian's `prometheus` (installed by `make test`) started on loopback for a test: it scrapes
the app's `GET /metrics` every second and, with rule files, evaluates the alert rules."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

PROMETHEUS = shutil.which("prometheus")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    def __init__(self, url: str):
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        r.raise_for_status()
        return r.json()["data"]["result"]

    def alerts(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]

    def scrapes(self) -> int:
        result = self.query('count_over_time(up{job="platform"}[10m])')
        return int(float(result[0]["value"][1])) if result else 0


@contextlib.contextmanager
def prometheus(
    target: str, folder: Path, rule_files: list[Path] = (), port: int | None = None
) -> Iterator[Prometheus]:
    """Prometheus scraping http://<target>/metrics; yields once it has scraped twice."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": "platform", "static_configs": [{"targets": [target]}]}],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{port or _free_port()}"
    log = (folder / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address={address}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    prom = Prometheus(f"http://{address}")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, IndexError, KeyError):
                if prom.scrapes() >= 2:
                    break
            assert proc.poll() is None, (folder / "prometheus.log").read_text()[-2000:]
            time.sleep(0.5)
        else:
            raise TimeoutError("prometheus did not scrape the app within 60 s")
        yield prom
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
