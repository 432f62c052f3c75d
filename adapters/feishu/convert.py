"""Feishu/Lark event payloads to `InboundMessage`s (or a reason to ignore them).

Schema 2.0 `im.message.receive_v1`
(https://open.feishu.cn/document/server-docs/im-v1/message/events/receive): `event.sender`
(`sender_id.open_id`, `sender_type`) and `event.message` (`message_id`, `chat_id`,
`chat_type` p2p | group | topic_group, `message_type`, `content` as a JSON *string*,
`mentions[]`, `root_id`, `thread_id`). The legacy v1 `message` event (`uuid` at the top,
`event.open_message_id`, `text_without_at_bot`, `is_mention`) carries text only.

Dedupe keys: the delivery id (`event:<event_id>`, v1 `uuid:<uuid>`) and `msg:<message_id>`,
because Feishu re-pushes for ~7.1 h and a re-push may come with a new event id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from adapters.feishu.richtext import Mentions, post_to_markdown
from gateway import safejson
from gateway.models import Attachment, ChatType, HttpResponse, InboundMessage
from gateway.platform import NotReady
from gateway.words import Words

Kind = Literal["image", "document", "audio", "video"]
ACK = HttpResponse.json({"msg": "success"})
MESSAGE_EVENT = "im.message.receive_v1"
# Feishu's message types that the bot cannot read, by their names in `gateway.words.KINDS`.
_KINDS = {
    "image": "image",  # an image, file or voice message without its key, or a v1 event
    "file": "file",
    "audio": "voice",
    "post": "rich_text",
    "media": "video",
    "sticker": "sticker",
    "interactive": "card",
    "share_chat": "shared_chat",
    "share_user": "contact",
    "merge_forward": "chat_history",
    "location": "location",
    "todo": "task",
    "system": "system",
}
_IMAGE_EXT = {"png", "jpg", "jpeg", "gif", "webp", "bmp", "svg"}
_AUDIO_EXT = {"mp3", "m4a", "wav", "webm", "amr", "mpga", "mpeg"}
_VIDEO_EXT = {"mp4", "mov", "mpeg4", "avi", "mkv"}
# The tags around a v1 mention (`<at open_id="ou_…">@Name</at>`): removed, the name kept.
# Tags only, never what lies between them: a pattern spanning open tag to close tag took
# seconds per kilobyte on text with an unclosed `<at>` (backtracking).
_V1_AT_TAG = re.compile(r"<at\b[^<>]*>|</\s*at\s*>")


_text = safejson.text


def not_supported(message_type: str, words: Words) -> str:
    return words.kind_not_supported(_KINDS.get(message_type, message_type))


@dataclass(frozen=True, slots=True)
class Context:
    bot: str
    platform: str
    bot_open_id: str | None  # None until `bot/v3/info` answered
    voice: bool  # opus can be converted for Dify's audio-to-text
    received_at: float
    words: Words  # for the notices about messages the bot cannot read


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _file_kind(name: str) -> Kind:
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if ext in _IMAGE_EXT:
        return "image"
    if ext in _AUDIO_EXT:
        return "audio"
    return "video" if ext in _VIDEO_EXT else "document"


def _resource(
    kind: Kind, name: str, message_id: str, key: str, resource_type: str, voice: bool = False
) -> Attachment:
    source = {"message_id": message_id, "key": key, "type": resource_type, "voice": voice}
    return Attachment(kind=kind, name=name, source=source)


def _content(
    message_type: str, raw: object, message_id: str, mentions: Mentions, ctx: Context
) -> tuple[str, tuple[Attachment, ...], str | None]:
    """(text, attachments, notice) for one message's `content` string."""
    try:
        content = _dict(safejson.loads(raw)) if isinstance(raw, str) else {}
    except safejson.JSONError:
        content = {}
    if message_type == "text":
        return mentions.resolve(_text(content.get("text"))), (), None
    if message_type == "post":
        text, images = post_to_markdown(content, mentions)
        files = tuple(_resource("image", "image", message_id, k, "image") for k in images)
        return text, files, None
    image_key, file_key = _text(content.get("image_key")), _text(content.get("file_key"))
    if message_type == "image" and image_key:
        return "", (_resource("image", "image", message_id, image_key, "image"),), None
    if message_type == "file" and file_key:
        name = _text(content.get("file_name")) or "file"
        return "", (_resource(_file_kind(name), name, message_id, file_key, "file"),), None
    if message_type == "audio" and file_key:
        if not ctx.voice:
            return "", (), ctx.words.voice_not_supported
        return "", (_resource("audio", "voice.opus", message_id, file_key, "file", True),), None
    return "", (), not_supported(message_type, ctx.words)


def _v2_message(payload: dict[str, Any], ctx: Context) -> InboundMessage | str:
    header = _dict(payload.get("header"))
    if header.get("event_type") != MESSAGE_EVENT:
        return f"event {safejson.shown(header.get('event_type'))} is not handled"
    event = _dict(payload.get("event"))
    sender, message = _dict(event.get("sender")), _dict(event.get("message"))
    open_id = _text(_dict(sender.get("sender_id")).get("open_id"))
    message_id, chat_id = _text(message.get("message_id")), _text(message.get("chat_id"))
    event_id = _text(header.get("event_id"))
    if not (open_id and message_id and chat_id and event_id):
        return "message event without sender, message, chat or event id"
    chat_type = ChatType.DIRECT if message.get("chat_type") == "p2p" else ChatType.GROUP
    if chat_type is ChatType.GROUP and ctx.bot_open_id is None:
        # Whether the bot is mentioned needs its open_id: let Feishu retry shortly.
        raise NotReady("bot open_id (bot/v3/info) not known yet")
    mentions = Mentions.parse(message.get("mentions"), ctx.bot_open_id)
    message_type = _text(message.get("message_type"))
    text, attachments, notice = _content(
        message_type, message.get("content"), message_id, mentions, ctx
    )
    thread = _text(message.get("thread_id")) or _text(message.get("root_id")) or None
    return InboundMessage(
        bot=ctx.bot,
        platform=ctx.platform,
        event_id=event_id,
        message_id=message_id,
        chat_id=chat_id,
        chat_type=chat_type,
        user_id=open_id,
        text=text,
        mentioned=mentions.bot_mentioned,
        # Apps (other bots, and our own echoes) send as "app".
        from_bot=sender.get("sender_type") in ("app", "bot"),
        thread_id=thread,
        attachments=attachments,
        dedupe_keys=(f"event:{event_id}", f"msg:{message_id}"),
        notice=notice,
        reply_to={
            "message_id": message_id,
            "chat_id": chat_id,
            "in_thread": bool(_text(message.get("thread_id"))),
        },
        received_at=ctx.received_at,
    )


def _v1_message(payload: dict[str, Any], ctx: Context) -> InboundMessage | str:
    event = _dict(payload.get("event"))
    if event.get("type") != "message":
        return f"v1 event {safejson.shown(event.get('type'))} is not handled"
    uuid, message_id = _text(payload.get("uuid")), _text(event.get("open_message_id"))
    chat_id, open_id = _text(event.get("open_chat_id")), _text(event.get("open_id"))
    if not (uuid and message_id and chat_id and open_id):
        return "v1 message event without uuid, message, chat or sender id"
    message_type = _text(event.get("msg_type"))
    text, notice = "", None
    if message_type == "text":
        raw = _text(event.get("text_without_at_bot")) or _text(event.get("text"))
        text = _V1_AT_TAG.sub("", raw).strip()
    else:
        notice = not_supported(message_type, ctx.words)
    chat_type = ChatType.DIRECT if event.get("chat_type") == "private" else ChatType.GROUP
    root = _text(event.get("root_id")) or None
    return InboundMessage(
        bot=ctx.bot,
        platform=ctx.platform,
        event_id=uuid,
        message_id=message_id,
        chat_id=chat_id,
        chat_type=chat_type,
        user_id=open_id,
        text=text,
        mentioned=bool(event.get("is_mention")),
        thread_id=root,
        dedupe_keys=(f"uuid:{uuid}", f"msg:{message_id}"),
        notice=notice,
        reply_to={"message_id": message_id, "chat_id": chat_id, "in_thread": False},
        received_at=ctx.received_at,
    )


def to_message(payload: dict[str, Any], ctx: Context) -> InboundMessage | str:
    """The message an event carries, or why it is ignored. Raises `NotReady` for a group
    message while the bot's own open_id is unknown."""
    if "schema" in payload:
        return _v2_message(payload, ctx)
    if "uuid" in payload:
        return _v1_message(payload, ctx)
    return f"callback type {safejson.shown(payload.get('type'))} is not handled"
