"""DingTalk HTTP mode end to end through the real gateway: a signed callback -> `{}` ack ->
the Dify emulator -> the fake DingTalk shows the final text (markdown or an AI card)."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adapters.dingtalk.sink import FAILED, FINISHED, INPUTING, PROCESSING
from gateway.emulator import DifyEmulator, ScriptedReply
from gateway.runtime import Gateway
from gateway.words import ENGLISH, SIMPLIFIED_CHINESE
from tests.conftest import GatewayFactory, make_config
from tests.fakes.dingtalk import FakeDingtalk, dingtalk_bot, robot_message, signed_headers
from tests.helpers import wait_for

Client = TestClient[Any, Any]
TEMPLATE = "382e4302-551d-4880-bf29-a30acfab2e71.schema"
SESSION = "/robot/sendBySession"
GROUP_SEND = "/v1.0/robot/groupMessages/send"
STREAMING = "/v1.0/card/streaming"
THINKING = "_Thinking…_"


async def start(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk, **bot: Any
) -> tuple[Client, Gateway]:
    # Short answers unless a test scripts its own (the default echo streams for 2 s).
    dify.responder = lambda request, turn: ScriptedReply(chunks=["Noted."])
    # These tests read English; a DingTalk bot's own default, Chinese, has its own tests.
    bot = {"locale": "en", **bot}
    client, gateway = await gateway_factory(
        make_config(dify, {"ding": dingtalk_bot(ding, mode="http", **bot)})
    )
    await wait_for(lambda: gateway.adapters["ding"].ready, what="dingtalk bot ready")
    return client, gateway


async def post(client: Client, payload: Any, headers: dict[str, str] | None = None) -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return await client.post("/webhooks/ding", data=body, headers=headers or signed_headers())


async def answered(gateway: Gateway, within: float = 10.0) -> None:
    await wait_for(
        lambda: gateway.inbox.in_flight == 0 and gateway.inbox.queued == 0,
        within=within,
        what="answers to finish",
    )


def answer(text: str, n: int, delay: float = 0.0) -> ScriptedReply:
    size = -(-len(text) // n)
    return ScriptedReply(
        chunks=[text[i : i + size] for i in range(0, len(text), size)], delay=delay
    )


# --- markdown replies ----------------------------------------------------------------------


async def test_signed_message_is_acked_at_once_and_answered(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, gateway = await start(gateway_factory, dify, ding)
    dify.reply(answer("Reset it at https://vpn.example.com/reset.", 5, delay=0.02))
    sent = time.monotonic()
    response = await post(client, robot_message(ding, "How do I reset my VPN password?"))
    assert time.monotonic() - sent < 0.5
    assert response.status == 200
    assert await response.json() == {}

    await answered(gateway)
    assert ding.texts() == ["Reset it at https://vpn.example.com/reset."]
    assert ding.sent(SESSION)[0].body["markdown"]["title"] == "Reset it at https://vpn…"
    request = dify.requests[0]
    assert request["query"] == "How do I reset my VPN password?"
    assert request["user"] == "ding:manager123"


async def test_external_user_is_keyed_by_sender_id(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, gateway = await start(gateway_factory, dify, ding)
    await post(client, robot_message(ding, "hi", staff_id=""))
    await answered(gateway)
    assert dify.requests[0]["user"] == "ding:$:LWCP_v1:$senderAAAA=="


async def test_group_answer_mentions_the_asker(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, gateway = await start(gateway_factory, dify, ding)
    dify.reply(answer("Sure.", 1))
    await post(client, robot_message(ding, "help", group=True))
    await answered(gateway)
    (call,) = ding.sent(SESSION)
    assert call.body["markdown"]["text"] == "Sure.\n\n@manager123"
    assert call.body["at"] == {"atUserIds": ["manager123"]}
    assert dify.requests[0]["query"] == "help"


async def test_30000_character_answer_arrives_whole_in_ordered_parts(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, gateway = await start(gateway_factory, dify, ding)
    text = "".join(
        f"段落 {i}. " + "The quick brown fox jumps over the lazy dog. 快速的狐狸. " * 10 + "\n\n"
        for i in range(60)
    )
    assert len(text) >= 30_000
    dify.reply(answer(text, 40, delay=0.01))
    await post(client, robot_message(ding, "very long please", group=True))
    await answered(gateway, within=20)

    parts = ding.texts()
    parts[0] = parts[0].removesuffix("\n\n@manager123")  # the @ goes on the first part only
    assert len(parts) >= 3
    assert all(len(p.encode()) <= 18_000 for p in parts)
    assert "".join(parts) == text
    # Each part has a title (DingTalk requires one) and went out at a robot's pace.
    assert all(c.body["markdown"]["title"] for c in ding.sent(SESSION))


async def test_markdown_parts_go_out_no_faster_than_the_robot_pace(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, gateway = await start(gateway_factory, dify, ding)
    paragraphs = [f"Paragraph {i}: " + "a finished thought, " * 20 + "\n\n" for i in range(12)]
    dify.reply(ScriptedReply(chunks=paragraphs, delay=0.55))
    await post(client, robot_message(ding, "slowly"))
    await answered(gateway, within=15)
    assert "".join(ding.texts()) == "".join(paragraphs)
    stamps = [c.at for c in ding.sent(SESSION)]
    assert len(stamps) >= 3
    # Finished paragraphs go out while Dify still writes, at most one message per 3 s
    # (20 a minute); only the closing parts may follow the last one at once.
    assert stamps[1] - stamps[0] >= 2.9


async def test_expired_webhook_answers_through_the_openapi(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, gateway = await start(gateway_factory, dify, ding)
    dify.reply(answer("late", 1))
    payload = robot_message(ding, "q", group=True, sessionWebhookExpiredTime=1)
    await post(client, payload)
    await answered(gateway)
    assert ding.sent(SESSION) == []
    assert ding.texts() == ["late"]
    assert ding.sent(GROUP_SEND)[0].headers["x-acs-dingtalk-access-token"] in ding.valid_tokens


async def test_foreign_session_webhook_is_refused(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    ding: FakeDingtalk,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, gateway = await start(gateway_factory, dify, ding)
    dify.reply(answer("confidential answer", 1))
    evil = "https://attacker.example.net/robot/sendBySession?session=x"
    await post(client, robot_message(ding, "q", group=True, webhook=evil))
    await answered(gateway)
    assert ding.sent(SESSION) == []
    assert ding.texts() == ["confidential answer"]  # via groupMessages/send instead
    assert "attacker.example.net" in caplog.text and "refusing the sessionWebhook" in caplog.text


# --- what is not answered ------------------------------------------------------------------


async def test_redelivered_message_is_answered_once(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, gateway = await start(gateway_factory, dify, ding)
    payload = robot_message(ding, "once")
    for _ in range(3):
        assert (await post(client, payload)).status == 200
    # A replay inside the signing window with a different body (the sign covers only the
    # timestamp) is still the same msgId.
    assert (await post(client, {**payload, "text": {"content": "twice?"}})).status == 200
    await answered(gateway)
    assert [r["query"] for r in dify.requests] == ["once"]
    assert len(ding.texts()) == 1


async def test_a_captured_timestamp_and_sign_carry_one_body(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    """The sign covers only the timestamp. Once, one captured pair carried 20,000 forged
    bodies (new msgIds, chosen senderStaffIds) and the bot DMed every chosen staff id: now
    the pair is good for the one body it came with, and for a retry of that body."""
    client, gateway = await start(gateway_factory, dify, ding)
    captured = signed_headers()
    real = robot_message(ding, "the real question")
    assert (await post(client, real, captured)).status == 200
    for n in range(20):
        forged = robot_message(ding, "forged", staff_id=f"victim{n}", webhook="")
        assert (await post(client, forged, captured)).status == 401
    assert (await post(client, real, captured)).status == 200  # a retry: a duplicate
    await answered(gateway)
    assert [r["query"] for r in dify.requests] == ["the real question"]
    assert len(ding.texts()) == 1
    assert not any(call.path.endswith("batchSend") for call in ding.calls)


@pytest.mark.parametrize(
    "changes",
    [
        {"isInAtList": False},  # a group message that does not @ the robot
        {"senderId": "$:LWCP_v1:$robotBBBB=="},  # the robot's own message
        {"conversationType": "9"},
    ],
)
async def test_unmentioned_own_and_odd_messages_are_ignored(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk, changes: Any
) -> None:
    client, gateway = await start(gateway_factory, dify, ding)
    response = await post(client, robot_message(ding, "not for you", group=True, **changes))
    assert response.status == 200
    await post(client, robot_message(ding, "sentinel"))
    await answered(gateway)
    assert [r["query"] for r in dify.requests] == ["sentinel"]


async def test_forged_stale_and_unsigned_requests_get_401(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, _ = await start(gateway_factory, dify, ding)
    payload = robot_message(ding, "forged")
    hour_ms = 3600 * 1000
    now_ms = int(time.time() * 1000)
    good = signed_headers()
    cases = [
        signed_headers(secret="wrong_secret"),
        signed_headers(timestamp=str(now_ms - hour_ms - 5000)),
        signed_headers(timestamp=str(now_ms + hour_ms + 5000)),
        {**good, "timestamp": "yesterday"},
        {**good, "sign": "ünïcode"},
        {"timestamp": good["timestamp"]},
        {"sign": good["sign"]},
        {"Content-Type": "application/json"},
    ]
    for headers in cases:
        assert (await post(client, payload, headers)).status == 401, headers
    assert dify.requests == []


async def test_unparseable_bodies_get_400(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, _ = await start(gateway_factory, dify, ding)
    for body in (b"{not json", b"\xff\xfe", b"[]", b'{"msgtype": "text"}'):
        assert (await post(client, body)).status == 400, body
    assert dify.requests == []


# --- media -----------------------------------------------------------------------------------


async def test_picture_is_downloaded_and_given_to_dify(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, gateway = await start(gateway_factory, dify, ding)
    ding.add_file("dl-pic", b"\x89PNG fake", "image/png")
    payload = robot_message(ding, msgtype="picture", content={"downloadCode": "dl-pic"})
    del payload["text"]
    await post(client, payload)
    await answered(gateway)
    (upload,) = dify.uploads
    assert (upload["data"], upload["name"], upload["mime_type"]) == (
        b"\x89PNG fake",
        "image.png",
        "image/png",
    )
    assert dify.requests[0]["files"][0]["type"] == "image"
    download = ding.sent("/v1.0/robot/messageFiles/download")[0].body
    assert download == {"downloadCode": "dl-pic", "robotCode": ding.client_id}


async def test_voice_uses_dingtalk_recognition(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, gateway = await start(gateway_factory, dify, ding)
    payload = robot_message(
        ding, msgtype="audio", content={"downloadCode": "dl-a", "recognition": "wifi password?"}
    )
    await post(client, payload)
    await answered(gateway)
    assert dify.requests[0]["query"] == "wifi password?"
    assert ding.sent("/v1.0/robot/messageFiles/download") == []


async def test_video_gets_a_polite_notice_without_dify(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, gateway = await start(gateway_factory, dify, ding)
    await post(client, robot_message(ding, msgtype="video", content={"downloadCode": "v"}))
    await answered(gateway)
    assert dify.requests == []
    assert ding.texts() == [
        "Sorry, I can't watch videos yet. Please describe what you need in text."
    ]


async def test_a_dingtalk_bot_speaks_chinese_by_default(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    zh = SIMPLIFIED_CHINESE
    client, gateway = await start(gateway_factory, dify, ding, locale=None)
    await post(client, robot_message(ding, "/help"))
    await answered(gateway)
    await post(client, robot_message(ding, msgtype="video", content={"downloadCode": "v"}))
    await answered(gateway)
    dify.reply(ScriptedReply(status=401, code="unauthorized", message="Access token is invalid"))
    await post(client, robot_message(ding, "你好"))
    await answered(gateway)
    assert ding.texts() == [zh.help, zh.video_not_supported, zh.dify_misconfigured]


async def test_a_dingtalk_bot_configured_for_english_speaks_english(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, gateway = await start(gateway_factory, dify, ding, locale="en")
    await post(client, robot_message(ding, "/help"))
    await answered(gateway)
    assert ding.texts() == [ENGLISH.help]


async def test_the_thinking_card_speaks_the_bots_language(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, gateway = await start(
        gateway_factory, dify, ding, locale=None, card_template_id=TEMPLATE
    )
    await post(client, robot_message(ding, "你好", group=True))
    await answered(gateway)
    (card,) = ding.cards.values()
    assert card.states[0] == f"_{SIMPLIFIED_CHINESE.thinking}_" and card.content == "Noted."


# --- AI cards ------------------------------------------------------------------------------


async def test_card_streams_growing_text_and_ends_finished(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, gateway = await start(gateway_factory, dify, ding, card_template_id=TEMPLATE)
    text = "Streaming into an AI card, word by word, " * 8
    dify.reply(answer(text, 30, delay=0.08))
    response = await post(client, robot_message(ding, "stream please", group=True))
    acked = time.monotonic()
    assert response.status == 200
    await answered(gateway)

    (card,) = ding.cards.values()
    assert card.template == TEMPLATE
    assert card.flow[0] == PROCESSING and card.flow[-1] == FINISHED and INPUTING in card.flow
    assert card.states[0] == THINKING
    assert card.content == text and THINKING not in card.content
    growing = [s for s in card.states[1:-1] if s != text]
    assert len(growing) >= 3
    assert all(b.startswith(a) and a != b for a, b in itertools.pairwise(growing))
    create = ding.sent("/v1.0/card/instances/createAndDeliver")[0]
    assert create.at - acked < 1.0  # the thinking card shows within a second of the ack
    # At most 4 streaming calls a second to one card (README, "How it works").
    stamps = [c.at for c in ding.sent(STREAMING)]
    for i, t in enumerate(stamps):
        assert sum(1 for u in stamps[i:] if u - t < 1.0) <= 4
    assert ding.sent(SESSION) == []


async def test_card_ends_failed_with_the_error_on_a_dify_error(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, gateway = await start(gateway_factory, dify, ding, card_template_id=TEMPLATE)
    dify.reply(
        ScriptedReply(
            chunks=["The first half ", "of an answer ", "that breaks"],
            delay=0.3,
            error=("model_quota_exceeded", "quota"),
        )
    )
    await post(client, robot_message(ding, "break please"))
    await answered(gateway)
    (card,) = ding.cards.values()
    assert card.flow[-1] == FAILED
    assert card.content.startswith("The first half of an answer that breaks")
    assert "model_quota_exceeded" in card.content
    assert len(card.states) >= 3  # thinking, growing text, the failure


async def test_card_throttling_slows_down_but_delivers_the_final_text(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, gateway = await start(gateway_factory, dify, ding, card_template_id=TEMPLATE)
    text = "A throttled answer still arrives whole. " * 6
    dify.reply(answer(text, 12, delay=0.1))
    ding.throttle(STREAMING, times=2)
    ding.throttle("/v1.0/card/instances", times=1)
    await post(client, robot_message(ding, "q"))
    await answered(gateway, within=15)
    (card,) = ding.cards.values()
    assert (card.content, card.flow[-1]) == (text, FINISHED)


async def test_card_answer_over_the_limit_rolls_over_into_finished_cards(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, gateway = await start(gateway_factory, dify, ding, card_template_id=TEMPLATE)
    text = "".join(
        f"Section {i}. " + "lorem ipsum dolor sit amet " * 30 + "\n\n" for i in range(45)
    )
    assert len(text.encode()) > 36_000
    dify.reply(answer(text, 20, delay=0.02))
    await post(client, robot_message(ding, "long card"))
    await answered(gateway, within=20)
    cards = list(ding.cards.values())
    assert len(cards) >= 3
    assert all(c.flow[-1] == FINISHED for c in cards)
    assert all(len(c.content.encode()) <= 18_000 for c in cards)
    assert "".join(c.content for c in cards) == text


async def test_card_mode_for_an_external_user_falls_back_to_markdown(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    client, gateway = await start(gateway_factory, dify, ding, card_template_id=TEMPLATE)
    dify.reply(answer("plain answer", 3, delay=0.05))
    await post(client, robot_message(ding, "hi", staff_id=""))
    await answered(gateway)
    assert ding.cards == {}
    assert ding.texts() == ["plain answer"]
