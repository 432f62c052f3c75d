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


# --- what /audio-to-text gets ---------------------------------------------------------------

MP3 = b"ID3\x03\x00\x00\x00" + b"\x00" * 32
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 24
AMR = b"#!AMR\n" + b"\x00" * 16


@pytest.mark.parametrize(
    ("data", "declared", "name", "expected"),
    [
        (MP3, "audio/mpeg", "clip.mp3", ("clip.mp3", "audio/mp3")),
        (MP3, "application/octet-stream", "voice", ("voice.mp3", "audio/mp3")),
        (WAV, "audio/x-wav", "memo.wav", ("memo.wav", "audio/wav")),
        (AMR, "audio/amr", "voice-1.amr", ("voice-1.amr", "audio/amr")),
        (b"\x00" * 8 + b"ftypM4A " + b"\x00" * 8, "audio/x-m4a", "a.m4a", ("a.m4a", "audio/m4a")),
    ],
)
async def test_accepted_codecs_get_difys_exact_type(
    data: bytes, declared: str, name: str, expected: tuple[str, str]
) -> None:
    out, out_name, mime = await audio.for_dify(data, declared, name)
    assert out == data and (out_name, mime) == expected


async def test_other_codecs_are_converted_to_mp3() -> None:
    data, name, mime = await audio.for_dify(opus_clip(0.5), "audio/webm", "clip.webm")
    assert (name, mime) == ("clip.mp3", "audio/mp3") and data[:3] != b"Ogg"


async def test_without_pyav_other_codecs_are_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio, "available", lambda: False)
    with pytest.raises(audio.AudioUnsupported):
        await audio.for_dify(opus_clip(0.5), "audio/ogg", "clip.ogg")
    # What Dify takes as it is needs no PyAV.
    assert (await audio.for_dify(MP3, "audio/mpeg", "a.mp3"))[2] == "audio/mp3"
