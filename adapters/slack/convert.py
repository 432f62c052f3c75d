"""Slack Events API payloads -> outcomes and `InboundMessage`s.

Payload reference: https://docs.slack.dev/reference/events/message and …/app_mention.
Bolt treats `subtype` in {none, "file_share"} as a user message; everything else (edits,
deletions, joins, bot messages) is not something to answer.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import parse_qs

from adapters.slack.interactive import decode_form_payload, to_click
from gateway import safejson
from gateway.models import (
    Answered,
    Attachment,
    ChatType,
    HttpResponse,
    Ignored,
    InboundMessage,
    Messages,
    Outcome,
)
from gateway.platform import MalformedRequest

_USER_SUBTYPES = (None, "file_share")
_KINDS: dict[str, Literal["image", "audio", "video", "document"]] = {
    "image": "image",
    "audio": "audio",
    "video": "video",
}
_MARKUP = re.compile(r"<([^<>]*)>")


def parse_body(body: bytes) -> dict[str, Any]:
    """JSON (Events API) or a form (ssl_check, slash commands, interactivity)."""
    if body[:1] == b"{" or body.lstrip()[:1] == b"{":
        try:
            return safejson.loads_object(body)
        except safejson.JSONError as exc:
            raise MalformedRequest(f"body is not a JSON object ({exc})") from None
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedRequest("body is neither JSON nor a form") from exc
    return {k: v[0] for k, v in form.items()}


def to_outcome(
    payload: dict[str, Any], *, bot: str, bot_user_id: str | None, received_at: float
) -> Outcome:
    if isinstance(payload.get("payload"), str):  # interactivity over HTTP: a form
        payload = decode_form_payload(payload)
    kind = payload.get("type")
    if kind in ("block_actions", "view_submission"):
        click = to_click(payload, bot=bot, received_at=received_at)
        return Ignored(click) if isinstance(click, str) else Messages((click,))
    if kind == "url_verification":
        challenge = payload.get("challenge")
        if not isinstance(challenge, str):
            raise MalformedRequest("url_verification without a challenge")
        return Answered(HttpResponse.json({"challenge": challenge}), "url_verification")
    if payload.get("ssl_check") == "1":
        return Answered(HttpResponse(), "ssl_check")
    if kind != "event_callback":
        command = safejson.text(payload.get("command"))
        return Ignored(f"payload type {safejson.shown(kind or command or 'unknown')}")
    event = payload.get("event")
    if not isinstance(event, dict):
        raise MalformedRequest("event_callback without an event")
    result = to_message(payload, event, bot=bot, bot_user_id=bot_user_id, received_at=received_at)
    if isinstance(result, str):
        return Ignored(result)
    return Messages((result,))


def to_message(
    envelope: dict[str, Any],
    event: dict[str, Any],
    *,
    bot: str,
    bot_user_id: str | None,
    received_at: float,
) -> InboundMessage | str:
    """The message to answer, or why there is none."""
    text = safejson.text
    kind = event.get("type")
    if kind not in ("message", "app_mention"):
        return f"event {safejson.shown(kind)}"
    subtype = event.get("subtype")
    if subtype not in _USER_SUBTYPES:
        return f"message subtype {safejson.shown(subtype)}"
    channel, ts, user = event.get("channel"), event.get("ts"), text(event.get("user"))
    if not isinstance(channel, str) or not isinstance(ts, str) or not channel or not ts:
        return "event without channel or ts"
    raw_text = text(event.get("text"))
    from_bot = bool(event.get("bot_id")) or not user or user == bot_user_id
    channel_type = event.get("channel_type")
    direct = channel_type == "im" or (channel_type is None and channel.startswith("D"))
    mentioned = kind == "app_mention" or (
        bot_user_id is not None and f"<@{bot_user_id}" in raw_text
    )
    # Every Slack reply goes in a thread: the message's thread, or one under the message.
    thread_ts = text(event.get("thread_ts")) or ts
    team = text(event.get("team")) or text(envelope.get("team_id"))
    message_id = f"{channel}:{ts}"
    event_id = text(envelope.get("event_id")) or message_id
    files = event.get("files")
    return InboundMessage(
        bot=bot,
        platform="slack",
        event_id=event_id,
        message_id=message_id,
        chat_id=channel,
        chat_type=ChatType.DIRECT if direct else ChatType.GROUP,
        user_id=user or text(event.get("bot_id")),
        text=to_plain_text(raw_text, bot_user_id),
        mentioned=mentioned,
        from_bot=from_bot,
        thread_id=thread_ts,
        attachments=_attachments(files) if files else (),
        # The same human message can arrive as `message` and `app_mention` with two
        # event ids: (channel, ts) catches the second one.
        dedupe_keys=("event:" + event_id, "msg:" + message_id),
        # The sink replies in (chat_id, thread_id); streams also name the workspace.
        reply_to={"team_id": team},
        received_at=received_at,
    )


def _attachments(files: Any) -> tuple[Attachment, ...]:
    out: list[Attachment] = []
    for f in files if isinstance(files, list) else []:
        if not isinstance(f, dict):
            continue
        url = f.get("url_private_download") or f.get("url_private")
        if not isinstance(url, str):
            continue
        mime = safejson.text(f.get("mimetype")) or "application/octet-stream"
        kind = _KINDS.get(mime.split("/", 1)[0], "document")
        out.append(
            Attachment(
                kind=kind,
                name=safejson.text(f.get("name")) or safejson.text(f.get("id")) or "file",
                mime_type=mime,
                size=f.get("size") if isinstance(f.get("size"), int) else None,
                source={"url": url},
            )
        )
    return tuple(out)


def to_plain_text(text: str, bot_user_id: str | None) -> str:
    """Slack markup -> what a person typed: the bot's own mention removed, other mentions,
    channels and links made readable, `&amp;`-escapes undone."""

    if "<" not in text and "&" not in text and "  " not in text and "\t" not in text:
        return text.strip()  # the common case: nothing to undo

    def replace(m: re.Match[str]) -> str:
        inner = m.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            if bot_user_id is not None and target[1:] == bot_user_id:
                return ""
            return "@" + (label or target[1:])
        if target.startswith("#"):
            return "#" + (label or target[1:])
        if target.startswith("!"):
            name = target[1:].split("^", 1)[0]
            return label or ("@" + name if name in ("here", "channel", "everyone") else "")
        if target.startswith("mailto:"):
            return label or target[7:]
        return f"{label} ({target})" if label and label != target else target

    plain = _MARKUP.sub(replace, text)
    plain = plain.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return re.sub(r"[ \t]{2,}", " ", plain).strip()
