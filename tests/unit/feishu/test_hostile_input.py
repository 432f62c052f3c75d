"""Bytes from anyone, and authentic events of any shape, are data: `handle()` answers them
or refuses them cleanly (400/401), never with another exception (the edge would log a
traceback for each)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from adapters.feishu.adapter import FeishuAdapter
from adapters.feishu.connection import FeishuSocket
from adapters.feishu.crypto import encrypt, signature
from gateway.models import Messages, WebhookRequest
from gateway.pacing import BotBudget
from gateway.platform import AdapterContext, Delivery, MalformedRequest, VerificationFailed
from gateway.store.memory import MemoryStore
from tests.fakes.feishu import FakeFeishu
from tests.fakes.intake import RecordingIntake
from tests.unit.feishu.conftest import bot_config

KEY = "test key"


def adapter(fake: FakeFeishu, http: httpx.AsyncClient, **extra: Any) -> FeishuAdapter:
    context = AdapterContext(
        http, MemoryStore(), BotBudget(), RecordingIntake("f").deliver, NoHooks()
    )
    bot = FeishuAdapter("f", bot_config(fake, **extra), context)
    bot._bot_open_id = "ou_bot"  # what start() learns from bot/v3/info
    return bot


class NoHooks:
    async def opening_statement(self, message: Any) -> None:
        return None

    async def feedback(self, job_id: str, rating: Any) -> None:
        return None


def request(body: bytes, headers: dict[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest("POST", "/webhooks/f", {}, headers or {}, body, time.time())


def signed(body: bytes) -> WebhookRequest:
    timestamp, nonce = str(int(time.time())), "n1"
    return request(
        body,
        {
            "x-lark-request-timestamp": timestamp,
            "x-lark-request-nonce": nonce,
            "x-lark-signature": signature(timestamp, nonce, KEY, body),
        },
    )


def text_event(text: Any = "hi", **message: Any) -> dict[str, Any]:
    return {
        "schema": "2.0",
        "header": {"event_id": "e1", "token": "v-token", "event_type": "im.message.receive_v1"},
        "event": {
            "sender": {"sender_id": {"open_id": "ou_user"}, "sender_type": "user"},
            "message": {
                "message_id": "om_1",
                "chat_id": "oc_1",
                "chat_type": "p2p",
                "message_type": "text",
                "content": json.dumps({"text": text}),
                **message,
            },
        },
    }


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,  # once a RecursionError in the JSON parser, before any check
        b'{"token":"\\ud800"}',  # once a UnicodeEncodeError in the token comparison
        '{"token":"\ud800"}'.encode("utf-8", "surrogatepass"),  # the same, raw
        b'{"schema":"2.0","header":' + b"[" * 5000 + b"]" * 5000 + b"}",
    ],
)
async def test_unauthenticated_hostile_bodies_are_refused_cleanly(
    fake: FakeFeishu, body: bytes
) -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(MalformedRequest):
            await adapter(fake, http).handle(request(body))


async def test_a_nonce_that_is_not_ascii_is_401_not_an_encoding_error(fake: FakeFeishu) -> None:
    body = json.dumps({"encrypt": encrypt(KEY, json.dumps(text_event()).encode())}).encode()
    headers = {
        "x-lark-request-timestamp": str(int(time.time())),
        "x-lark-request-nonce": "\udcff\udcfe",  # how the edge decodes undecodable bytes
        "x-lark-signature": "0" * 64,
    }
    async with httpx.AsyncClient() as http:
        with pytest.raises(VerificationFailed):
            await adapter(fake, http, encrypt_key=KEY).handle(request(body, headers))


async def test_an_authentic_event_nested_too_deep_is_refused_cleanly(fake: FakeFeishu) -> None:
    deep = b'{"schema":"2.0","header":{"token":"v-token"},"event":' + b"[" * 3000 + b"]" * 3000
    body = json.dumps({"encrypt": encrypt(KEY, deep + b"}")}).encode()
    async with httpx.AsyncClient() as http:
        with pytest.raises(VerificationFailed):
            await adapter(fake, http, encrypt_key=KEY).handle(signed(body))


@pytest.mark.parametrize(
    "message",
    [
        {"message_type": ["text"]},
        {"content": json.dumps([[[[[]]]]] * 3)},
        {"content": "[" * 3000},
        {"content": json.dumps({"text": {"nested": "object"}})},
        {"message_id": {"an": "object"}},
        {"mentions": 7},
        {"thread_id": [1, 2]},
    ],
)
async def test_authentic_events_with_fields_of_the_wrong_type(
    fake: FakeFeishu, message: dict[str, Any]
) -> None:
    body = json.dumps(text_event(**message)).encode()
    async with httpx.AsyncClient() as http:
        outcome = await adapter(fake, http).handle(request(body))
    if isinstance(outcome, Messages):
        assert all(isinstance(m.text, str) for m in outcome.messages)


async def test_post_styles_of_any_type_are_read(fake: FakeFeishu) -> None:
    post = {"content": [[{"tag": "text", "text": "hi", "style": [{"bold": 1}, ["x"], "bold"]}]]}
    body = json.dumps(text_event(message_type="post", content=json.dumps(post))).encode()
    async with httpx.AsyncClient() as http:
        outcome = await adapter(fake, http).handle(request(body))
    assert isinstance(outcome, Messages) and outcome.messages[0].text == "**hi**"


async def test_a_v1_text_with_an_unclosed_mention_tag_is_read_quickly(fake: FakeFeishu) -> None:
    """The old mention pattern backtracked: 4,000 characters took 40 s."""
    event = {
        "uuid": "u1",
        "token": "v-token",
        "event": {
            "type": "message",
            "msg_type": "text",
            "open_message_id": "om_1",
            "open_chat_id": "oc_1",
            "open_id": "ou_1",
            "chat_type": "private",
            "text": "<at open_id='ou_bot'>" + " " * 200_000 + "hi",
        },
    }
    started = time.perf_counter()
    async with httpx.AsyncClient() as http:
        outcome = await adapter(fake, http).handle(request(json.dumps(event).encode()))
    assert time.perf_counter() - started < 1.0
    assert isinstance(outcome, Messages) and outcome.messages[0].text == "hi"


async def test_long_connection_pongs_of_any_shape(fake: FakeFeishu) -> None:
    async def handle(payload: bytes) -> Delivery:
        return Delivery.ACK

    socket = FeishuSocket("f", None, handle, lambda up: None)  # type: ignore[arg-type]
    for pong in (b"[" * 100_000, b'{"PingInterval": 1e308}', b'{"PingInterval": [1]}', b"\xff"):
        socket._pong(pong)
    socket._pong(b'{"PingInterval": 1e308, "ReconnectInterval": 5}')
    assert (socket.ping_interval, socket.reconnect_interval) == (120.0, 5.0)
