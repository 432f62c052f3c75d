"""Slack Socket Mode: events over a WebSocket instead of HTTP.

Protocol (https://api.slack.com/apis/socket-mode):
1. `apps.connections.open` with the app-level token (xapp-…) gives a `wss://` URL;
2. the server says `hello`; then it sends envelopes `{envelope_id, type, payload, …}`;
3. each envelope is acked with `{"envelope_id": …}` within 3 s;
4. `{"type": "disconnect"}` means "reconnect now" (reasons `warning`, `refresh_requested`,
   `too_many_websockets`).

The payload of an `events_api` envelope is exactly the HTTP Events API body, so it takes the
same parse path. An envelope is acked only on the core's `Delivery.ACK`: while the store is
down or the gateway shuts down, no ack, and Slack delivers it again (with `retry_attempt`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from adapters.slack.api import SlackAPI
from gateway import safejson
from gateway.longconn import Frame, connect, unreadable_frame
from gateway.platform import Delivery

log = logging.getLogger(__name__)

# Hands an events_api payload to the core; the verdict says whether to ack the envelope.
PayloadHandler = Callable[[dict[str, Any]], Awaitable[Delivery]]


@dataclass(frozen=True, slots=True)
class Step:
    """What one frame asks of the session: an ack to send, and whether to reconnect."""

    ack: str | None = None
    reconnect: bool = False


class SocketModeSession:
    def __init__(
        self,
        name: str,
        app_api: SlackAPI,
        handle: PayloadHandler,
        on_state: Callable[[bool], None],
    ) -> None:
        self._name = name
        self._api = app_api
        self._handle = handle
        self._on_state = on_state

    async def run(self) -> None:
        """One connection, until the server asks us to reconnect (return) or it breaks
        (raise). `gateway.longconn.keep_connected` calls this forever."""
        opened = await self._api.call("apps.connections.open", form=True)
        url = str(opened.get("url") or "")
        if not url.startswith(("wss://", "ws://")):
            raise ConnectionError("apps.connections.open returned no WebSocket URL")
        async with connect(url, heartbeat=30.0) as ws:
            while True:
                step = await self.read_frame(await ws.receive())
                if step.ack is not None:
                    await ws.send_text(step.ack)
                if step.reconnect:
                    return

    async def read_frame(self, frame: Frame) -> Step:
        """One frame from Slack, whatever its bytes: never raises for what it holds."""
        try:
            message = safejson.loads_object(frame.text)
        except (safejson.JSONError, UnicodeDecodeError) as exc:
            unreadable_frame(self._name, "Socket Mode", exc)
            return Step()
        kind = message.get("type")
        if kind == "hello":
            self._on_state(True)
            return Step()
        if kind == "disconnect":
            reason = safejson.shown(message.get("reason"))
            log.info("%s: Slack asked to reconnect (%s)", self._name, reason)
            return Step(reconnect=True)
        envelope_id = message.get("envelope_id")
        if isinstance(envelope_id, str) and envelope_id and await self._envelope(message):
            return Step(ack=json.dumps({"envelope_id": envelope_id}))
        return Step()

    async def _envelope(self, envelope: dict[str, Any]) -> bool:
        """Handle one envelope; True when it may be acked."""
        payload = envelope.get("payload")
        if envelope.get("type") not in ("events_api", "interactive"):
            return True  # slash commands are not handled: ack, no answer
        if not isinstance(payload, dict):
            return True
        return await self._handle(payload) is Delivery.ACK
