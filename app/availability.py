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

from app.pools import PoolClient

logger = logging.getLogger("ray.serve")

POLL_S = 1.0


# A rolling update (new code or options, `serve deploy`) drains the old replica and starts
# the new one: requests queue for that moment rather than fail, unless the new one waits for
# resources that may never come. A replica that died (any other state with none running) fails
# fast: its replacement may take minutes (an LLM) or never come (a lost node).
UNSCHEDULABLE_HINTS = ("to be scheduled", "pending", "resources")


def unavailable_reason(deployment: Any) -> str | None:
    """Why a deployment (a `serve.status()` entry) cannot answer now, or None if it can."""
    if deployment is None:
        return "it is not deployed"
    states = {getattr(s, "value", str(s)): n for s, n in deployment.replica_states.items()}
    if states.get("RUNNING", 0):
        return None
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
    """A daemon thread that keeps each watched client's `unavailable_reason` current.
    Pools allowed to scale to zero are not watched: a request is what starts their replica."""

    def __init__(self, app_name: str, clients: dict[str, PoolClient], period_s: float = POLL_S):
        self.app_name = app_name
        self.clients = {
            name: c for name, c in clients.items() if c.spec.deployment.autoscaling.min_replicas > 0
        }
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
        for name, client in self.clients.items():
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
