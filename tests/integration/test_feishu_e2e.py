"""End to end through the real gateway: an encrypted, signed Feishu event -> ack -> the Dify
emulator's SSE stream -> the fake Feishu shows the answer in a CardKit streaming card."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adapters.feishu import crypto
from adapters.feishu.adapter import MAX_MESSAGE_BYTES
from gateway.emulator import DifyEmulator, ScriptedReply
from gateway.runtime import Gateway
from gateway.words import ENGLISH, SIMPLIFIED_CHINESE
from tests.conftest import GatewayFactory, make_config
from tests.fakes.feishu import (
    ENCRYPT_KEY,
    VERIFICATION_TOKEN,
    FakeFeishu,
    mention,
    message_event,
    webhook_request,
)
from tests.helpers import bot_state, wait_for
from tests.unit.feishu.audio_sample import opus_clip

Client = TestClient[Any, Any]
BOT = "fs"
THINKING = "_Thinking…_"


def feishu_ws_bot(fake: FakeFeishu, **extra: Any) -> dict[str, Any]:
    """A bot on Feishu's long connection (no webhook, so no token or key)."""
    return {
        "platform": "feishu",
        "app": "main",
        "mode": "websocket",
        "api_base": fake.base_url,
        "app_id": fake.app_id,
        "app_secret": fake.app_secret,
        **extra,
    }


def feishu_bot(fake: FakeFeishu, **extra: Any) -> dict[str, Any]:
    return {
        "platform": "feishu",
        "app": "main",
        "api_base": fake.base_url,
        "app_id": fake.app_id,
        "app_secret": fake.app_secret,
        "verification_token": VERIFICATION_TOKEN,
        "encrypt_key": ENCRYPT_KEY,
        # These tests read English; a Feishu bot's own default, Chinese, has its own tests.
        "locale": "en",
        **extra,
    }


async def start(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu, **config: Any
) -> tuple[Client, Gateway]:
    # Unless a test scripts its answers, Dify answers at once (the default echo is slow).
    dify.responder = lambda request, turn: ScriptedReply(chunks=["Noted."])
    bot = feishu_bot(feishu, **config.pop("bot", {}))
    client, gateway = await gateway_factory(make_config(dify, {BOT: bot}, **config))
    await wait_for(lambda: gateway.adapters[BOT].ready, what="feishu bot ready")
    return client, gateway


async def post(client: Client, payload: dict[str, Any], **kwargs: Any) -> Any:
    body, headers = webhook_request(payload, **kwargs)
    return await client.post(f"/webhooks/{BOT}", data=body, headers=headers)


async def answered(gateway: Gateway, within: float = 8.0) -> None:
    await wait_for(
        lambda: gateway.inbox.in_flight == 0 and gateway.inbox.queued == 0,
        within=within,
        what="answers to finish",
    )


def chunked(text: str, n: int, delay: float = 0.0) -> ScriptedReply:
    size = -(-len(text) // n)
    return ScriptedReply(
        chunks=[text[i : i + size] for i in range(0, len(text), size)], delay=delay
    )


def bot_mention() -> list[dict[str, Any]]:
    return [mention("@_user_1", "ou_bot", "Helper")]


# --- URL verification ----------------------------------------------------------------------


async def test_encrypted_challenge_is_answered_in_plain_json(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    """The self-generated vector: key `test key`, token `xxxxxx`, no signature headers."""
    client, _ = await start(gateway_factory, dify, feishu, bot={"verification_token": "xxxxxx"})
    encrypted = (
        "MDEyMzQ1Njc4OWFiY2RlZtWk+9FBVdzQ4TLkjfEv5NMdDH8aS8GY4yM80uYktE+PRVyD+lzTep5KiLr9nogtT"
        "NPZpddsq4wsYVWvA1nyXUz16ROcWk/KybRQ2sh4f9Kc"
    )
    sent = time.monotonic()
    response = await client.post(f"/webhooks/{BOT}", json={"encrypt": encrypted})
    assert time.monotonic() - sent < 1.0  # Feishu allows 1 s for the challenge
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == {"challenge": "ajls384kdj"}
    # ...and a challenge with another token is refused.
    other = crypto.encrypt(
        ENCRYPT_KEY, b'{"challenge":"x","token":"guess","type":"url_verification"}'
    )
    assert (await client.post(f"/webhooks/{BOT}", json={"encrypt": other})).status == 401


# --- the happy path ------------------------------------------------------------------------


async def test_direct_message_streams_into_a_cardkit_card(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    text = "Annual leave is 15 days a year, accrued monthly. " * 8
    dify.reply(chunked(text, 24, delay=0.06))
    event = message_event("how much annual leave do I get?")

    sent = time.monotonic()
    response = await post(client, event)
    acked = time.monotonic()
    assert response.status == 200
    assert await response.json() == {"msg": "success"}
    assert acked - sent < 0.5

    await answered(gateway)
    (reply,) = feishu.replies_to(event["event"]["message"]["message_id"])
    card = feishu.card_of(reply.message_id)
    assert card is not None
    # "Thinking…" within a second of the ack, then replaced: never in the final card.
    first_at, first_text = card.states[0]
    assert first_at - acked < 1.0 and first_text == THINKING
    assert feishu.transcript() == [text]
    assert not card.streaming
    growing = [t for _, t in card.states[1:] if t != text]
    assert len(growing) >= 2
    assert all(b.startswith(a) and a != b for a, b in itertools.pairwise(growing))
    request = dify.requests[0]
    assert request["query"] == "how much annual leave do I get?"
    assert request["user"] == f"{BOT}:ou_user"
    assert request["response_mode"] == "streaming"


async def test_eighty_chunks_keep_sequence_and_pacing(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    chunks = [f"词{i} " for i in range(80)]
    dify.reply(ScriptedReply(chunks=chunks, delay=0.03))
    await post(client, message_event("count to eighty"))
    await answered(gateway, within=10)

    (card,) = feishu.cards.values()
    assert card.text() == "".join(chunks) and not card.streaming
    sequences = [seq for _, op, seq in card.history if op != "create"]
    assert all(a < b for a, b in itertools.pairwise(sequences))
    updates = [t for t, op, _ in card.history if op == "content"]
    # One closing call: the card replaced whole, which ends streaming, takes the Stop button
    # away and adds 👍/👎.
    closing = [t for t, op, _ in card.history if op in ("settings", "replace")]
    assert len(closing) == 1 and card.history[-1][1] == "replace"
    # Several growing states before the final one...
    assert len([s for _, s in card.states[1:-1] if s != card.text()]) >= 3
    # ...at most 4 updates in any second, plus the closing call (the final text may follow
    # the last update at once); and within Feishu's 10 operations a second per card.
    streamed = updates[:-1] if len(updates) > 1 else updates
    for i, t in enumerate(streamed):
        assert sum(1 for u in streamed[i:] if u - t < 1.0) <= 4
    ops = [t for t, _, _ in card.history]
    for i, t in enumerate(ops):
        assert sum(1 for u in ops[i:] if u - t < 1.0) <= 10


async def test_a_40000_character_answer_arrives_whole(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    text = "".join(
        f"第{i}段，年假、病假和事假的规定如下。"  # noqa: RUF001
        + 'Policy text with "quotes" and words. ' * 6
        + "\n\n"
        for i in range(170)
    )
    assert len(text) > 40_000
    dify.reply(chunked(text, 40, delay=0.01))
    event = message_event("the whole handbook, please")
    await post(client, event)
    await answered(gateway, within=20)

    shown = feishu.transcript()
    assert len(shown) >= 4
    assert all(len(part.encode()) <= MAX_MESSAGE_BYTES for part in shown)
    assert "".join(shown) == text
    assert all(not c.streaming for c in feishu.cards.values())
    assert all(c.size < 30 * 1024 for c in feishu.calls)
    parents = {m.parent_id for m in feishu.messages.values()}
    assert parents == {event["event"]["message"]["message_id"]}


# --- groups, mentions, threads -------------------------------------------------------------


async def test_group_message_without_a_mention_is_acked_and_ignored(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    chatter = message_event(
        "@_user_1 lunch?", chat_type="group", mentions=[mention("@_user_1", "ou_bob", "Bob")]
    )
    response = await post(client, chatter)
    assert response.status == 200 and await response.json() == {"msg": "success"}
    asked = message_event("@_user_1 where is the VPN guide?", chat_type="group",
                          mentions=bot_mention())  # fmt: skip
    dify.reply(chunked("It is on the wiki under IT.", 4, delay=0.05))
    await post(client, asked)
    await answered(gateway)
    assert [r["query"] for r in dify.requests] == ["where is the VPN guide?"]
    assert feishu.transcript() == ["It is on the wiki under IT."]
    (reply,) = feishu.messages.values()
    assert reply.parent_id == asked["event"]["message"]["message_id"]
    card = feishu.card_of(reply.message_id)
    assert card is not None and card.states[0][1] == THINKING
    assert all(THINKING not in t for t in feishu.transcript())
    assert dify.requests[0]["user"] == f"{BOT}:ou_user"  # chat_user scope speaks as the user


async def test_topic_thread_messages_are_answered_in_the_thread(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    event = message_event("@_user_1 help", chat_type="topic_group", mentions=bot_mention(),
                          thread_id="omt_1", root_id="om_root")  # fmt: skip
    await post(client, event)
    await answered(gateway)
    (reply,) = feishu.messages.values()
    assert reply.in_thread
    assert feishu.calls_to("POST", "/reply$")[0].body["reply_in_thread"] is True


async def test_messages_from_apps_are_not_answered(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    assert (await post(client, message_event("echo", sender_type="app"))).status == 200
    await post(client, message_event("sentinel"))
    await answered(gateway)
    assert [r["query"] for r in dify.requests] == ["sentinel"]


async def test_group_message_before_the_bot_id_is_known_gets_503(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    feishu.bot_info_fails = 1_000
    dify.responder = lambda request, turn: ScriptedReply(chunks=["Noted."])
    client, gateway = await gateway_factory(make_config(dify, {BOT: feishu_bot(feishu)}))
    event = message_event("@_user_1 hi", chat_type="group", mentions=bot_mention())
    assert (await post(client, event)).status == 503
    assert not gateway.adapters[BOT].ready
    await wait_for(lambda: bot_state(gateway, BOT) == "retrying", what="a failed start")
    ready = await client.get("/readyz")  # one bot down never takes the instance out
    assert ready.status == 200
    assert (await ready.json())["bots"] == {BOT: "retrying"}
    feishu.bot_info_fails = 0
    await wait_for(lambda: gateway.adapters[BOT].ready, within=5, what="bot info")
    assert (await post(client, event)).status == 200
    await answered(gateway)
    assert len(dify.requests) == 1


# --- retries -------------------------------------------------------------------------------


async def test_a_repushed_event_is_answered_once(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    event = message_event("only once", event_id="ev-1", message_id="om_once")
    assert (await post(client, event)).status == 200
    assert (await post(client, event, nonce="retry-1")).status == 200  # same event_id
    repushed = message_event("only once", event_id="ev-2", message_id="om_once")
    assert (await post(client, repushed)).status == 200  # same message, new event id
    await answered(gateway)
    assert len(dify.requests) == 1
    assert len(feishu.replies_to("om_once")) == 1


# --- verification --------------------------------------------------------------------------


async def test_forged_stale_and_undecryptable_requests_get_401(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    event = message_event("forged")
    body, good = webhook_request(event)
    stale_body, stale = webhook_request(event, timestamp=int(time.time()) - 301)
    wrong_key_body, wrong_key = webhook_request(event, encrypt_key="another key")
    wrong_token_body, wrong_token = webhook_request(message_event("x", token="guess"))
    junk = json.dumps({"encrypt": "bm90IGEgY2lwaGVydGV4dA=="}).encode()
    cases = [
        (body + b" ", good),  # tampered body
        (wrong_key_body, wrong_key),
        (stale_body, stale),
        (wrong_token_body, wrong_token),
        (body, {k: v for k, v in good.items() if k != "X-Lark-Signature"}),
        (body, {k: v for k, v in good.items() if k != "X-Lark-Request-Timestamp"}),
        (body, {**good, "X-Lark-Request-Timestamp": "yesterday"}),
        (body, {**good, "X-Lark-Signature": "ü" * 64}),
        (junk, good),
    ]
    for data, headers in cases:
        response = await client.post(f"/webhooks/{BOT}", data=data, headers=headers)
        assert response.status == 401, headers
    not_json = b"{not json"
    assert (await client.post(f"/webhooks/{BOT}", data=not_json)).status == 400
    assert (await client.get(f"/webhooks/{BOT}")).status == 400
    await answered(gateway)
    assert dify.requests == [] and feishu.messages == {}


# --- content types -------------------------------------------------------------------------


async def test_voice_is_converted_for_dify_audio_to_text(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    event = message_event(message_type="audio", content={"file_key": "file_v3_voice",
                                                         "duration": 1000})  # fmt: skip
    message_id = event["event"]["message"]["message_id"]
    feishu.add_resource(message_id, "file_v3_voice", opus_clip(1.0), "file", "audio/opus")
    await post(client, event)
    await answered(gateway)
    (upload,) = dify.uploads
    assert upload["audio"] and upload["name"] == "voice.mp3"
    assert upload["mime_type"] == "audio/mp3"  # Dify refuses audio/mpeg (415)
    assert dify.requests[0]["query"] == "transcribed audio"


async def test_image_is_uploaded_to_dify(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    event = message_event(message_type="image", content={"image_key": "img_v3_1"})
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    feishu.add_resource(event["event"]["message"]["message_id"], "img_v3_1", png, "image",
                        "image/png")  # fmt: skip
    await post(client, event)
    await answered(gateway)
    (upload,) = dify.uploads
    assert (upload["name"], upload["mime_type"], upload["data"]) == ("image.png", "image/png", png)
    assert dify.requests[0]["files"][0]["type"] == "image"


async def test_unsupported_messages_get_a_polite_reply(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    await post(client, message_event(message_type="sticker", content={"file_key": "s"}))
    await answered(gateway)
    assert dify.requests == []
    (shown,) = feishu.transcript()
    assert shown.startswith("Sorry, I can't read sticker messages yet.")


async def test_without_pyav_voice_gets_a_polite_reply(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    feishu: FakeFeishu,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway import audio

    monkeypatch.setattr(audio, "available", lambda: False)
    client, gateway = await start(gateway_factory, dify, feishu)
    await post(client, message_event(message_type="audio", content={"file_key": "f"}))
    await answered(gateway)
    assert feishu.transcript() == [ENGLISH.voice_not_supported]


# --- failures ------------------------------------------------------------------------------


async def test_cardkit_failure_falls_back_to_a_patched_card(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    feishu.inject("POST", "cardkit/v1/cards$", code=99991672)
    text = "A fallback answer, edited about once a second. " * 5
    dify.reply(chunked(text, 20, delay=0.12))
    await post(client, message_event("hello"))
    await answered(gateway, within=10)
    assert feishu.transcript() == [text]
    (message,) = feishu.messages.values()
    assert message.card_id is None and len(message.patches) >= 2
    assert all(b - a >= 0.95 for a, b in zip(message.patches[:-2], message.patches[1:-1],
                                              strict=False))  # fmt: skip


async def test_a_dify_error_keeps_the_partial_answer_and_shows_a_note(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    dify.reply(ScriptedReply(chunks=["The first half ", "of an answer"], delay=0.05,
                             error=("model_quota_exceeded", "quota")))  # fmt: skip
    await post(client, message_event("break please"))
    await answered(gateway)
    (shown,) = feishu.transcript()
    assert shown.startswith("The first half of an answer\n\n---\n<font color='grey'>⚠️ ")
    assert "model_quota_exceeded" in shown
    assert all(not c.streaming for c in feishu.cards.values())


async def test_rate_limits_slow_down_and_the_answer_still_arrives(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    feishu.inject("PUT", "/content$", code=99991400, status=429,
                  headers={"x-ogw-ratelimit-reset": "1"}, times=2)  # fmt: skip
    text = "Slowed down but complete. " * 10
    dify.reply(chunked(text, 20, delay=0.05))
    await post(client, message_event("hi"))
    await answered(gateway, within=10)
    assert feishu.transcript() == [text]


async def test_expired_tenant_token_is_refreshed_mid_answer(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    feishu.expire_tokens()
    await post(client, message_event("hi"))
    await answered(gateway)
    assert feishu.tokens_issued == 2
    assert len(feishu.transcript()) == 1


# --- legacy and Lark -----------------------------------------------------------------------


async def test_v1_events_are_answered(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    payload = {
        "uuid": "b4f5c1",
        "token": VERIFICATION_TOKEN,
        "ts": str(time.time()),
        "type": "event_callback",
        "event": {"type": "message", "msg_type": "text", "chat_type": "private",
                  "open_chat_id": "oc_p", "open_id": "ou_v1", "open_message_id": "om_v1",
                  "text_without_at_bot": "legacy hello", "is_mention": False},
    }  # fmt: skip
    assert (await post(client, payload)).status == 200
    await answered(gateway)
    assert dify.requests[0]["query"] == "legacy hello"
    assert feishu.replies_to("om_v1")


async def test_lark_bot_without_encrypt_key(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    bot = feishu_bot(feishu, platform="lark")
    del bot["encrypt_key"], bot["locale"]
    dify.responder = lambda request, turn: ScriptedReply(chunks=["Noted."])
    client, gateway = await gateway_factory(make_config(dify, {BOT: bot}))
    await wait_for(lambda: gateway.adapters[BOT].ready, what="lark bot ready")
    assert gateway.adapters[BOT].platform == "lark"
    response = await post(client, message_event("hello from Lark"), encrypt_key=None)
    assert response.status == 200
    await answered(gateway)
    assert dify.requests[0]["query"] == "hello from Lark"
    assert feishu.transcript()
    # Lark is Feishu for the rest of the world: its bots speak English by default.
    await post(client, message_event("/help", message_id="om_help"), encrypt_key=None)
    await answered(gateway)
    assert feishu.transcript()[-1] == ENGLISH.help


# --- the bot's language --------------------------------------------------------------------


async def test_a_feishu_bot_speaks_chinese_by_default(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    bot = feishu_bot(feishu)
    del bot["locale"]
    client, gateway = await gateway_factory(make_config(dify, {BOT: bot}))
    await wait_for(lambda: gateway.adapters[BOT].ready, what="feishu bot ready")
    zh = SIMPLIFIED_CHINESE
    dify.reply(ScriptedReply(chunks=["一半"], delay=0.05, error=("model_quota_exceeded", "q")))
    event = message_event("你好")
    await post(client, event)
    await answered(gateway)
    (reply,) = feishu.replies_to(event["event"]["message"]["message_id"])
    card = feishu.card_of(reply.message_id)
    assert card is not None and card.states[0][1] == f"_{zh.thinking}_"
    (shown,) = feishu.transcript()
    assert zh.dify_error("model_quota_exceeded") in shown and "Sorry" not in shown
    await post(client, message_event("/help", message_id="om_help"))
    await post(client, message_event(message_type="sticker", content={}, message_id="om_st"))
    await answered(gateway)
    assert sorted(feishu.transcript()[1:]) == sorted([zh.help, zh.kind_not_supported("sticker")])


async def test_a_feishu_bot_configured_for_english_speaks_english(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu, bot={"locale": "en"})
    await post(client, message_event("/help"))
    await answered(gateway)
    assert feishu.transcript() == [ENGLISH.help]
    assert "/reset" in ENGLISH.help and "Commands" in ENGLISH.help


async def test_citations_render_in_the_card(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    dify.reply(ScriptedReply(chunks=["Fifteen days."], citations=["Employee Handbook.pdf"]))
    await post(client, message_event("how much leave?"))
    await answered(gateway)
    (shown,) = feishu.transcript()
    assert shown == "Fifteen days.\n\n---\n**Sources**\n1. Employee Handbook.pdf"
