"""Telemetry of one pool replica: cold start, cost, latency, queue, batches, GPU, request log."""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from telemetry import gpu, metrics
from telemetry.cost import CostMeter
from telemetry.identity import PoolIdentity
from telemetry.logs import quiet_client_errors

logger = logging.getLogger("ray.serve")

SAMPLE_PERIOD_S = 5.0


def process_age_s() -> float:
    import psutil

    return time.time() - psutil.Process().create_time()


class PoolTelemetry:
    def __init__(self, identity: PoolIdentity):
        quiet_client_errors()  # a 4xx is one log line, not a traceback
        self.identity = identity
        self.tags = identity.tags
        self.cost = CostMeter(identity.usd_per_hour, self._charge)
        self._gpus = gpu.visible_gpus()
        self._calls = itertools.count()
        self._info: list[tuple[Any, dict[str, str]]] = []
        threading.Thread(target=self._sample_loop, name="pool-telemetry", daemon=True).start()

    def ready(self) -> float:
        """Record the cold start (replica process start to now); call at the end of __init__."""
        seconds = process_age_s()
        metrics.replica_init_seconds().observe(seconds, tags=self.tags)
        metrics.replica_starts_total().inc(1, tags=self.tags)
        logger.info(
            "replica ready in %.1fs", seconds, extra={"event": "replica_ready", "init_s": seconds}
        )
        return seconds

    # -- per request -------------------------------------------------------------------------

    @contextlib.contextmanager
    def request(self, request_id: str) -> Iterator[None]:
        """Cost and replica-side latency of one call, and its log line (joined by request_id)."""
        started = time.time()
        key = f"{request_id}:{next(self._calls)}"  # a request id may repeat
        self.cost.start(key)
        status = "ok"
        try:
            yield
        except BaseException as exc:
            status = type(exc).__name__
            raise
        finally:
            usd = self.cost.finish(key)
            elapsed = time.time() - started
            metrics.pool_latency().observe(elapsed, tags=self.tags)
            logger.info(
                "pool request",
                extra={
                    "event": "pool_request",
                    "platform_request_id": request_id,
                    **self.tags,
                    "status": status,
                    "seconds": round(elapsed, 6),
                    "cost_usd": usd,
                },
            )

    def queued(self, arrival: float) -> None:
        """Compute is starting now for a request the ingress received at `arrival` (wall)."""
        self.queue_time(time.time() - arrival)

    def queue_time(self, seconds: float) -> None:
        metrics.pool_queue_seconds().observe(max(0.0, seconds), tags=self.tags)

    def batch(self, size: int, seconds: float) -> None:
        metrics.batch_size().observe(size, tags=self.tags)
        metrics.batch_seconds().observe(seconds, tags=self.tags)

    def items(self, unit: str, amount: float) -> None:
        if amount:
            metrics.items_total().inc(amount, tags={**self.tags, "unit": unit})

    def info(self, gauge: Any, labels: dict[str, str]) -> None:
        """An info-style gauge (value 1, the facts in its labels), re-set every sample period:
        Ray exports a gauge only while it keeps being recorded."""
        tags = {**self.tags, **labels}
        gauge.set(1, tags=tags)
        self._info.append((gauge, tags))

    # -- background ---------------------------------------------------------------------------

    def _charge(self, kind: str, usd: float) -> None:
        metrics.cost_usd_total().inc(usd, tags={**self.tags, "kind": kind})

    def _sample_loop(self) -> None:
        while True:
            time.sleep(SAMPLE_PERIOD_S)
            try:
                self.cost.tick()
                for gauge, tags in self._info:
                    gauge.set(1, tags=tags)
                for device in gpu.sample(self._gpus) if self._gpus else ():
                    tags = {**self.tags, "gpu": str(device["gpu"])}
                    metrics.gpu_memory_used().set(device["used"], tags=tags)
                    metrics.gpu_memory_total().set(device["total"], tags=tags)
                    metrics.gpu_utilization().set(device["utilization"], tags=tags)
            except Exception:  # telemetry must never take a replica down
                logger.debug("telemetry sample failed", exc_info=True)
