"""Bytes from anyone, and authentic callbacks of any shape, are data: `handle()` answers
them or refuses them cleanly, never with another exception (the edge would log a traceback
for each). Plus the timestamp window: the signature covers the timestamp."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.wecom_bot.connection import WsLink, parse
from gateway.longconn import Frame
from gateway.models import Ignored, Messages, Outcome
from gateway.platform import MalformedRequest, VerificationFailed
from tests.fakes.wecom_bot import (
    VECTOR_AES_KEY,
    VECTOR_TOKEN,
    AdapterKit,
    WecomSide,
    event_payload,
    make_adapter,
    text_payload,
    webhook_request,
)

SIDE = WecomSide(VECTOR_TOKEN, VECTOR_AES_KEY)


@pytest.fixture
async def kit() -> AsyncIterator[AdapterKit]:
    kit = make_adapter()
    yield kit
    await kit.adapter.aclose()
    await kit.http.aclose()


async def handle(kit: AdapterKit, payload: dict[str, Any] | bytes, **seal: Any) -> Outcome:
    query, body = SIDE.seal(payload, **seal)
    return await kit.adapter.handle(webhook_request(query, body))


async def test_a_body_of_100000_brackets_is_400_before_any_check(kit: AdapterKit) -> None:
    query = {"msg_signature": "x", "timestamp": str(int(time.time())), "nonce": "n"}
    with pytest.raises(MalformedRequest):
        await kit.adapter.handle(webhook_request(query, b"[" * 100_000))


@pytest.mark.parametrize("rating", [{"an": "object"}, [1], "1", True, None, 1.5])
async def test_feedback_of_any_type_is_ignored(kit: AdapterKit, rating: Any) -> None:
    payload = event_payload("feedback_event", {"feedback_event": {"id": "m1", "type": rating}})
    outcome = await handle(kit, payload)
    assert isinstance(outcome, Ignored) and "unknown type" in outcome.reason


@pytest.mark.parametrize("items", [7, "text", {"msgtype": "text"}, None, [7, "x", None]])
async def test_mixed_items_of_any_type_are_read(kit: AdapterKit, items: Any) -> None:
    payload = text_payload("m-mixed", "")
    payload.update(msgtype="mixed", mixed={"msg_item": items}, quote={"msgtype": "mixed"})
    outcome = await handle(kit, payload)
    assert isinstance(outcome, Messages)
    assert outcome.messages[0].notice is not None  # nothing readable in it


async def test_a_lone_surrogate_in_a_msgid_is_400(kit: AdapterKit) -> None:
    plaintext = json.dumps(text_payload("m\ud800", "hi")).encode()  # escaped: "m\\ud800"
    with pytest.raises(MalformedRequest):
        await handle(kit, plaintext)


async def test_an_authentic_callback_nested_too_deep_is_400(kit: AdapterKit) -> None:
    with pytest.raises(MalformedRequest):
        await handle(kit, b'{"msgid":"m","msgtype":' + b"[" * 5000 + b"]" * 5000 + b"}")


@pytest.mark.parametrize("age", [3601, -3610, 86400 * 365 * 25])
async def test_a_callback_signed_outside_the_window_is_401(kit: AdapterKit, age: int) -> None:
    stamp = str(int(time.time()) - age)
    with pytest.raises(VerificationFailed, match="stale"):
        await handle(kit, text_payload("m-old", "hi"), timestamp=stamp)


async def test_the_window_is_the_bots_setting() -> None:
    kit = make_adapter(max_timestamp_age_s=120)
    try:
        stamp = str(int(time.time()) - 600)
        with pytest.raises(VerificationFailed, match="stale"):
            await handle(kit, text_payload("m-1", "hi"), timestamp=stamp)
        assert isinstance(await handle(kit, text_payload("m-2", "hi")), Messages)
    finally:
        await kit.http.aclose()


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000,
        b'{"headers": {"req_id": {"an": "object"}}, "cmd": ["aibot_msg_callback"]}',
        b'{"headers": {"req_id": "r"}, "errcode": {"x": 1}, "errmsg": [1]}',
        b"\xff\xfe",
    ],
)
async def test_long_connection_frames_of_any_shape_are_read_or_dropped(raw: bytes) -> None:
    async def on_callback(cmd: str, body: dict[str, Any], req_id: str) -> None:
        raise AssertionError("not a callback")

    link = WsLink("ws://127.0.0.1:9", "b", "s", on_callback)
    frame = parse(Frame("binary", raw))
    if frame is not None:
        inbox: asyncio.Queue[tuple[str, dict[str, Any], str]] = asyncio.Queue()
        link.route(frame, inbox)
        assert inbox.empty()
