"""Signed callbacks and Stream frames of any shape are data: read, or refused cleanly
(400, a dropped frame), never another exception."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from adapters.dingtalk.connection import Step
from adapters.dingtalk.convert import parse_robot_message
from adapters.dingtalk.frames import FrameError, parse_frame
from gateway.models import Ignored, InboundMessage
from gateway.platform import Delivery, MalformedRequest
from gateway.words import ENGLISH
from tests.fakes.dingtalk import FakeDingtalk, robot_message, signed_headers
from tests.unit.dingtalk.test_adapter import adapter, request


async def test_a_signed_body_nested_too_deep_is_400(fake: FakeDingtalk) -> None:
    """Once a RecursionError in the JSON parser, after a valid signature."""
    async with httpx.AsyncClient() as http:
        bot = adapter(fake, http, mode="http")
        for body in (b"[" * 100_000, b'{"msgId":' + b"[" * 3000 + b"]" * 3000 + b"}"):
            with pytest.raises(MalformedRequest):
                await bot.handle(request(body, signed_headers()))


@pytest.mark.parametrize(
    "changes",
    [
        {"conversationType": [[[["2"]]]]},
        {"conversationType": 2},
        {"msgtype": {"text": 1}},
        {"text": ["hi"]},
        {"senderStaffId": {"id": 1}},
        {"sessionWebhookExpiredTime": "soon"},
        {"content": {"richText": 7}, "msgtype": "richText"},
    ],
)
def test_robot_messages_with_fields_of_the_wrong_type(
    fake: FakeDingtalk, changes: dict[str, Any]
) -> None:
    payload = {**robot_message(fake, "hi"), **changes}
    result = parse_robot_message("ding", payload, received_at=1.0, words=ENGLISH)
    if isinstance(result, InboundMessage):
        assert result.user_id and isinstance(result.reply_to["conversation_type"], str)
    else:
        assert len(result.reason) < 100  # never the repr of what came


@pytest.mark.parametrize(
    "frame",
    [
        "[" * 100_000,
        b"\xff\xfe",
        '{"type": "CALLBACK", "headers": {"topic": "/v1.0/im/bot/messages/get"}, "data": "'
        + "[" * 3000
        + '"}',
        '{"type": ["CALLBACK"], "headers": {"messageId": {"x": 1}}, "data": 5}',
    ],
)
async def test_stream_frames_of_any_shape_are_read_or_dropped(
    fake: FakeDingtalk, frame: str | bytes
) -> None:
    delivered: list[Any] = []

    async def deliver(read: Any) -> Delivery:
        try:
            delivered.append(read())
        except MalformedRequest as exc:
            delivered.append(exc)
        return Delivery.ACK

    async with httpx.AsyncClient() as http:
        bot = adapter(fake, http)
        bot._context.deliver = deliver
        step = await bot._stream.read_frame(frame)
    assert isinstance(step, Step)
    if step.ack is not None:
        json.loads(step.ack)
    assert all(isinstance(d, MalformedRequest | Ignored) for d in delivered)


def test_frame_data_is_decoded_with_the_same_limits() -> None:
    deep = "[" * 100 + "]" * 100  # JSON, but nested past the limit
    frame = parse_frame(json.dumps({"type": "CALLBACK", "headers": {}, "data": deep}))
    with pytest.raises(FrameError):
        frame.payload()
    with pytest.raises(FrameError):
        parse_frame(b'{"data": "\\ud800"}')
