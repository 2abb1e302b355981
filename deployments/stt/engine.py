"""What runs speech-to-text: faster-whisper (CTranslate2) with PyAV decoding."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

from deployments.common.errors import InvalidRequest
from deployments.contract import Segment, Transcript, TranscriptionOptions, Word
from recipes.engines import SttEngineConfig

logger = logging.getLogger("ray.serve")

SAMPLE_RATE = 16000


class WhisperEngine:
    def __init__(self, model_dir: Path, config: SttEngineConfig):
        from faster_whisper import BatchedInferencePipeline

        self.config = config
        self.device, self.compute_type = config.device, config.compute_type
        self.fallback_reason: str | None = None
        self.model = self._load(model_dir, config.device, config.compute_type)
        if config.device == "cuda":
            self._check_cuda(model_dir)
        self.pipeline = BatchedInferencePipeline(self.model)
        self.multilingual = bool(self.model.model.is_multilingual)

    def _load(self, model_dir: Path, device: str, compute_type: str):
        from faster_whisper import WhisperModel

        return WhisperModel(
            str(model_dir),
            device=device,
            compute_type=compute_type,
            cpu_threads=self.config.cpu_threads,
            num_workers=self.config.num_workers,
            local_files_only=True,
        )

    def _check_cuda(self, model_dir: Path) -> None:
        """CTranslate2 loads cuBLAS only at the first transcription: try one now, so a host
        without CUDA 12 libraries fails (or falls back) at start, not at a client's request."""
        try:
            segments, _ = self.model.transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32))
            list(segments)
        except RuntimeError as e:
            reason = f"CTranslate2 cannot run on the GPU here: {e}"
            if self.config.cuda_fallback != "cpu":
                raise RuntimeError(
                    f"{reason}. Install CUDA 12 cuBLAS/cuDNN, or set engine.cuda_fallback: cpu "
                    "in the recipe to run this pool on CPU (int8)"
                ) from e
            logger.warning("%s; falling back to CPU int8 as the recipe allows", reason)
            self.fallback_reason = reason
            self.device, self.compute_type = "cpu", "int8"
            self.model = self._load(model_dir, "cpu", "int8")

    # -- input --------------------------------------------------------------------------------

    def decode(self, data: bytes) -> np.ndarray:
        """Any container/codec PyAV reads (wav, mp3, flac, ogg, webm, m4a, ...) -> 16 kHz mono."""
        from faster_whisper import decode_audio

        if not data:
            raise InvalidRequest("the uploaded file is empty", param="file")
        try:
            audio = decode_audio(io.BytesIO(data), sampling_rate=SAMPLE_RATE)
        except Exception as e:  # PyAV raises many types for undecodable input
            raise InvalidRequest(
                f"the uploaded file could not be decoded as audio ({type(e).__name__})",
                param="file",
                code="invalid_audio",
            ) from None
        if audio.size == 0:
            raise InvalidRequest(
                "the uploaded file holds no audio samples", param="file", code="invalid_audio"
            )
        return audio

    def check(self, audio: np.ndarray, options: TranscriptionOptions) -> float:
        duration = audio.size / SAMPLE_RATE
        if duration > self.config.max_audio_s:
            raise InvalidRequest(
                f"audio is {duration:.0f}s long; this model accepts at most "
                f"{self.config.max_audio_s:.0f}s",
                param="file",
                code="audio_too_long",
            )
        if options.language and not self.multilingual and options.language != "en":
            raise InvalidRequest(
                f"this model transcribes English only; language='{options.language}'",
                param="language",
            )
        return duration

    # -- compute ------------------------------------------------------------------------------

    def transcribe(self, audio: np.ndarray, options: TranscriptionOptions) -> Transcript:
        duration = audio.size / SAMPLE_RATE
        kwargs = dict(
            language=options.language or (None if self.multilingual else "en"),
            initial_prompt=options.prompt,
            beam_size=self.config.beam_size,
            word_timestamps=options.word_timestamps,
        )
        if options.temperature is not None:
            kwargs["temperature"] = options.temperature
        if duration > self.config.long_audio_s:
            segments, info = self.pipeline.transcribe(
                audio, batch_size=self.config.pipeline_batch_size, **kwargs
            )
        else:
            segments, info = self.model.transcribe(
                audio, vad_filter=self.config.vad_filter, **kwargs
            )
        out, words = [], []
        for i, s in enumerate(segments):
            out.append(
                Segment(
                    id=i,
                    seek=int(s.seek),
                    start=round(float(s.start), 3),
                    end=round(float(s.end), 3),
                    text=s.text,
                    tokens=list(s.tokens),
                    temperature=float(s.temperature or 0.0),
                    avg_logprob=float(s.avg_logprob),
                    compression_ratio=float(s.compression_ratio),
                    no_speech_prob=float(s.no_speech_prob),
                )
            )
            words += [
                Word(word=w.word, start=round(float(w.start), 3), end=round(float(w.end), 3))
                for w in (s.words or [])
            ]
        return Transcript(
            text="".join(s.text for s in out).strip(),
            language=info.language,
            duration=round(float(info.duration), 3),
            segments=out,
            words=words if options.word_timestamps else None,
        )
