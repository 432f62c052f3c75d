"""Slack buttons end to end: 👍/👎, suggested questions, Stop and `/stop`, through signed
interactivity payloads, the inbox, the Dify emulator and the fake Slack API; and the clicks
that must not work (forged, replayed, expired, a stop by someone who did not ask)."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.controls import Controls
from gateway.emulator import DifyEmulator, ScriptedReply
from gateway.models import ChatType, InboundMessage
from gateway.platform import ShowsControls
from gateway.store import keys
from gateway.streaming import STOP_AFTER_S
from gateway.words import ENGLISH
from tests.conftest import GatewayFactory
from tests.fakes.slack import FakeSlack, Message
from tests.helpers import wait_for
from tests.integration.slack_gateway import (
    PATH,
    action_ids,
    action_ids_of,
    answered,
    answered_in_dm,
    ask,
    click,
    clicked,
    form_body,
    start,
)
from tests.integration.slack_helpers import direct, mention, signed_headers

# --- feedback --------------------------------------------------------------------------


async def test_a_finished_answer_has_thumbs_and_a_click_rates_it_in_dify(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(ScriptedReply(chunks=["Fifteen days."]))
    event, message = await answered_in_dm(client, gateway, slack)
    assert message.text == "Fifteen days."
    assert action_ids(message) == ["dgw_like", "dgw_dislike"]
    # A quick answer costs no Stop message: nothing posted beside it, nothing deleted.
    assert slack.of("chat.postMessage") == [] and slack.of("chat.delete") == []

    await clicked(client, gateway, slack.click(message, "dgw_like"))
    (rating,) = dify.feedbacks
    assert rating["rating"] == "like" and rating["user"] == "slack-main:U222"
    # The message shows the choice, its text kept.
    like, dislike = (b for block in message.blocks or [] for b in block.get("elements", []))
    assert like.get("style") == "primary" and "style" not in dislike
    assert message.text == "Fifteen days."

    # A second click on the choice withdraws it; the other one changes it.
    await clicked(client, gateway, slack.click(message, "dgw_like"))
    await clicked(client, gateway, slack.click(message, "dgw_dislike"))
    assert [f["rating"] for f in dify.feedbacks] == ["like", None, "dislike"]
    assert len(slack.thread("D111", event["ts"])) == 1  # nothing posted besides the answer


async def test_feedback_false_shows_no_thumbs(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(
        gateway_factory, dify, slack, routes=[{"match": {}, "feedback": False}]
    )
    dify.reply(ScriptedReply(chunks=["Fifteen days."]))
    _, message = await answered_in_dm(client, gateway, slack)
    assert message.text == "Fifteen days." and not message.blocks


async def test_a_forged_click_is_refused_and_a_replayed_one_counts_once(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(ScriptedReply(chunks=["Fifteen days."]))
    _, message = await answered_in_dm(client, gateway, slack)
    payload = slack.click(message, "dgw_dislike")

    body = form_body(payload)
    forged = {**signed_headers(body, secret="not-the-secret")}
    forged["Content-Type"] = "application/x-www-form-urlencoded"
    response = await client.post(PATH, data=body, headers=forged)
    assert response.status == 401

    assert await click(client, payload, body) == 200
    assert await click(client, payload, body) == 200  # the same request again
    await answered(gateway)
    await asyncio.sleep(0.3)
    assert [f["rating"] for f in dify.feedbacks] == ["dislike"]


async def test_a_click_on_an_answer_no_longer_known_says_it_expired(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(ScriptedReply(chunks=["Fifteen days."]))
    event, message = await answered_in_dm(client, gateway, slack)
    answer_id = f"slack-main:D111:{event['ts']}"
    await gateway.store.delete(keys.answer_record(answer_id))  # its TTL ran out

    await clicked(client, gateway, slack.click(message, "dgw_like"))
    assert dify.feedbacks == []
    assert slack.final_texts("D111", event["ts"])[-1] == ENGLISH.expired


# --- suggested questions ---------------------------------------------------------------


async def test_suggested_questions_are_buttons_and_a_click_asks_as_the_clicker(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    dify.parameters["suggested_questions_after_answer"] = {"enabled": True}
    dify.suggested = ["How many in 2025?", "Who approves?", "Can I carry them over?", "More?"]
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(ScriptedReply(chunks=["Fifteen days."]))
    event = mention("how many days?")
    await ask(client, event)
    await answered(gateway)
    (message,) = slack.thread("C111", event["ts"])
    assert action_ids(message) == [
        "dgw_suggestion_0",
        "dgw_suggestion_1",
        "dgw_suggestion_2",
        "dgw_like",
        "dgw_dislike",
    ]
    (call,) = dify.suggested_calls
    assert call["user"] == "slack-main:thread:C111:" + event["ts"]  # the thread's Dify user
    # The final text went out first (with 👍/👎); an edit added the questions after.
    (stopped,) = slack.of("chat.stopStream")
    assert stopped.at < call["at"]
    assert action_ids_of(stopped.payload.get("blocks")) == ["dgw_like", "dgw_dislike"]

    dify.reply(ScriptedReply(chunks=["Your manager."]))
    await clicked(client, gateway, slack.click(message, "dgw_suggestion_1", user="U333"))
    asked = dify.requests[-1]
    assert asked["query"] == "Who approves?"
    # The thread's conversation goes on (a thread is one conversation, whoever asks).
    assert list(dify.conversations) == [asked["conversation_id"]]
    assert slack.final_texts("C111", event["ts"])[-1] == "Your manager."


async def test_no_suggestions_when_the_app_has_them_off(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    dify.suggested = ["Never shown"]
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(ScriptedReply(chunks=["Fifteen days."]))
    _, message = await answered_in_dm(client, gateway, slack)
    assert action_ids(message) == ["dgw_like", "dgw_dislike"]
    assert dify.suggested_calls == []


# --- stop ------------------------------------------------------------------------------

SLOW = ScriptedReply(chunks=[f"word{i} " for i in range(60)], delay=0.1)


async def stop_button(slack: FakeSlack, channel: str, thread_ts: str) -> Message:
    def find() -> Message | None:
        for m in slack.thread(channel, thread_ts):
            if "dgw_stop" in action_ids(m):
                return m
        return None

    # A streamed answer shows its Stop after STOP_AFTER_S (3 s).
    await wait_for(
        lambda: find() is not None and bool(slack.thread(channel, thread_ts)[0].text), within=10
    )
    found = find()
    assert found is not None
    return found


async def test_the_stop_button_stops_the_run_and_the_answer_says_so(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(SLOW)
    event = direct("write a lot")
    await ask(client, event)
    button = await stop_button(slack, "D111", event["ts"])
    await wait_for(lambda: "word2" in slack.thread("D111", event["ts"])[0].text)
    await clicked(client, gateway, slack.click(button, "dgw_stop"))
    (stop,) = dify.stops
    assert stop["user"] == "slack-main:U222" and stop["path"].startswith("/v1/chat-messages/")
    (message,) = slack.thread("D111", event["ts"])  # the Stop message is gone
    assert message.text.startswith("word0 word1") and message.text.endswith("_(stopped)_")
    assert "word59" not in message.text


async def test_a_stop_by_someone_who_did_not_ask_is_refused(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    routes = [{"match": {}, "scope": "chat_user"}]  # each person has their own conversation
    client, gateway = await start(gateway_factory, dify, slack, routes=routes)
    dify.reply(ScriptedReply(chunks=[f"w{i} " for i in range(20)], delay=0.25))
    event = mention("write a lot")
    await ask(client, event)
    button = await stop_button(slack, "C111", event["ts"])
    await clicked(client, gateway, slack.click(button, "dgw_stop", user="U333"))
    assert dify.stops == []
    texts = slack.final_texts("C111", event["ts"])
    assert ENGLISH.not_yours_to_stop in texts
    assert any(t.startswith("w0 ") and t.rstrip().endswith("w19") for t in texts), texts


async def test_slash_stop_stops_the_answer_being_written(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(SLOW)
    event = direct("write a lot")
    await ask(client, event)
    await stop_button(slack, "D111", event["ts"])
    await ask(client, direct("/stop"))
    await answered(gateway)
    (stop,) = dify.stops
    assert stop["user"] == "slack-main:U222"
    (message,) = slack.thread("D111", event["ts"])
    assert message.text.endswith("_(stopped)_")
    assert ENGLISH.stopping in [m.text for m in slack.messages.values()]


async def test_slash_stop_with_nothing_running_says_so(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    event = direct("/stop")
    await ask(client, event)
    await answered(gateway)
    assert slack.final_texts("D111", event["ts"]) == [ENGLISH.nothing_to_stop]
    assert dify.stops == [] and dify.requests == []


async def test_reset_during_an_answer_stops_it_first(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(SLOW)
    event = direct("write a lot")
    await ask(client, event)
    await stop_button(slack, "D111", event["ts"])
    reset = direct("/reset")
    await ask(client, reset)
    await answered(gateway)
    assert len(dify.stops) == 1
    (message,) = slack.thread("D111", event["ts"])
    assert message.text.endswith("_(stopped)_")
    assert slack.final_texts("D111", reset["ts"]) == [ENGLISH.new_conversation]


@pytest.mark.parametrize(
    ("mode", "path"),
    [
        ("agent", "/v1/chat-messages/{}/stop"),
        ("completion", "/v1/completion-messages/{}/stop"),
        ("workflow", "/v1/workflows/tasks/{}/stop"),
    ],
)
async def test_slash_stop_calls_the_stop_endpoint_of_the_apps_mode(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack, mode: str, path: str
) -> None:
    client, gateway = await start(gateway_factory, dify, slack, apps={"main": {"mode": mode}})
    dify.reply(SLOW)
    event = direct("write a lot")
    await ask(client, event)
    await stop_button(slack, "D111", event["ts"])
    await wait_for(lambda: "word1" in slack.thread("D111", event["ts"])[0].text)
    await ask(client, direct("/stop"))
    await answered(gateway)
    (stop,) = dify.stops
    assert stop["path"] == path.format(stop["task_id"]) and stop["user"] == "slack-main:U222"
    (message,) = slack.thread("D111", event["ts"])
    assert message.text.startswith("word0") and message.text.endswith("_(stopped)_")
    if mode == "workflow":  # a workflow run has no message to rate
        assert "dgw_like" not in action_ids(message)


async def test_a_rating_shows_with_the_text_when_slack_refuses_the_blocks_it_gave(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(ScriptedReply(chunks=["Fifteen days."]))
    _, message = await answered_in_dm(client, gateway, slack)
    payload = slack.click(message, "dgw_like")
    payload["message"]["blocks"].insert(0, {"type": "markdown", "text": "Fifteen days."})
    slack.fail_next("chat.update", error="invalid_blocks")
    await clicked(client, gateway, payload)
    assert [f["rating"] for f in dify.feedbacks] == ["like"]
    first, *_ = message.blocks or []
    assert first == {"type": "section", "text": {"type": "mrkdwn", "text": "Fifteen days."}}
    assert "dgw_like" in action_ids(message)


async def test_a_thumbs_down_asks_why_and_the_reason_reaches_dify(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(ScriptedReply(chunks=["Fifteen days."]))
    _, message = await answered_in_dm(client, gateway, slack)
    await clicked(client, gateway, slack.click(message, "dgw_dislike"))
    (view,) = slack.views
    assert view["callback_id"] == "dgw_reason" and view["title"]["text"] == "What went wrong?"
    (opened,) = slack.of("views.open")
    assert opened.payload["trigger_id"] == "1.2.3"  # the click's, within its 3 s

    submitted = slack.submit(view, "It is twenty days since 2025.")
    assert await click(client, submitted) == 200
    assert await click(client, submitted) == 200  # a replay counts once
    await answered(gateway)
    assert [(f["rating"], f.get("content")) for f in dify.feedbacks] == [
        ("dislike", None),
        ("dislike", "It is twenty days since 2025."),
    ]
    assert all(f["user"] == "slack-main:U222" for f in dify.feedbacks)
    assert len(slack.views) == 1  # a reason given asks no more


async def test_an_empty_reason_sends_nothing_more(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(ScriptedReply(chunks=["Fifteen days."]))
    _, message = await answered_in_dm(client, gateway, slack)
    await clicked(client, gateway, slack.click(message, "dgw_dislike"))
    (view,) = slack.views
    await clicked(client, gateway, slack.submit(view, "  "))
    assert [f["rating"] for f in dify.feedbacks] == ["dislike"]


async def test_a_long_streamed_answer_gets_a_stop_message_after_a_while_deleted_at_the_end(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(SLOW)
    event = direct("write a lot")
    await ask(client, event)
    button = await stop_button(slack, "D111", event["ts"])
    (started,) = slack.of("chat.startStream")
    (posted,) = slack.of("chat.postMessage")
    assert posted.at - started.at >= STOP_AFTER_S - 0.1
    await answered(gateway, within=20)
    (answer,) = slack.thread("D111", event["ts"])
    assert "word59" in answer.text and answer.ts != button.ts
    assert [m.ts for m in slack.deleted] == [button.ts]


async def test_in_update_mode_the_stop_button_is_in_the_answer_itself(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    slack.streaming = False  # chat.postMessage + chat.update
    client, gateway = await start(gateway_factory, dify, slack)
    dify.reply(SLOW)
    event = direct("write a lot")
    await ask(client, event)
    button = await stop_button(slack, "D111", event["ts"])
    (answer,) = slack.thread("D111", event["ts"])
    assert button is answer  # no message of its own
    await wait_for(lambda: "word2" in answer.text)
    shown = [b["text"]["text"] for b in answer.blocks or [] if b["type"] == "section"]
    assert shown and shown[0].startswith("word0")  # the text shows in blocks beside it
    await clicked(client, gateway, slack.click(answer, "dgw_stop"))
    assert len(dify.stops) == 1
    assert answer.text.endswith("_(stopped)_") and "dgw_stop" not in action_ids(answer)
    assert action_ids(answer) == ["dgw_like", "dgw_dislike"]
    assert len(slack.of("chat.postMessage")) == 1 and slack.of("chat.delete") == []


async def test_a_quick_answer_in_update_mode_ends_without_its_stop_button(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    slack.streaming = False
    client, gateway = await start(
        gateway_factory, dify, slack, routes=[{"match": {}, "feedback": False}]
    )
    dify.reply(ScriptedReply(chunks=["Fifteen days."]))
    _, message = await answered_in_dm(client, gateway, slack)
    (posted,) = slack.of("chat.postMessage")
    assert action_ids_of(posted.payload.get("blocks")) == ["dgw_stop"]  # while it ran
    assert message.text == "Fifteen days." and action_ids(message) == []
    assert slack.of("chat.delete") == []


async def test_a_takeover_deletes_the_stop_message_the_crashed_owner_left(
    gateway_factory: GatewayFactory, dify: DifyEmulator, slack: FakeSlack
) -> None:
    _, gateway = await start(gateway_factory, dify, slack)
    adapter = gateway.adapters["slack-main"]
    api = {"channel": "D111", "thread_ts": "1700000000.000099"}
    answer = slack.respond("chat.startStream", {**api, "markdown_text": "half an ans"})
    stop = slack.respond("chat.postMessage", {**api, "text": "Stop"})
    message = InboundMessage(
        bot="slack-main",
        platform="slack",
        event_id="event:Ev1",
        message_id="D111:1700000000.000099",
        chat_id="D111",
        chat_type=ChatType.DIRECT,
        user_id="U222",
        text="write a lot",
        thread_id="1700000000.000099",
        received_at=time.time(),
    )
    resume = {"ts": answer["ts"], "mode": "stream", "done": [], "stop_ts": stop["ts"]}
    sink = adapter.open_reply(message, resume)
    assert isinstance(sink, ShowsControls)
    sink.offer(Controls("slack-main:D111:1700000000.000099", stop=True))
    await sink.finish("half an answer, finished", last=True)
    assert [m.ts for m in slack.deleted] == [stop["ts"]]
    (left,) = slack.thread("D111", "1700000000.000099")
    assert left.text == "half an answer, finished" and action_ids(left) == []
