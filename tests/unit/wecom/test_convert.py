"""WeCom app callbacks: hostile XML refused, payloads converted, events ignored."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from adapters.wecom.convert import dedupe_key, parse_envelope, parse_xml, to_message
from gateway.models import ChatType, InboundMessage
from gateway.platform import MalformedRequest
from gateway.words import ENGLISH, SIMPLIFIED_CHINESE, Words
from tests.fakes.wecom import AGENT_ID, envelope, message_xml

DATA = Path(__file__).parents[2] / "data" / "wecom"


def _load(name: str) -> dict[str, str]:
    return parse_xml((DATA / name).read_bytes())


def _convert(fields: dict[str, str], words: Words = ENGLISH) -> InboundMessage | str:
    return to_message(fields, bot="wecom-it", agent_id=AGENT_ID, received_at=1.0, words=words)


# --- hostile and broken XML ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["billion_laughs.xml", "xxe.xml"])
def test_dtd_payloads_are_refused_without_expansion(name: str) -> None:
    started = time.perf_counter()
    with pytest.raises(MalformedRequest):
        parse_xml((DATA / name).read_bytes())
    assert time.perf_counter() - started < 0.1


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml at all",
        b'{"encrypt": "json is the AI bot, not the app"}',
        b"<xml><Encrypt>unclosed",
        b"<root><Encrypt>x</Encrypt></root>",
        b'<!DOCTYPE xml SYSTEM "http://127.0.0.1:1/evil.dtd"><xml><Encrypt>x</Encrypt></xml>',
        b'<!DOCTYPE xml [<!ENTITY % p SYSTEM "http://127.0.0.1:1/p">%p;]><xml/>',
        b'<?xml version="1.0" encoding="klingon"?><xml/>',
        b"\xff\xfe<\x00x\x00",
    ],
)
def test_unparseable_bodies_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedRequest):
        parse_envelope(body)


@pytest.mark.parametrize(
    "body",
    [
        b"<xml>" + b"<a>" * 7 + b"</a>" * 7 + b"</xml>",
        b"<xml>" + b"<a>" * 30_000 + b"</a>" * 30_000 + b"</xml>",
        b"<xml>" + b"<a/>" * 30_000 + b"</xml>",
    ],
)
def test_deep_or_flooding_xml_is_refused_early(body: bytes) -> None:
    started = time.perf_counter()
    with pytest.raises(MalformedRequest):
        parse_xml(body)
    assert time.perf_counter() - started < 0.05


def test_oversized_body_is_refused_before_parsing() -> None:
    with pytest.raises(MalformedRequest, match="over"):
        parse_xml(b"<xml><Encrypt>" + b"A" * 300_000 + b"</Encrypt></xml>")


def test_envelope_without_encrypt_is_malformed() -> None:
    with pytest.raises(MalformedRequest, match="Encrypt"):
        parse_envelope(b"<xml><ToUserName>ww1</ToUserName><AgentID>1</AgentID></xml>")


def test_envelope_fields() -> None:
    env = parse_envelope(envelope("abc+/=", agent_id=1000002))
    assert env.encrypt == "abc+/=" and env.agent_id == "1000002"


# --- messages ------------------------------------------------------------------------------


def test_text_message() -> None:
    message = _convert(_load("text.xml"))
    assert isinstance(message, InboundMessage)
    assert message.platform == "wecom" and message.bot == "wecom-it"
    assert message.text == "你好, what can you do?"
    assert message.user_id == message.chat_id == "zhangsan"
    assert message.chat_type is ChatType.DIRECT
    assert message.message_id == message.event_id == "4561255354251345929"
    assert message.dedupe_keys == ("msg:4561255354251345929",)
    assert message.reply_to == {"touser": "zhangsan"}
    assert message.notice is None and not message.attachments and not message.from_bot


def test_image_message_carries_the_media_id() -> None:
    message = _convert(_load("image.xml"))
    assert isinstance(message, InboundMessage)
    assert message.text == ""
    (image,) = message.attachments
    assert image.kind == "image" and image.source == {"media_id": "media-image-1"}


def test_voice_message_is_amr_audio() -> None:
    message = _convert(_load("voice.xml"))
    assert isinstance(message, InboundMessage)
    (voice,) = message.attachments
    assert voice.kind == "audio" and voice.mime_type == "audio/amr"
    assert voice.name.endswith(".amr") and voice.source == {"media_id": "media-voice-1"}


@pytest.mark.parametrize("name", ["video.xml", "location.xml", "link.xml"])
def test_unsupported_types_get_a_polite_notice(name: str) -> None:
    message = _convert(_load(name))
    assert isinstance(message, InboundMessage)
    assert message.notice == "Sorry, I can only read text, pictures and voice messages here."
    assert message.dedupe_keys[0].startswith("msg:")


def test_the_notice_speaks_the_bots_language() -> None:
    message = _convert(_load("video.xml"), SIMPLIFIED_CHINESE)
    assert isinstance(message, InboundMessage)
    assert message.notice == SIMPLIFIED_CHINESE.only_text_images_voice


def test_image_without_media_id_gets_the_notice() -> None:
    message = _convert(parse_xml(message_xml("image", PicUrl="https://x")))
    assert isinstance(message, InboundMessage) and message.notice == ENGLISH.only_text_images_voice


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("event_enter_agent.xml", "event enter_agent"),
        ("event_subscribe.xml", "event subscribe"),
        ("event_batch_job_result.xml", "event batch_job_result"),  # nests one level
    ],
)
def test_events_are_ignored(name: str, reason: str) -> None:
    assert _convert(_load(name)) == reason


def test_event_dedupe_key_uses_user_time_and_event() -> None:
    assert dedupe_key(_load("event_enter_agent.xml")) == "event:zhangsan:1700000006:enter_agent"


def test_callback_for_another_agent_is_ignored() -> None:
    result = _convert(parse_xml(message_xml(Content="hi", agent_id=1000099)))
    assert result == "callback for agent 1000099, not ours"


def test_callback_without_sender_is_ignored() -> None:
    fields = parse_xml(message_xml(Content="hi"))
    fields["FromUserName"] = ""
    assert _convert(fields) == "callback without FromUserName or MsgType"


def test_message_without_msg_id_still_dedupes() -> None:
    message = _convert(parse_xml(message_xml(Content="hi", msg_id=None, create_time=42)))
    assert isinstance(message, InboundMessage)
    assert message.dedupe_keys == ("event:zhangsan:42:",)
    assert message.message_id == "zhangsan:42"
