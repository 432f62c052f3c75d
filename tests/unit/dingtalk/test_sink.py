"""Reply sinks against the loopback fake: markdown routes and the AI card lifecycle."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from adapters.dingtalk.api import DingtalkApi
from adapters.dingtalk.convert import parse_robot_message
from adapters.dingtalk.media import MAX_BYTES, MediaSender, card_image
from adapters.dingtalk.reply import Destination, MarkdownSender, preview_title
from adapters.dingtalk.sink import (
    FAILED,
    FINISHED,
    INPUTING,
    PROCESSING,
    CardSink,
    MarkdownSink,
)
from gateway.models import InboundMessage
from gateway.platform import OutputFile, PlatformError, RateLimited
from gateway.words import ENGLISH, SIMPLIFIED_CHINESE
from tests.fakes.dingtalk import CLIENT_ID, FakeDingtalk

DATA = Path(__file__).parents[2] / "data" / "dingtalk"
TEMPLATE = "382e4302-551d-4880-bf29-a30acfab2e71.schema"
SESSION = "/robot/sendBySession"
GROUP_SEND = "/v1.0/robot/groupMessages/send"
USER_SEND = "/v1.0/robot/oToMessages/batchSend"
THINKING = "_Thinking…_"


def message(
    fake: FakeDingtalk,
    name: str,
    *,
    webhook: str | None = None,
    expires_in: float = 3600,
    **changes: Any,
) -> InboundMessage:
    payload = json.loads((DATA / name).read_text())
    payload["sessionWebhook"] = fake.session_webhook() if webhook is None else webhook
    payload["sessionWebhookExpiredTime"] = int((time.time() + expires_in) * 1000)
    payload.update(changes)
    result = parse_robot_message("ding", payload, received_at=time.time(), words=ENGLISH)
    assert isinstance(result, InboundMessage)
    return result


def markdown_sink(api: DingtalkApi, msg: InboundMessage) -> MarkdownSink:
    destination = Destination.of(msg)
    sender = MarkdownSender(api, destination, "ding", words=ENGLISH)
    return MarkdownSink(sender, MediaSender(api, destination))


# --- markdown ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("# Resetting your VPN\n\nStep one", "Resetting your VPN"),
        ("\n\n**Short**", "Short"),
        ("", "Reply"),
        ("```\n```", "Reply"),
        ("x" * 100, "x" * 23 + "…"),
        ("- [the guide](http://a.b/c) says", "the guide says"),
        ("![diagram](http://a.b/x.png)\nsee above", "see above"),
    ],
)
def test_preview_title(text: str, title: str) -> None:
    assert preview_title(text, "Reply") == title


def test_a_title_without_text_speaks_the_bots_language() -> None:
    assert preview_title("", SIMPLIFIED_CHINESE.reply_title) == "回复"


async def test_group_reply_uses_webhook_and_mentions_once(
    fake: FakeDingtalk, api: DingtalkApi
) -> None:
    sink = markdown_sink(api, message(fake, "text_group.json"))
    await sink.begin()
    await sink.update("ignored: markdown can't be edited")
    await sink.finish("# Part one", last=False)
    await sink.finish("Part two", last=True)
    calls = fake.sent(SESSION)
    assert [c.body["msgtype"] for c in calls] == ["markdown", "markdown"]
    first, second = calls[0].body, calls[1].body
    assert first["markdown"] == {"title": "Part one", "text": "# Part one\n\n@manager123"}
    assert first["at"] == {"atUserIds": ["manager123"]}
    assert second["markdown"] == {"title": "Part two", "text": "Part two"}
    assert "at" not in second
    assert sink.snapshot() == {"parts": 2}
    assert fake.sent("/v1.0/oauth2/accessToken") == []  # the webhook needs no token


async def test_direct_reply_has_no_mention(fake: FakeDingtalk, api: DingtalkApi) -> None:
    sink = markdown_sink(api, message(fake, "text_dm.json"))
    await sink.finish("hello", last=True)
    assert fake.sent(SESSION)[0].body == {
        "msgtype": "markdown",
        "markdown": {"title": "hello", "text": "hello"},
    }


async def test_expired_webhook_falls_back_to_group_send(
    fake: FakeDingtalk, api: DingtalkApi
) -> None:
    sink = markdown_sink(api, message(fake, "text_group.json", expires_in=30))
    await sink.finish("late answer", last=True)
    assert fake.sent(SESSION) == []
    body = fake.sent(GROUP_SEND)[0].body
    assert body["openConversationId"] == "cidGroup0001/abc+def="
    assert body["robotCode"] == CLIENT_ID
    assert body["msgKey"] == "sampleMarkdown"
    assert json.loads(body["msgParam"]) == {"title": "late answer", "text": "late answer"}


async def test_expired_webhook_falls_back_to_user_send(
    fake: FakeDingtalk, api: DingtalkApi
) -> None:
    sink = markdown_sink(api, message(fake, "text_dm.json", expires_in=-5))
    await sink.fail("Sorry, something went wrong.")
    body = fake.sent(USER_SEND)[0].body
    assert body["userIds"] == ["manager123"]
    assert json.loads(body["msgParam"])["text"] == "Sorry, something went wrong."


async def test_foreign_webhook_is_refused_and_logged(
    fake: FakeDingtalk, api: DingtalkApi, caplog: pytest.LogCaptureFixture
) -> None:
    evil = "https://evil.example.com/robot/sendBySession?session=stolen"
    sink = markdown_sink(api, message(fake, "text_group.json", webhook=evil))
    await sink.finish("secret answer", last=True)
    await sink.finish("second part", last=True)
    assert fake.sent(SESSION) == []
    assert len(fake.sent(GROUP_SEND)) == 2
    refusals = [r for r in caplog.records if "refusing the sessionWebhook" in r.getMessage()]
    assert len(refusals) == 1
    assert "evil.example.com" in refusals[0].getMessage()
    assert "stolen" not in caplog.text


async def test_external_user_without_webhook_is_unreachable(
    fake: FakeDingtalk, api: DingtalkApi
) -> None:
    msg = message(fake, "text_dm.json", expires_in=-5, senderStaffId="")
    with pytest.raises(PlatformError, match="unreachable"):
        await markdown_sink(api, msg).finish("x", last=True)


async def test_webhook_throttling_is_rate_limited(fake: FakeDingtalk, api: DingtalkApi) -> None:
    fake.fail(
        SESSION, 200, {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
    )
    with pytest.raises(RateLimited):
        await markdown_sink(api, message(fake, "text_dm.json")).finish("x", last=True)


# --- AI card -------------------------------------------------------------------------------


async def test_the_card_thinks_in_the_bots_language(fake: FakeDingtalk, api: DingtalkApi) -> None:
    msg = message(fake, "text_dm.json")
    sink = CardSink(api, Destination.of(msg), TEMPLATE, words=SIMPLIFIED_CHINESE)
    await sink.begin()
    (track,) = sink.cards
    assert fake.cards[track].states == ["_思考中…_"]
    await sink.finish("好的", last=True)


async def test_card_lifecycle_in_a_group(fake: FakeDingtalk, api: DingtalkApi) -> None:
    msg = message(fake, "text_group.json")
    sink = CardSink(api, Destination.of(msg), TEMPLATE, words=ENGLISH)
    await sink.begin()
    for text in ("Hel", "Hello", "Hello world"):
        await sink.update(text)
    await sink.finish("Hello world!", last=True)

    (track,) = sink.cards
    card = fake.cards[track]
    assert card.template == TEMPLATE
    assert card.space == "dtv1.card//IM_GROUP.cidGroup0001/abc+def="
    assert card.states == [THINKING, "Hel", "Hello", "Hello world", "Hello world!"]
    assert card.flow == [PROCESSING, INPUTING, FINISHED]
    create = fake.sent("/v1.0/card/instances/createAndDeliver")[0].body
    assert create["imGroupOpenDeliverModel"] == {
        "robotCode": CLIENT_ID,
        "atUserIds": {"manager123": "Zhang San"},
    }
    guids = [c.body["guid"] for c in fake.sent("/v1.0/card/streaming")]
    assert len(set(guids)) == len(guids) == 3
    assert sink.snapshot() == {"cards": [track], "open": None}


async def test_card_in_a_direct_chat_goes_to_the_robot_space(
    fake: FakeDingtalk, api: DingtalkApi
) -> None:
    sink = CardSink(api, Destination.of(message(fake, "text_dm.json")), TEMPLATE, words=ENGLISH)
    await sink.begin()
    create = fake.sent("/v1.0/card/instances/createAndDeliver")[0].body
    assert create["openSpaceId"] == "dtv1.card//IM_ROBOT.manager123"
    assert create["imRobotOpenDeliverModel"] == {"spaceType": "IM_ROBOT"}


async def test_card_fail_shows_the_error(fake: FakeDingtalk, api: DingtalkApi) -> None:
    sink = CardSink(api, Destination.of(message(fake, "text_dm.json")), TEMPLATE, words=ENGLISH)
    await sink.begin()
    await sink.update("Partial")
    await sink.fail("Partial\n\nSorry, the assistant failed.")
    card = fake.cards[sink.cards[0]]
    assert card.flow[-1] == FAILED
    assert card.content == "Partial\n\nSorry, the assistant failed."


async def test_rollover_finishes_the_card_and_opens_another(
    fake: FakeDingtalk, api: DingtalkApi
) -> None:
    sink = CardSink(api, Destination.of(message(fake, "text_dm.json")), TEMPLATE, words=ENGLISH)
    await sink.begin()
    await sink.update("part 1 so far")
    await sink.finish("part 1", last=False)
    await sink.update("part 2 so far")
    await sink.finish("part 2", last=True)
    first, second = (fake.cards[t] for t in sink.cards)
    assert (first.content, first.flow[-1]) == ("part 1", FINISHED)
    assert (second.content, second.flow) == ("part 2", [INPUTING, FINISHED])


async def test_finish_without_an_open_card_posts_a_finished_card(
    fake: FakeDingtalk, api: DingtalkApi
) -> None:
    fake.fail("/v1.0/card/instances/createAndDeliver", 500, {"code": "busy"})
    sink = CardSink(api, Destination.of(message(fake, "text_dm.json")), TEMPLATE, words=ENGLISH)
    with pytest.raises(PlatformError):
        await sink.begin()  # the core logs this and carries on
    await sink.finish("answer", last=True)
    card = fake.cards[sink.cards[0]]
    assert (card.states, card.flow) == (["answer"], [FINISHED])


async def test_card_images_are_in_the_final_card_only(fake: FakeDingtalk, api: DingtalkApi) -> None:
    sink = CardSink(api, Destination.of(message(fake, "text_dm.json")), TEMPLATE, words=ENGLISH)
    await sink.begin()
    png = OutputFile(b"\x89PNG\r\n\x1a\nimg", "a [chart].png", "image/png")
    big = OutputFile(b"x" * (MAX_BYTES + 1), "huge.png", "image/png")
    assert await sink.send_files([png, big]) == [big]
    await sink.finish("part one", last=False)  # a rollover part gets no images
    await sink.finish("part two", last=True)
    first, second = (fake.cards[track] for track in sink.cards)
    assert first.content == "part one"
    ((media_id, _),) = fake.media.items()
    assert second.content == (
        f"part two\n\n![a chart.png](https://down.dingtalk.com/media/{media_id[1:]})"
    )
    assert fake.media_sent() == []


async def test_a_retried_close_keeps_the_cards_images(fake: FakeDingtalk, api: DingtalkApi) -> None:
    sink = CardSink(api, Destination.of(message(fake, "text_dm.json")), TEMPLATE, words=ENGLISH)
    await sink.begin()
    png = OutputFile(b"\x89PNG\r\n\x1a\nimg", "chart.png", "image/png")
    assert await sink.send_files([png]) == []
    fake.throttle("/v1.0/card/instances")
    with pytest.raises(RateLimited):
        await sink.finish("Done.", last=True)
    await sink.finish("Done.", last=True)  # the core calls again
    (card,) = fake.cards.values()
    assert card.content.startswith("Done.\n\n![chart.png](https://down.dingtalk.com/media/")


def test_card_image_markdown_drops_the_leading_at_and_link_syntax() -> None:
    assert card_image("x](y).png", "@lADabc") == (
        "![xy.png](https://down.dingtalk.com/media/lADabc)"
    )


async def test_closing_call_is_retried(fake: FakeDingtalk, api: DingtalkApi) -> None:
    sink = CardSink(api, Destination.of(message(fake, "text_dm.json")), TEMPLATE, words=ENGLISH)
    await sink.begin()
    fake.fail("/v1.0/card/instances", 500, {"code": "systemError"}, times=2)
    await sink.finish("done", last=True)
    assert fake.cards[sink.cards[0]].flow[-1] == FINISHED


async def test_closing_throttled_raises_for_the_core(fake: FakeDingtalk, api: DingtalkApi) -> None:
    sink = CardSink(api, Destination.of(message(fake, "text_dm.json")), TEMPLATE, words=ENGLISH)
    await sink.begin()
    fake.throttle("/v1.0/card/instances")
    with pytest.raises(RateLimited):
        await sink.finish("done", last=True)
    await sink.finish("done", last=True)  # the core's retry
    assert fake.cards[sink.cards[0]].flow[-1] == FINISHED
    assert len(sink.cards) == 1


async def test_resume_takes_the_open_card_over(fake: FakeDingtalk, api: DingtalkApi) -> None:
    dest = Destination.of(message(fake, "text_dm.json"))
    first = CardSink(api, dest, TEMPLATE, words=ENGLISH)
    await first.begin()
    await first.update("before the crash")
    resumed = CardSink(api, dest, TEMPLATE, resume=first.snapshot(), words=ENGLISH)
    await resumed.begin()
    await resumed.update("after")
    await resumed.finish("after the crash", last=True)
    assert resumed.cards == first.cards
    assert len(fake.cards) == 1
    card = fake.cards[first.cards[0]]
    assert card.flow == [PROCESSING, INPUTING, FINISHED]
    assert card.content == "after the crash"
