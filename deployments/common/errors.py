"""Errors a deployment raises for a request it refuses; the ingress makes OpenAI error JSON.

They cross the DeploymentHandle hop as Ray task errors that keep the original class, so the
ingress can tell a client's mistake (4xx) from a failure of ours (5xx).
"""

from __future__ import annotations


class ServingError(Exception):
    """A request-level failure with an HTTP status and OpenAI error fields."""

    status_code: int = 500
    error_type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def __reduce__(self):  # keep param/code when pickled across the handle hop
        return (_rebuild, (type(self), self.message, self.param, self.code))


def _rebuild(cls: type[ServingError], message: str, param: str | None, code: str | None):
    return cls(message, param=param, code=code)


class InvalidRequest(ServingError):
    status_code = 400
    error_type = "invalid_request_error"


class InputTooLong(InvalidRequest):
    code = "context_length_exceeded"


class PayloadTooLarge(ServingError):
    status_code = 413
    error_type = "invalid_request_error"
    code = "payload_too_large"


class UnsupportedMediaType(ServingError):
    status_code = 415
    error_type = "invalid_request_error"
    code = "unsupported_media_type"


class ModelNotFound(ServingError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "model_not_found"


class RetryLater(ServingError):
    """A failure the client should retry after `retry_after_s` (the Retry-After header)."""

    def __init__(self, message: str, *, retry_after_s: float = 1.0, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s


class Overloaded(RetryLater):
    """A pool's queue is full."""

    status_code = 429
    error_type = "rate_limit_error"
    code = "queue_full"


class EngineUnavailable(RetryLater):
    """The pool has no replica that can answer (it died, or is not running yet)."""

    status_code = 503
    error_type = "server_error"
    code = "engine_unavailable"


class RequestTimeout(ServingError):
    status_code = 504
    error_type = "server_error"
    code = "timeout"


def error_for_status(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> ServingError:
    """The ServingError for an HTTP status an engine reported (e.g. vLLM's ErrorResponse)."""
    by_status: dict[int, type[ServingError]] = {
        400: InvalidRequest,
        404: ModelNotFound,
        413: PayloadTooLarge,
        415: UnsupportedMediaType,
        429: Overloaded,
        503: EngineUnavailable,
        504: RequestTimeout,
    }
    cls = by_status.get(status)
    if cls is None:
        cls = InvalidRequest if 400 <= status < 500 else ServingError
    return cls(message, param=param, code=code)


class Unauthorized(ServingError):
    """No key, or a key the Gateway does not know."""

    status_code = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


class Forbidden(ServingError):
    """A known key asking for a model, pool or endpoint it is not allowed."""

    status_code = 403
    error_type = "permission_error"
    code = "forbidden"


class RateLimited(Overloaded):
    """A key over its requests-per-minute, tokens-per-minute or concurrency quota."""

    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"
