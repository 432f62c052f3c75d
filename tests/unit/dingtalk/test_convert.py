"""Robot message payload -> InboundMessage, for every msgtype and conversation type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters.dingtalk.convert import Skip, parse_robot_message
from gateway.models import ChatType, InboundMessage
from gateway.platform import MalformedRequest
from gateway.words import ENGLISH, SIMPLIFIED_CHINESE, Words

DATA = Path(__file__).parents[2] / "data" / "dingtalk"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text())
    return data


def parse(payload: Any, frame_id: str | None = None, words: Words = ENGLISH) -> InboundMessage:
    result = parse_robot_message("ding", payload, received_at=1.0, words=words, frame_id=frame_id)
    assert isinstance(result, InboundMessage)
    return result


def test_group_text() -> None:
    msg = parse(load("text_group.json"))
    assert msg.platform == "dingtalk"
    assert msg.chat_type is ChatType.GROUP
    assert msg.chat_id == "cidGroup0001/abc+def="
    assert msg.text == "How do I reset my VPN password?"  # @robot already removed; space trimmed
    assert msg.mentioned is True
    assert msg.from_bot is False
    assert msg.user_id == "manager123"
    assert msg.user_name == "Zhang San"
    assert msg.message_id == msg.event_id == "msgGroupText0001=="
    assert msg.dedupe_keys == ("msg:msgGroupText0001==",)
    assert msg.reply_to == {
        "session_webhook": "https://oapi.dingtalk.com/robot/sendBySession?session=0123456789abcdef",
        "session_webhook_expires_ms": 1700005400000,
        "conversation_id": "cidGroup0001/abc+def=",
        "conversation_type": "2",
        "sender_staff_id": "manager123",
        "sender_nick": "Zhang San",
        "robot_code": "dingtestclient",
    }


def test_direct_text() -> None:
    msg = parse(load("text_dm.json"))
    assert msg.chat_type is ChatType.DIRECT
    assert msg.text == "hello"
    assert msg.mentioned is False


def test_group_message_without_mention_is_not_mentioned() -> None:
    payload = load("text_group.json")
    payload["isInAtList"] = False
    assert parse(payload).mentioned is False
    del payload["isInAtList"]
    assert parse(payload).mentioned is False


def test_stream_frame_id_is_a_second_dedupe_key() -> None:
    msg = parse(load("text_dm.json"), frame_id="frame-9")
    assert msg.dedupe_keys == ("msg:msgDmText0001==", "frame:frame-9")
    assert msg.event_id == "frame-9"


def test_external_user_falls_back_to_sender_id() -> None:
    payload = load("text_dm.json")
    del payload["senderStaffId"]
    msg = parse(payload)
    assert msg.user_id == "$:LWCP_v1:$senderAAAA=="
    assert msg.reply_to["sender_staff_id"] == ""


def test_own_message_is_from_bot() -> None:
    payload = load("text_group.json")
    payload["senderId"] = payload["chatbotUserId"]
    assert parse(payload).from_bot is True


def test_rich_text_keeps_text_and_pictures() -> None:
    msg = parse(load("rich_text.json"))
    assert msg.text == "What is in this screenshot?"
    assert len(msg.attachments) == 1
    assert msg.attachments[0].kind == "image"
    assert msg.attachments[0].source == {"download_code": "dl-rich-picture"}


def test_picture_becomes_an_image_attachment() -> None:
    msg = parse(load("picture.json"))
    assert msg.text == ""
    assert [a.kind for a in msg.attachments] == ["image"]
    assert msg.attachments[0].source == {"download_code": "dl-picture"}


def test_file_keeps_its_name() -> None:
    msg = parse(load("file.json"))
    assert [(a.kind, a.name) for a in msg.attachments] == [("document", "expenses.pdf")]
    assert msg.attachments[0].source == {"download_code": "dl-file"}


def test_audio_uses_dingtalk_recognition() -> None:
    msg = parse(load("audio.json"))
    assert msg.text == "what is the wifi password"
    assert msg.attachments == ()


def test_audio_without_recognition_is_downloaded() -> None:
    payload = load("audio.json")
    del payload["content"]["recognition"]
    msg = parse(payload)
    assert msg.text == ""
    assert [a.kind for a in msg.attachments] == ["audio"]


def test_video_gets_a_polite_notice() -> None:
    msg = parse(load("video.json"))
    assert msg.notice == "Sorry, I can't watch videos yet. Please describe what you need in text."
    assert msg.attachments == ()


@pytest.mark.parametrize("msgtype", ["interactiveCard", "chatRecord", "", "unknown"])
def test_other_types_get_a_polite_notice(msgtype: str) -> None:
    payload = load("text_dm.json")
    payload["msgtype"] = msgtype
    msg = parse(payload)
    assert msg.notice == ENGLISH.only_text_images_voice_files


def test_notices_speak_the_bots_language() -> None:
    assert parse(load("video.json"), words=SIMPLIFIED_CHINESE).notice == (
        SIMPLIFIED_CHINESE.video_not_supported
    )
    payload = load("text_dm.json")
    payload["msgtype"] = "chatRecord"
    assert parse(payload, words=SIMPLIFIED_CHINESE).notice == (
        SIMPLIFIED_CHINESE.only_text_images_voice_files
    )


@pytest.mark.parametrize(
    ("msgtype", "content"),
    [("picture", {}), ("file", {"fileName": "x.pdf"}), ("picture", "not an object")],
)
def test_media_without_download_code_has_no_attachment(msgtype: str, content: Any) -> None:
    payload = load("picture.json")
    payload["msgtype"] = msgtype
    payload["content"] = content
    msg = parse(payload)
    assert msg.attachments == ()


def test_unknown_conversation_type_is_skipped() -> None:
    payload = load("text_dm.json")
    payload["conversationType"] = "3"
    result = parse_robot_message("ding", payload, received_at=1.0, words=ENGLISH)
    assert isinstance(result, Skip)
    assert "conversationType" in result.reason


@pytest.mark.parametrize("missing", ["msgId", "conversationId", "senderId"])
def test_missing_required_field_is_malformed(missing: str) -> None:
    payload = load("text_dm.json")
    del payload[missing]
    with pytest.raises(MalformedRequest):
        parse_robot_message("ding", payload, received_at=1.0, words=ENGLISH)


@pytest.mark.parametrize("payload", [None, [], "text", 7, {"msgId": 5}])
def test_non_message_is_malformed(payload: Any) -> None:
    with pytest.raises(MalformedRequest):
        parse_robot_message("ding", payload, received_at=1.0, words=ENGLISH)


def test_odd_field_types_do_not_crash() -> None:
    payload = load("text_dm.json")
    payload["text"] = "not an object"
    payload["sessionWebhookExpiredTime"] = "soon"
    payload["senderNick"] = None
    msg = parse(payload)
    assert msg.text == ""
    assert msg.user_name == ""
    assert msg.reply_to["session_webhook_expires_ms"] == 0
