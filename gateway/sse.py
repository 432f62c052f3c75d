"""Incremental Server-Sent Events parser: bytes in, events out.

Follows the WHATWG event-stream rules: lines end in CRLF, LF or CR (a CR at the end of one
read may be the first half of a CRLF in the next); `data:` lines accumulate and join with
LF; a blank line dispatches; `:` lines are comments. Lines that are not valid UTF-8, or name
an unknown field, are skipped and counted in `malformed`.
"""

from __future__ import annotations

from dataclasses import dataclass

_FIELDS = frozenset({"event", "data", "id", "retry"})


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str
    data: str
    id: str | None = None


class SSEParser:
    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._last_id: str | None = None
        self.malformed = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        self._buffer += chunk
        out: list[SSEEvent] = []
        buf = self._buffer
        start = 0
        n = len(buf)
        while start < n:
            lf = buf.find(b"\n", start)
            cr = buf.find(b"\r", start, lf if lf != -1 else n)
            if cr != -1:
                if cr == n - 1:
                    break  # maybe half of a CRLF: wait for the next read
                end, nxt = cr, cr + (2 if buf[cr + 1 : cr + 2] == b"\n" else 1)
            elif lf != -1:
                end, nxt = lf, lf + 1
            else:
                break
            self._line(buf[start:end], out)
            start = nxt
        self._buffer = buf[start:]
        return out

    def close(self) -> list[SSEEvent]:
        """End of stream: a final line without its newline still counts; an event without
        its blank line is dispatched too (servers that close early are common)."""
        out: list[SSEEvent] = []
        if self._buffer:
            self._line(self._buffer.rstrip(b"\r"), out)
            self._buffer = b""
        self._dispatch(out)
        return out

    def _line(self, raw: bytes, out: list[SSEEvent]) -> None:
        if not raw:
            self._dispatch(out)
            return
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.malformed += 1
            return
        if line.startswith(":"):
            return
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name not in _FIELDS:
            self.malformed += 1
        elif name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value

    def _dispatch(self, out: list[SSEEvent]) -> None:
        if self._id is not None:
            self._last_id = self._id
            self._id = None
        if self._data:
            out.append(SSEEvent(self._event or "message", "\n".join(self._data), self._last_id))
        self._data = []
        self._event = ""
