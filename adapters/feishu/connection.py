"""Feishu's long connection ("使用长连接接收事件"), for servers that cannot take webhooks.

Protocol, as lark-oapi's `ws/client.py` speaks it
(https://open.feishu.cn/document/server-docs/event-subscription-guide/event-subscription-configure-/request-url-configuration-case):

1. `POST {api_base}/callback/ws/endpoint` with the app credentials gives a `wss://` URL
   (carrying `service_id`) and a `ClientConfig` (`PingInterval`, `ReconnectInterval`,
   `ReconnectNonce`, seconds);
2. every frame is a protobuf `pbbp2.Frame` (`frames.py`); the client sends a control frame
   `type=ping` every `PingInterval`, and a `pong` may carry a new `ClientConfig`;
3. a data frame (`type=event`, or `type=card` for a card callback) holds a plaintext event,
   the webhook's JSON without encryption or signature; a large one comes in parts (`sum` >
   1, `seq` from 0) under one `message_id`;
4. each event is answered with the same frame plus a header `biz_rt` (ms spent) and the
   payload `{"code":200}`, within 3 s, or `{"code":500}` to have it pushed again.

We answer 200 only on the core's `Delivery.ACK` (the event is in the inbox, or not worth
taking), and 500 on `Delivery.REDELIVER` (the store is down, the gateway is shutting down),
so an event is never acked and then lost. Reconnects: right away, spread by a random part
of `ReconnectNonce`, after a connection that was up; with backoff capped by
`ReconnectInterval` while connecting fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from adapters.feishu.api import FeishuAPI
from adapters.feishu.frames import CONTROL, DATA, Frame, FrameError, decode, encode
from gateway import safejson
from gateway.longconn import ConnectionClosed, WebSocket, connect, unreadable_frame
from gateway.platform import Delivery

log = logging.getLogger(__name__)

PARTS_TTL_S = 10.0  # a multi-part event not complete by then is dropped (Feishu re-pushes)
MAX_PARTS = 64
MAX_PARTIAL_EVENTS = 256  # multi-part events being assembled at once
MIN_UP_S = 1.0  # a connection that lasted less counts as a failed attempt (backoff)
MAX_INTERVAL_S = 3600.0  # a ClientConfig interval beyond this is not taken

# Takes one event's JSON bytes; the verdict says whether to answer 200 or 500 (re-push).
EventHandler = Callable[[bytes], Awaitable[Delivery]]
CODES = {Delivery.ACK: 200, Delivery.REDELIVER: 500}


@dataclass(slots=True)
class _Partial:
    parts: list[bytes | None]
    expires: float


class FeishuSocket:
    def __init__(
        self,
        name: str,
        api: FeishuAPI,
        handle: EventHandler,
        on_state: Callable[[bool], None],
    ) -> None:
        self._name = name
        self._api = api
        self._handle = handle
        self._on_state = on_state
        self.ping_interval = 120.0
        self.reconnect_interval = 120.0
        self.reconnect_nonce = 30.0
        self._partial: dict[str, _Partial] = {}
        self._dropped = False  # the last session was up: the next wait is a short jitter
        self._send_lock = asyncio.Lock()
        self._reconfigured = asyncio.Event()

    # --- keep_connected hooks ------------------------------------------------------------

    def next_delay(self, backoff: float) -> float:
        """Seconds before the next session, given `keep_connected`'s backoff."""
        if self._dropped:
            self._dropped = False
            return random.uniform(0, self.reconnect_nonce)
        return min(backoff, self.reconnect_interval)

    async def pause(self, backoff: float) -> None:
        """`keep_connected`'s `sleep`: the server's pacing instead of ours where it has one."""
        await asyncio.sleep(self.next_delay(backoff))

    async def run(self) -> None:
        """One connection: returns when it ends after being up, raises if it never was."""
        endpoint = await self._api.ws_endpoint()
        self.configure(endpoint.get("ClientConfig"))
        url = str(endpoint["URL"])
        service = parse_qs(urlsplit(url).query).get("service_id", ["0"])[0]
        service_id = int(service) if service.isdigit() else 0
        async with connect(url, heartbeat=30.0) as ws:
            started = time.monotonic()
            self._on_state(True)
            log.info("%s: long connection up", self._name)
            try:
                await self._serve(ws, service_id)
            except ConnectionClosed as exc:
                if time.monotonic() - started < MIN_UP_S:
                    raise
                log.info("%s: long connection ended (%s); reconnecting", self._name, exc)
                self._dropped = True

    def configure(self, config: object) -> None:
        """Apply a `ClientConfig` (from the endpoint, or a pong)."""
        if not isinstance(config, dict):
            return
        for key, attr in (
            ("PingInterval", "ping_interval"),
            ("ReconnectInterval", "reconnect_interval"),
            ("ReconnectNonce", "reconnect_nonce"),
        ):
            value = config.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isfinite(value) and 0 <= value <= MAX_INTERVAL_S:
                setattr(self, attr, float(value))
        self._reconfigured.set()

    # --- one session ---------------------------------------------------------------------

    async def _serve(self, ws: WebSocket, service_id: int) -> None:
        pinger = asyncio.create_task(self._ping(ws, service_id), name=f"{self._name} ping")
        handlers: set[asyncio.Task[None]] = set()
        try:
            while True:
                message = await ws.receive()
                if message.kind != "binary":
                    continue
                try:
                    frame = decode(message.bytes)
                except FrameError as exc:
                    unreadable_frame(self._name, "long connection", exc)
                    continue
                if frame.method == CONTROL:
                    if frame.header("type") == "pong" and frame.payload:
                        self._pong(frame.payload)
                elif frame.method == DATA:
                    # Each event in its own task: a slow store must not hold up the next.
                    task = asyncio.create_task(self._data(ws, frame))
                    handlers.add(task)
                    task.add_done_callback(handlers.discard)
        finally:
            for task in (pinger, *handlers):
                task.cancel()
            await asyncio.gather(pinger, *handlers, return_exceptions=True)

    async def _send(self, ws: WebSocket, frame: Frame) -> None:
        async with self._send_lock:
            await ws.send_bytes(encode(frame))

    async def _ping(self, ws: WebSocket, service_id: int) -> None:
        """A ping every `PingInterval`; a pong that changes the interval takes effect now."""
        last = -float("inf")
        while True:
            interval = max(1.0, self.ping_interval)
            if time.monotonic() - last >= interval:
                ping = Frame(service=service_id, method=CONTROL, headers=[("type", "ping")])
                with contextlib.suppress(ConnectionClosed):
                    await self._send(ws, ping)
                last = time.monotonic()
            self._reconfigured.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._reconfigured.wait(), last + interval - time.monotonic()
                )

    def _pong(self, payload: bytes) -> None:
        try:
            self.configure(safejson.loads(payload))
        except safejson.JSONError:
            log.debug("%s: pong with a payload that is not JSON", self._name)

    async def _data(self, ws: WebSocket, frame: Frame) -> None:
        payload = self._assemble(frame)
        if payload is None:
            return
        started = time.monotonic()
        code = 200
        # Events, and card callbacks (`type=card`: a click on a button of ours), alike.
        if frame.header("type") in ("event", "card"):
            try:
                code = CODES[await self._handle(payload)]
            except Exception:
                log.exception("%s: could not handle an event", self._name)
                code = 500
        elapsed_ms = int((time.monotonic() - started) * 1000)
        frame.headers.append(("biz_rt", str(elapsed_ms)))
        frame.payload = json.dumps({"code": code}).encode()
        try:
            await self._send(ws, frame)
        except ConnectionClosed:
            log.info("%s: connection closed before an ack; Feishu will push again", self._name)

    def _assemble(self, frame: Frame) -> bytes | None:
        """The whole payload, once every part of a multi-part event has arrived."""
        try:
            total = int(frame.header("sum") or "1")
            seq = int(frame.header("seq") or "0")
        except ValueError:
            unreadable_frame(self._name, "long connection", "bad sum/seq")
            return None
        if total <= 1:
            return frame.payload
        if not (0 <= seq < total <= MAX_PARTS):
            log.warning("%s: dropping part %d of %d", self._name, seq, total)
            return None
        now = time.monotonic()
        self._partial = {k: p for k, p in self._partial.items() if p.expires > now}
        key = frame.header("message_id") or ""
        if key not in self._partial and len(self._partial) >= MAX_PARTIAL_EVENTS:
            log.warning("%s: too many events in parts at once; dropping a part", self._name)
            return None
        partial = self._partial.setdefault(key, _Partial([None] * total, now + PARTS_TTL_S))
        if len(partial.parts) != total:
            return None
        partial.parts[seq] = frame.payload
        if any(part is None for part in partial.parts):
            return None
        del self._partial[key]
        return b"".join(part or b"" for part in partial.parts)
