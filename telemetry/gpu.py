"""GPU memory and utilization of the devices a replica sees, through NVML (nvidia-ml-py).

On a machine without an NVIDIA driver NVML does not initialise and nothing is reported:
no zeros, no fake devices.
"""

from __future__ import annotations

import logging
import os
from typing import Any

logger = logging.getLogger("ray.serve")


def visible_gpus() -> list[Any]:
    """NVML handles of the GPUs in this process's CUDA_VISIBLE_DEVICES (all if unset)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return []
    count = pynvml.nvmlDeviceGetCount()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None or visible.strip() == "":
        return [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    handles = []
    for item in visible.split(","):
        item = item.strip()
        try:
            if item.startswith(("GPU-", "MIG-")):
                handles.append(pynvml.nvmlDeviceGetHandleByUUID(item))
            else:
                handles.append(pynvml.nvmlDeviceGetHandleByIndex(int(item)))
        except Exception:
            logger.warning("NVML cannot resolve visible device %r", item)
    return handles


def sample(handles: list[Any]) -> list[dict[str, float | str]]:
    import pynvml

    out = []
    for handle in handles:
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        utilization = pynvml.nvmlDeviceGetUtilizationRates(handle)
        uuid = pynvml.nvmlDeviceGetUUID(handle)
        out.append(
            {
                "gpu": uuid if isinstance(uuid, str) else uuid.decode(),
                "used": float(memory.used),
                "total": float(memory.total),
                "utilization": utilization.gpu / 100.0,
            }
        )
    return out
