"""Frames on their way to one socket: bounded, and a peer that stops reading is cut off.

A browser on a slow link must not make the gateway buffer without bound. Two rules:

- Frames are queued by the answer they belong to, and a newer frame of an answer replaces
  the one still waiting (each carries the whole text, so nothing is lost): a slow reader
  gets fewer, larger steps instead of a growing backlog. At most `limit` answers may wait;
  one more and the socket is closed with 1013 ("try again later").
- A send that does not complete within `stall_s` (the peer's buffers are full: it has
  stopped reading) closes the socket with 1013 as well.

Either way the page reconnects and the replay (mailbox.py) gives it the latest of each
answer, so being cut off costs a slow reader nothing but the frames in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging

from gateway.platform import ServedSocket, SocketClosed

log = logging.getLogger(__name__)

TRY_AGAIN_LATER = 1013
DEFAULT_LIMIT = 64
DEFAULT_STALL_S = 10.0


class Outbox:
    def __init__(
        self,
        socket: ServedSocket,
        *,
        limit: int = DEFAULT_LIMIT,
        stall_s: float = DEFAULT_STALL_S,
        name: str = "socket",
    ) -> None:
        self._socket = socket
        self._limit = limit
        self._stall_s = stall_s
        self._name = name
        self._waiting: dict[str, str] = {}  # answer (or a unique key) -> its newest frame
        self._ready = asyncio.Event()
        self._unique = itertools.count()
        self.cut_off = False
        self.closed = asyncio.Event()  # the writer ended: the socket is cut off or gone
        self._closer: asyncio.Task[None] | None = None
        self._writer = asyncio.create_task(self._write(), name=f"outbox {name}")

    def put(self, text: str, answer: str | None = None) -> None:
        """Queue a frame; `answer` names the answer it supersedes frames of (None: none)."""
        if self.closed.is_set():
            return
        key = f"#{next(self._unique)}" if answer is None else answer
        if key not in self._waiting and len(self._waiting) >= self._limit:
            log.warning("%s: %d answers wait for a slow reader; cut off", self._name, self._limit)
            self._cut_off()
            return
        self._waiting[key] = text
        self._ready.set()

    async def _write(self) -> None:
        try:
            while True:
                await self._ready.wait()
                if self.cut_off:
                    return
                key = next(iter(self._waiting))
                text = self._waiting.pop(key)
                if not self._waiting:
                    self._ready.clear()
                try:
                    async with asyncio.timeout(self._stall_s):
                        await self._socket.send_text(text)
                except TimeoutError:
                    log.warning("%s: not reading for %gs; cut off", self._name, self._stall_s)
                    self._cut_off()
                    return
        except SocketClosed:
            pass
        finally:
            self.closed.set()

    def _cut_off(self) -> None:
        self.cut_off = True
        self._waiting.clear()
        self._ready.set()  # the writer wakes up, and ends
        self.closed.set()
        # Closing may itself wait on the peer (bounded by the edge): not in the caller's way.
        self._closer = asyncio.create_task(self._socket.close(TRY_AGAIN_LATER))

    async def aclose(self) -> None:
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        if self._closer is not None:
            await self._closer
