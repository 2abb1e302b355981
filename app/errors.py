"""The one place that turns every failure into OpenAI's error JSON with the right status."""

from __future__ import annotations

import logging
import math
import re

from fastapi import FastAPI, Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.protocol.common import ErrorInfo, ErrorResponse
from deployments.common.errors import RetryLater, ServingError

logger = logging.getLogger("ray.serve")

JSON_TYPES = ("application/json", "+json")


class ClientDisconnected(Exception):
    """The client closed the connection before its answer was ready; the pool call was
    cancelled (the LLM pool aborts the engine request)."""


def error_json(
    status: int,
    message: str,
    error_type: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=ErrorInfo(message=message, type=error_type, param=param, code=code))
    return JSONResponse(status_code=status, content=body.model_dump(), headers=headers)


def serving_error_body(exc: ServingError) -> dict:
    """OpenAI's error object for a ServingError (a JSON response's body, or an SSE event's)."""
    info = ErrorInfo(message=exc.message, type=exc.error_type, param=exc.param, code=exc.code)
    return ErrorResponse(error=info).model_dump()


def serving_error_response(exc: ServingError) -> JSONResponse:
    headers = None
    if isinstance(exc, RetryLater):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    return error_json(
        exc.status_code,
        exc.message,
        exc.error_type,
        param=exc.param,
        code=exc.code,
        headers=headers,
    )


def is_json_request(request: Request) -> bool:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return any(content_type.endswith(t) for t in JSON_TYPES)


_TYPE_TAG = re.compile(r"^([a-z_-]+\[.*\]|str|int|float|bool|dict|list|none)$")


def _param_of(error: dict) -> str | None:
    # Union members appear in `loc` as type tags ('str', 'list[int]'): not part of the field path.
    parts = [str(p) for p in error.get("loc", ()) if p != "body"]
    parts = [p for p in parts if not _TYPE_TAG.match(p)]
    return ".".join(parts) or None


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    first = errors[0]
    if first.get("type") == "json_invalid":
        return f"The request body is not valid JSON: {first.get('msg')}", None
    param = _param_of(first)
    same_field = [e for e in errors if _param_of(e) == param]
    if len(same_field) > 1 and len(same_field) == len(errors):
        kinds = sorted({str(e["loc"][-1]) for e in errors if _TYPE_TAG.match(str(e["loc"][-1]))})
        msg = "does not match any accepted form" + (f" ({', '.join(kinds)})" if kinds else "")
        return f"{param}: {msg}", param
    msg = first.get("msg", "invalid request").removeprefix("Value error, ")
    extra = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return (f"{param}: {msg}{extra}" if param else f"{msg}{extra}"), param


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServingError)
    async def _serving_error(request: Request, exc: ServingError):
        request.state.error_type = exc.code or exc.error_type
        return serving_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        # FastAPI reports a non-JSON body as a validation error; say what is really wrong.
        if _expects_json(request) and not is_json_request(request):
            request.state.error_type = "unsupported_media_type"
            return error_json(
                415,
                "Content-Type must be application/json, got "
                f"'{request.headers.get('content-type', '(none)')}'",
                "invalid_request_error",
                code="unsupported_media_type",
            )
        message, param = _validation_message(exc)
        request.state.error_type = "invalid_value"
        return error_json(400, message, "invalid_request_error", param=param, code="invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        error_type = "server_error" if exc.status_code >= 500 else "invalid_request_error"
        request.state.error_type = f"http_{exc.status_code}"
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code in (404, 405) and message in ("Not Found", "Method Not Allowed"):
            message = f"Invalid URL ({request.method} {request.url.path})"
        return error_json(exc.status_code, message, error_type, headers=exc.headers)

    @app.exception_handler(ClientDisconnected)
    async def _client_gone(request: Request, exc: ClientDisconnected):
        request.state.error_type = "client_disconnected"
        return Response(status_code=499)  # nobody reads it; the request log says 499

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        request_id = request.headers.get("x-request-id")
        logger.exception("unhandled error for request %s", request_id)
        request.state.error_type = "internal_error"
        return error_json(
            500,
            f"Internal error while serving request {request_id}",
            "server_error",
            code="internal_error",
        )


def _expects_json(request: Request) -> bool:
    """True for a route whose body is a JSON model (not form fields or uploaded files)."""
    route = request.scope.get("route")
    body_field = getattr(route, "body_field", None)
    return body_field is not None and not isinstance(body_field.field_info, params.Form)
