"""ASGI middleware of the ingress: the body-size limit.

Plain ASGI (not BaseHTTPMiddleware) so streamed responses pass through untouched and each
request pays a few microseconds, not a task hop. Request ids need none of ours: Ray Serve's
proxy puts x-request-id (the client's own, or a new one) on the request and on the response.
"""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimitMiddleware:
    """413 in OpenAI's error shape for a body larger than the gateway allows."""

    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await _send_413(send, int(length), self.max_body_bytes)
            return
        if length is None and scope.get("method") in ("POST", "PUT", "PATCH"):
            # A chunked body declares no size: read it here, up to the limit, so an oversize
            # one is a 413 (a parser that met the limit mid-read would answer 400).
            body, size = await _read_bounded(receive, self.max_body_bytes)
            if body is None:
                await _send_413(send, size, self.max_body_bytes)
                return
            await self.app(scope, _replay(body, receive), send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(received, self.max_body_bytes)
            return message

        try:
            await self.app(scope, counting_receive, send)
        except BodyTooLarge as exc:
            await _send_413(send, exc.size, exc.limit)


async def _read_bounded(receive: Receive, limit: int) -> tuple[bytes | None, int]:
    """The whole body, or (None, bytes seen) once it passes `limit`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client left; the app sees an empty body and the disconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None, size
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks), size


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # what comes after the body: the disconnect

    return replay


class BodyTooLarge(Exception):
    def __init__(self, size: int, limit: int):
        super().__init__(f"body of {size} bytes over the limit of {limit}")
        self.size, self.limit = size, limit


async def _send_413(send: Send, size: int, limit: int) -> None:
    body = json.dumps(
        {
            "error": {
                "message": f"Request body of {size} bytes is over this server's limit of "
                f"{limit} bytes",
                "type": "invalid_request_error",
                "param": None,
                "code": "payload_too_large",
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})
