"""Opus voice clips become audio Dify's audio-to-text accepts."""

from __future__ import annotations

import io

import av
import pytest

from gateway import audio
from tests.unit.feishu.audio_sample import opus_clip


def test_pyav_is_available_here() -> None:
    assert audio.available()


def test_opus_becomes_mono_16k_mp3_of_the_same_length() -> None:
    clip = opus_clip(1.0)
    assert clip.startswith(b"OggS")
    data, name, mime = audio.convert(clip)
    assert (name, mime) == ("voice.mp3", "audio/mp3")  # Dify refuses audio/mpeg
    with av.open(io.BytesIO(data)) as converted:
        stream = converted.streams.audio[0]
        assert stream.codec_context.name.startswith("mp3")
        assert stream.rate == audio.SAMPLE_RATE
        assert stream.layout.name == "mono"
        duration = sum(f.samples for f in converted.decode(stream)) / stream.rate
    assert 0.9 < duration < 1.2


def test_without_an_mp3_encoder_it_writes_wav(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(av, "codecs_available", av.codecs_available - {"libmp3lame"})
    data, name, mime = audio.convert(opus_clip(0.5))
    assert (name, mime) == ("voice.wav", "audio/wav")
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"


@pytest.mark.parametrize("garbage", [b"", b"not audio at all", b"OggS" + b"\x00" * 100])
def test_garbage_raises_conversion_error(garbage: bytes) -> None:
    with pytest.raises(audio.ConversionError):
        audio.convert(garbage)
