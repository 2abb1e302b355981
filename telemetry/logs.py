"""One log line, without a traceback, for a request refused for the client's mistake.

Ray Serve logs every exception a replica's method raises with its traceback ("Request
failed."). A 4xx (a ServingError with status_code < 500: bad input, over a limit) is expected
and says all in its message; its traceback only buries real failures. Duck-typed on
`status_code`, so this layer needs no import of the error classes.
"""

from __future__ import annotations

import logging

SERVE_LOGGER = "ray.serve"


class ClientErrorsWithoutTraceback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        cause = getattr(exc, "cause", None) or exc  # a RayTaskError carries the original
        status = getattr(cause, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500:
            record.msg = f"{record.getMessage()} {status} {type(cause).__name__}: {cause}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_client_errors() -> None:
    """Install the filter on Serve's logger of this process (once)."""
    logger = logging.getLogger(SERVE_LOGGER)
    if not any(isinstance(f, ClientErrorsWithoutTraceback) for f in logger.filters):
        logger.addFilter(ClientErrorsWithoutTraceback())
