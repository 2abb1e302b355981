"""GET /health (liveness) and GET /ready (readiness: every deployment of the app is running)."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from ray import serve

router = APIRouter(tags=["health"])

_STATUS_TTL_S = 1.0


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    state = request.app.state
    now = time.monotonic()
    cached = getattr(state, "readiness_cache", None)
    if cached is None or now - cached[0] > _STATUS_TTL_S:
        # serve.status() asks the controller: keep that off the event loop and cache it briefly.
        cached = (now, await asyncio.to_thread(_readiness))
        state.readiness_cache = cached
    body = cached[1]
    return JSONResponse(status_code=200 if body["ready"] else 503, content=body)


def _readiness() -> dict:
    app_name = serve.get_replica_context().app_name
    status = serve.status().applications.get(app_name)
    if status is None:
        return {"ready": False, "application": app_name, "status": "NOT_FOUND", "deployments": {}}
    deployments = {name: d.status.value for name, d in status.deployments.items()}
    healthy = all(s in ("HEALTHY", "UPSCALING", "DOWNSCALING") for s in deployments.values())
    return {
        "ready": status.status.value == "RUNNING" and healthy,
        "application": app_name,
        "status": status.status.value,
        "deployments": deployments,
    }
