"""A DingTalk robot message (the same JSON in Stream and HTTP mode) -> `InboundMessage`.

Field names follow the robot-message doc (help.dingtalk.io/open/development/receive-message)
and `ChatbotMessage.from_dict` in open-dingtalk/dingtalk-stream-sdk-python:

- `conversationType` "1" is a one-to-one chat with the robot, "2" a group;
- in groups DingTalk delivers only messages that @ the robot, with `isInAtList` true, and
  the @robot markup already removed from `text.content` (a leading space remains);
- `senderStaffId` is the user id inside the organisation; external users have none, so the
  encrypted `senderId` stands in;
- `picture` / `file` / `audio` carry `content.downloadCode`, which `download()` later turns
  into bytes; `audio` may carry `content.recognition`, DingTalk's own transcript; `richText`
  is a list of `{"text"}` and `{"type": "picture", "downloadCode"}` items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from gateway import safejson
from gateway.models import Attachment, ChatType, InboundMessage
from gateway.platform import MalformedRequest
from gateway.words import Words

PLATFORM = "dingtalk"

_CHAT_TYPES = {"1": ChatType.DIRECT, "2": ChatType.GROUP}


@dataclass(frozen=True, slots=True)
class Skip:
    """A valid robot message that needs no answer (and why)."""

    reason: str


_text = safejson.text


def _conversation_type(value: object) -> str:
    """The conversation type as DingTalk sends it, "1" or "2" (a number counts as its
    digits; any other type as none)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _text(value)


def _content(payload: dict[str, Any]) -> dict[str, Any]:
    content = payload.get("content")
    return content if isinstance(content, dict) else {}


def _download(
    kind: Literal["image", "document", "audio"], code: Any, name: str
) -> Attachment | None:
    if not isinstance(code, str) or not code:
        return None
    return Attachment(kind=kind, name=name, source={"download_code": code})


def _body(
    payload: dict[str, Any], msgtype: str, words: Words
) -> tuple[str, list[Attachment], str | None]:
    """(text, attachments, notice) for one message type."""
    content = _content(payload)
    if msgtype == "text":
        text = payload.get("text")
        return (_text(text.get("content")) if isinstance(text, dict) else ""), [], None
    if msgtype == "richText":
        parts: list[str] = []
        files: list[Attachment] = []
        items = content.get("richText")
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue
            if "text" in item:
                parts.append(_text(item["text"]))
            elif (pic := _download("image", item.get("downloadCode"), "image")) is not None:
                files.append(pic)
        return "".join(parts), files, None
    if msgtype == "picture":
        pic = _download("image", content.get("downloadCode"), "image")
        return "", [pic] if pic else [], None
    if msgtype == "audio":
        # DingTalk transcribes voice itself; its text is better than a second pass.
        heard = _text(content.get("recognition")).strip()
        if heard:
            return heard, [], None
        voice = _download("audio", content.get("downloadCode"), "voice")
        return "", [voice] if voice else [], None
    if msgtype == "file":
        name = _text(content.get("fileName")).strip() or "file"
        doc = _download("document", content.get("downloadCode"), name)
        return "", [doc] if doc else [], None
    if msgtype == "video":
        return "", [], words.video_not_supported
    return "", [], words.only_text_images_voice_files


def _required(payload: dict[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedRequest(f"robot message without {key}")
    return value


def parse_robot_message(
    bot: str, payload: Any, *, received_at: float, words: Words, frame_id: str | None = None
) -> InboundMessage | Skip:
    """Convert one robot message. `frame_id` is the Stream frame's `headers.messageId`, a
    second dedupe key for redelivered frames; `words` say what the bot cannot read. Raises
    `MalformedRequest` when the payload is not a robot message at all."""
    if not isinstance(payload, dict):
        raise MalformedRequest("robot message is not a JSON object")
    msg_id = _required(payload, "msgId")
    conversation_id = _required(payload, "conversationId")
    sender_id = _required(payload, "senderId")
    conversation_type = _conversation_type(payload.get("conversationType"))
    chat_type = _CHAT_TYPES.get(conversation_type)
    if chat_type is None:
        return Skip(f"unknown conversationType {safejson.shown(payload.get('conversationType'))}")
    msgtype = _text(payload.get("msgtype"))
    text, attachments, notice = _body(payload, msgtype, words)
    staff_id = _text(payload.get("senderStaffId"))
    chatbot_user_id = _text(payload.get("chatbotUserId"))
    expires = payload.get("sessionWebhookExpiredTime")
    keys = [f"msg:{msg_id}"]
    if frame_id:
        keys.append(f"frame:{frame_id}")
    return InboundMessage(
        bot=bot,
        platform=PLATFORM,
        event_id=frame_id or msg_id,
        message_id=msg_id,
        chat_id=conversation_id,
        chat_type=chat_type,
        user_id=staff_id or sender_id,
        user_name=_text(payload.get("senderNick")),
        text=text.strip(),
        mentioned=payload.get("isInAtList") is True,
        from_bot=bool(chatbot_user_id) and sender_id == chatbot_user_id,
        attachments=tuple(attachments),
        dedupe_keys=tuple(keys),
        notice=notice,
        reply_to={
            "session_webhook": _text(payload.get("sessionWebhook")),
            "session_webhook_expires_ms": expires if isinstance(expires, int) else 0,
            "conversation_id": conversation_id,
            "conversation_type": conversation_type,
            "sender_staff_id": staff_id,
            "sender_nick": _text(payload.get("senderNick")),
            "robot_code": _text(payload.get("robotCode")),
        },
        received_at=received_at,
    )
