"""WeCom AI-bot callback payloads (decrypted JSON, or a WebSocket frame body) → what the
adapter does with them.

Payload shapes: doc path/100719 (接收消息) and the official SDK's `src/types/message.ts` and
`src/types/event.ts` (WecomTeam/aibot-node-sdk):

- `msgid` is the unique id of the callback, for dedupe; `chattype` is `single` or `group`
  (`chatid` only in groups); `from.userid` is the speaker.
- Group messages arrive only when the bot is @mentioned, and the text keeps the `@BotName`.
- `text`, `mixed` (text + image items), `image`, `file`, `voice` (`voice.content` is WeCom's
  own speech-to-text), an optional `quote`; image/file URLs are encrypted and valid 5 min.
- `msgtype:"stream"` is a stream refresh: `stream.id` names our stream.
- `msgtype:"event"`: `event.eventtype` is `enter_chat`, `template_card_event`,
  `feedback_event` (`feedback_event.type`: 1 like, 2 dislike, 3 withdrawn; third-party
  implementations agree, the stored official pages do not show it).
- `template_card_event`: `event_key` (the button's key) and `task_id` (the card's), under
  `event.template_card_event` in the doc (path/101027), directly on `event` in the SDK's
  type: both are read. A key the gateway did not make is no click of ours.

A click (a card's button, WeCom's own 👍/👎) is a message from whoever clicked, with an
`Action`, and `reply_to["click"]` saying which kind (`card`, `feedback`): its answer cannot
be a stream (adapter.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from adapters.wecom_bot.protocol import stream_id
from gateway import safejson
from gateway.controls import read_button_value
from gateway.models import Action, Attachment, ChatType, InboundMessage
from gateway.platform import MalformedRequest
from gateway.words import Words

PLATFORM = "wecom_bot"
# Leading "@BotName" (then spaces) in a group message; WeCom includes it in the text.
_MENTION = re.compile(r"^\s*@\S+\s*")
# WeCom's message types that the bot cannot read, by their names in `gateway.words.KINDS`.
_UNSUPPORTED = {"video": "video", "location": "location", "link": "link", "emotion": "sticker"}


@dataclass(frozen=True, slots=True)
class UserMessage:
    message: InboundMessage


@dataclass(frozen=True, slots=True)
class StreamRefresh:
    stream_id: str


@dataclass(frozen=True, slots=True)
class EnterChat:
    message: InboundMessage  # an empty message, so the core can route the welcome


@dataclass(frozen=True, slots=True)
class Feedback:
    feedback_id: str
    rating: Literal["like", "dislike"] | None
    # The rating as the core takes every click: a message from the user who rated, with an
    # `Action` naming the answer (the feedback id is the question's msgid: adapter.py).
    click: InboundMessage | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class CardClick:
    task_id: str  # the card clicked
    key: str  # the button clicked
    click: InboundMessage  # the click as the core takes it, from whoever clicked


@dataclass(frozen=True, slots=True)
class Skip:
    reason: str


Callback = UserMessage | StreamRefresh | EnterChat | Feedback | CardClick | Skip
CARD_CLICKS = ("suggestion", "form")  # the kinds of button the gateway's cards have


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


_str = safejson.text


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def interpret(
    bot: str,
    payload: dict[str, Any],
    received_at: float,
    reply_to: dict[str, Any],
    words: Words,
) -> Callback:
    """Classify one callback. `reply_to` is merged into a message's `reply_to` (the
    transport's reply handle: a WebSocket `req_id`); `words` say what the bot cannot read."""
    kind = _str(payload.get("msgtype"))
    if kind == "stream":
        sid = _str(_dict(payload.get("stream")).get("id"))
        return StreamRefresh(sid) if sid else Skip("stream refresh without an id")
    if kind == "event":
        return _event(bot, payload, received_at, words)
    return UserMessage(_message(bot, payload, received_at, reply_to, words))


def _event(bot: str, payload: dict[str, Any], received_at: float, words: Words) -> Callback:
    event = _dict(payload.get("event"))
    name = _str(event.get("eventtype")) or _str(event.get("event_type"))
    if name == "enter_chat":
        return EnterChat(_message(bot, {**payload, "msgtype": "text"}, received_at, {}, words))
    if name == "feedback_event":
        detail = _dict(event.get("feedback_event"))
        feedback_id = _str(detail.get("id"))
        if not feedback_id:
            return Skip("feedback without an id")
        ratings: dict[int, Literal["like", "dislike"] | None] = {1: "like", 2: "dislike", 3: None}
        rating = detail.get("type")
        # Only a number can be one (an object or list is not even hashable; true == 1).
        if isinstance(rating, bool) or not isinstance(rating, int) or rating not in ratings:
            return Skip(f"feedback of unknown type {safejson.shown(rating)}")
        return Feedback(
            feedback_id, ratings[rating], _click(bot, payload, received_at, words, detail)
        )
    if name == "template_card_event":
        return _card_click(bot, payload, event, received_at, words)
    return Skip(f"event {name or 'without a type'}")


def _card_click(
    bot: str, payload: dict[str, Any], event: dict[str, Any], received_at: float, words: Words
) -> Callback:
    nested = _dict(event.get("template_card_event"))
    key = _str(nested.get("event_key")) or _str(event.get("event_key"))
    task_id = _str(nested.get("task_id")) or _str(event.get("task_id"))
    if not task_id:
        return Skip("card click without a task_id")
    button = read_button_value(key)
    if button is None or button[0] not in CARD_CLICKS:
        return Skip("card click on no button of ours")
    kind, answer_id, value = button
    try:
        message = _message(bot, {**payload, "msgtype": "text"}, received_at, {}, words)
    except MalformedRequest:
        return Skip("card click from nobody known")
    action = Action(kind=kind, answer_id=answer_id, value=value)
    reply_to = {**message.reply_to, "click": "card"}
    click = replace(message, text="", notice=None, mentioned=True, action=action, reply_to=reply_to)
    return CardClick(task_id, key, click)


def _click(
    bot: str, payload: dict[str, Any], received_at: float, words: Words, detail: dict[str, Any]
) -> InboundMessage | None:
    """The feedback event as a click on the answer it rates (None without msgid or user)."""
    try:
        message = _message(bot, {**payload, "msgtype": "text"}, received_at, {}, words)
    except MalformedRequest:
        return None
    values: dict[Any, str] = {1: "like", 2: "dislike"}  # 3, withdrawn: no rating
    action = Action(
        kind="feedback",
        answer_id=f"{bot}:{_str(detail.get('id'))}",
        value=values.get(detail.get("type"), ""),
        comment=_str(detail.get("content"))[:1000],
    )
    reply_to = {**message.reply_to, "click": "feedback"}
    return replace(message, text="", notice=None, mentioned=True, action=action, reply_to=reply_to)


def _message(
    bot: str, payload: dict[str, Any], received_at: float, reply_to: dict[str, Any], words: Words
) -> InboundMessage:
    msgid = _str(payload.get("msgid"))
    user = _str(_dict(payload.get("from")).get("userid"))
    if not msgid or not user:
        raise MalformedRequest("wecom_bot: callback without msgid or from.userid")
    group = payload.get("chattype") == "group"
    kind = _str(payload.get("msgtype"))
    text, attachments, notice = _content(kind, payload, words)
    if group:
        text = _MENTION.sub("", text, count=1)
    quoted = _quoted(_dict(payload.get("quote")))
    if quoted and (text.strip() or attachments):
        text = "\n".join(f"> {line}" for line in quoted.splitlines()) + "\n\n" + text
    if notice is None and not text.strip() and not attachments:
        notice = words.mention_without_question
    chat_id = _str(payload.get("chatid")) if group else user
    return InboundMessage(
        bot=bot,
        platform=PLATFORM,
        event_id=msgid,
        message_id=msgid,
        chat_id=chat_id or user,
        chat_type=ChatType.GROUP if group else ChatType.DIRECT,
        user_id=user,
        text=text.strip(),
        mentioned=group,  # WeCom delivers group messages only when the bot is @mentioned
        attachments=tuple(attachments),
        dedupe_keys=(f"msg:{msgid}",),
        notice=notice,
        reply_to={
            "stream_id": stream_id(bot, msgid),
            "response_url": _str(payload.get("response_url")),
            "chatid": chat_id or user,
            "received_at": received_at,
            **reply_to,
        },
        received_at=received_at,
    )


def _content(
    kind: str, payload: dict[str, Any], words: Words
) -> tuple[str, list[Attachment], str | None]:
    body = _dict(payload.get(kind))
    if kind == "text":
        return _str(body.get("content")), [], None
    if kind == "voice":
        # WeCom has already transcribed the voice message; an empty transcript is a notice.
        heard = _str(body.get("content"))
        return heard, [], None if heard.strip() else words.voice_not_understood
    if kind == "image":
        return "", _media("image", body, 1), None
    if kind == "file":
        return "", _media("document", body, 1), None
    if kind == "mixed":
        texts: list[str] = []
        images: list[Attachment] = []
        for item in _list(body.get("msg_item")):
            item = _dict(item)
            if item.get("msgtype") == "text":
                texts.append(_str(_dict(item.get("text")).get("content")))
            elif item.get("msgtype") == "image":
                images += _media("image", _dict(item.get("image")), len(images) + 1)
        return "\n".join(t for t in texts if t), images, None
    return "", [], words.kind_not_supported(_UNSUPPORTED.get(kind, kind))


def _media(kind: Literal["image", "document"], body: dict[str, Any], n: int) -> list[Attachment]:
    url = _str(body.get("url"))
    if not url:
        return []
    default = f"image-{n}.jpg" if kind == "image" else "file"
    source = {"url": url}
    if _str(body.get("aeskey")):  # WebSocket mode: one key per URL
        source["aeskey"] = _str(body.get("aeskey"))
    return [Attachment(kind=kind, name=_str(body.get("filename")) or default, source=source)]


def _quoted(quote: dict[str, Any]) -> str:
    kind = _str(quote.get("msgtype"))
    body = _dict(quote.get(kind))
    if kind in ("text", "voice"):
        return _str(body.get("content")).strip()
    if kind == "mixed":
        items = [_dict(i) for i in _list(body.get("msg_item"))]
        texts = [_str(_dict(i.get("text")).get("content")) for i in items]
        return "\n".join(t for t in texts if t).strip()
    return ""
