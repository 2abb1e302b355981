"""Which pools have a running replica, as the Serve controller sees it.

Serve queues a request for a deployment with no running replica until one starts; a pool whose
replica died, or whose node left, would hold its clients until the request timeout (minutes).
The Gateway polls the controller once a second instead and its pool clients answer 503 +
Retry-After at once while their pool has no running replica (see `PoolClient.check_available`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from app.pools import CoalescingClient, PoolClient
from app.registry import identity_of
from telemetry.metrics import gateway_held_requests

logger = logging.getLogger("ray.serve")

POLL_S = 1.0


# A rolling update (new code or options, `serve deploy`) drains the old replica and starts
# the new one: requests queue for that moment rather than fail, unless the new one waits for
# resources that may never come. A replica that died (any other state with none running) fails
# fast: its replacement may take minutes (an LLM) or never come (a lost node).
UNSCHEDULABLE_HINTS = ("to be scheduled", "pending", "resources")


# Replicas that take requests: one on a draining node (PENDING_MIGRATION) keeps serving until
# its replacement runs elsewhere, and Serve's routers still send to it.
SERVING_STATES = ("RUNNING", "PENDING_MIGRATION")


def running_replicas(deployment: Any) -> int:
    if deployment is None:
        return 0
    return sum(
        n
        for s, n in deployment.replica_states.items()
        if getattr(s, "value", str(s)) in SERVING_STATES
    )


def unavailable_reason(deployment: Any) -> str | None:
    """Why a deployment (a `serve.status()` entry) cannot answer now, or None if it can."""
    if deployment is None:
        return "it is not deployed"
    if running_replicas(deployment):
        return None
    states = {getattr(s, "value", str(s)): n for s, n in deployment.replica_states.items()}
    message = " ".join((deployment.message or "").split())[:300]
    trigger = getattr(getattr(deployment, "status_trigger", None), "value", "")
    rolling = deployment.status.value == "UPDATING" and trigger == "CONFIG_UPDATE_STARTED"
    if rolling and not any(hint in message.lower() for hint in UNSCHEDULABLE_HINTS):
        return None
    waiting = ", ".join(f"{n} {state.lower()}" for state, n in states.items() if n)
    return (
        f"no running replica ({deployment.status.value}"
        + (f"; replicas: {waiting}" if waiting else "")
        + (f"; {message}" if message else "")
        + ")"
    )


class ReplicaWatcher:
    """A daemon thread that tells each client how many replicas its pool runs, keeps its
    `unavailable_reason` current and exports the requests the Gateway holds for it. Pools
    allowed to scale to zero are never marked unavailable: a request is what starts their
    replica."""

    def __init__(self, app_name: str, clients: dict[str, PoolClient], period_s: float = POLL_S):
        self.app_name = app_name
        self.clients = clients
        self.period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replica-watcher", daemon=True)

    def start(self) -> ReplicaWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def poll(self) -> None:
        from ray import serve

        app = serve.status().applications.get(self.app_name)
        deployments = app.deployments if app is not None else {}
        held = gateway_held_requests()
        for name, client in self.clients.items():
            client.replicas_running(running_replicas(deployments.get(name)))
            if isinstance(client, CoalescingClient):
                held.set(client.held, tags=identity_of(client.spec).tags)
            if client.spec.deployment.autoscaling.min_replicas == 0:
                continue
            reason = unavailable_reason(deployments.get(name))
            if reason != client.unavailable_reason:
                logger.warning(
                    "pool availability changed",
                    extra={"event": "pool_availability", "pool": name, "reason": reason or ""},
                )
            client.unavailable_reason = reason

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.poll()
            except Exception as exc:  # the controller restarting: keep the last view
                logger.info("replica watcher: %s", exc)
