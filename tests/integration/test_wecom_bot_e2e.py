"""WeCom AI bot, webhook mode, end to end through the real gateway's HTTP edge.

The test plays WeCom: it POSTs encrypted callbacks, opens the sealed replies, and drives
stream refresh callbacks the way WeCom does until a reply says `finish: true`. Dify is the
emulator; `response_url`s and media live on the fake WeCom server.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adapters.wecom_bot.adapter import WecomBotAdapter
from adapters.wecom_bot.protocol import MAX_CONTENT_BYTES
from adapters.wecom_bot.state import MAX_IN_FLIGHT
from gateway.emulator import DifyEmulator, ScriptedReply
from gateway.runtime import Gateway
from gateway.words import SIMPLIFIED_CHINESE
from tests.conftest import GatewayFactory, make_config
from tests.fakes.wecom_bot import (
    VECTOR_AES_KEY,
    VECTOR_TOKEN,
    FakeWecomBotServer,
    WecomSide,
    event_payload,
    text_payload,
)
from tests.helpers import wait_for

Client = TestClient[Any, Any]
PATH = "/webhooks/wecom-ai"
SIDE = WecomSide(VECTOR_TOKEN, VECTOR_AES_KEY)
# The bot has no `locale`: a WeCom AI bot speaks Chinese by default.
WORDS = SIMPLIFIED_CHINESE
THINKING = WORDS.thinking
REFUSED = WORDS.too_many_questions(MAX_IN_FLIGHT)
CONTINUED = "\n\n" + WORDS.continued
TAKING_LONG = "\n\n" + WORDS.taking_long
CUT = "\n\n" + WORDS.cut


async def start(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    *,
    api_base: str | None = None,
    **config: Any,
) -> tuple[Client, Gateway]:
    """The gateway with the bot. Give `api_base` (the fake WeCom's) where a test's
    response_url or media live on the fake: only WeCom's hosts and api_base's are used."""
    bot = {
        "platform": "wecom_bot",
        "app": "main",
        "token": VECTOR_TOKEN,
        "encoding_aes_key": VECTOR_AES_KEY,
    }
    if api_base is not None:
        bot["api_base"] = api_base
    client, gateway = await gateway_factory(make_config(dify, {"wecom-ai": bot}, **config))
    await wait_for(lambda: gateway.adapters["wecom-ai"].ready, what="bot ready")
    return client, gateway


def adapter_of(gateway: Gateway) -> WecomBotAdapter:
    adapter = gateway.adapters["wecom-ai"]
    assert isinstance(adapter, WecomBotAdapter)
    return adapter


def answer(text: str, n: int, delay: float = 0.0) -> ScriptedReply:
    size = -(-len(text) // n)
    return ScriptedReply(
        chunks=[text[i : i + size] for i in range(0, len(text), size)], delay=delay
    )


async def ask(client: Client, payload: dict[str, Any]) -> dict[str, Any]:
    """Send a user message; return the stream of the ack."""
    reply = await SIDE.call(client, PATH, payload)
    assert reply is not None and reply["msgtype"] == "stream"
    stream: dict[str, Any] = reply["stream"]
    return stream


async def refresh_until_finished(
    client: Client, sid: str, *, every: float = 0.1, within: float = 10.0
) -> list[dict[str, Any]]:
    """Refresh like WeCom does; every reply in order, the last one with finish: true."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    while not (seen and seen[-1]["finish"]):
        assert time.monotonic() < deadline, f"stream never finished: {seen[-1:]}"
        seen.append(await SIDE.refresh(client, PATH, sid))
        await asyncio.sleep(every)
    return seen


async def answered(gateway: Gateway, within: float = 10.0) -> None:
    await wait_for(
        lambda: gateway.inbox.in_flight == 0 and gateway.inbox.queued == 0,
        within=within,
        what="answers to finish",
    )


# --- the refresh loop ----------------------------------------------------------------------


async def test_the_refresh_loop_ends_with_the_whole_answer_after_one_dify_call(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    client, gateway = await start(gateway_factory, dify)
    text = "A streamed **answer**, word by word. " * 10
    dify.reply(answer(text, 20, delay=0.08))

    sent = time.monotonic()
    first = await ask(client, text_payload("msg-1", "how do I reset my VPN?"))
    assert time.monotonic() - sent < 0.5
    assert first["finish"] is False and first["content"] == THINKING
    assert first["feedback"] == {"id": "msg-1"}

    replies = await refresh_until_finished(client, first["id"])
    assert {r["id"] for r in replies} == {first["id"]}
    assert replies[-1]["content"] == text
    growing = [r["content"] for r in replies[:-1] if r["content"] not in (THINKING, text)]
    assert len(set(growing)) >= 2  # several visible steps before the final one
    assert all(b.startswith(a) for a, b in itertools.pairwise(growing))
    assert len(dify.requests) == 1
    assert dify.requests[0]["query"] == "how do I reset my VPN?"
    assert dify.requests[0]["user"] == "wecom-ai:u1"
    await answered(gateway)
    assert await gateway.store.get("wecom_bot:inflight:wecom-ai:u1") == "0"


async def test_a_retried_callback_gets_the_same_stream_and_no_second_answer(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    client, gateway = await start(gateway_factory, dify)
    dify.reply(answer("Only once. " * 8, 8, delay=0.05))
    payload = text_payload("msg-retry", "hello")
    first = await ask(client, payload)
    retry = await ask(client, payload)  # WeCom did not see our first reply in time
    assert retry["id"] == first["id"]
    replies = await refresh_until_finished(client, first["id"])
    late_retry = await ask(client, payload)
    assert late_retry["id"] == first["id"]
    assert late_retry["finish"] and late_retry["content"] == replies[-1]["content"]
    await answered(gateway)
    assert len(dify.requests) == 1


async def test_a_fourth_answer_in_flight_is_refused_at_once(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    client, gateway = await start(gateway_factory, dify)
    dify.responder = lambda request, turn: ScriptedReply(chunks=["ok ", "done"], delay=0.3)
    streams = [await ask(client, text_payload(f"q{n}", f"question {n}")) for n in range(3)]
    fourth = await ask(client, text_payload("q3", "question 3"))
    assert fourth["finish"] is True and fourth["content"] == REFUSED
    other_user = await ask(client, text_payload("p0", "mine", user="u2"))
    assert other_user["finish"] is False

    for stream in streams:
        assert (await refresh_until_finished(client, stream["id"]))[-1]["content"] == "ok done"
    await answered(gateway)
    assert sorted(r["query"] for r in dify.requests) == [
        "mine",
        "question 0",
        "question 1",
        "question 2",
    ]
    assert (await ask(client, text_payload("q4", "again")))["content"] == THINKING


# --- long answers --------------------------------------------------------------------------


async def test_an_answer_over_20480_bytes_arrives_whole_through_response_url(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    client, gateway = await start(gateway_factory, dify, api_base=wecom.base_url)
    text = "".join(
        f"第{i}段: 企业微信的流式消息最多两万字节. Paragraph {i}.\n\n" for i in range(400)
    )
    assert 20480 < len(text.encode()) < 2 * 20000
    dify.reply(answer(text, 60, delay=0.005))
    url = wecom.response_url("code-long")
    first = await ask(client, text_payload("msg-long", "long please", response_url=url))

    stream = (await refresh_until_finished(client, first["id"]))[-1]
    assert len(stream["content"].encode()) <= MAX_CONTENT_BYTES
    assert stream["content"].endswith(CONTINUED)
    await wait_for(lambda: bool(wecom.of("response_url")), what="the rest via response_url")
    (rest,) = wecom.of("response_url")
    assert rest.body["code"] == "code-long" and rest.body["msgtype"] == "markdown"
    assert stream["content"].removesuffix(CONTINUED) + rest.body["markdown"]["content"] == text
    await answered(gateway)
    assert len(dify.requests) == 1


async def test_a_response_url_off_wecoms_hosts_gets_no_answer(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    wecom: FakeWecomBotServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An authentic callback whose response_url is not WeCom's (here: the fake, without
    it being the api_base): the stream is the answer's only way out, and it says so."""
    client, gateway = await start(gateway_factory, dify)
    text = "".join(f"Paragraph {i}: more than one stream holds.\n\n" for i in range(600))
    assert len(text.encode()) > MAX_CONTENT_BYTES
    dify.reply(answer(text, 30))
    # WeCom's response_url carries its capability in the query (response_code=…).
    url = wecom.response_url("code-elsewhere") + "?response_code=SECRET"
    first = await ask(client, text_payload("msg-elsewhere", "long", response_url=url))
    stream = (await refresh_until_finished(client, first["id"]))[-1]
    assert stream["content"].endswith(CUT)
    await answered(gateway)
    assert wecom.of("response_url") == []
    assert "response_url" in caplog.text and "SECRET" not in caplog.text


async def test_past_two_messages_the_cut_is_said_not_silent(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    client, _gateway = await start(gateway_factory, dify, api_base=wecom.base_url)
    text = "".join(
        f"Line {i}: a long answer that will not fit in two messages.\n" for i in range(900)
    )
    assert len(text.encode()) > 2 * MAX_CONTENT_BYTES
    dify.reply(answer(text, 50))
    url = wecom.response_url("code-huge")
    first = await ask(client, text_payload("msg-huge", "huge", response_url=url))
    stream = (await refresh_until_finished(client, first["id"]))[-1]
    await wait_for(lambda: bool(wecom.of("response_url")))
    (rest,) = wecom.of("response_url")
    content = rest.body["markdown"]["content"]
    assert content.endswith(CUT) and len(content.encode()) <= MAX_CONTENT_BYTES
    shown = stream["content"].removesuffix(CONTINUED) + content.removesuffix(CUT)
    assert text.startswith(shown.rstrip())


async def test_a_stream_past_its_window_finishes_through_response_url(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    client, gateway = await start(gateway_factory, dify, api_base=wecom.base_url)
    adapter_of(gateway).close_after = 0.8  # stands in for WeCom's 6 minutes
    text = "slow words " * 20
    dify.reply(answer(text, 20, delay=0.08))
    url = wecom.response_url("code-slow")
    first = await ask(client, text_payload("msg-slow", "slow", response_url=url))
    stream = (await refresh_until_finished(client, first["id"]))[-1]
    assert stream["content"].endswith(TAKING_LONG)
    await wait_for(lambda: bool(wecom.of("response_url")), within=6)
    rest = wecom.of("response_url")[0].body["markdown"]["content"]
    assert stream["content"].removesuffix(TAKING_LONG) + rest == text


# --- events --------------------------------------------------------------------------------


async def test_enter_chat_is_welcomed_with_the_apps_opening_statement(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    client, _gateway = await start(gateway_factory, dify)
    dify.opening_statement = "你好, I answer HR questions."
    reply = await SIDE.call(client, PATH, event_payload("enter_chat"))
    assert reply == {"msgtype": "text", "text": {"content": "你好, I answer HR questions."}}
    assert dify.requests == []


async def test_feedback_reaches_dify(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    client, gateway = await start(gateway_factory, dify)
    dify.reply(answer("A rated answer.", 2))
    first = await ask(client, text_payload("msg-rated", "rate me"))
    await refresh_until_finished(client, first["id"])
    await answered(gateway)
    detail = {"feedback_event": {"id": first["feedback"]["id"], "type": 2, "content": "wrong"}}
    assert await SIDE.call(client, PATH, event_payload("feedback_event", detail)) is None
    await wait_for(lambda: bool(dify.feedbacks), what="feedback in Dify")
    (feedback,) = dify.feedbacks
    assert feedback["rating"] == "dislike" and feedback["user"] == "wecom-ai:u1"


async def test_a_dm_image_is_decrypted_and_given_to_dify(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    client, _gateway = await start(gateway_factory, dify, api_base=wecom.base_url)
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(200))
    url = wecom.add_media("img1", png, VECTOR_AES_KEY)  # webhook mode: the bot's own key
    payload = text_payload("msg-img", "")
    payload.update(msgtype="image", image={"url": url})
    del payload["text"]
    first = await ask(client, payload)
    await refresh_until_finished(client, first["id"])
    (upload,) = dify.uploads
    assert upload["data"] == png and upload["name"] == "image-1.png"
    assert dify.requests[0]["files"][0]["upload_file_id"] == upload["id"]


# --- the edge ------------------------------------------------------------------------------


async def test_url_verification_and_bad_requests_at_the_edge(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    client, gateway = await start(gateway_factory, dify)
    echostr = SIDE.crypto.encrypt(b"5927782489442352469")
    now = str(int(time.time()))
    query = {
        "msg_signature": SIDE.crypto.signature(now, "437374425", echostr),
        "timestamp": now,
        "nonce": "437374425",
        "echostr": echostr,
    }
    response = await client.get(PATH, params=query)
    assert response.status == 200 and await response.read() == b"5927782489442352469"
    response = await client.get(PATH, params={**query, "nonce": "1"})
    assert response.status == 401
    stale = {
        **query,
        "msg_signature": SIDE.crypto.signature("1411443780", "437374425", echostr),
        "timestamp": "1411443780",  # signed right, but in 2014
    }
    assert (await client.get(PATH, params=stale)).status == 401

    signed, body = SIDE.seal(text_payload("msg-bad", "hi"))
    forged = {**signed, "msg_signature": "f" * 40}
    assert (await client.post(PATH, params=forged, data=body)).status == 401
    assert (await client.post(PATH, params=signed, data=b"{not json")).status == 400
    assert (await client.post(PATH, data=body)).status == 401
    other_key = base64.b64encode(b"x" * 32).decode().rstrip("=")
    stranger = WecomSide(VECTOR_TOKEN, other_key)
    q2, b2 = stranger.seal(text_payload("msg-stranger", "hi"))
    assert (await client.post(PATH, params=q2, data=b2)).status == 401
    assert (await client.post("/webhooks/nobody", params=signed, data=body)).status == 404
    await answered(gateway)
    assert dify.requests == []


# --- several instances ---------------------------------------------------------------------


@pytest.mark.redis
async def test_refreshes_on_another_instance_see_the_same_stream(
    gateway_factory: GatewayFactory, dify: DifyEmulator, redis_url: str
) -> None:
    """The question lands on instance A, which answers it; WeCom's refreshes and its retry
    land on instance B, which only reads the shared store."""
    first, gateway_a = await start(gateway_factory, dify, store=redis_url)
    second, gateway_b = await start(gateway_factory, dify, store=redis_url)
    text = "Answered on A, shown by B. " * 8
    dify.reply(answer(text, 10, delay=0.05))
    user, msgid = f"u-{uuid.uuid4().hex[:8]}", f"m-{uuid.uuid4().hex}"
    payload = text_payload(msgid, "across instances", user=user)
    stream = await ask(first, payload)
    assert (await ask(second, payload))["id"] == stream["id"]  # a retry on B
    replies = await refresh_until_finished(second, stream["id"])
    assert replies[-1]["content"] == text
    await answered(gateway_a)
    await answered(gateway_b)
    assert len(dify.requests) == 1
