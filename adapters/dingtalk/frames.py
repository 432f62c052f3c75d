"""DingTalk Stream mode frames (open-dingtalk/dingtalk-stream-sdk-python `frames.py`,
`handlers.py`, `stream.py`).

Down frames are JSON: `{"specVersion", "type": "SYSTEM"|"EVENT"|"CALLBACK", "headers":
{"messageId", "topic", "contentType", "time", …}, "data": "<a JSON string>"}`. `data` is JSON
*inside* a string, so it is decoded twice.

Every frame is acked on the socket with the same `messageId`: `{"code", "headers":
{"messageId", "contentType"}, "message", "data": "<JSON string>"}`. A SYSTEM `ping` ack
echoes its `data`; a robot CALLBACK ack carries `{"response": …}`; a card CALLBACK (a click on
a card's button, `CARD_TOPIC`) acks with an empty response (`{}`: update nothing now; the
worker updates the card later with `PUT /v1.0/card/instances`). An unacked callback is
delivered again (seen after ~15-60 s), which is how a message survives our store being down.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

from gateway import safejson

ROBOT_TOPIC = "/v1.0/im/bot/messages/get"
CARD_TOPIC = "/v1.0/card/instances/callback"  # clicks on cards created with callbackType STREAM
SUBSCRIPTIONS = [
    {"type": "EVENT", "topic": "*"},
    {"type": "CALLBACK", "topic": ROBOT_TOPIC},
    {"type": "CALLBACK", "topic": CARD_TOPIC},
]
SYSTEM, EVENT, CALLBACK = "SYSTEM", "EVENT", "CALLBACK"
PING, DISCONNECT = "ping", "disconnect"


class FrameError(ValueError):
    """A frame that is not valid Stream JSON."""


@dataclass(frozen=True, slots=True)
class StreamFrame:
    type: str
    topic: str
    message_id: str
    data: str
    headers: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> Any:
        """The decoded `data` (the second JSON decode). Raises `FrameError`."""
        try:
            return safejson.loads(self.data) if self.data else None
        except safejson.JSONError as exc:
            raise FrameError(f"frame data: {exc}") from None


def _message_id(value: object) -> str:
    # A string in every frame seen; a number is taken as its digits, anything else as none.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return safejson.text(value)


def parse_frame(text: str | bytes) -> StreamFrame:
    """A down frame, whatever its bytes. Raises `FrameError`."""
    try:
        raw = safejson.loads_object(text)
    except safejson.JSONError as exc:
        raise FrameError(f"frame: {exc}") from None
    headers = raw.get("headers")
    headers = headers if isinstance(headers, dict) else {}
    data = raw.get("data")
    if data is not None and not isinstance(data, str):
        # The SDK always sends a string; tolerate an object by re-encoding it (safe: the
        # parser bounded its depth).
        data = json.dumps(data, ensure_ascii=False)
    return StreamFrame(
        type=safejson.text(raw.get("type")),
        topic=safejson.text(headers.get("topic")),
        message_id=_message_id(headers.get("messageId")),
        data=data or "",
        headers=headers,
    )


def ack(message_id: str, data: str, *, code: int = 200, message: str = "OK") -> str:
    return json.dumps(
        {
            "code": code,
            "headers": {"messageId": message_id, "contentType": "application/json"},
            "message": message,
            "data": data,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def ack_for(frame: StreamFrame) -> str:
    """The success ack for a frame: pings echo their data, robot callbacks answer no
    response, card callbacks an empty one, events echo their data (as the SDK's EventHandler
    does)."""
    if frame.type == CALLBACK:
        response: dict[str, Any] | None = {} if frame.topic == CARD_TOPIC else None
        return ack(frame.message_id, json.dumps({"response": response}))
    return ack(frame.message_id, frame.data)


def ticket_url(endpoint: str, ticket: str) -> str:
    separator = "&" if "?" in endpoint else "?"
    return f"{endpoint}{separator}ticket={quote_plus(ticket)}"
