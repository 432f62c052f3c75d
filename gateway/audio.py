"""Voice messages, made into audio Dify's `/audio-to-text` takes.

Dify checks the multipart part's MIME type *exactly* against `audio/mp3`, `audio/m4a`,
`audio/wav`, `audio/amr` and `audio/mpga`: `audio/mpeg`, `audio/ogg`, Opus and WebM are
refused (415). So the type is set explicitly from what the bytes are, and other codecs
(Feishu's Opus, Slack's WebM or Ogg clips) are converted where PyAV is installed (`pip
install dify-gateway[audio]`) to a small mono MP3, or WAV where the build has no MP3
encoder. Without PyAV such a clip cannot be transcribed, and the user is told so.

The import is lazy: deployments that never receive voice never load FFmpeg.
"""

from __future__ import annotations

import asyncio
import functools
import io
from typing import Any

from gateway.files import file_type, safe_name

SAMPLE_RATE = 16_000  # speech recognisers resample to 16 kHz anyway; keeps uploads small

# What a clip is (by its bytes or label) -> the exact type Dify accepts for it.
_DIFY_TYPES = {
    "audio/mpeg": "audio/mp3",
    "audio/mp3": "audio/mp3",
    "audio/mpga": "audio/mpga",
    "audio/wav": "audio/wav",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/amr": "audio/amr",
    "audio/mp4": "audio/m4a",
    "audio/m4a": "audio/m4a",
    "audio/x-m4a": "audio/m4a",
}
_EXTENSIONS = {
    "audio/mp3": ".mp3",
    "audio/mpga": ".mpga",
    "audio/wav": ".wav",
    "audio/amr": ".amr",
    "audio/m4a": ".m4a",
}


class ConversionError(Exception):
    """The audio could not be decoded or encoded."""


class AudioUnsupported(Exception):
    """A clip in a codec Dify refuses, and no PyAV here to convert it."""


@functools.cache
def available() -> bool:
    """Whether PyAV can be imported (checked once, off the ack path)."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _encoder(av: Any) -> tuple[str, str, str, str, str]:
    """(container, codec, sample format, file name, mime type) for the output."""
    if "libmp3lame" in av.codecs_available:
        return "mp3", "libmp3lame", "s16p", "voice.mp3", "audio/mp3"
    return "wav", "pcm_s16le", "s16", "voice.wav", "audio/wav"


def convert(data: bytes) -> tuple[bytes, str, str]:
    """Any audio FFmpeg reads to (bytes, file name, Dify's mime type). Blocking: run it in
    a thread."""
    import av

    container, codec, sample_format, name, mime = _encoder(av)
    out = io.BytesIO()
    try:
        with av.open(io.BytesIO(data), mode="r") as source:
            audio: Any = next((s for s in source.streams if s.type == "audio"), None)
            if audio is None:
                raise ConversionError("no audio stream")
            with av.open(out, mode="w", format=container) as target:
                stream: Any = target.add_stream(codec, rate=SAMPLE_RATE, layout="mono")
                resampler = av.AudioResampler(format=sample_format, layout="mono", rate=SAMPLE_RATE)
                for frame in source.decode(audio):
                    for chunk in resampler.resample(frame):
                        target.mux(stream.encode(chunk))
                for chunk in resampler.resample(None):
                    target.mux(stream.encode(chunk))
                target.mux(stream.encode(None))
    except ConversionError:
        raise
    except Exception as exc:  # PyAV raises its own FFmpegError family (and ValueError)
        raise ConversionError(f"{type(exc).__name__}: {exc}") from exc
    return out.getvalue(), name, mime


def dify_type(data: bytes, declared: str = "") -> str | None:
    """The exact type Dify accepts for this clip as it is, or None when it needs converting."""
    return _DIFY_TYPES.get(file_type(data, declared))


async def for_dify(data: bytes, declared: str, name: str) -> tuple[bytes, str, str]:
    """(bytes, file name, mime type) that `/audio-to-text` accepts. Raises
    `AudioUnsupported` (no PyAV for a codec Dify refuses) or `ConversionError`."""
    accepted = dify_type(data, declared)
    if accepted is not None:
        mime = accepted
    elif not available():
        raise AudioUnsupported(file_type(data, declared))
    else:
        data, _, mime = await asyncio.to_thread(convert, data)
    stem, dot, _ = safe_name(name, default="voice").rpartition(".")
    return data, (stem if dot and stem else "voice") + _EXTENSIONS[mime], mime
