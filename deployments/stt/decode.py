"""Audio bytes -> 16 kHz mono float32, with every limit checked before memory is spent.

A container's header can lie: a WAV that declares 1 Hz resamples each stored sample into
16,000, so a 2 KB file becomes ~30 M samples. So the header is checked first (sample rate,
channels, declared duration), the output buffer is sized from what the header declares (never
beyond the pool's duration limit), and decoding stops the moment the decoded samples pass the
budget, whatever the header said. Frames are resampled one at a time into that buffer, so the
peak is the buffer itself, not a list of frames plus a concatenated copy (faster-whisper's own
`decode_audio` holds both, as int16 and again as float32).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from deployments.common.errors import InvalidRequest

SAMPLE_RATE = 16000
# A WAV whose data chunk ends this many bytes early is cut short (ffmpeg itself quietly trims
# the declared length to the file); a few bytes of slack for writers that pad oddly.
_WAV_SLACK_BYTES = 64


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_seconds: float
    """Longest audio the pool accepts (the engine's max_audio_s)."""
    min_sample_rate: int = 4000
    max_sample_rate: int = 384000
    max_channels: int = 32


class AudioTooLong(InvalidRequest):
    code = "audio_too_long"


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, param="file", code="invalid_audio")


def _too_long(seconds: float, limits: DecodeLimits, declared: bool) -> AudioTooLong:
    how = "declares" if declared else "holds more than"
    return AudioTooLong(
        f"the uploaded audio {how} {seconds:.0f}s; this model accepts at most "
        f"{limits.max_seconds:.0f}s (split the file, or use a pool with a longer limit)",
        param="file",
    )


def decode(data: bytes, limits: DecodeLimits) -> np.ndarray:
    """Any container/codec PyAV reads (wav, mp3, flac, ogg, webm, m4a, ...) -> 16 kHz mono.

    Raises InvalidRequest (400) for empty, corrupt, truncated or implausible input and
    AudioTooLong (400, code audio_too_long) over the duration limit, before the samples
    past the limit exist.
    """
    import av

    if not data:
        raise InvalidRequest("the uploaded file is empty", param="file")
    budget = int(limits.max_seconds * SAMPLE_RATE)
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except Exception as e:  # PyAV raises many types for undecodable input
        raise _invalid(
            f"the uploaded file could not be decoded as audio ({type(e).__name__})"
        ) from None
    with container:
        if not container.streams.audio:
            raise _invalid("the uploaded file holds no audio stream")
        stream = container.streams.audio[0]
        rate, channels = stream.sample_rate or 0, stream.channels or 0
        if not limits.min_sample_rate <= rate <= limits.max_sample_rate:
            raise _invalid(
                f"the audio declares a sample rate of {rate} Hz; accepted: "
                f"{limits.min_sample_rate}-{limits.max_sample_rate} Hz"
            )
        if not 1 <= channels <= limits.max_channels:
            raise _invalid(f"the audio declares {channels} channels")
        declared = _declared_seconds(container, stream)
        # ffmpeg trims a WAV's declared length to the bytes present; the header's own claim
        # counts too (a 2 KB file claiming hours is refused as such, not decoded).
        wav_chunk = _wav_data_chunk(data)
        if wav_chunk is not None and stream.format is not None and stream.format.bytes:
            wav_seconds = wav_chunk[1] / (rate * channels * stream.format.bytes)
            declared = max(declared or 0.0, wav_seconds)
        if declared is not None and declared > limits.max_seconds:
            raise _too_long(declared, limits, declared=True)
        # Size the buffer from the header (a little over, for resampler tails); grow it only
        # up to the budget when the header said nothing or too little.
        # The buffer: from the header, but never more than the bytes present could decode to
        # if the header exaggerates (WAV); grown up to the budget if it said too little.
        capacity = min(budget, int((declared or 60.0) * SAMPLE_RATE * 1.02) + SAMPLE_RATE)
        if wav_chunk is not None and stream.format is not None and stream.format.bytes:
            present = len(data) / (channels * stream.format.bytes) * SAMPLE_RATE / rate
            capacity = min(capacity, int(present) + SAMPLE_RATE)
        out = np.empty(capacity, dtype=np.float32)
        filled = 0
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        try:
            for frame in _frames(container, stream, resampler):
                chunk = frame.to_ndarray().reshape(-1)
                end = filled + chunk.size
                if end > budget:
                    raise _too_long(limits.max_seconds, limits, declared=False)
                if end > out.size:
                    out = _grow(out, end, budget)
                out[filled:end] = chunk
                filled = end
        except InvalidRequest:
            raise
        except Exception as e:
            raise _invalid(
                f"the uploaded file could not be decoded as audio ({type(e).__name__})"
            ) from None
        finally:
            del resampler
    if filled == 0:
        raise _invalid("the uploaded file holds no audio samples")
    if wav_chunk is not None and sum(wav_chunk) - len(data) > _WAV_SLACK_BYTES:
        raise _invalid(
            f"the uploaded WAV file is truncated: its header declares "
            f"{sum(wav_chunk) - len(data)} more bytes of audio than the file holds"
        )
    # A view, not a copy: the buffer was sized from the header (at most 2% + 1 s over), and a
    # copy would hold the whole audio twice at the peak.
    return out[:filled]


def _declared_seconds(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # av.time_base: microseconds
    return None


def _wav_data_chunk(data: bytes) -> tuple[int, int] | None:
    """(offset, declared size) of a RIFF/WAVE file's data chunk; None if not a WAV, or a
    streamed WAV whose writer left the size unknown."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= min(len(data), 1 << 20):
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if data[pos : pos + 4] == b"data":
            return None if size in (0, 0xFFFFFFFF) else (pos + 8, size)
        pos += 8 + size + (size & 1)
    return None


def _grow(out: np.ndarray, needed: int, budget: int) -> np.ndarray:
    grown = np.empty(min(budget, max(needed, int(out.size * 1.5))), dtype=np.float32)
    grown[: out.size] = out
    return grown


def _frames(container, stream, resampler):
    """Resampled frames, then the resampler's tail. A damaged packet in the middle is skipped
    (as ffmpeg does); a file that fails to decode at all ends as 'no audio samples'."""
    import av

    packets = container.demux(stream)
    for packet in packets:
        try:
            decoded = packet.decode()
        except av.error.InvalidDataError:
            continue
        for frame in decoded:
            yield from resampler.resample(frame)
    yield from resampler.resample(None)


def wav_header(sample_rate: int, num_samples: int, channels: int = 1) -> bytes:
    """A 16-bit PCM WAV header, so raw PCM (live audio) goes through the same decoder."""
    data_bytes = num_samples * channels * 2
    return b"".join(
        [
            b"RIFF",
            (36 + data_bytes).to_bytes(4, "little"),
            b"WAVEfmt ",
            (16).to_bytes(4, "little"),
            (1).to_bytes(2, "little"),
            channels.to_bytes(2, "little"),
            sample_rate.to_bytes(4, "little"),
            (sample_rate * channels * 2).to_bytes(4, "little"),
            (channels * 2).to_bytes(2, "little"),
            (16).to_bytes(2, "little"),
            b"data",
            data_bytes.to_bytes(4, "little"),
        ]
    )
