"""Find the CUDA 12 libraries CTranslate2 dlopens (cuBLAS, cuDNN 9) before it looks for them.

CTranslate2 4.x is built against CUDA 12 and opens `libcublas.so.12` (and cuDNN 9 for some
ops) by name when it first computes on the GPU. faster-whisper's documented install brings them
as NVIDIA's PyPI wheels (`nvidia-cublas-cu12`, `nvidia-cudnn-cu12`, the `gpu` extra here), whose
folders are not on the loader's path: the usual fix is LD_LIBRARY_PATH, which must be set before
the process starts. Loading them here with RTLD_GLOBAL has the same effect from inside a running
replica: the dynamic loader hands CTranslate2 the already-loaded library of that soname.

Places looked at, in order: the wheels' folders on sys.path, the folder in STT_CUDA_LIB_DIR
(e.g. a cuBLAS 12 -> 13 symlink shim on a CUDA 13-only host), then the system loader's path.
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass
from pathlib import Path

CUBLAS = ("libcublasLt.so.12", "libcublas.so.12")
CUDNN = ("libcudnn.so.9",)
ENV_DIR = "STT_CUDA_LIB_DIR"


@dataclass(frozen=True)
class CudaLibs:
    source: str
    """pip-wheels, STT_CUDA_LIB_DIR, system or missing"""
    loaded: tuple[str, ...]
    detail: str = ""

    @property
    def found(self) -> bool:
        return self.source != "missing"


def _wheel_roots() -> list[Path]:
    """`nvidia/` package folders on sys.path that hold the cuBLAS 12 wheel's libraries."""
    roots = [Path(entry or ".") / "nvidia" for entry in sys.path]
    return [root for root in roots if (root / "cublas/lib" / CUBLAS[1]).exists()]


def _load_from(folder: Path, names: tuple[str, ...]) -> list[str]:
    loaded = []
    for name in names:
        path = folder / name
        if path.exists():
            ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            loaded.append(str(path.resolve()))
    return loaded


def preload() -> CudaLibs:
    """Load cuBLAS 12 (and cuDNN 9 where present); say where they came from."""
    for root in _wheel_roots():
        loaded = _load_from(root / "cublas/lib", CUBLAS) + _load_from(root / "cudnn/lib", CUDNN)
        return CudaLibs("pip-wheels", tuple(loaded), str(root))
    env_dir = os.environ.get(ENV_DIR)
    if env_dir and Path(env_dir).is_dir():
        loaded = _load_from(Path(env_dir), CUBLAS) + _load_from(Path(env_dir), CUDNN)
        if loaded:
            return CudaLibs(ENV_DIR, tuple(loaded), env_dir)
    try:
        ctypes.CDLL("libcublas.so.12", mode=ctypes.RTLD_GLOBAL)
        return CudaLibs("system", ("libcublas.so.12",))
    except OSError as e:
        return CudaLibs("missing", (), str(e))
