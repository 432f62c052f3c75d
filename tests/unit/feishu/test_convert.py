"""Event payloads to InboundMessages: text, post, files, voice, mentions, threads, v1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters.feishu.convert import Context, to_message
from gateway.models import ChatType, InboundMessage
from gateway.platform import NotReady
from gateway.words import ENGLISH, SIMPLIFIED_CHINESE, Words
from tests.fakes.feishu import mention, message_event

DATA = Path(__file__).parents[2] / "data" / "feishu"
BOT = "ou_bot"


def _ctx(bot_open_id: str | None = BOT, voice: bool = True, words: Words = ENGLISH) -> Context:
    return Context(
        bot="fs",
        platform="feishu",
        bot_open_id=bot_open_id,
        voice=voice,
        received_at=1.0,
        words=words,
    )


def _message(payload: dict[str, Any], **kwargs: Any) -> InboundMessage:
    result = to_message(payload, _ctx(**kwargs))
    assert isinstance(result, InboundMessage), result
    return result


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text())
    return data


def test_direct_text_message() -> None:
    msg = _message(_load("receive_v1_p2p_text.json"))
    assert msg.chat_type is ChatType.DIRECT
    assert msg.text == "你好，请介绍一下年假制度"  # noqa: RUF001
    assert msg.user_id == "ou_acc48efbf7a13be212bf9e5b8bbd5a11"
    assert msg.chat_id == "oc_dc97f47a1cb562ab32e6504be5745adc"
    assert msg.dedupe_keys == (
        "event:8b2c88ad4704eb90eca6d1113a4adbcd",
        "msg:om_b6bec1170d06865491f374f594ce6be2",
    )
    assert msg.reply_to == {
        "message_id": "om_b6bec1170d06865491f374f594ce6be2",
        "chat_id": "oc_dc97f47a1cb562ab32e6504be5745adc",
        "in_thread": False,
    }
    assert msg.thread_id is None and not msg.from_bot and msg.notice is None


def test_group_mention_of_the_bot_is_removed_and_others_kept() -> None:
    msg = _message(_load("receive_v1_group_mention.json"))
    assert msg.chat_type is ChatType.GROUP
    assert msg.mentioned
    assert msg.text == "what is our leave policy? cc @Alice"
    # Topic thread: the reply goes into it.
    assert msg.thread_id == "omt_d4be107c616"
    assert msg.reply_to["in_thread"] is True


def test_group_message_mentioning_someone_else_is_not_a_mention() -> None:
    event = message_event(
        "@_user_1 ping", chat_type="group", mentions=[mention("@_user_1", "ou_alice", "Alice")]
    )
    msg = _message(event)
    assert not msg.mentioned
    assert msg.text == "@Alice ping"


def test_mention_keys_with_more_digits_are_not_confused() -> None:
    mentions = [mention(f"@_user_{i}", f"ou_{i}", f"P{i}") for i in range(1, 12)]
    msg = _message(message_event("@_user_1 and @_user_11", chat_type="group", mentions=mentions))
    assert msg.text == "@P1 and @P11"


def test_group_message_before_the_bot_id_is_known_is_not_ready() -> None:
    with pytest.raises(NotReady):
        to_message(_load("receive_v1_group_mention.json"), _ctx(bot_open_id=None))


def test_direct_message_needs_no_bot_id() -> None:
    assert _message(_load("receive_v1_p2p_text.json"), bot_open_id=None).text


def test_messages_from_apps_are_flagged() -> None:
    assert _message(message_event("echo", sender_type="app")).from_bot


def test_root_id_is_the_thread_when_there_is_no_topic() -> None:
    msg = _message(message_event("re", root_id="om_root"))
    assert msg.thread_id == "om_root"
    assert msg.reply_to["in_thread"] is False


def test_post_becomes_markdown_with_its_images() -> None:
    msg = _message(_load("receive_v1_post.json"))
    assert msg.mentioned
    assert msg.text == (
        "**Expense question**\n\n"
        "can I claim **taxi fares**?\n"
        "[the policy](https://example.com/policy)\n"
        "\n"
        '\n```JSON\n{"amount": 42}\n```'
    )
    (image,) = msg.attachments
    assert image.kind == "image"
    assert image.source == {
        "message_id": "om_dc13264520392913993dd051dba21dcf",
        "key": "img_v3_02ab_receipt",
        "type": "image",
        "voice": False,
    }


def test_post_in_a_locale_wrapper() -> None:
    content = {"en_us": {"title": "", "content": [[{"tag": "text", "text": "hi there"}]]}}
    assert _message(message_event(message_type="post", content=content)).text == "hi there"


def test_image_message_is_an_attachment() -> None:
    msg = _message(message_event(message_type="image", content={"image_key": "img_1"}))
    assert msg.text == ""
    assert msg.attachments[0].kind == "image"
    assert msg.attachments[0].source["type"] == "image"


@pytest.mark.parametrize(
    ("name", "kind"),
    [("report.pdf", "document"), ("photo.JPG", "image"), ("memo.mp3", "audio"), ("a.mp4", "video")],
)
def test_file_message_kind_follows_the_extension(name: str, kind: str) -> None:
    content = {"file_key": "file_v2_1", "file_name": name}
    msg = _message(message_event(message_type="file", content=content))
    (file,) = msg.attachments
    assert (file.kind, file.name, file.source["type"]) == (kind, name, "file")


def test_voice_is_an_audio_attachment_to_convert() -> None:
    content = {"file_key": "file_v2_voice", "duration": 2000}
    msg = _message(message_event(message_type="audio", content=content))
    (voice,) = msg.attachments
    assert voice.kind == "audio"
    assert voice.source["voice"] is True and voice.source["type"] == "file"


def test_voice_without_pyav_gets_a_polite_notice() -> None:
    content = {"file_key": "file_v2_voice", "duration": 2000}
    msg = _message(message_event(message_type="audio", content=content), voice=False)
    assert msg.notice == ENGLISH.voice_not_supported
    assert msg.attachments == ()


@pytest.mark.parametrize("kind", ["sticker", "media", "share_chat", "interactive", "brand_new"])
def test_other_types_get_a_polite_notice(kind: str) -> None:
    msg = _message(message_event(message_type=kind, content={"file_key": "x"}))
    assert msg.notice is not None and "Sorry" in msg.notice


@pytest.mark.parametrize(
    ("kind", "named"),
    [("sticker", "sticker"), ("media", "video"), ("merge_forward", "forwarded chat history")],
)
def test_the_notice_names_the_kind_in_words(kind: str, named: str) -> None:
    msg = _message(message_event(message_type=kind, content={}))
    assert msg.notice == f"Sorry, I can't read {named} messages yet. " + (
        "Please send your question as text, an image or a file."
    )


def test_a_type_without_a_name_is_named_as_feishu_names_it() -> None:
    msg = _message(message_event(message_type="share_calendar_event", content={}))
    assert msg.notice is not None
    assert msg.notice.startswith("Sorry, I can't read share_calendar_event messages yet.")
    nameless = _message(message_event(message_type="", content={}))
    assert nameless.notice is not None
    assert nameless.notice.startswith("Sorry, I can't read these messages yet.")


def test_notices_speak_the_bots_language() -> None:
    zh = SIMPLIFIED_CHINESE
    sticker = _message(message_event(message_type="sticker", content={}), words=zh)
    assert sticker.notice == zh.kind_not_supported("sticker")
    assert sticker.notice is not None and zh.kinds["sticker"] in sticker.notice
    content = {"file_key": "file_v2_voice", "duration": 2000}
    voice = _message(message_event(message_type="audio", content=content), voice=False, words=zh)
    assert voice.notice == zh.voice_not_supported


def test_content_that_is_not_json_is_empty_text() -> None:
    event = message_event()
    event["event"]["message"]["content"] = "{broken"
    assert _message(event).text == ""


def test_other_event_types_are_ignored() -> None:
    event = message_event()
    event["header"]["event_type"] = "im.chat.member.bot.added_v1"
    assert isinstance(to_message(event, _ctx()), str)


def test_event_without_ids_is_ignored() -> None:
    event = message_event()
    del event["event"]["message"]["message_id"]
    assert isinstance(to_message(event, _ctx()), str)


def test_v1_text_message() -> None:
    msg = _message(_load("v1_message.json"))
    assert msg.text == "tt xx @Bob"
    assert msg.mentioned and msg.chat_type is ChatType.GROUP
    assert msg.dedupe_keys == (
        "uuid:371e9629c20131842fd245dc99a266a6",
        "msg:om_8b34b5b6b9ceae111ce37e4e58534229",
    )


def test_v1_non_text_gets_a_notice() -> None:
    payload = _load("v1_message.json")
    payload["event"]["msg_type"] = "image"
    assert _message(payload).notice is not None


def test_v1_other_events_are_ignored() -> None:
    payload = _load("v1_message.json")
    payload["event"]["type"] = "add_bot"
    assert isinstance(to_message(payload, _ctx()), str)
