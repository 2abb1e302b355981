"""One streamed chat completion read as its client sees it: status and routing headers, time
to the first chunk with a choice, the chunks and the usage chunk. ops.loadgen.agent (turns with
tool calls) and ops.evals.longctx (long prompts) read their replies through it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class StreamedChat:
    status: int = 0
    pool: str = ""
    recipe: str = ""
    error: str | None = None
    ttft_s: float | None = None
    latency_s: float = 0.0
    chunks: list[dict[str, Any]] = field(default_factory=list)
    """The events that carry choices, in order."""
    usage: dict[str, Any] = field(default_factory=dict)

    @property
    def deltas(self) -> list[dict[str, Any]]:
        return [choice.get("delta") or {} for c in self.chunks for choice in c["choices"]]

    @property
    def text(self) -> str:
        return "".join(delta.get("content") or "" for delta in self.deltas)


async def stream_chat(
    client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str]
) -> StreamedChat:
    """POST /v1/chat/completions with `body` (which asks for a stream) and read it to its end.
    A non-200 answer keeps the first 300 characters of its body; a transport error is 599."""
    out = StreamedChat()
    start = time.perf_counter()
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
            out.status = r.status_code
            out.pool = r.headers.get("x-pool", "")
            out.recipe = r.headers.get("x-recipe", "")
            if r.status_code != 200:
                out.error = (await r.aread()).decode()[:300]
            else:
                async for line in r.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[6:])
                    if event.get("choices"):
                        if out.ttft_s is None:
                            out.ttft_s = time.perf_counter() - start
                        out.chunks.append(event)
                    if event.get("usage"):
                        out.usage = event["usage"]
    except httpx.HTTPError as e:
        out.status = out.status or 599
        out.error = f"{type(e).__name__}: {e}"[:300]
    out.latency_s = time.perf_counter() - start
    return out
