"""GET /metrics: this node's Prometheus metrics, read from Ray's metrics agent.

The platform's own families (platform_*), vLLM's (vllm:*) and Ray Serve's (serve_*) by default;
`?all=true` returns everything the node exports. Production scrapes every node's agent
directly (Ray writes a file_sd target list at /tmp/ray/prom_metrics_service_discovery.json);
this route is for quick checks and single-node deployments.
"""

from __future__ import annotations

import time

import httpx
import ray
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

router = APIRouter(tags=["metrics"])

FAMILIES = ("ray_platform_", "ray_vllm", "ray_serve_")
_AGENT_TTL_S = 60.0


def _agent_url(request: Request) -> str:
    cached = getattr(request.app.state, "metrics_agent", None)
    if cached is not None and time.monotonic() - cached[0] < _AGENT_TTL_S:
        return cached[1]
    node_id = ray.get_runtime_context().get_node_id()
    node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
    url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    request.app.state.metrics_agent = (time.monotonic(), url)
    return url


def keep(text: str, prefixes: tuple[str, ...]) -> str:
    """Only the lines (and HELP/TYPE comments) of metric families with these prefixes."""
    lines = []
    for line in text.splitlines():
        name = line.split(" ", 3)[2] if line.startswith("# ") else line
        if name.startswith(prefixes):
            lines.append(line)
    return "\n".join(lines) + "\n"


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request, all: bool = False) -> PlainTextResponse:
    url = _agent_url(request)
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url)
    text = response.text if all else keep(response.text, FAMILIES)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")
