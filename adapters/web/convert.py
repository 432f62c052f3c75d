"""A web chat message -> the gateway's `InboundMessage`.

A web chat is a direct chat between one user (the token's `sub`) and the bot, so the chat id
is the user id and the conversation scope defaults to `user`: the Dify user is `<bot>:<sub>`.
The client's message id is the dedupe key, so a page that resends a message after a
reconnect is not answered twice.

Files ride in the frame (base64) and are kept in the store until the worker asks for them
(`download`), because the worker may run on another instance.
"""

from __future__ import annotations

import base64
from typing import Literal

from adapters.web.frames import ClientClick, ClientMessage
from adapters.web.verify import WebUser
from gateway.files import file_name, file_type
from gateway.models import Action, Attachment, ChatType, InboundMessage
from gateway.platform import PlatformError
from gateway.store import keys
from gateway.store.base import SharedState

UPLOAD_TTL_S = 3600.0


def _kind(mime: str) -> Literal["image", "document", "audio", "video"]:
    major = mime.split("/", 1)[0]
    if major == "image":
        return "image"
    if major == "audio":
        return "audio"
    if major == "video":
        return "video"
    return "document"


async def to_inbound(
    message: ClientMessage, *, bot: str, user: WebUser, store: SharedState, received_at: float
) -> InboundMessage:
    """The message, its files kept in the store (raises `StoreUnavailable`)."""
    attachments = []
    for index, sent in enumerate(message.files):
        mime = file_type(sent.data, sent.mime_type)
        key = keys.web_upload(bot, user.id, message.id, index)
        await store.set(key, base64.b64encode(sent.data).decode("ascii"), UPLOAD_TTL_S)
        attachments.append(
            Attachment(
                kind=_kind(mime),
                name=file_name(sent.name, mime, keep_extension=True),
                mime_type=mime,
                size=len(sent.data),
                source={"key": key},
            )
        )
    return InboundMessage(
        bot=bot,
        platform="web",
        event_id=message.id,
        message_id=f"{user.id}:{message.id}",
        chat_id=user.id,
        chat_type=ChatType.DIRECT,
        user_id=user.id,
        user_name=user.name,
        text=message.text,
        attachments=tuple(attachments),
        dedupe_keys=(f"msg:{user.id}:{message.id}",),
        reply_to={"id": message.id},
        received_at=received_at,
    )


async def uploaded(store: SharedState, attachment: Attachment) -> bytes:
    """The bytes of a file sent with a message (in the worker)."""
    raw = await store.get(str(attachment.source.get("key", "")))
    if raw is None:
        raise PlatformError("web", "upload_expired", attachment.name)
    return base64.b64decode(raw)


def click_to_inbound(
    click: ClientClick, *, bot: str, user: WebUser, received_at: float
) -> InboundMessage:
    """A click as the core takes it: a message from the user, naming the answer (the job id
    of the user's message `reply_to`, so a user can click only their own answers)."""
    answer_id = f"{bot}:{user.id}:{click.reply_to}" if click.reply_to else ""
    return InboundMessage(
        bot=bot,
        platform="web",
        event_id=click.id,
        message_id=f"{user.id}:{click.id}",
        chat_id=user.id,
        chat_type=ChatType.DIRECT,
        user_id=user.id,
        user_name=user.name,
        text="",
        dedupe_keys=(f"msg:{user.id}:{click.id}",),
        reply_to={"id": click.id},
        action=Action(kind=click.kind, answer_id=answer_id, value=click.value),
        received_at=received_at,
    )
