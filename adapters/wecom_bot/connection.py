"""WeCom AI-bot long connection (WebSocket mode): subscribe, heartbeat, callbacks, replies.

The protocol, from the official SDK (WecomTeam/aibot-node-sdk `src/ws.ts`,
`src/types/api.ts`); every frame is JSON `{cmd?, headers:{req_id}, body?, errcode?, errmsg?}`:

- right after the socket opens, send `aibot_subscribe` with `{bot_id, secret}`; the answer
  carries the same `req_id` and `errcode` 0 on success;
- `ping` every 30 s; an answer with its `req_id` is the heartbeat ack, and two pings in a
  row without one mean the connection is dead;
- callbacks arrive as `aibot_msg_callback` / `aibot_event_callback` (plain JSON bodies: no
  callback encryption on this channel);
- replies (`aibot_respond_msg`, `aibot_respond_welcome_msg`, `aibot_send_msg`) are
  acknowledged by a frame with the same `req_id`. Replies sharing a `req_id` are sent one
  at a time, each waiting up to 5 s for its ack, as the SDK does: they stay in order.
- a `disconnected_event` says a newer connection for the same bot displaced this one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from adapters.wecom_bot.api import RATE_LIMITED
from gateway import safejson
from gateway.longconn import ConnectionClosed, Frame, WebSocket, connect, unreadable_frame
from gateway.platform import PlatformError, RateLimited

log = logging.getLogger(__name__)

PLATFORM = "wecom_bot"
CALLBACKS = ("aibot_msg_callback", "aibot_event_callback")
OnCallback = Callable[[str, dict[str, Any], str], Awaitable[None]]  # cmd, body, req_id
Callbacks = asyncio.Queue[tuple[str, dict[str, Any], str]]  # cmd, body, req_id


def new_req_id(prefix: str) -> str:
    """`<prefix>_<ms>_<random>`, the SDK's shape; acks are matched on it."""
    return f"{prefix}_{int(time.time() * 1000)}_{secrets.token_hex(4)}"


class SubscribeFailed(Exception):
    """WeCom refused bot_id/secret (the message carries errcode and errmsg, no secret)."""


class WsLink:
    def __init__(
        self,
        url: str,
        bot_id: str,
        secret: str,
        on_callback: OnCallback,
        *,
        ping_interval: float = 30.0,
        ack_timeout: float = 5.0,
    ) -> None:
        self._url = url
        self._bot_id = bot_id
        self._secret = secret
        self._on_callback = on_callback
        self.ping_interval = ping_interval
        self.ack_timeout = ack_timeout
        self._ws: WebSocket | None = None
        self._subscribed = False
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._queues: dict[str, deque[tuple[str, dict[str, Any], asyncio.Future[Any]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._missed_pings = 0

    @property
    def ready(self) -> bool:
        return self._subscribed

    # --- one connection ------------------------------------------------------------------

    async def session(self) -> None:
        """Connect, subscribe and serve until the connection ends (always by raising, so
        `keep_connected` backs off before the next try)."""
        async with connect(self._url, heartbeat=None) as ws:
            self._ws = ws
            try:
                await self._subscribe(ws)
                await self._serve(ws)
            finally:
                self._subscribed = False
                self._ws = None
                for waiter in self._acks.values():
                    if not waiter.done():
                        waiter.set_exception(ConnectionClosed("connection ended"))

    async def _subscribe(self, ws: WebSocket) -> None:
        req_id = new_req_id("aibot_subscribe")
        body = {"bot_id": self._bot_id, "secret": self._secret}
        await ws.send_text(_frame("aibot_subscribe", req_id, body))
        async with asyncio.timeout(10.0):
            frame = await self._answer_to(ws, req_id)
        if frame.get("errcode", 0) != 0:
            raise SubscribeFailed(f"errcode {_code(frame)}: {_errmsg(frame)}")
        self._subscribed = True
        self._missed_pings = 0
        log.info("wecom_bot: subscribed on the long connection")

    @staticmethod
    async def _answer_to(ws: WebSocket, req_id: str) -> dict[str, Any]:
        while True:
            frame = parse(await ws.receive())
            if frame is not None and frame["headers"].get("req_id") == req_id:
                return frame

    async def _serve(self, ws: WebSocket) -> None:
        inbox: Callbacks = asyncio.Queue()
        helpers = [asyncio.create_task(self._ping(ws)), asyncio.create_task(self._consume(inbox))]
        try:
            while True:
                frame = parse(await ws.receive())
                if frame is not None:
                    self.route(frame, inbox)
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    def route(self, frame: dict[str, Any], inbox: Callbacks) -> None:
        """Send one parsed frame where it goes: a callback to `inbox` (in order, off the
        reader), an ack to its waiting reply, a heartbeat ack to the counter. Raises
        `ConnectionClosed` when WeCom says a newer connection took over."""
        cmd = safejson.text(frame.get("cmd"))
        req_id = safejson.text(frame["headers"].get("req_id"))
        raw_body = frame.get("body")
        body: dict[str, Any] = raw_body if isinstance(raw_body, dict) else {}
        if cmd in CALLBACKS and _is_displacement(body):
            raise ConnectionClosed("a newer connection for this bot took over")
        if cmd in CALLBACKS:
            inbox.put_nowait((cmd, body, req_id))
        elif req_id in self._acks:
            if not self._acks[req_id].done():
                self._acks[req_id].set_result(frame)
        elif req_id.startswith("ping"):
            self._missed_pings = 0

    async def _consume(self, inbox: Callbacks) -> None:
        while True:
            cmd, body, req_id = await inbox.get()
            try:
                await self._on_callback(cmd, body, req_id)
            except Exception:
                log.exception("wecom_bot: could not handle a %s frame", cmd)

    async def _ping(self, ws: WebSocket) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            if self._missed_pings >= 2:
                log.warning("wecom_bot: two heartbeats without an ack; reconnecting")
                await ws.close()
                return
            self._missed_pings += 1
            await ws.send_text(_frame("ping", new_req_id("ping")))

    # --- replies -------------------------------------------------------------------------

    def submit(self, cmd: str, req_id: str, body: dict[str, Any]) -> asyncio.Future[Any]:
        """Queue a reply now (so it keeps its place behind earlier replies with this
        req_id); the future resolves with the ack or fails with `PlatformError`."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        queue = self._queues.setdefault(req_id, deque())
        queue.append((cmd, body, future))
        if len(queue) == 1:
            task = asyncio.create_task(self._drain(req_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return future

    async def request(self, cmd: str, req_id: str, body: dict[str, Any]) -> dict[str, Any]:
        ack: dict[str, Any] = await self.submit(cmd, req_id, body)
        return ack

    async def _drain(self, req_id: str) -> None:
        queue = self._queues[req_id]
        try:
            while queue:
                cmd, body, future = queue[0]
                try:
                    ack = await self._send(cmd, req_id, body)
                except (PlatformError, ConnectionClosed) as exc:
                    error = exc if isinstance(exc, PlatformError) else _closed(exc)
                    if not future.done():
                        future.set_exception(error)
                else:
                    if not future.done():
                        future.set_result(ack)
                queue.popleft()
        finally:
            self._queues.pop(req_id, None)
            for _, _, future in queue:
                if not future.done():
                    future.set_exception(PlatformError(PLATFORM, "not_connected"))

    async def _send(self, cmd: str, req_id: str, body: dict[str, Any]) -> dict[str, Any]:
        ws = self._ws
        if ws is None or not self._subscribed:
            raise PlatformError(PLATFORM, "not_connected", "the long connection is down")
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._acks[req_id] = waiter
        try:
            await ws.send_text(_frame(cmd, req_id, body))
            async with asyncio.timeout(self.ack_timeout):
                ack = await waiter
        except TimeoutError:
            raise PlatformError(PLATFORM, "ack_timeout", f"no ack for {cmd}") from None
        finally:
            self._acks.pop(req_id, None)
        code = ack.get("errcode", 0)
        if isinstance(code, int) and code in RATE_LIMITED:
            raise RateLimited(PLATFORM, 1.0, str(code))
        if code != 0:
            raise PlatformError(PLATFORM, _code(ack), _errmsg(ack))
        return ack

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _frame(cmd: str, req_id: str, body: dict[str, Any] | None = None) -> str:
    frame: dict[str, Any] = {"cmd": cmd, "headers": {"req_id": req_id}}
    if body is not None:
        frame["body"] = body
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def parse(raw: Frame) -> dict[str, Any] | None:
    """A frame as a JSON object with `headers`, or None (logged) for anything else."""
    try:
        frame = safejson.loads_object(raw.data)
    except safejson.JSONError as exc:
        unreadable_frame("wecom_bot", "WebSocket", exc)
        return None
    if not isinstance(frame.get("headers"), dict):
        unreadable_frame("wecom_bot", "WebSocket", "no headers")
        return None
    return frame


def _code(frame: dict[str, Any]) -> str:
    code = frame.get("errcode")
    return str(code) if isinstance(code, int) else safejson.shown(code)


def _errmsg(frame: dict[str, Any]) -> str:
    return safejson.text(frame.get("errmsg"))[:200]


def _is_displacement(body: dict[str, Any]) -> bool:
    event = body.get("event")
    return isinstance(event, dict) and event.get("eventtype") == "disconnected_event"


def _closed(exc: ConnectionClosed) -> PlatformError:
    return PlatformError(PLATFORM, "connection_closed", str(exc))
