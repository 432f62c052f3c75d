"""Voice messages: Feishu records Opus (an Ogg file), which Dify's `audio-to-text` does not
take (it accepts mp3, m4a, wav, webm, amr, mpga, mpeg). PyAV (`pip install
dify-gateway[audio]`) converts it to a small mono MP3, or WAV where the build has no MP3
encoder. Without PyAV the adapter says politely that voice is not supported.

The import is lazy: deployments that never receive voice never load FFmpeg.
"""

from __future__ import annotations

import functools
import io
from typing import Any

SAMPLE_RATE = 16_000  # speech recognisers resample to 16 kHz anyway; keeps uploads small


class ConversionError(Exception):
    """The audio could not be decoded or encoded."""


@functools.cache
def available() -> bool:
    """Whether PyAV can be imported (checked once, at adapter start, off the ack path)."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _encoder(av: Any) -> tuple[str, str, str, str, str]:
    """(container, codec, sample format, file name, mime type) for the output."""
    if "libmp3lame" in av.codecs_available:
        return "mp3", "libmp3lame", "s16p", "voice.mp3", "audio/mpeg"
    return "wav", "pcm_s16le", "s16", "voice.wav", "audio/wav"


def convert(data: bytes) -> tuple[bytes, str, str]:
    """Opus (or any audio FFmpeg reads) to (bytes, file name, mime type). Blocking: run it
    in a thread."""
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
