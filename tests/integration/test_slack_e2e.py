"""End to end through the real gateway: a signed Slack webhook -> ack -> the Dify emulator's
SSE stream -> the fake Slack API shows the final text, in the thread."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.emulator import DifyEmulator, ScriptedReply
from gateway.runtime import Gateway
from gateway.words import ENGLISH, SIMPLIFIED_CHINESE, Words
from tests.conftest import GatewayFactory, make_config
from tests.fakes.slack import FakeSlack
from tests.helpers import wait_for
from tests.integration.slack_helpers import (
    body_of,
    direct,
    envelope,
    mention,
    signed_headers,
    slack_bot,
)

Client = TestClient[Any, Any]


async def start(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack, **config: Any
) -> tuple[Client, Gateway]:
    bot_extra = config.pop("bot", {})
    client, gateway = await gateway_factory(
        make_config(dify, {"slack-main": slack_bot(slack, **bot_extra)}, **config)
    )
    await wait_for(lambda: gateway.adapters["slack-main"].ready, what="slack bot ready")
    return client, gateway


async def post(client: Client, payload: dict[str, Any], **headers: str) -> Any:
    body = body_of(payload)
    return await client.post(
        "/webhooks/slack-main", data=body, headers={**signed_headers(body), **headers}
    )


async def answered(gateway: Gateway, within: float = 8.0) -> None:
    """Wait until every accepted message has been answered (the answer task exists before
    the ack returns, so an idle inbox means the final reply went out)."""
    async with asyncio.timeout(within):
        await gateway.inbox.wait_idle()


def answer(text: str, n: int, delay: float = 0.0) -> ScriptedReply:
    size = -(-len(text) // n)
    return ScriptedReply(
        chunks=[text[i : i + size] for i in range(0, len(text), size)], delay=delay
    )


# --- the happy path ------------------------------------------------------------------------


async def test_mention_is_acked_at_once_and_answered_by_streaming_in_the_thread(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    text = "Here is a streamed answer. " * 12
    dify.reply(answer(text, 24, delay=0.06))
    event = mention("how do I reset my VPN password?")

    sent = time.monotonic()
    response = await post(client, envelope(event))
    acked = time.monotonic()
    assert response.status == 200
    assert acked - sent < 0.5

    await answered(gateway)
    (msg,) = slack.thread("C111", event["ts"])
    assert msg.streaming
    assert msg.text == text
    # The thinking state (an empty stream) appeared within a second of the ack...
    first_when, first_text = msg.states[0]
    assert first_when - acked < 1.0 and first_text == ""
    # ...and the answer grew in several visible steps before the final one.
    growing = [t for _, t in msg.states if t and t != text]
    assert len(growing) >= 2
    assert all(a != b and b.startswith(a) for a, b in itertools.pairwise(growing))
    request = dify.requests[0]
    assert request["query"] == "how do I reset my VPN password?"
    assert request["user"] == f"slack-main:thread:C111:{event['ts']}"
    assert request["response_mode"] == "streaming" and request["inputs"] == {}
    assert request["_headers"]["X-Trace-Id"] == f"slack-main:C111:{event['ts']}"
    start_call = slack.of("chat.startStream")[0].payload
    assert start_call["thread_ts"] == event["ts"]
    assert start_call["recipient_team_id"] == "T111" and start_call["recipient_user_id"] == "U222"


async def test_placeholder_and_chat_update_when_streaming_is_unavailable(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    slack.streaming = False
    client, gateway = await start(gateway_factory, dify, slack)
    text = "An answer that arrives slowly enough to be edited several times. " * 6
    dify.reply(answer(text, 30, delay=0.12))
    event = direct("hello")
    assert (await post(client, envelope(event))).status == 200

    await answered(gateway, within=10)
    (msg,) = slack.thread("D111", event["ts"])
    assert msg.states[0][1] == "_Thinking…_"
    assert msg.text == text
    updates = [c.at for c in slack.of("chat.update")]
    assert len(updates) >= 3
    # About one edit a second; the final text may follow the last update at once.
    assert all(b - a >= 0.95 for a, b in itertools.pairwise(updates[:-1]))


async def test_sixty_chunks_stay_within_four_stream_calls_per_second(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    chunks = [f"word{i} " for i in range(60)]
    dify.reply(ScriptedReply(chunks=chunks, delay=0.05))
    event = mention("count")
    await post(client, envelope(event))
    await answered(gateway, within=10)

    (msg,) = slack.thread("C111", event["ts"])
    assert msg.text == "".join(chunks)
    stamps = [c.at for c in slack.calls if c.method == "chat.appendStream"]
    assert len(stamps) >= 3
    for i, t in enumerate(stamps):
        assert sum(1 for u in stamps[i:] if u - t < 1.0) <= 4


# --- long answers --------------------------------------------------------------------------


async def test_a_9000_character_answer_arrives_whole(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    text = "".join(f"Line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(170))
    assert len(text) > 9000
    dify.reply(answer(text, 10))
    event = direct("long please")
    await post(client, envelope(event))
    await answered(gateway)
    assert "".join(slack.final_texts("D111", event["ts"])) == text


async def test_a_30000_character_answer_rolls_over_into_more_messages(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    text = "".join(
        f"Paragraph {i}. " + "lorem ipsum dolor sit amet " * 20 + "\n\n" for i in range(55)
    )
    assert len(text) > 30_000
    dify.reply(answer(text, 40, delay=0.01))
    event = mention("very long please")
    await post(client, envelope(event))

    await answered(gateway, within=15)
    texts = slack.final_texts("C111", event["ts"])
    assert len(texts) >= 3
    assert all(len(t) <= 12_000 for t in texts)
    assert "".join(texts) == text


# --- retries, duplicates, echoes -----------------------------------------------------------


async def test_a_platform_retry_is_acked_and_not_answered_again(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    payload = envelope(direct("once"))
    assert (await post(client, payload)).status == 200
    assert (
        await post(
            client, payload, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        )
    ).status == 200
    assert (await post(client, payload, **{"X-Slack-Retry-Num": "2"})).status == 200
    await answered(gateway)
    assert len(dify.requests) == 1
    assert len(slack.thread("D111", payload["event"]["ts"])) == 1


@pytest.mark.parametrize("mention_first", [True, False])
async def test_message_and_app_mention_of_one_message_are_answered_once(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack, mention_first: bool
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    at = mention("hi")
    as_message = {**at, "type": "message", "channel_type": "channel"}
    first, second = (at, as_message) if mention_first else (as_message, at)
    assert (await post(client, envelope(first))).status == 200
    assert (await post(client, envelope(second))).status == 200
    await answered(gateway)
    assert len(dify.requests) == 1


async def test_an_ignored_message_does_not_swallow_the_mention_behind_it(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    """A channel `message` without our mention is ignored; it must not claim (channel, ts)."""
    client, gateway = await start(gateway_factory, dify, slack)
    at = mention("hi")
    plain = {**at, "type": "message", "channel_type": "channel", "text": "hi <@U999>"}
    await post(client, envelope(plain))
    await post(client, envelope(at))
    await answered(gateway)
    assert len(dify.requests) == 1


@pytest.mark.parametrize(
    "event",
    [
        {**direct("from another bot"), "bot_id": "B999", "subtype": "bot_message"},
        {**direct("our own echo"), "user": "UBOT"},
        {**direct("an edit"), "subtype": "message_changed"},
        {**direct("a deletion"), "subtype": "message_deleted"},
        {
            **mention("in a channel, not for us"),
            "type": "message",
            "text": "just chatting",
            "channel_type": "channel",
        },
    ],
)
async def test_echoes_edits_and_unmentioned_channel_messages_are_not_answered(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack, event: dict[str, Any]
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    assert (await post(client, envelope(event))).status == 200
    sentinel = direct("sentinel")
    await post(client, envelope(sentinel))
    await answered(gateway)
    assert [r["query"] for r in dify.requests] == ["sentinel"]


# --- bad input -----------------------------------------------------------------------------


async def test_forged_and_stale_requests_get_401_and_nothing_is_processed(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, _gateway = await start(gateway_factory, dify, slack)
    body = body_of(envelope(direct("forged")))
    good = signed_headers(body)
    cases = [
        (body + b" ", good),  # tampered body
        (body, signed_headers(body, secret="wrong-secret")),
        (body, signed_headers(body, timestamp=str(int(time.time()) - 301))),
        (body, signed_headers(body, timestamp=str(int(time.time()) + 310))),
        (body, {**good, "X-Slack-Request-Timestamp": "abc"}),
        (body, {**good, "X-Slack-Signature": "v0=ünïcode"}),
        (body, {"Content-Type": "application/json"}),
    ]
    for data, headers in cases:
        response = await client.post("/webhooks/slack-main", data=data, headers=headers)
        assert response.status == 401, headers
    assert dify.requests == []


async def test_bad_requests_get_clear_status_codes(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, _gateway = await start(gateway_factory, dify, slack, server={"max_body_bytes": 2048})
    junk = b"{not json"
    assert (
        await client.post("/webhooks/slack-main", data=junk, headers=signed_headers(junk))
    ).status == 400
    big = b"{" + b" " * 4096 + b"}"
    assert (
        await client.post("/webhooks/slack-main", data=big, headers=signed_headers(big))
    ).status == 413
    assert (await client.post("/webhooks/nobody", data=b"{}")).status == 404
    assert (await client.get("/webhooks/slack-main")).status == 400
    assert dify.requests == []


async def test_url_verification_is_answered_with_the_challenge(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, _gateway = await start(gateway_factory, dify, slack)
    payload = {
        "token": "t",
        "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
        "type": "url_verification",
    }
    response = await post(client, payload)
    assert response.status == 200
    assert await response.json() == {"challenge": payload["challenge"]}


# --- Dify failures -------------------------------------------------------------------------


async def test_a_dify_error_mid_stream_keeps_the_partial_answer_and_says_why(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(
        ScriptedReply(
            chunks=["The first half ", "of an answer"],
            delay=0.05,
            error=("model_quota_exceeded", "quota"),
        )
    )
    event = direct("break please")
    await post(client, envelope(event))
    await answered(gateway)
    (msg,) = slack.thread("D111", event["ts"])
    assert msg.text.startswith("The first half of an answer")
    assert "Sorry, the assistant ran into an error (model_quota_exceeded)." in msg.text


async def test_a_dify_http_error_gives_a_short_message_and_no_secret(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(ScriptedReply(status=401, code="unauthorized", message="Access token is invalid"))
    event = direct("hello")
    await post(client, envelope(event))
    await answered(gateway)
    (msg,) = slack.thread("D111", event["ts"])
    assert "misconfigured" in msg.text
    assert dify.api_key not in msg.text


async def test_a_500_from_dify_is_not_retried(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(ScriptedReply(status=500, code="internal_server_error", message="boom"))
    event = direct("hello")
    await post(client, envelope(event))
    await answered(gateway)
    assert len(dify.requests) == 1
    assert "unavailable" in slack.thread("D111", event["ts"])[0].text


async def test_a_503_from_a_proxy_is_retried_before_anything_is_shown(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(
        ScriptedReply(status=503, code="", message="upstream"), ScriptedReply(chunks=["recovered"])
    )
    event = direct("hello")
    await post(client, envelope(event))
    await answered(gateway, within=8)
    assert len(dify.requests) == 2
    assert slack.thread("D111", event["ts"])[0].text == "recovered"


# --- conversations -------------------------------------------------------------------------


async def test_a_dm_conversation_continues_and_reset_starts_a_new_one(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)

    async def say(text: str) -> str:
        event = direct(text)
        await post(client, envelope(event))
        await answered(gateway)
        return slack.thread("D111", event["ts"])[-1].text

    await say("first")
    await say("second")
    assert "conversation_id" not in dify.requests[0]
    assert dify.requests[1]["conversation_id"] in dify.conversations
    assert dify.requests[1]["user"] == "slack-main:U222"
    assert "new conversation" in await say("/reset")
    await say("third")
    assert len(dify.requests) == 3
    assert "conversation_id" not in dify.requests[2]
    assert "/reset" in await say("/help")


async def test_a_slack_bot_configured_for_chinese_speaks_chinese(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    # (Every other test here reads the English of a Slack bot without a `locale`.)
    client, gateway = await start(gateway_factory, dify, slack, bot={"locale": "zh-CN"})
    dify.reply(ScriptedReply(chunks=["半个"], delay=0.05, error=("model_quota_exceeded", "q")))
    event = direct("你好")
    await post(client, envelope(event))
    await answered(gateway)
    (msg,) = slack.thread("D111", event["ts"])
    assert msg.text.startswith("半个")
    assert SIMPLIFIED_CHINESE.dify_error("model_quota_exceeded") in msg.text
    help_event = direct("/help")
    await post(client, envelope(help_event))
    await answered(gateway)
    assert "开始新的对话" in slack.thread("D111", help_event["ts"])[0].text


@pytest.mark.parametrize(("locale", "words"), [("en", ENGLISH), ("zh-CN", SIMPLIFIED_CHINESE)])
async def test_an_answer_past_the_apps_deadline_is_stopped_and_says_so(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    slack: FakeSlack,
    locale: str,
    words: Words,
) -> None:
    client, gateway = await start(
        gateway_factory, dify, slack, bot={"locale": locale}, apps={"main": {"timeout_s": 0.3}}
    )
    dify.reply(ScriptedReply(chunks=["Slowly", " and more"], delay=1.0))
    event = direct("take your time")
    await post(client, envelope(event))
    await answered(gateway)
    (msg,) = slack.thread("D111", event["ts"])
    assert msg.text.startswith("Slowly") and msg.text.endswith(words.too_slow)


async def test_a_conversation_dify_forgot_is_dropped_and_the_message_retried_once(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    await gateway.store.set_conversation("main/user:slack-main:U222", "gone-conversation-id")
    event = direct("hello again")
    await post(client, envelope(event))
    await answered(gateway)
    first, retry = dify.requests
    assert first["conversation_id"] == "gone-conversation-id"
    assert "conversation_id" not in retry
    stored = await gateway.store.get_conversation("main/user:slack-main:U222")
    assert stored in dify.conversations


async def test_route_inputs_get_the_speakers_name(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    slack.user_names["U222"] = "Ada Lovelace"
    routes = [
        {
            "match": {"bot": "slack-main", "chat_type": "direct"},
            "scope": "user",
            "inputs": {"asker": "{user_name}", "where": "{platform}/{chat_id}"},
        }
    ]
    client, gateway = await start(gateway_factory, dify, slack, routes=routes)
    event = direct("who am I?")
    await post(client, envelope(event))
    await answered(gateway)
    assert dify.requests[0]["inputs"] == {"asker": "Ada Lovelace", "where": "slack/D111"}


# --- rate limits ---------------------------------------------------------------------------


async def test_a_429_slows_edits_down_and_the_final_text_still_arrives(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    slack.streaming = False
    client, gateway = await start(gateway_factory, dify, slack)
    slack.fail_next("chat.update", status=429, retry_after=2)
    text = "slow " * 60
    dify.reply(answer(text, 30, delay=0.08))
    event = direct("hello")
    await post(client, envelope(event))
    await answered(gateway, within=12)
    assert slack.thread("D111", event["ts"])[0].text == text
    updates = slack.of("chat.update")
    limited_at = updates[0].at
    assert all(c.at - limited_at >= 1.9 for c in updates[1:])


async def test_ok_false_ratelimited_on_the_final_call_is_retried(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    slack.fail_next("chat.stopStream", error="ratelimited", retry_after=1)
    dify.reply(ScriptedReply(chunks=["short answer"]))
    event = direct("hello")
    await post(client, envelope(event))
    await answered(gateway, within=8)
    assert slack.thread("D111", event["ts"])[0].text == "short answer"
    assert len(slack.of("chat.stopStream")) == 2


# --- files ---------------------------------------------------------------------------------


async def test_a_shared_image_is_downloaded_with_the_token_and_uploaded_to_dify(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    slack.files["chart.png"] = b"\x89PNG fake image bytes"
    url = slack.base_url.replace("/api", "/files/chart.png")
    event = {
        **direct("what does this chart say?"),
        "subtype": "file_share",
        "files": [
            {
                "id": "F1",
                "name": "chart.png",
                "mimetype": "image/png",
                "url_private_download": url,
                "size": 21,
            }
        ],
    }
    await post(client, envelope(event))
    await answered(gateway)
    (upload,) = dify.uploads
    assert upload["data"] == b"\x89PNG fake image bytes"
    assert upload["name"] == "chart.png"
    assert dify.requests[0]["files"] == [
        {"type": "image", "transfer_method": "local_file", "upload_file_id": upload["id"]}
    ]


async def test_the_bot_token_never_goes_to_a_foreign_host(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    event = {
        **direct(""),
        "subtype": "file_share",
        "files": [
            {
                "id": "F1",
                "name": "x.png",
                "mimetype": "image/png",
                "url_private": "https://attacker.example/x.png",
            }
        ],
    }
    await post(client, envelope(event))
    await answered(gateway)
    assert dify.uploads == [] and dify.requests == []
    assert "could not read the file" in slack.thread("D111", event["ts"])[0].text


# --- lifecycle -----------------------------------------------------------------------------


async def test_webhooks_get_503_while_shutting_down(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    assert (await client.get("/readyz")).status == 200
    gateway.begin_shutdown()
    assert (await post(client, envelope(direct("late")))).status == 503
    assert (await client.get("/readyz")).status == 503
    assert (await client.get("/healthz")).status == 200
    assert dify.requests == []


async def test_metrics_count_webhooks_and_answers(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    event = direct("hello")
    await post(client, envelope(event))
    await answered(gateway)
    ok_line = 'dify_gateway_answers_total{bot="slack-main",result="ok"} 1.0'
    for _ in range(100):
        text = await (await client.get("/metrics")).text()
        if ok_line in text:
            break
        await asyncio.sleep(0.02)
    assert ok_line in text
    assert 'dify_gateway_webhooks_total{bot="slack-main",result="accepted"} 1.0' in text
    assert 'dify_gateway_events_total{bot="slack-main",fate="accepted"} 1.0' in text
