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
from typing import Any

from adapters.slack.api import SlackAPI
from gateway.longconn import connect
from gateway.platform import Delivery

log = logging.getLogger(__name__)

# Hands an events_api payload to the core; the verdict says whether to ack the envelope.
PayloadHandler = Callable[[dict[str, Any]], Awaitable[Delivery]]


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
                frame = await ws.receive()
                try:
                    message = json.loads(frame.text)
                except ValueError:
                    log.warning("%s: ignoring a non-JSON Socket Mode frame", self._name)
                    continue
                if not isinstance(message, dict):
                    continue
                kind = message.get("type")
                if kind == "hello":
                    self._on_state(True)
                elif kind == "disconnect":
                    log.info("%s: Slack asked to reconnect (%s)", self._name, message.get("reason"))
                    return
                elif message.get("envelope_id") and await self._envelope(message):
                    await ws.send_text(json.dumps({"envelope_id": message["envelope_id"]}))

    async def _envelope(self, envelope: dict[str, Any]) -> bool:
        """Handle one envelope; True when it may be acked."""
        payload = envelope.get("payload")
        if envelope.get("type") != "events_api" or not isinstance(payload, dict):
            return True  # slash commands and interactivity are not handled: ack, no answer
        return await self._handle(payload) is Delivery.ACK
