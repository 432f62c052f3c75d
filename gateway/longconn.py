"""Long connections (Slack Socket Mode, Feishu WebSocket, DingTalk Stream, WeCom AI-bot
WebSocket): a small framework-free WebSocket client, and the loop that keeps one up forever.

Platforms drop long connections on purpose (DingTalk about every 12 h, Slack on
`disconnect`), and networks drop them by accident. `keep_connected` reconnects at once after
an orderly end and with capped, jittered backoff after a failure, so a bot never goes silent
after a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

import aiohttp

from gateway.bot_state import connection_failed
from gateway.logs import LogLimiter, describe, one_line

log = logging.getLogger(__name__)

# Every long connection's frames that do not parse are logged through this one limiter, as
# the HTTP edge's rejected webhooks are (gateway/logs.py `EdgeLog`): a peer or a proxy that
# sends garbage in a loop writes a few lines a minute per connection, then a count, never a
# line per frame. Its keys are a connection's name and kind, so they stay few.
_unreadable = LogLimiter(log)


class ConnectionClosed(Exception):
    """The peer closed the socket or it broke."""


@dataclass(frozen=True, slots=True)
class Frame:
    kind: Literal["text", "binary"]
    data: str | bytes

    @property
    def text(self) -> str:
        return self.data if isinstance(self.data, str) else self.data.decode("utf-8")

    @property
    def bytes(self) -> bytes:
        return self.data if isinstance(self.data, bytes) else self.data.encode("utf-8")


class WebSocket:
    """The four operations adapters need; aiohttp stays behind this class."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws

    async def send_text(self, text: str) -> None:
        try:
            await self._ws.send_str(text)
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise ConnectionClosed(str(exc)) from exc

    async def send_bytes(self, data: bytes) -> None:
        try:
            await self._ws.send_bytes(data)
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise ConnectionClosed(str(exc)) from exc

    async def receive(self) -> Frame:
        """The next data frame. Raises `ConnectionClosed` when the socket ends. Wrap it in
        `asyncio.timeout()` to notice a peer that went quiet."""
        msg = await self._ws.receive()
        if msg.type is aiohttp.WSMsgType.TEXT:
            return Frame("text", msg.data)
        if msg.type is aiohttp.WSMsgType.BINARY:
            return Frame("binary", msg.data)
        if msg.type is aiohttp.WSMsgType.ERROR:
            raise ConnectionClosed(f"websocket error: {self._ws.exception()}")
        raise ConnectionClosed(f"websocket closed ({msg.type.name}, code {self._ws.close_code})")

    async def close(self) -> None:
        await self._ws.close()


@asynccontextmanager
async def connect(
    url: str, *, headers: Mapping[str, str] | None = None, heartbeat: float | None = 30.0
) -> AsyncIterator[WebSocket]:
    """Open a WebSocket. `heartbeat` sends WebSocket pings and fails the socket when the
    pong does not come back, so a half-open connection is noticed."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            ws = await session.ws_connect(
                url, headers=dict(headers or {}), heartbeat=heartbeat, max_msg_size=16 << 20
            )
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionClosed(f"cannot connect: {exc}") from exc
        try:
            yield WebSocket(ws)
        finally:
            await ws.close()


def unreadable_frame(connection: str, kind: str, reason: BaseException | str) -> None:
    """Log that `connection` (its bot, as the adapter names it) dropped a `kind` frame
    (`Socket Mode`, `Stream`, …) because it does not parse, and why: at most 10 lines a
    minute per connection and kind, then one line with how many more there were."""
    why = describe(reason) if isinstance(reason, BaseException) else one_line(reason)
    _unreadable.log(
        f"{connection}: {kind} frames that do not parse",
        logging.WARNING,
        "%s: dropping a %s frame that does not parse: %s",
        connection,
        kind,
        why,
    )


async def keep_connected(
    name: str,
    session: Callable[[], Awaitable[None]],
    *,
    on_state: Callable[[bool], None] | None = None,
    min_delay: float = 1.0,
    max_delay: float = 30.0,
    stable_after: float = 60.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Run `session()` forever.

    `session` returns when the server asked us to reconnect (reconnect at once) and raises
    when something failed (back off: `min_delay` doubling to `max_delay`, with jitter; the
    backoff resets after a session that stayed up `stable_after` seconds). `on_state(False)`
    is called whenever a session ends.
    """
    delay = min_delay
    while True:
        started = time.monotonic()
        try:
            await session()
            log.info("%s: connection ended by the server; reconnecting", name)
            wait = 0.0
        except asyncio.CancelledError:
            if on_state:
                on_state(False)
            raise
        except Exception as exc:
            if time.monotonic() - started >= stable_after:
                delay = min_delay
            wait = delay * random.uniform(0.8, 1.2)
            delay = min(delay * 2, max_delay)
            # A bot's connection is reported as its state, logged once per change
            # (gateway/bot_state.py); each retry then only goes to the debug log.
            reported = connection_failed(describe(exc))
            level = logging.DEBUG if reported else logging.WARNING
            log.log(level, "%s: connection failed (%s); retrying in %.1fs", name, exc, wait)
        if on_state:
            on_state(False)
        await sleep(wait)


class LongConnection:
    """One long connection kept up in the background by `keep_connected`, and whether it is
    up right now (adapters report it through `ready`, and `/readyz` reads that). Sessions
    call `set_up(True)` once the platform greeted them; `keep_connected` calls
    `set_up(False)` whenever a session ends."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.up = False
        self._task: asyncio.Task[None] | None = None

    def set_up(self, up: bool) -> None:
        self.up = up

    def start(
        self,
        session: Callable[[], Awaitable[None]],
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(
                keep_connected(self.name, session, on_state=self.set_up, sleep=sleep),
                name=self.name,
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.up = False
