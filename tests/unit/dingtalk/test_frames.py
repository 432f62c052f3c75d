"""Stream-mode frame codec: parsing, the double JSON decode, and the acks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.dingtalk.frames import (
    CALLBACK,
    DISCONNECT,
    SYSTEM,
    FrameError,
    ack,
    ack_for,
    parse_frame,
    ticket_url,
)

DATA = Path(__file__).parents[2] / "data" / "dingtalk"


def test_callback_frame_data_decodes_twice() -> None:
    frame = parse_frame((DATA / "callback_frame.json").read_text())
    assert frame.type == CALLBACK
    assert frame.topic == "/v1.0/im/bot/messages/get"
    assert frame.message_id == "212b9d7c_165f_19bfa1a500a_1461def"
    payload = frame.payload()
    assert payload["msgId"] == "msgStream0001=="
    assert payload["text"] == {"content": "hi"}


def test_disconnect_frame() -> None:
    frame = parse_frame((DATA / "disconnect_frame.json").read_text())
    assert (frame.type, frame.topic) == (SYSTEM, DISCONNECT)
    assert frame.payload() == {"reason": "persistent connection is timeout"}


def test_callback_ack_has_the_sdk_shape() -> None:
    frame = parse_frame((DATA / "callback_frame.json").read_text())
    sent = json.loads(ack_for(frame))
    assert sent == {
        "code": 200,
        "headers": {"messageId": frame.message_id, "contentType": "application/json"},
        "message": "OK",
        "data": json.dumps({"response": None}),
    }
    assert json.loads(sent["data"]) == {"response": None}


def test_ping_ack_echoes_data() -> None:
    frame = parse_frame(
        json.dumps(
            {
                "specVersion": "1.0",
                "type": "SYSTEM",
                "headers": {"messageId": "m1", "topic": "ping"},
                "data": '{"opaque":"xyz"}',
            }
        )
    )
    sent = json.loads(ack_for(frame))
    assert sent["code"] == 200
    assert sent["headers"]["messageId"] == "m1"
    assert sent["data"] == '{"opaque":"xyz"}'


def test_error_ack() -> None:
    sent = json.loads(ack("m2", "{}", code=500, message="busy"))
    assert (sent["code"], sent["message"]) == (500, "busy")


def test_object_data_is_tolerated() -> None:
    frame = parse_frame(json.dumps({"type": "EVENT", "headers": {}, "data": {"a": 1}}))
    assert frame.payload() == {"a": 1}
    assert frame.message_id == ""


@pytest.mark.parametrize("text", ["", "not json", "[]", "7", '"s"'])
def test_garbage_frames_raise(text: str) -> None:
    with pytest.raises(FrameError):
        parse_frame(text)


def test_garbage_data_raises_on_decode() -> None:
    frame = parse_frame(json.dumps({"type": "CALLBACK", "headers": {}, "data": "{oops"}))
    with pytest.raises(FrameError):
        frame.payload()


def test_ticket_is_url_encoded() -> None:
    assert ticket_url("wss://x/connect", "a+b/c=") == "wss://x/connect?ticket=a%2Bb%2Fc%3D"
    assert ticket_url("wss://x/connect?v=1", "t") == "wss://x/connect?v=1&ticket=t"
