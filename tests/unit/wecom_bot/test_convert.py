"""AI-bot payloads (tests/data/wecom_bot, shaped after doc path/100719 and the official SDK
types) → messages, refreshes, events, or a reason to skip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters.wecom_bot import convert
from adapters.wecom_bot.protocol import stream_id
from gateway.platform import MalformedRequest
from gateway.words import ENGLISH, SIMPLIFIED_CHINESE, Words

DATA = Path(__file__).parents[2] / "data" / "wecom_bot"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text(encoding="utf-8"))
    return data


def message(
    payload: dict[str, Any], reply_to: dict[str, Any] | None = None, words: Words = ENGLISH
) -> Any:
    callback = convert.interpret("wecom-ai", payload, 1700000000.0, reply_to or {}, words)
    assert isinstance(callback, convert.UserMessage)
    return callback.message


def test_direct_text() -> None:
    msg = message(load("text_single.json"))
    assert (msg.chat_type, msg.chat_id, msg.user_id, msg.text) == (
        "direct",
        "zhangsan",
        "zhangsan",
        "hello",
    )
    assert msg.mentioned is False and msg.notice is None and msg.platform == "wecom_bot"
    assert msg.reply_to["stream_id"] == stream_id("wecom-ai", "MSGID1")
    assert msg.reply_to["response_url"] == "RESPONSEURL"


def test_group_text_strips_the_mention_and_keeps_the_quote() -> None:
    msg = message(load("text_group.json"))
    assert msg.chat_type == "group" and msg.chat_id == "CHATID" and msg.mentioned is True
    assert msg.text == "> the quoted line\n\nhello robot"
    assert msg.dedupe_keys == ("msg:CAIQ16HMjQYY/NGagIOAgAMgq4KM0AI=",)


def test_only_the_leading_mention_is_stripped() -> None:
    payload = load("text_group.json")
    del payload["quote"]
    payload["text"]["content"] = "@RobotA ask @lisi about @RobotA"
    assert message(payload).text == "ask @lisi about @RobotA"


def test_direct_message_keeps_a_leading_at() -> None:
    payload = load("text_single.json")
    payload["text"]["content"] = "@home is a tag"
    assert message(payload).text == "@home is a tag"


def test_mixed_message_has_text_and_images() -> None:
    msg = message(load("mixed_group.json"))
    assert msg.text == "what is in this picture?"
    assert [a.kind for a in msg.attachments] == ["image", "image"]
    assert [a.source["url"] for a in msg.attachments] == ["https://IMAGEURL1", "https://IMAGEURL2"]
    assert [a.name for a in msg.attachments] == ["image-1.jpg", "image-2.jpg"]


def test_image_and_file_become_attachments() -> None:
    image = message(load("image_single.json"))
    assert image.text == "" and image.notice is None
    assert image.attachments[0].kind == "image"
    assert "aeskey" not in image.attachments[0].source  # webhook mode: the bot's own key
    document = message(load("file_single.json"))
    assert document.attachments[0].kind == "document"
    assert document.attachments[0].source == {"url": "https://FILEURL"}


def test_websocket_media_carry_their_aeskey_and_req_id() -> None:
    msg = message(load("image_websocket.json"), {"req_id": "REQ1"})
    assert msg.attachments[0].source["aeskey"] == "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY="
    assert msg.reply_to["req_id"] == "REQ1"


def test_voice_uses_wecoms_transcript() -> None:
    msg = message(load("voice_single.json"))
    assert msg.text == "what is the leave policy" and not msg.attachments


def test_empty_voice_transcript_is_a_notice() -> None:
    payload = load("voice_single.json")
    payload["voice"]["content"] = " "
    assert message(payload).notice == ENGLISH.voice_not_understood


def test_notices_speak_the_bots_language() -> None:
    zh = SIMPLIFIED_CHINESE
    video = message(load("video_single.json"), words=zh)
    assert video.notice == zh.kind_not_supported("video") and zh.kinds["video"] in video.notice
    payload = load("text_group.json")
    del payload["quote"]
    payload["text"]["content"] = "@RobotA"
    assert message(payload, words=zh).notice == zh.mention_without_question


def test_unsupported_kinds_get_a_polite_notice() -> None:
    video = message(load("video_single.json"))
    assert video.notice is not None and "video" in video.notice
    odd = load("text_single.json")
    odd["msgtype"] = "hologram"
    assert "hologram" in (message(odd).notice or "")


def test_a_bare_mention_is_a_notice_not_an_empty_query() -> None:
    payload = load("text_group.json")
    del payload["quote"]
    payload["text"]["content"] = "@RobotA  "
    msg = message(payload)
    assert msg.text == "" and msg.notice == ENGLISH.mention_without_question


def test_stream_refresh() -> None:
    callback = convert.interpret("b", load("stream_refresh.json"), 0.0, {}, ENGLISH)
    assert callback == convert.StreamRefresh("STREAMID")
    payload = load("stream_refresh.json")
    payload["stream"] = {}
    assert isinstance(convert.interpret("b", payload, 0.0, {}, ENGLISH), convert.Skip)


def test_enter_chat() -> None:
    callback = convert.interpret("b", load("enter_chat.json"), 0.0, {}, ENGLISH)
    assert isinstance(callback, convert.EnterChat)
    assert callback.message.user_id == "USERID" and callback.message.chat_type == "direct"


@pytest.mark.parametrize(("kind", "rating"), [(1, "like"), (2, "dislike"), (3, None)])
def test_feedback_event(kind: int, rating: str | None) -> None:
    payload = load("feedback_event.json")
    payload["event"]["feedback_event"]["type"] = kind
    assert convert.interpret("b", payload, 0.0, {}, ENGLISH) == convert.Feedback("MSGID1", rating)  # type: ignore[arg-type]


def test_feedback_without_id_or_with_unknown_type_is_skipped() -> None:
    payload = load("feedback_event.json")
    payload["event"]["feedback_event"]["type"] = 7
    assert isinstance(convert.interpret("b", payload, 0.0, {}, ENGLISH), convert.Skip)
    del payload["event"]["feedback_event"]["id"]
    assert isinstance(convert.interpret("b", payload, 0.0, {}, ENGLISH), convert.Skip)


def test_other_events_are_skipped() -> None:
    payload = load("enter_chat.json")
    payload["event"]["eventtype"] = "some_new_event"
    callback = convert.interpret("b", payload, 0.0, {}, ENGLISH)
    assert isinstance(callback, convert.Skip) and "some_new_event" in callback.reason


def test_a_click_on_a_card_button_the_gateway_did_not_make_is_skipped() -> None:
    callback = convert.interpret("b", load("template_card_event.json"), 0.0, {}, ENGLISH)
    assert isinstance(callback, convert.Skip) and "no button of ours" in callback.reason


@pytest.mark.parametrize("field", ["msgid", "from"])
def test_a_message_without_msgid_or_sender_is_malformed(field: str) -> None:
    payload = load("text_single.json")
    del payload[field]
    with pytest.raises(MalformedRequest):
        convert.interpret("b", payload, 0.0, {}, ENGLISH)


def test_odd_shapes_do_not_crash() -> None:
    payload = load("mixed_group.json")
    payload["mixed"]["msg_item"] = [
        None,
        5,
        {"msgtype": "image", "image": "x"},
        {"msgtype": "text"},
    ]
    msg = message(payload)
    assert msg.notice == ENGLISH.mention_without_question and not msg.attachments


# --- clicks on the gateway's template cards ------------------------------------------------


def card_click(payload: dict[str, Any]) -> convert.CardClick:
    callback = convert.interpret("wecom-ai", payload, 1700000000.0, {}, ENGLISH)
    assert isinstance(callback, convert.CardClick), callback
    return callback


def test_a_suggestion_click_nested_as_the_doc_shows_is_a_click_from_the_clicker() -> None:
    callback = card_click(load("template_card_suggestion.json"))
    assert callback.task_id == "dgw-0123456789abcdef01234567"
    assert callback.key == "dgw1|suggestion|1|wecom-ai:MSGID1"
    click = callback.click
    assert click.action is not None
    assert (click.action.kind, click.action.answer_id, click.action.value) == (
        "suggestion",
        "wecom-ai:MSGID1",
        "1",
    )
    assert (click.user_id, click.chat_id, click.chat_type) == ("lisi", "CHATID", "group")
    assert click.text == "" and click.mentioned and click.notice is None
    assert click.dedupe_keys == ("msg:CARDCLICK1",)  # a retried callback is the same click
    assert click.reply_to["click"] == "card" and click.reply_to["response_url"] == "RESPONSEURL"


def test_a_form_click_flat_as_the_sdk_types_it_names_the_form_and_its_action() -> None:
    callback = card_click(load("template_card_form_flat.json"))
    action = callback.click.action
    assert action is not None
    assert (action.kind, action.answer_id, action.value) == ("form", "FORMTOKEN", "approve")
    assert callback.click.chat_id == "zhangsan" and callback.click.chat_type == "direct"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda e: e.update(event_key=7), "no button of ours"),
        (lambda e: e.update(event_key=["dgw1|suggestion|0|a:b"]), "no button of ours"),
        (lambda e: e.pop("event_key"), "no button of ours"),
        (lambda e: e.pop("task_id"), "without a task_id"),
        (lambda e: e.update(task_id={"id": 1}), "without a task_id"),
        # Kinds the gateway's cards never carry: not taken from a card.
        (lambda e: e.update(event_key="dgw1|stop||wecom-ai:MSGID1"), "no button of ours"),
        (lambda e: e.update(event_key="dgw1|feedback|like|wecom-ai:M"), "no button of ours"),
        (lambda e: e.update(event_key="dgw1-done-0"), "no button of ours"),
    ],
)
def test_odd_card_clicks_are_skipped(change: Any, reason: str) -> None:
    for name in ("template_card_suggestion.json", "template_card_form_flat.json"):
        payload = load(name)
        event = payload["event"]
        change(event.get("template_card_event", event))
        callback = convert.interpret("wecom-ai", payload, 0.0, {}, ENGLISH)
        assert isinstance(callback, convert.Skip) and reason in callback.reason, callback


def test_a_card_click_from_nobody_is_skipped_not_malformed() -> None:
    payload = load("template_card_suggestion.json")
    del payload["from"]
    callback = convert.interpret("wecom-ai", payload, 0.0, {}, ENGLISH)
    assert isinstance(callback, convert.Skip) and "nobody" in callback.reason


def test_a_feedback_click_says_so_for_its_sink() -> None:
    callback = convert.interpret("wecom-ai", load("feedback_event.json"), 0.0, {}, ENGLISH)
    assert isinstance(callback, convert.Feedback) and callback.click is not None
    assert callback.click.reply_to["click"] == "feedback"
