"""A small Ogg/Opus voice clip generated with PyAV, like the ones Feishu records."""

from __future__ import annotations

import io
import math
import struct

import av


def opus_clip(seconds: float = 1.0, rate: int = 48_000) -> bytes:
    out = io.BytesIO()
    with av.open(out, mode="w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=rate, layout="mono")
        frame_size = 960
        for start in range(0, int(rate * seconds), frame_size):
            samples = (
                int(8000 * math.sin(2 * math.pi * 440 * (start + i) / rate))
                for i in range(frame_size)
            )
            frame = av.AudioFrame(format="s16", layout="mono", samples=frame_size)
            frame.planes[0].update(struct.pack(f"<{frame_size}h", *samples))
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()
