"""Slack payloads and Socket Mode frames of any shape are data: answered, ignored or
refused cleanly, never another exception."""

from __future__ import annotations

import json
from typing import Any

import pytest

from adapters.slack.connection import SocketModeSession
from adapters.slack.convert import parse_body, to_outcome
from gateway.longconn import Frame
from gateway.models import Ignored, Messages
from gateway.platform import Delivery, MalformedRequest

DEEP: Any = json.loads("[" * 60 + "]" * 60)


def event(**fields: Any) -> dict[str, Any]:
    base = {"type": "message", "channel": "C1", "ts": "1.2", "user": "U2", "text": "hi"}
    return {"type": "event_callback", "event_id": "Ev1", "event": {**base, **fields}}


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"type": "\\ud800"}', b'{"a":' * 70 + b"1"])
def test_bodies_that_are_not_plain_json_are_400(body: bytes) -> None:
    with pytest.raises(MalformedRequest):
        parse_body(body + b"}" * body.count(b"{"))


@pytest.mark.parametrize(
    "fields",
    [
        {"text": DEEP},
        {"type": DEEP},
        {"subtype": DEEP},
        {"user": {"id": "U2"}},
        {"thread_ts": [1]},
        {"files": [{"url_private": "https://files.slack.com/x", "name": DEEP, "mimetype": 7}]},
    ],
)
def test_events_with_fields_of_the_wrong_type(fields: dict[str, Any]) -> None:
    outcome = to_outcome(event(**fields), bot="sb", bot_user_id="UBOT", received_at=1.0)
    if isinstance(outcome, Messages):
        (message,) = outcome.messages
        assert isinstance(message.text, str) and isinstance(message.user_id, str)
        assert all(isinstance(a.name, str) for a in message.attachments)
    else:
        assert isinstance(outcome, Ignored) and len(outcome.reason) < 100


async def test_socket_mode_frames_of_any_shape() -> None:
    async def handle(payload: dict[str, Any]) -> Delivery:
        return Delivery.ACK

    session = SocketModeSession("s", None, handle, lambda up: None)  # type: ignore[arg-type]
    for text in (
        "[" * 100_000,
        "\udcff",
        '{"type": "disconnect", "reason": ' + "[" * 60 + "]" * 60 + "}",
    ):
        await session.read_frame(Frame("text", text))
    step = await session.read_frame(
        Frame("text", json.dumps({"envelope_id": {"not": "a string"}, "type": "events_api"}))
    )
    assert step.ack is None  # an envelope id that is not a string is not echoed back
    step = await session.read_frame(Frame("text", json.dumps({"envelope_id": "e1"})))
    assert step.ack == json.dumps({"envelope_id": "e1"})
