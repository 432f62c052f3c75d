"""DingTalk Stream mode: one long-lived WebSocket per bot, kept up forever.

Protocol (open-dingtalk/dingtalk-stream-sdk-python `stream.py`): `POST
/v1.0/gateway/connections/open` returns an endpoint and a one-time ticket; the socket is
`<endpoint>?ticket=<quote_plus(ticket)>`. Frames are acked on the socket (frames.py).

Why bots "go silent after ~12 h" elsewhere: DingTalk sends SYSTEM `disconnect` ("persistent
connection is timeout") and then stops using the socket, and a socket can also stay open
while delivering nothing. So: on `disconnect` we ack and end the session, and
`keep_connected` opens a new one at once; WebSocket pings (`heartbeat`) catch a half-open
socket; and a watchdog reconnects when not even a ping has arrived for `IDLE_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from adapters.dingtalk.api import DingtalkApi
from adapters.dingtalk.frames import (
    CALLBACK,
    CARD_TOPIC,
    DISCONNECT,
    ROBOT_TOPIC,
    SUBSCRIPTIONS,
    SYSTEM,
    FrameError,
    StreamFrame,
    ack_for,
    parse_frame,
    ticket_url,
)
from gateway import longconn
from gateway.platform import Delivery

log = logging.getLogger(__name__)

HEARTBEAT = 30.0  # WebSocket ping interval; a missing pong fails the socket
IDLE_TIMEOUT = 300.0  # no frame at all for this long: assume the socket is dead

# Hands one robot-message (or card-click) frame to the core. The frame is acked only on
# `Delivery.ACK`; left unacked (the store is down, the gateway is shutting down), DingTalk
# delivers it again.
OnMessage = Callable[[StreamFrame], Awaitable[Delivery]]


@dataclass(frozen=True, slots=True)
class Step:
    """What one frame asks of the session: an ack to send, and whether to reconnect."""

    ack: str | None = None
    reconnect: bool = False


class StreamClient:
    def __init__(
        self,
        bot: str,
        api: DingtalkApi,
        on_message: OnMessage,
        on_card_click: OnMessage | None = None,
    ) -> None:
        self._bot = bot
        self._api = api
        self._handlers = {ROBOT_TOPIC: on_message}
        if on_card_click is not None:
            self._handlers[CARD_TOPIC] = on_card_click
        self._connection = longconn.LongConnection(f"dingtalk stream {bot}")
        self.sessions = 0

    @property
    def connected(self) -> bool:
        return self._connection.up

    def start(self) -> None:
        self._connection.start(self._session)

    async def aclose(self) -> None:
        await self._connection.stop()

    async def _session(self) -> None:
        """One connection. Returns when DingTalk asks us to reconnect (or goes quiet);
        raises when the connection fails."""
        endpoint, ticket = await self._api.open_connection(SUBSCRIPTIONS)
        async with longconn.connect(ticket_url(endpoint, ticket), heartbeat=HEARTBEAT) as ws:
            self.sessions += 1
            self._connection.set_up(True)
            log.info("bot %s: DingTalk Stream connected", self._bot)
            while True:
                try:
                    async with asyncio.timeout(IDLE_TIMEOUT):
                        received = await ws.receive()
                except TimeoutError:
                    log.warning(
                        "bot %s: no Stream frame for %.0fs; reconnecting", self._bot, IDLE_TIMEOUT
                    )
                    return
                step = await self.read_frame(received.data)
                if step.ack is not None:
                    await ws.send_text(step.ack)
                if step.reconnect:
                    log.info("bot %s: DingTalk asked for a reconnect", self._bot)
                    return

    async def read_frame(self, data: str | bytes) -> Step:
        """One down frame, whatever its bytes: the ack to send (if any), and whether
        DingTalk asked for a reconnect. Never raises for what the frame holds."""
        try:
            frame = parse_frame(data)
        except FrameError as exc:
            longconn.unreadable_frame(f"bot {self._bot}", "Stream", exc)
            return Step()
        handler = self._handlers.get(frame.topic) if frame.type == CALLBACK else None
        if handler is not None and await handler(frame) is Delivery.REDELIVER:
            return Step()  # unacked: DingTalk delivers it again
        return Step(ack_for(frame), reconnect=frame.type == SYSTEM and frame.topic == DISCONNECT)
