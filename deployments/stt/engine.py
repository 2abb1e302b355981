"""What runs speech-to-text: faster-whisper (CTranslate2) on audio from deployments.stt.decode."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from deployments.common.errors import InvalidRequest
from deployments.contract import Segment, Transcript, TranscriptionOptions, Word
from deployments.stt import cuda_libs
from deployments.stt.decode import SAMPLE_RATE, DecodeLimits, decode
from recipes.engines import SttEngineConfig

logger = logging.getLogger("ray.serve")


@dataclass(frozen=True)
class SttRuntime:
    """Where a speech replica really runs (the recipe asks; the host decides)."""

    device: str
    compute_type: str
    requested_device: str
    requested_compute_type: str
    fallback_reason: str | None
    cuda_libs: str
    multilingual: bool

    def as_dict(self) -> dict:
        return asdict(self)


class WhisperEngine:
    def __init__(self, model_dir: Path, config: SttEngineConfig):
        from faster_whisper import BatchedInferencePipeline

        self.config = config
        self.limits = DecodeLimits(max_seconds=config.max_audio_s)
        self.device, self.compute_type = config.device, config.compute_type
        self.fallback_reason: str | None = None
        self.cuda_libs = "not-needed"
        if config.device == "cuda":
            libs = cuda_libs.preload()
            self.cuda_libs = f"{libs.source}:{libs.detail}" if libs.detail else libs.source
            logger.info("CUDA 12 libraries for CTranslate2: %s %s", libs.source, libs.loaded)
            self._start_on_gpu(model_dir)
        else:
            self.model = self._load(model_dir, config.device, config.compute_type)
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

    def _start_on_gpu(self, model_dir: Path) -> None:
        """CTranslate2 loads cuBLAS only at the first transcription: try one now, so a host
        without CUDA 12 libraries fails (or falls back) at start, not at a client's request."""
        try:
            self.model = self._load(model_dir, "cuda", self.config.compute_type)
            segments, _ = self.model.transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32))
            list(segments)
        except (RuntimeError, ValueError, OSError) as e:
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

    def runtime(self) -> SttRuntime:
        return SttRuntime(
            device=self.device,
            compute_type=self.compute_type,
            requested_device=self.config.device,
            requested_compute_type=self.config.compute_type,
            fallback_reason=self.fallback_reason,
            cuda_libs=self.cuda_libs,
            multilingual=self.multilingual,
        )

    # -- input --------------------------------------------------------------------------------

    def decode(self, data: bytes) -> np.ndarray:
        """16 kHz mono float32, limits checked before the samples exist (see decode.py)."""
        return decode(data, self.limits)

    def check(self, audio: np.ndarray, options: TranscriptionOptions) -> float:
        duration = audio.size / SAMPLE_RATE
        if options.language and not self.multilingual and options.language != "en":
            raise InvalidRequest(
                f"this model transcribes English only; language='{options.language}'",
                param="language",
            )
        return duration

    # -- compute ------------------------------------------------------------------------------

    def segments(self, audio: np.ndarray, options: TranscriptionOptions):
        """(lazy iterator of Segments with their words, info): the decoder produces each
        segment when the iterator is advanced, so a caller can stream them or stop early."""
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
            raw, info = self._windows(audio, kwargs)
        else:
            raw, info = self.model.transcribe(audio, vad_filter=self.config.vad_filter, **kwargs)
        return _segments(raw), info

    def _windows(self, audio: np.ndarray, kwargs: dict):
        """The batched pipeline over windows of `long_window_s`, cut at the quietest 100 ms of
        each window's last 5 s, so what the pipeline holds for one call (VAD over its input,
        the chunks it cuts) does not grow with the file. Language is detected on the first
        window and kept. (Measured: a 30-minute file peaked at 1.26 GB RSS windowed and
        1.27 GB whole, results/stt-long: the peak comes from elsewhere, see n19.)"""
        window = int(self.config.long_window_s * SAMPLE_RATE)
        end = _quiet_cut(audio, window)
        first, info = self.pipeline.transcribe(
            audio[:end], batch_size=self.config.pipeline_batch_size, **kwargs
        )
        rest_kwargs = {**kwargs, "language": kwargs["language"] or info.language}

        def segments():
            yield from first
            start = end
            while start < audio.size:
                stop = _quiet_cut(audio, start + window)
                raw, _ = self.pipeline.transcribe(
                    audio[start:stop], batch_size=self.config.pipeline_batch_size, **rest_kwargs
                )
                offset = start / SAMPLE_RATE
                for s in raw:
                    words = [
                        replace(w, start=w.start + offset, end=w.end + offset)
                        for w in (s.words or [])
                    ]
                    yield replace(
                        s, start=s.start + offset, end=s.end + offset, words=words or s.words
                    )
                start = stop

        return segments(), replace(info, duration=audio.size / SAMPLE_RATE)

    def transcribe(self, audio: np.ndarray, options: TranscriptionOptions) -> Transcript:
        segments, info = self.segments(audio, options)
        out, words = [], []
        for segment, segment_words in segments:
            out.append(segment)
            words += segment_words
        return transcript_of(out, words, info, options)


def _quiet_cut(audio: np.ndarray, end: int) -> int:
    """`end`, moved back to the quietest 100 ms of the 5 s before it (not mid-word)."""
    if end >= audio.size:
        return audio.size
    frame = SAMPLE_RATE // 10
    lookback = audio[max(0, end - 50 * frame) : end]
    frames = lookback[: lookback.size // frame * frame].reshape(-1, frame)
    quietest = int(np.argmin(np.square(frames).mean(axis=1)))
    return end - lookback.size + quietest * frame + frame // 2


def _segments(raw) -> Iterator[tuple[Segment, list[Word]]]:
    for i, s in enumerate(raw):
        segment = Segment(
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
        words = [
            Word(word=w.word, start=round(float(w.start), 3), end=round(float(w.end), 3))
            for w in (s.words or [])
        ]
        yield segment, words


def transcript_of(
    segments: list[Segment], words: list[Word], info, options: TranscriptionOptions
) -> Transcript:
    return Transcript(
        text="".join(s.text for s in segments).strip(),
        language=info.language,
        language_probability=round(float(info.language_probability), 4),
        duration=round(float(info.duration), 3),
        segments=segments,
        words=words if options.word_timestamps else None,
    )
