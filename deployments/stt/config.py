"""Recipe section `engine:` for a Whisper model on faster-whisper."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SttEngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["faster-whisper"] = "faster-whisper"
    device: Literal["cpu", "cuda"] = "cpu"
    compute_type: Literal["int8", "int8_float16", "float16", "float32", "int8_float32"] = Field(
        "int8", description="int8 on CPU, float16 on GPU"
    )
    cuda_fallback: Literal["fail", "cpu"] = Field(
        "fail",
        description="If CTranslate2 cannot run on the GPU (e.g. no CUDA 12 cuBLAS): fail at "
        "start, or run on CPU with int8 and say so in the log and /v1/models",
    )
    cpu_threads: int = Field(1, ge=1, description="CTranslate2 threads per transcription worker")
    num_workers: int = Field(
        2,
        ge=1,
        description="Transcriptions computed at once in one replica (CTranslate2 workers); "
        "more requests wait their turn inside the replica",
    )
    beam_size: int = Field(5, ge=1, description="5 = OpenAI's quality setting; 1 = greedy, faster")
    vad_filter: bool = Field(False, description="Skip silence with Silero VAD on short clips")
    long_audio_s: float = Field(
        30.0,
        gt=0,
        description="Longer clips go through the batched pipeline: VAD chunks decoded in batches",
    )
    pipeline_batch_size: int = Field(8, ge=1, description="Chunks per batched-pipeline step")
    max_audio_s: float = Field(1800.0, gt=0, description="Longest accepted audio (400 beyond)")
    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1, description="413 beyond (OpenAI: 25 MB)")
