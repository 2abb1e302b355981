"""Ingress telemetry: one ASGI middleware that measures every request (status, error type,
duration, TTFT of streams, 429s), writes one JSON log line per request, and remembers which
pool served each request id so POST /v1/feedback can label its outcome.

The log line is also the input of capacity planning (`python -m ops.capacity shape`): arrival
time, the workload profile asked for, streaming, and the tokens the pool counted (prompt,
completion, and prompt tokens its prefix cache served), which routes leave in
`request.state.tokens`."""

from __future__ import annotations

import collections
import logging
import time
import uuid
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth import OPEN_CALLER, OPEN_TENANT
from app.routes.deps import PROFILE_HEADER
from telemetry import metrics
from telemetry.metrics import POOL_TAGS

logger = logging.getLogger("ray.serve")

NO_POOL = dict.fromkeys(POOL_TAGS, "none")


class OutcomeIndex:
    """request id -> pool labels and tenant of recent answered requests (bounded, oldest
    dropped)."""

    def __init__(self, capacity: int = 100_000):
        self.capacity = capacity
        self._labels: collections.OrderedDict[str, tuple[dict[str, str], str]] = (
            collections.OrderedDict()
        )

    def remember(self, request_id: str, labels: dict[str, str], tenant: str = OPEN_TENANT) -> None:
        self._labels[request_id] = (labels, tenant)
        if len(self._labels) > self.capacity:
            self._labels.popitem(last=False)

    def labels(self, request_id: str, tenant: str = OPEN_TENANT) -> dict[str, str] | None:
        """The request's labels if this tenant sent it (another tenant's reads as unknown)."""
        found = self._labels.get(request_id)
        if found is None or found[1] != tenant:
            return None
        return found[0]


MAX_REQUEST_ID = 128


def valid_request_id(value: bytes) -> bool:
    """1 to 128 printable ASCII characters, no space (what logs and headers carry safely)."""
    return 0 < len(value) <= MAX_REQUEST_ID and all(0x21 <= b <= 0x7E for b in value)


def bound_request_id(scope: Scope) -> None:
    """Replace a client's x-request-id that is not valid_request_id (or sent twice) with a
    fresh one, before anything logs or echoes it. HAProxy drops such ids already; this covers
    Serve's own proxy."""
    headers = scope.get("headers") or []
    ids = [v for k, v in headers if k == b"x-request-id"]
    if len(ids) == 1 and valid_request_id(ids[0]):
        return
    if ids:
        fresh = uuid.uuid4().hex.encode()
        scope["headers"] = [(k, v) for k, v in headers if k != b"x-request-id"] + [
            (b"x-request-id", fresh)
        ]


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp, outcomes: OutcomeIndex):
        self.app = app
        self.outcomes = outcomes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        bound_request_id(scope)
        arrival = time.time()
        state = scope.setdefault("state", {})
        state["arrival"] = arrival
        seen: dict[str, Any] = {"status": 500, "stream": False, "first": None, "done": False}

        async def send_and_measure(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                content_type = dict(message.get("headers", ())).get(b"content-type", b"")
                seen["stream"] = content_type.startswith(b"text/event-stream")
            elif message["type"] == "http.response.body":
                if seen["first"] is None and message.get("body"):
                    seen["first"] = time.time()
                if not message.get("more_body"):
                    seen["done"] = True
            await send(message)

        try:
            await self.app(scope, receive, send_and_measure)
        finally:
            self._record(scope, arrival, seen)

    def _record(self, scope: Scope, arrival: float, seen: dict[str, Any]) -> None:
        state = scope.get("state", {})
        route = scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        pool = state.get("pool")
        labels = pool.identity.tags if pool is not None else NO_POOL
        # 499: the client went away. A stream that ended on an error event (its replica died
        # mid-stream) counts with that error's status although 200 went out first.
        status = int(state.get("stream_status", seen["status"])) if seen["done"] else 499
        error_type = state.get("error_type", "") if status >= 400 else ""
        seconds = time.time() - arrival
        tags = {"endpoint": endpoint, **labels}
        metrics.requests_total().inc(
            1, tags={**tags, "status": str(status), "error_type": error_type}
        )
        metrics.request_duration().observe(seconds, tags={**tags, "status": str(status)})
        ttft = None
        if seen["stream"] and seen["first"] is not None and status == 200:
            ttft = seen["first"] - arrival
            metrics.stream_ttft().observe(ttft, tags=tags)
        if status == 429 and pool is not None:
            metrics.rejected_total().inc(1, tags={**labels, "reason": "queue_full"})
        headers = Headers(scope=scope)
        request_id = headers.get("x-request-id") or ""
        tenant = state.get("caller", OPEN_CALLER).tenant
        metrics.tenant_requests_total().inc(
            1,
            tags={
                "tenant": tenant,
                "endpoint": endpoint,
                "model": labels["model"],
                "pool": labels["pool"],
                "status": str(status),
            },
        )
        if pool is not None and 200 <= status < 300 and request_id:
            self.outcomes.remember(request_id, labels, tenant)
        prompt, completion, cached = state.get("tokens") or (None, None, None)
        logger.info(
            "request",
            extra={
                "event": "request",
                "platform_request_id": request_id,
                "tenant": tenant,
                "endpoint": endpoint,
                **labels,
                "status": status,
                "error_type": error_type,
                "seconds": round(seconds, 6),
                "ttft_s": None if ttft is None else round(ttft, 6),
                "arrival": round(arrival, 3),
                "stream": seen["stream"],
                "workload_profile": headers.get(PROFILE_HEADER) or labels["profile"],
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "cached_tokens": cached,
            },
        )
