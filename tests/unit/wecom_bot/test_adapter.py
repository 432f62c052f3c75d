"""`WecomBotAdapter.handle()` in webhook mode, outside the gateway: retries, refreshes, the
in-flight limit, events, and downloads."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from adapters.wecom_bot.state import MAX_IN_FLIGHT, BotState, StreamState
from gateway.models import Answered, Attachment, Ignored, Messages, Outcome
from gateway.platform import NotReady, PlatformError
from gateway.store.base import StoreUnavailable
from gateway.store.memory import MemoryStore
from gateway.words import ENGLISH, SIMPLIFIED_CHINESE
from tests.fakes.wecom_bot import (
    VECTOR_AES_KEY,
    VECTOR_TOKEN,
    AdapterKit,
    FakeWecomBotServer,
    RecordingAssistant,
    WecomSide,
    event_payload,
    make_adapter,
    refresh_payload,
    text_payload,
    webhook_request,
)
from tests.helpers import wait_for

SIDE = WecomSide(VECTOR_TOKEN, VECTOR_AES_KEY)
WORDS = SIMPLIFIED_CHINESE  # a WeCom AI bot speaks Chinese unless its config says otherwise


@pytest.fixture
async def kit() -> AsyncIterator[AdapterKit]:
    kit = make_adapter()
    yield kit
    await kit.adapter.aclose()
    await kit.http.aclose()


async def handle(kit: AdapterKit, payload: dict[str, Any]) -> Outcome:
    query, body = SIDE.seal(payload)
    return await kit.adapter.handle(webhook_request(query, body))


def stream_of(outcome: Outcome) -> dict[str, Any]:
    ack = outcome.response if isinstance(outcome, Answered) else outcome.ack
    reply = SIDE.open(ack.body)
    assert reply["msgtype"] == "stream"
    stream: dict[str, Any] = reply["stream"]
    return stream


async def test_a_retried_msgid_gets_the_same_stream_and_counts_once(kit: AdapterKit) -> None:
    first = await handle(kit, text_payload("m1", "hi"))
    second = await handle(kit, text_payload("m1", "hi"))
    assert isinstance(first, Messages) and isinstance(second, Messages)
    assert stream_of(first)["id"] == stream_of(second)["id"]
    assert stream_of(second)["feedback"] == {"id": "m1"}  # in case the first reply was lost
    assert await kit.store.get("wecom_bot:inflight:wecom-ai:u1") == "1"


async def test_a_retry_shows_the_answer_so_far(kit: AdapterKit) -> None:
    first = await handle(kit, text_payload("m1", "hi"))
    assert isinstance(first, Messages)
    sink = kit.adapter.open_reply(first.messages[0])
    await sink.begin()
    await sink.update("Half of it")
    retry = await handle(kit, text_payload("m1", "hi"))
    assert stream_of(retry)["content"] == "Half of it" and not stream_of(retry)["finish"]
    await sink.finish("All of it", last=True)


async def test_refreshes_read_the_stream_from_the_store(kit: AdapterKit) -> None:
    outcome = await handle(kit, text_payload("m1", "hi"))
    assert isinstance(outcome, Messages)
    sid = stream_of(outcome)["id"]
    refreshed = await handle(kit, refresh_payload(sid))
    assert isinstance(refreshed, Answered)
    assert stream_of(refreshed) == {"id": sid, "finish": False, "content": WORDS.thinking}

    sink = kit.adapter.open_reply(outcome.messages[0])
    await sink.begin()
    await sink.update("**Hello**")
    assert stream_of(await handle(kit, refresh_payload(sid)))["content"] == "**Hello**"
    await sink.finish("**Hello** world", last=True)
    final = stream_of(await handle(kit, refresh_payload(sid)))
    assert final == {"id": sid, "finish": True, "content": "**Hello** world"}
    assert "feedback" not in final  # only on the first reply
    assert await kit.store.get("wecom_bot:inflight:wecom-ai:u1") == "0"


async def test_a_refresh_of_an_abandoned_stream_finishes_it(kit: AdapterKit) -> None:
    await BotState(kit.store, "wecom-ai").write("s-old", StreamState("half", False, 1.0))
    stream = stream_of(await handle(kit, refresh_payload("s-old")))
    assert stream["finish"] and stream["content"] == "half\n\n" + WORDS.interrupted


async def test_the_fourth_answer_in_flight_is_refused_politely(kit: AdapterKit) -> None:
    admitted = [await handle(kit, text_payload(f"m{n}", "q")) for n in range(3)]
    assert all(isinstance(o, Messages) for o in admitted)
    fourth = await handle(kit, text_payload("m3", "q"))
    assert isinstance(fourth, Ignored)
    assert stream_of(fourth)["finish"] and stream_of(fourth)["content"] == WORDS.too_many_questions(
        MAX_IN_FLIGHT
    )
    again = await handle(kit, text_payload("m3", "q"))  # its retry: refused the same way
    assert isinstance(again, Ignored) and stream_of(again)["content"] == WORDS.too_many_questions(3)
    assert isinstance(await handle(kit, text_payload("x1", "q", user="u2")), Messages)

    done = admitted[0]
    assert isinstance(done, Messages)
    await kit.adapter.open_reply(done.messages[0]).finish("answer", last=True)
    assert isinstance(await handle(kit, text_payload("m4", "q")), Messages)


async def test_enter_chat_is_welcomed_with_the_opening_statement(kit: AdapterKit) -> None:
    outcome = await handle(kit, event_payload("enter_chat"))
    assert isinstance(outcome, Answered)
    assert SIDE.open(outcome.response.body) == {
        "msgtype": "text",
        "text": {"content": "Welcome from Dify"},
    }
    assert kit.assistant.asked[0].user_id == "u1"


@pytest.mark.parametrize("assistant", [RecordingAssistant(None), RecordingAssistant(delay=5.0)])
async def test_enter_chat_falls_back_to_a_default_welcome(assistant: RecordingAssistant) -> None:
    kit = make_adapter(assistant=assistant)
    kit.adapter.welcome_timeout = 0.05
    try:
        outcome = await asyncio.wait_for(handle(kit, event_payload("enter_chat")), 1.0)
        assert isinstance(outcome, Answered)
        assert SIDE.open(outcome.response.body)["text"]["content"] == WORDS.welcome
    finally:
        await kit.http.aclose()


async def test_a_bot_configured_for_english_speaks_english() -> None:
    kit = make_adapter(locale="en", assistant=RecordingAssistant(None))
    try:
        welcome = await handle(kit, event_payload("enter_chat"))
        assert SIDE.open(welcome.response.body)["text"]["content"] == ENGLISH.welcome  # type: ignore[union-attr]
        outcome = await handle(kit, text_payload("m1", "hi"))
        assert stream_of(outcome)["content"] == "Thinking…"
        for n in range(2, 5):
            refused = await handle(kit, text_payload(f"m{n}", "q"))
        assert stream_of(refused)["content"] == (
            "You already have 3 questions in progress with me. Please wait for one of the "
            "answers to finish, then ask again."
        )
    finally:
        await kit.http.aclose()


async def test_feedback_goes_to_the_answered_job(kit: AdapterKit) -> None:
    detail = {"feedback_event": {"id": "m1", "type": 1}}
    outcome = await handle(kit, event_payload("feedback_event", detail))
    assert isinstance(outcome, Messages) and outcome.ack.body == b""
    (click,) = outcome.messages
    assert click.action is not None and click.notice is None and click.text == ""
    assert (click.action.kind, click.action.answer_id, click.action.value) == (
        "feedback",
        "wecom-ai:m1",
        "like",
    )


async def test_other_events_are_ignored(kit: AdapterKit) -> None:
    detail = {"template_card_event": {"event_key": "k"}}
    outcome = await handle(kit, event_payload("template_card_event", detail))
    assert isinstance(outcome, Ignored) and outcome.ack.body == b""


class DownStore(MemoryStore):
    async def claim(self, keys: Sequence[str], ttl: float = 0) -> bool:
        raise StoreUnavailable("down")

    async def get(self, key: str) -> str | None:
        raise StoreUnavailable("down")


async def test_a_store_outage_asks_wecom_to_retry() -> None:
    kit = make_adapter(store=DownStore())
    try:
        for payload in (text_payload("m1", "hi"), refresh_payload("s1")):
            with pytest.raises(NotReady):
                await handle(kit, payload)
    finally:
        await kit.http.aclose()


async def test_downloads_decrypt_with_the_right_key() -> None:
    server = FakeWecomBotServer()
    await server.start()
    kit = make_adapter(api_base=server.base_url)  # media on the api_base origin is allowed
    try:
        png = b"\x89PNG\r\n\x1a\n" + b"1" * 30
        url = server.add_media("webhook", png, VECTOR_AES_KEY)
        image = Attachment(kind="image", name="image-1.jpg", source={"url": url})
        download = await kit.adapter.download(image)
        assert (download.data, download.name, download.mime_type) == (
            png,
            "image-1.png",
            "image/png",
        )

        per_url = base64.b64encode(b"k" * 32).decode()
        url = server.add_media("ws", b"%PDF-1.7", per_url, filename="plan.pdf")
        doc = Attachment(kind="document", name="file", source={"url": url, "aeskey": per_url})
        download = await kit.adapter.download(doc)
        assert (download.data, download.name) == (b"%PDF-1.7", "plan.pdf")

        with pytest.raises(PlatformError):
            await kit.adapter.download(Attachment(kind="image", name="x", source={}))
    finally:
        await kit.http.aclose()
        await server.stop()


async def test_websocket_mode_serves_no_webhook() -> None:
    kit = make_adapter(
        mode="websocket",
        token=None,
        encoding_aes_key=None,
        bot_id="BOTID",
        secret="S",
        api_base="ws://127.0.0.1:9",
    )
    try:
        assert not kit.adapter.serves_webhook and not kit.adapter.ready
        with pytest.raises(NotReady):
            await kit.adapter.handle(webhook_request({}, b"{}"))
    finally:
        await kit.adapter.aclose()
        await kit.http.aclose()


async def test_websocket_mode_says_so_when_it_cannot_take_a_message() -> None:
    server = FakeWecomBotServer()
    await server.start()
    kit = make_adapter(mode="websocket", bot_id="BOTID", secret="BOTSECRET", api_base=server.ws_url)
    kit.intake.fail = True  # the store is down: the core cannot accept the message
    try:
        await kit.adapter.start()
        await wait_for(lambda: kit.adapter.ready, what="subscribed")
        req_id = await server.push("aibot_msg_callback", text_payload("m1", "hi"))
        await wait_for(lambda: len(server.replies(req_id)) == 2, what="thinking, then sorry")
        thinking, sorry = (c.body["stream"] for c in server.replies(req_id))
        assert thinking["content"] == WORDS.thinking and not thinking["finish"]
        assert sorry["finish"] and sorry["content"] == WORDS.cannot_answer_now
        count = "wecom_bot:inflight:wecom-ai:u1"
        for _ in range(200):  # the release runs in the background
            if await kit.store.get(count) == "0":
                break
            await asyncio.sleep(0.01)
        assert await kit.store.get(count) == "0"
        assert kit.intake.accepted == []
    finally:
        await kit.adapter.aclose()
        await kit.http.aclose()
        await server.stop()
