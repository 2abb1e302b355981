"""A Ray cluster started the way an operator starts one (`ray start --head`, `ray start
--address`), with every port explicit and its own temp dir, so it runs beside other Ray
instances on the machine; the app goes on it with `serve deploy`.

Each `ray start` runs in a session of its own: the session id finds every process it started,
also one that outlived its parent (a vLLM EngineCore once did), and stopping the cluster (what
`ray stop` does, limited to this cluster's processes) can be checked to leave nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def base_env(serve_runtime_env: dict[str, str], http_port: int) -> dict[str, str]:
    """The environment every node of the cluster starts with: the recipe set's Serve data-path
    switches, this tree on PYTHONPATH (the replicas import its code), private HAProxy ports."""
    env = dict(os.environ)
    env.update(serve_runtime_env)
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "RAY_USAGE_STATS_ENABLED": "0",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "RAY_AUTH_MODE": env.get("RAY_AUTH_MODE", "token"),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(http_port + 1),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(http_port + 2),
        }
    )
    return env


@dataclass
class Node:
    name: str
    starter: subprocess.Popen
    sid: int

    def processes(self) -> list[psutil.Process]:
        return session_processes(self.sid)


@dataclass
class RayCluster:
    """`ray start` nodes on 127.0.0.1. Ports: `base` (GCS) and up; each node takes 30."""

    base: int
    env: dict[str, str]
    temp_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cluster-")))
    nodes: list[Node] = field(default_factory=list)

    @property
    def gcs(self) -> str:
        return f"127.0.0.1:{self.base}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.base + 3}"

    def _ports(self, index: int) -> list[str]:
        p = self.base + 30 * index
        ports = [
            f"--node-manager-port={p + 1}",
            f"--object-manager-port={p + 2}",
            f"--dashboard-agent-grpc-port={p + 4}",
            f"--dashboard-agent-listen-port={p + 5}",
            f"--metrics-export-port={p + 6}",
            f"--runtime-env-agent-port={p + 7}",
            f"--min-worker-port={p + 10}",
            f"--max-worker-port={p + 29}",
        ]
        if index == 0:
            ports += [
                f"--port={self.base}",
                f"--dashboard-port={self.base + 3}",
                f"--ray-client-server-port={self.base + 9}",
            ]
        return ports

    def start_node(
        self, name: str, num_cpus: float, resources: dict[str, float] | None = None
    ) -> Node:
        index = len(self.nodes)
        args = [str(BIN / "ray"), "start", "--block", "--disable-usage-stats"]
        if index == 0:
            args += ["--head", "--include-dashboard=true", "--dashboard-host=127.0.0.1"]
            args += [f"--temp-dir={self.temp_dir}"]
        else:
            args += [f"--address={self.gcs}"]
        args += ["--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}"]
        args += self._ports(index)
        if resources:
            args += [f"--resources={json.dumps(resources)}"]
        log = open(self.temp_dir / f"{name}.log", "w")  # noqa: SIM115 (outlives this call)
        proc = subprocess.Popen(
            args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        node = Node(name, proc, proc.pid)
        self.nodes.append(node)
        return node

    def wait_for_dashboard(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                # 401 is an answer too: Ray's token auth guards the API; the CLI sends the token.
                if httpx.get(f"{self.dashboard}/api/version", timeout=2).status_code in (200, 401):
                    return
            time.sleep(1)
        raise TimeoutError(f"dashboard of {self.gcs} not up within {timeout_s}s")

    def serve(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
        """The `serve` CLI against this cluster's dashboard (serve deploy / status / ...)."""
        return subprocess.run(
            [str(BIN / "serve"), *args, "--address", self.dashboard],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=ROOT,
        )

    def stop_node(self, node: Node, grace_s: float = 10) -> list[psutil.Process]:
        """What `ray stop` does to one node (SIGTERM to its Ray processes, then SIGKILL),
        limited to this node's session. Returns the processes that were still there."""
        procs = node.processes()
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=grace_s)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.starter.wait(5)
        self.nodes.remove(node)
        return alive

    def node_id(self, node: Node) -> str:
        """The Ray node id, from its raylet's command line."""
        for proc in node.processes():
            with contextlib.suppress(psutil.Error):
                for arg in proc.cmdline():
                    if arg.startswith("--node_id="):
                        return arg.removeprefix("--node_id=")
        raise LookupError(f"no raylet found for node {node.name}")

    def drain_node(self, node: Node, deadline_s: int) -> None:
        """What a preemption notice (or KubeRay's autoscaler before it deletes a pod) does: the
        GCS marks the node draining with a deadline; Serve moves its replicas elsewhere first."""
        args = ["drain-node", "--address", self.gcs, "--node-id", self.node_id(node)]
        args += ["--reason", "DRAIN_NODE_REASON_PREEMPTION", "--reason-message", "node going away"]
        done = subprocess.run(
            [str(BIN / "ray"), *args, "--deadline-remaining-seconds", str(deadline_s)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def kill_node(self, node: Node) -> None:
        """A node lost at once (power off): SIGKILL to every process of its session."""
        for proc in node.processes():
            with contextlib.suppress(psutil.Error):
                proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.starter.wait(5)
        self.nodes.remove(node)

    def stop(self) -> None:
        for node in reversed(list(self.nodes)):
            self.stop_node(node)


def session_processes(sid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def marked_processes(marker: str) -> list[psutil.Process]:
    """Processes whose environment holds PLATFORM_TEST_MARK=marker: everything a process started
    with it spawned (Ray's daemons, workers, vLLM's EngineCore), whatever session they run in."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if (
                proc.environ().get("PLATFORM_TEST_MARK") == marker
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(proc)
    return found


def is_engine_core(proc: psutil.Process) -> bool:
    """vLLM's EngineCore process (its name is cut to 15 characters in /proc's comm)."""
    with contextlib.suppress(psutil.Error):
        return "EngineCore" in proc.name() or "EngineCore" in " ".join(proc.cmdline())
    return False


def describe(procs: list[psutil.Process]) -> list[str]:
    lines = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            lines.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
    return lines


def replica_pids(sid: int, deployment: str) -> list[int]:
    """The processes of a deployment's replicas among a session's processes."""
    marker = f"ServeReplica:platform:{deployment}"
    pids = []
    for proc in session_processes(sid):
        with contextlib.suppress(psutil.Error):
            if marker == proc.name().removeprefix("ray::") or marker in " ".join(proc.cmdline()):
                pids.append(proc.pid)
    return pids


def wait_ready(base_url: str, timeout_s: float = 600) -> float:
    """Seconds until GET /ready answers 200."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/ready", timeout=5).status_code == 200:
                return time.monotonic() - start
        time.sleep(1)
    raise TimeoutError(f"{base_url} not ready within {timeout_s}s")


def config_on_port(config: Path, port: int, out: Path) -> Path:
    """A copy of a rendered Serve config listening on `port` (recipes untouched: their hashes
    still match)."""
    data = yaml.safe_load(config.read_text())
    data["http_options"]["port"] = port
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out
