"""End to end through the real gateway: an encrypted WeCom app callback -> empty 200 ack ->
the Dify emulator's SSE stream -> `message/send` parts on the fake qyapi server."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient

from adapters.wecom import quota as app_quota
from adapters.wecom.crypto import WecomCrypto
from gateway.emulator import DifyEmulator, ScriptedReply
from gateway.runtime import Gateway
from gateway.words import ENGLISH, SIMPLIFIED_CHINESE, Words
from tests.conftest import GatewayFactory, make_config
from tests.fakes.wecom import (
    AES_KEY,
    AGENT_ID,
    CORP_ID,
    SECRET,
    TOKEN,
    FakeQyapi,
    message_xml,
    query_string,
    signed_get,
    signed_post,
)
from tests.helpers import wait_for

DATA = Path(__file__).parents[1] / "data" / "wecom"
Client = TestClient[Any, Any]
_msg_ids = itertools.count(7_000_000_000_000_000_000)


@pytest.fixture
async def qyapi() -> AsyncIterator[FakeQyapi]:
    fake = FakeQyapi()
    await fake.start()
    yield fake
    await fake.stop()


async def start(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    qyapi: FakeQyapi,
    locale: str | None = None,
    **config: Any,
) -> tuple[Client, Gateway]:
    bot = {
        "platform": "wecom",
        "app": "main",
        "api_base": qyapi.base_url,
        "corp_id": CORP_ID,
        "agent_id": AGENT_ID,
        "secret": SECRET,
        "token": TOKEN,
        "encoding_aes_key": AES_KEY,
        "locale": locale,  # None: the platform's default, Chinese
    }
    client, gateway = await gateway_factory(make_config(dify, {"wecom-it": bot}, **config))
    await wait_for(lambda: gateway.adapters["wecom-it"].ready, what="wecom bot ready")
    return client, gateway


async def post(client: Client, plaintext: bytes, **kwargs: Any) -> Any:
    query, body = signed_post(plaintext, **kwargs)
    return await client.post(f"/webhooks/wecom-it?{query_string(query)}", data=body)


def text_message(content: str, *, user: str = "zhangsan") -> bytes:
    return message_xml(Content=content, user=user, msg_id=str(next(_msg_ids)))


async def answered(gateway: Gateway, within: float = 8.0) -> None:
    async with asyncio.timeout(within):
        await gateway.inbox.wait_idle()


def answer(text: str, n: int, delay: float = 0.0) -> ScriptedReply:
    size = -(-len(text) // n)
    return ScriptedReply(
        chunks=[text[i : i + size] for i in range(0, len(text), size)], delay=delay
    )


# --- URL verification ----------------------------------------------------------------------


@pytest.mark.parametrize("plus_as_is", [False, True])
async def test_url_verification_answers_the_bare_plaintext_at_once(
    gateway_factory: GatewayFactory, dify: DifyEmulator, qyapi: FakeQyapi, plus_as_is: bool
) -> None:
    client, _ = await start(gateway_factory, dify, qyapi)
    query = signed_get(b"5927782489442352469")
    while "+" not in query["echostr"]:  # make sure the `+` decoding case is exercised
        query = signed_get(b"5927782489442352469")
    started = time.monotonic()
    response = await client.get(f"/webhooks/wecom-it?{query_string(query, plus_as_is=plus_as_is)}")
    assert time.monotonic() - started < 1.0
    assert response.status == 200
    assert await response.read() == b"5927782489442352469"
    assert response.content_type == "text/plain"


async def test_url_verification_with_a_bad_signature_is_401(
    gateway_factory: GatewayFactory, dify: DifyEmulator, qyapi: FakeQyapi
) -> None:
    client, _ = await start(gateway_factory, dify, qyapi)
    query = {**signed_get(b"123"), "timestamp": "1"}
    response = await client.get(f"/webhooks/wecom-it?{query_string(query)}")
    assert response.status == 401


# --- the happy path ------------------------------------------------------------------------


async def test_text_is_acked_empty_at_once_and_answered_with_message_send(
    gateway_factory: GatewayFactory, dify: DifyEmulator, qyapi: FakeQyapi
) -> None:
    client, gateway = await start(gateway_factory, dify, qyapi)
    dify.reply(answer("**Restart** the VPN client, then sign in again.", 6, delay=0.02))
    started = time.monotonic()
    response = await post(client, (DATA / "text.xml").read_bytes())
    assert time.monotonic() - started < 0.5
    assert response.status == 200 and await response.read() == b""

    await answered(gateway)
    (sent,) = qyapi.delivered("zhangsan")
    assert sent.msgtype == "markdown"
    assert sent.content == "**Restart** the VPN client, then sign in again."
    assert qyapi.of("message/send")[0].payload["agentid"] == AGENT_ID  # type: ignore[index]
    request = dify.requests[0]
    assert request["query"] == "你好, what can you do?"
    assert request["user"] == "wecom-it:zhangsan"
    assert request["response_mode"] == "streaming"


async def test_a_retried_msgid_is_answered_once(
    gateway_factory: GatewayFactory, dify: DifyEmulator, qyapi: FakeQyapi
) -> None:
    client, gateway = await start(gateway_factory, dify, qyapi)
    dify.reply(ScriptedReply(chunks=["Answered once."]))
    plaintext = text_message("only once please")
    # WeCom retries with a new nonce and timestamp each time; MsgId stays.
    sent = int(time.time())
    for attempt in range(3):
        response = await post(client, plaintext, nonce=f"n{attempt}", timestamp=str(sent + attempt))
        assert response.status == 200 and await response.read() == b""
    await answered(gateway)
    assert len(dify.requests) == 1
    assert len(qyapi.delivered("zhangsan")) == 1


async def test_a_6000_character_answer_arrives_whole_in_parts_of_at_most_2048_bytes(
    gateway_factory: GatewayFactory, dify: DifyEmulator, qyapi: FakeQyapi
) -> None:
    client, gateway = await start(gateway_factory, dify, qyapi)
    paragraph = "企业微信按字节计算消息长度。一个汉字占三个字节。" + "请完整收到这一段文字。" * 4
    text = "".join(f"第{i}段 {paragraph}\n\n" for i in range(100))[:6000]
    assert len(text) == 6000 and len(text.encode()) > 17_000
    dify.reply(answer(text, 30))
    await post(client, text_message("long please"))

    await answered(gateway, within=10)
    parts = qyapi.texts("zhangsan")
    assert len(parts) >= 9
    assert all(len(p.encode()) <= 2048 for p in parts)
    assert "".join(parts) == text  # whole and in order
    assert not [s for s in qyapi.sent if s.dropped]


async def test_a_long_stream_goes_out_in_paced_paragraphs_within_the_member_limit(
    gateway_factory: GatewayFactory, dify: DifyEmulator, qyapi: FakeQyapi
) -> None:
    client, gateway = await start(gateway_factory, dify, qyapi)
    paragraphs = [f"Paragraph {i}. " + "Some explanation that goes on. " * 12 for i in range(6)]
    text = "\n\n".join(paragraphs)
    words = [w + " " for w in text.split(" ")]
    words[-1] = words[-1].rstrip(" ")
    dify.reply(ScriptedReply(chunks=words, delay=7.5 / len(words)))
    began = time.monotonic()
    await post(client, text_message("explain slowly"))

    await answered(gateway, within=15)
    sent = qyapi.delivered("zhangsan")
    assert "".join(s.content for s in sent) == text
    # Finished paragraphs went out while Dify was still streaming, not all at the end...
    assert sent[0].at - began < 5.0 and len(sent) >= 3
    # ...at least 3 s apart (the closing part may follow the last paced one at once)...
    paced = [s.at for s in sent[:-1]]
    assert all(b - a >= 2.9 for a, b in itertools.pairwise(paced))
    # ...coalesced: each paced part holds whole paragraphs, never a fragment.
    assert all(s.content.endswith("\n\n") for s in sent[:-1])
    stamps = [s.at for s in qyapi.sent]
    assert all(sum(1 for u in stamps if 0 <= u - t < 60) <= 30 for t in stamps)


async def test_many_answers_to_one_member_wait_for_the_quota_instead_of_being_dropped(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    qyapi: FakeQyapi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The member limit at a test scale: WeCom drops what exceeds 4 sends in a rolling
    second; the quota allows 2 per fixed second, so 4 per rolling second at most."""
    monkeypatch.setattr(app_quota, "WINDOWS", (app_quota.Window(1, 2),))
    qyapi.member_limit = (4, 1.0)
    client, gateway = await start(gateway_factory, dify, qyapi)
    long = "x" * 2000 + "\n\n" + "y" * 100  # two parts each
    dify.reply(*(ScriptedReply(chunks=[long]) for _ in range(4)))
    for i in range(4):
        await post(client, text_message(f"question {i}"))
    await answered(gateway, within=10)
    assert len(qyapi.sent) == 8
    assert not [s for s in qyapi.sent if s.dropped]
    assert qyapi.texts("zhangsan") == ["x" * 2000 + "\n\n", "y" * 100] * 4


async def test_token_expired_at_send_time_is_refreshed_once(
    gateway_factory: GatewayFactory, dify: DifyEmulator, qyapi: FakeQyapi
) -> None:
    client, gateway = await start(gateway_factory, dify, qyapi)
    assert len(qyapi.of("gettoken")) == 1
    qyapi.expire_tokens()  # WeCom answers 42001 to the cached token
    dify.reply(ScriptedReply(chunks=["fresh token, ", "same answer"]))
    await post(client, text_message("hello"))
    await answered(gateway)
    assert qyapi.texts("zhangsan") == ["fresh token, same answer"]
    assert len(qyapi.of("gettoken")) == 2
    codes = [c.params["access_token"] for c in qyapi.of("message/send")]
    assert len(codes) == 2 and codes[0] != codes[1]


async def test_a_concurrency_limit_is_waited_out_and_the_answer_delivered(
    gateway_factory: GatewayFactory, dify: DifyEmulator, qyapi: FakeQyapi
) -> None:
    client, gateway = await start(gateway_factory, dify, qyapi)
    qyapi.fail_next("message/send", 45033)
    dify.reply(ScriptedReply(chunks=["after a pause"]))
    await post(client, text_message("hello"))
    await answered(gateway)
    assert qyapi.texts("zhangsan") == ["after a pause"]
    sends = qyapi.of("message/send")
    assert len(sends) == 2 and sends[1].at - sends[0].at >= 0.9


# --- media ---------------------------------------------------------------------------------


async def test_an_image_is_downloaded_and_uploaded_to_dify(
    gateway_factory: GatewayFactory, dify: DifyEmulator, qyapi: FakeQyapi
) -> None:
    qyapi.media["media-image-1"] = (b"\x89PNG\r\n\x1a\nfake", "image/png", "photo.png")
    client, gateway = await start(gateway_factory, dify, qyapi)
    dify.reply(ScriptedReply(chunks=["A cat."]))
    await post(client, (DATA / "image.xml").read_bytes())
    await answered(gateway)
    (upload,) = dify.uploads
    assert upload["data"] == b"\x89PNG\r\n\x1a\nfake" and upload["mime_type"] == "image/png"
    (request,) = dify.requests
    assert request["files"][0]["upload_file_id"] == upload["id"]
    assert qyapi.texts("zhangsan") == ["A cat."]


async def test_a_voice_message_goes_through_audio_to_text_as_amr(
    gateway_factory: GatewayFactory, dify: DifyEmulator, qyapi: FakeQyapi
) -> None:
    qyapi.media["media-voice-1"] = (b"#!AMR\n\x00\x01", "audio/amr", "voice.amr")
    client, gateway = await start(gateway_factory, dify, qyapi)
    dify.reply(ScriptedReply(chunks=["Heard you."]))
    await post(client, (DATA / "voice.xml").read_bytes())
    await answered(gateway)
    (audio,) = dify.uploads
    assert audio["audio"] and audio["mime_type"] == "audio/amr"
    assert audio["name"].endswith(".amr")
    assert dify.requests[0]["query"] == "transcribed audio"
    assert qyapi.texts("zhangsan") == ["Heard you."]


async def test_unsupported_types_get_a_polite_notice_without_dify(
    gateway_factory: GatewayFactory, dify: DifyEmulator, qyapi: FakeQyapi
) -> None:
    client, gateway = await start(gateway_factory, dify, qyapi)
    response = await post(client, (DATA / "video.xml").read_bytes())
    assert response.status == 200
    await answered(gateway)
    # A WeCom app speaks Chinese unless its config says otherwise.
    assert qyapi.texts("zhangsan") == [SIMPLIFIED_CHINESE.only_text_images_voice]
    assert dify.requests == []


@pytest.mark.parametrize(("locale", "words"), [(None, SIMPLIFIED_CHINESE), ("en", ENGLISH)])
async def test_commands_answer_in_the_bots_language(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    qyapi: FakeQyapi,
    locale: str | None,
    words: Words,
) -> None:
    client, gateway = await start(gateway_factory, dify, qyapi, locale=locale)
    await post(client, text_message("/help"))
    await answered(gateway)
    await post(client, text_message("/reset"))
    await answered(gateway)
    await post(client, (DATA / "video.xml").read_bytes())
    await answered(gateway)
    assert qyapi.texts("zhangsan") == [
        words.help,
        words.new_conversation,
        words.only_text_images_voice,
    ]


async def test_events_are_acked_and_not_answered(
    gateway_factory: GatewayFactory, dify: DifyEmulator, qyapi: FakeQyapi
) -> None:
    client, gateway = await start(gateway_factory, dify, qyapi)
    for name in ("event_enter_agent.xml", "event_subscribe.xml", "event_batch_job_result.xml"):
        response = await post(client, (DATA / name).read_bytes())
        assert response.status == 200 and await response.read() == b""
    await answered(gateway)
    assert dify.requests == [] and qyapi.of("message/send") == []


# --- bad input -----------------------------------------------------------------------------


async def test_forged_callbacks_get_401_and_nothing_is_processed(
    gateway_factory: GatewayFactory, dify: DifyEmulator, qyapi: FakeQyapi
) -> None:
    client, gateway = await start(gateway_factory, dify, qyapi)
    plaintext = text_message("forged")
    query, body = signed_post(plaintext)
    other_corp = WecomCrypto(TOKEN, AES_KEY, "ww0000000000000000")
    other_key = WecomCrypto(TOKEN, "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR", CORP_ID)
    cases = [
        ({**query, "msg_signature": "0" * 40}, body),
        ({**query, "nonce": "another"}, body),
        ({k: v for k, v in query.items() if k != "msg_signature"}, body),
        signed_post(plaintext, sender=other_corp),  # wrong receiveid
        signed_post(plaintext, sender=other_key),  # signed right, encrypted with another key
    ]
    for q, b in cases:
        response = await client.post(f"/webhooks/wecom-it?{query_string(q)}", data=b)
        assert response.status == 401
    await answered(gateway)
    assert dify.requests == [] and qyapi.of("message/send") == []


async def test_xml_bombs_and_junk_get_400_fast(
    gateway_factory: GatewayFactory, dify: DifyEmulator, qyapi: FakeQyapi
) -> None:
    client, gateway = await start(gateway_factory, dify, qyapi)
    query, _ = signed_post(text_message("x"))
    for body in (
        (DATA / "billion_laughs.xml").read_bytes(),
        (DATA / "xxe.xml").read_bytes(),
        b'{"encrypt": "json"}',
        b"",
    ):
        started = time.monotonic()
        response = await client.post(f"/webhooks/wecom-it?{query_string(query)}", data=body)
        assert response.status == 400
        assert time.monotonic() - started < 0.1
    await answered(gateway)
    assert dify.requests == []


async def test_no_token_or_secret_in_the_logs(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    qyapi: FakeQyapi,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client, gateway = await start(gateway_factory, dify, qyapi)
    qyapi.expire_tokens()
    qyapi.fail_next("message/send", 60020, times=1)
    dify.reply(ScriptedReply(chunks=["logged?"]))
    await post(client, text_message("hello"))
    await answered(gateway)
    assert qyapi.texts("zhangsan") == ["logged?"]
    # httpx logs request URLs itself; gateway/logs.py keeps it at WARNING in production.
    ours = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert any("60020" in r.getMessage() for r in ours)
    logs = "\n".join(r.getMessage() for r in ours)
    assert "access-token-" not in logs and SECRET not in logs and "access_token=" not in logs


# --- several instances ---------------------------------------------------------------------


@pytest.mark.redis
async def test_two_instances_share_dedupe_token_and_answer_once(
    gateway_factory: GatewayFactory, dify: DifyEmulator, qyapi: FakeQyapi, redis_url: str
) -> None:
    flush = redis.from_url(redis_url)
    await flush.flushdb()
    await flush.aclose()
    first, gateway_a = await start(gateway_factory, dify, qyapi, store=redis_url)
    second, gateway_b = await start(gateway_factory, dify, qyapi, store=redis_url)
    assert len(qyapi.of("gettoken")) == 1  # the second instance took the shared token
    dify.reply(ScriptedReply(chunks=["one answer"]))
    plaintext = text_message("asked once, delivered twice by WeCom")
    assert (await post(first, plaintext)).status == 200
    assert (await post(second, plaintext, nonce="retry")).status == 200
    await answered(gateway_a)
    await answered(gateway_b)
    assert len(dify.requests) == 1
    assert qyapi.texts("zhangsan") == ["one answer"]
