"""The adapter's own decisions: modes, capabilities, which sink, downloads."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import httpx
import pytest

from adapters.dingtalk.adapter import DingtalkAdapter
from adapters.dingtalk.sink import CardSink, MarkdownSink
from gateway.config import DingtalkBot
from gateway.models import Attachment, Ignored, InboundMessage, Messages, WebhookRequest
from gateway.pacing import BotBudget
from gateway.platform import (
    AdapterContext,
    Delivery,
    MalformedRequest,
    PlatformError,
    VerificationFailed,
)
from gateway.store.memory import MemoryStore
from tests.fakes.dingtalk import FakeDingtalk, dingtalk_bot, robot_message, signed_headers


class NoAssistant:
    async def opening_statement(self, message: InboundMessage) -> str | None:
        return None

    async def feedback(self, job_id: str, rating: Any) -> None:
        return None


async def no_deliver(read: Any) -> Delivery:
    raise AssertionError("HTTP mode has no long connection")


def adapter(fake: FakeDingtalk, http: httpx.AsyncClient, **extra: Any) -> DingtalkAdapter:
    config = DingtalkBot.model_validate(dingtalk_bot(fake, **extra))
    context = AdapterContext(http, MemoryStore(), BotBudget(), no_deliver, NoAssistant())
    return DingtalkAdapter("ding", config, context)


def request(body: bytes, headers: dict[str, str], method: str = "POST") -> WebhookRequest:
    return WebhookRequest(
        method=method,
        path="/webhooks/ding",
        query={},
        headers={k.lower(): v for k, v in headers.items()},
        body=body,
        received_at=time.time(),
    )


async def test_modes_and_capabilities(fake: FakeDingtalk) -> None:
    async with httpx.AsyncClient() as http:
        stream = adapter(fake, http)
        http_mode = adapter(fake, http, mode="http", card_template_id="tpl.schema")
    assert stream.serves_webhook is False
    assert http_mode.serves_webhook is True
    assert stream.capabilities.can_edit is False
    assert (stream.capabilities.max_message, stream.capabilities.unit) == (18_000, "bytes")
    assert stream.capabilities.pacing.min_interval == 3.0
    assert http_mode.capabilities.can_edit is True
    assert http_mode.capabilities.pacing.budget == "card.streaming"


async def test_http_mode_is_ready_once_the_credentials_work(fake: FakeDingtalk) -> None:
    async with httpx.AsyncClient() as http:
        bot = adapter(fake, http, mode="http")
        assert not bot.ready
        await bot.start()
        assert bot.ready
        wrong = adapter(fake, http, mode="http", client_secret="nope")
        with pytest.raises(PlatformError):
            await wrong.start()
        assert not wrong.ready


async def test_handle_acks_with_an_empty_object(fake: FakeDingtalk) -> None:
    async with httpx.AsyncClient() as http:
        bot = adapter(fake, http, mode="http")
        body = json.dumps(robot_message(fake, "hi")).encode()
        outcome = await bot.handle(request(body, signed_headers()))
        assert isinstance(outcome, Messages)
        assert outcome.ack.body == b"{}" and outcome.ack.content_type == "application/json"
        odd = json.dumps(robot_message(fake, "hi", conversationType="7")).encode()
        ignored = await bot.handle(request(odd, signed_headers()))
        assert isinstance(ignored, Ignored) and ignored.ack.body == b"{}"


async def test_handle_verifies_before_parsing(fake: FakeDingtalk) -> None:
    async with httpx.AsyncClient() as http:
        bot = adapter(fake, http, mode="http")
        with pytest.raises(VerificationFailed):
            await bot.handle(request(b"{not json", {}))
        with pytest.raises(MalformedRequest):
            await bot.handle(request(b"{not json", signed_headers()))
        with pytest.raises(MalformedRequest):
            await bot.handle(request(b"", signed_headers(), method="GET"))


async def test_sink_choice(fake: FakeDingtalk) -> None:
    async with httpx.AsyncClient() as http:
        plain = adapter(fake, http)
        cards = adapter(fake, http, card_template_id="tpl.schema")
        body = json.dumps(robot_message(fake, "hi")).encode()
        outcome = await adapter(fake, http, mode="http").handle(request(body, signed_headers()))
    assert isinstance(outcome, Messages)
    msg = outcome.messages[0]
    external = replace(msg, reply_to={**msg.reply_to, "sender_staff_id": ""})
    assert isinstance(plain.open_reply(msg), MarkdownSink)
    assert isinstance(cards.open_reply(msg), CardSink)
    assert isinstance(cards.open_reply(external), MarkdownSink)


async def test_download_names_the_file_by_its_type(fake: FakeDingtalk) -> None:
    fake.add_file("dc", b"JPEGDATA", "image/jpeg")
    async with httpx.AsyncClient() as http:
        bot = adapter(fake, http)
        image = Attachment(kind="image", name="image", source={"download_code": "dc"})
        got = await bot.download(image)
        assert (got.data, got.name, got.mime_type) == (b"JPEGDATA", "image.jpg", "image/jpeg")
        doc = Attachment(kind="document", name="report.pdf", source={"download_code": "dc"})
        assert (await bot.download(doc)).name == "report.pdf"
        with pytest.raises(PlatformError):
            await bot.download(Attachment(kind="image", name="x", source={}))


async def test_download_of_a_mislabelled_image_goes_by_its_bytes(fake: FakeDingtalk) -> None:
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF"
    fake.add_file("dc", jpeg, "application/octet-stream")
    async with httpx.AsyncClient() as http:
        image = Attachment(kind="image", name="image", source={"download_code": "dc"})
        got = await adapter(fake, http).download(image)
    assert (got.name, got.mime_type) == ("image.jpg", "image/jpeg")


async def test_display_name(fake: FakeDingtalk) -> None:
    async with httpx.AsyncClient() as http:
        bot = adapter(fake, http)
        body = json.dumps(robot_message(fake, "hi", senderNick="")).encode()
        outcome = await adapter(fake, http, mode="http").handle(request(body, signed_headers()))
    assert isinstance(outcome, Messages)
    assert await bot.display_name(outcome.messages[0]) == "manager123"
