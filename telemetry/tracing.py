"""OpenTelemetry tracing: Ray Serve's own spans (proxy, replica, handle hop; W3C context carried
across every hop) plus ours around engine work, exported over OTLP/HTTP.

Tracing is on only where an OTLP endpoint is configured (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
OTEL_EXPORTER_OTLP_ENDPOINT in the environment that starts the app); nothing is exported
otherwise. `span_processors` is the exporter Ray Serve's tracing_config names.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
EXPORTER_IMPORT_PATH = "telemetry.tracing:span_processors"
TRACER_NAME = "inference-platform"


def endpoint_configured() -> bool:
    return any(os.environ.get(name) for name in ENDPOINT_VARIABLES)


def span_processors() -> list[Any]:
    """Called by Ray Serve in every process it traces."""
    if not endpoint_configured():
        return []
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    return [BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=200)]


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A child of the current span (Ray Serve's request span in a replica); no-op without a
    tracer provider."""
    from opentelemetry import trace

    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(name) as current:
        for key, value in attributes.items():
            if value is not None:
                current.set_attribute(key, value)
        yield current
