"""One vLLM engine start at a time per GPU.

vLLM sizes its KV cache from the device memory it sees while it profiles. Two engines that share
a GPU and start together each see the other's half-made allocations, and one can fail outright
("No available memory for the cache blocks": the batch pool of `h100x1-mixed-dedicated` on the
lent H100, restarted by Serve at 238 s instead of ~150 s). Engines on one GPU therefore take an
exclusive file lock, keyed by the GPU, from the engine's creation until it is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path


def gpu_key() -> str:
    """The GPUs this process was given (Ray's assignment, else CUDA_VISIBLE_DEVICES)."""
    ids: list[str] = []
    try:
        import ray

        if ray.is_initialized():
            ids = [str(i) for i in ray.get_runtime_context().get_accelerator_ids().get("GPU", [])]
    except Exception:  # outside a Ray worker: fall back to the environment
        ids = []
    if not ids:
        ids = [i for i in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if i]
    return "-".join(sorted(ids)) or "default"


def lock_path(key: str) -> Path:
    return Path(tempfile.gettempdir()) / f"platform-engine-start-gpu-{key}.lock"


@contextlib.asynccontextmanager
async def engine_start_lock(key: str) -> AsyncIterator[None]:
    """Hold the GPU's start lock; waiting happens off the event loop."""
    fd = os.open(lock_path(key), os.O_CREAT | os.O_RDWR, 0o666)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
