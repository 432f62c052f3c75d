"""What both reply sinks share: where a reply goes, and how a markdown message is sent.

A robot markdown message (help.dingtalk.io "机器人发送消息的类型") is
`{"msgtype": "markdown", "markdown": {"title", "text"}}` on a sessionWebhook, or `msgKey:
"sampleMarkdown"` with `msgParam: {"title", "text"}` on the OpenAPI. `title` is required: it
is the preview in the chat list. A sessionWebhook lives about 1.5 h
(`sessionWebhookExpiredTime`); after that only the OpenAPI reaches the conversation:
`oToMessages/batchSend` to a user (by staff id) or `groupMessages/send` to a group.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from adapters.dingtalk.api import PLATFORM, DingtalkApi
from adapters.dingtalk.webhook import refusal
from gateway.models import ChatType, InboundMessage
from gateway.platform import PlatformError
from gateway.words import Words

log = logging.getLogger(__name__)

WEBHOOK_MARGIN_MS = 60_000  # don't start a send on a webhook that is about to expire
TITLE_CHARS = 24
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_MARKUP = re.compile(r"[#>*_`~\[\]()!|-]+")


def preview_title(text: str, fallback: str) -> str:
    """A short plain-text preview of `text` for `markdown.title`; `fallback` when `text`
    has no plain text (the title must not be empty)."""
    for line in text.splitlines():
        line = _LINK.sub(r"\1", _IMAGE.sub(" ", line))
        plain = " ".join(_MARKUP.sub(" ", line).split())
        if plain:
            return plain if len(plain) <= TITLE_CHARS else plain[: TITLE_CHARS - 1] + "…"
    return fallback


@dataclass(frozen=True, slots=True)
class Destination:
    """Where the answer to one message goes, from its `reply_to`."""

    group: bool
    conversation_id: str
    staff_id: str
    nick: str
    webhook: str
    webhook_expires_ms: int

    @classmethod
    def of(cls, message: InboundMessage) -> Destination:
        r = message.reply_to
        expires = r.get("session_webhook_expires_ms")
        return cls(
            group=message.chat_type is ChatType.GROUP,
            conversation_id=str(r.get("conversation_id") or message.chat_id),
            staff_id=str(r.get("sender_staff_id") or ""),
            nick=str(r.get("sender_nick") or message.user_name),
            webhook=str(r.get("session_webhook") or ""),
            webhook_expires_ms=expires if isinstance(expires, int) else 0,
        )


class MarkdownSender:
    """Sends finished markdown messages to one conversation, by the best route open."""

    def __init__(
        self, api: DingtalkApi, destination: Destination, bot: str, *, words: Words
    ) -> None:
        self._api = api
        self._untitled = words.reply_title
        self._to = destination
        self._bot = bot
        self._webhook_checked = False
        self._webhook_ok = False

    def _webhook_usable(self) -> bool:
        if not self._webhook_checked:
            self._webhook_checked = True
            why = refusal(self._to.webhook, self._api.base)
            self._webhook_ok = why is None
            if why is not None and self._to.webhook:
                log.warning(
                    "bot %s: refusing the sessionWebhook (%s); using the OpenAPI", self._bot, why
                )
        now_ms = int(time.time() * 1000)
        return self._webhook_ok and self._to.webhook_expires_ms - now_ms > WEBHOOK_MARGIN_MS

    async def send(self, text: str, *, mention: bool) -> None:
        """Send `text` as one markdown message; `mention` @s the asker (groups only)."""
        title = preview_title(text, self._untitled)
        if self._webhook_usable():
            body: dict[str, Any] = {
                "msgtype": "markdown",
                "markdown": {"title": title, "text": text},
            }
            if mention and self._to.group and self._to.staff_id:
                # DingTalk highlights the @ only when the text names the user id too.
                body["markdown"]["text"] = f"{text}\n\n@{self._to.staff_id}"
                body["at"] = {"atUserIds": [self._to.staff_id]}
            await self._api.send_by_session(self._to.webhook, body)
            return
        param = {"title": title, "text": text}
        if self._to.group:
            await self._api.send_to_group(self._to.conversation_id, "sampleMarkdown", param)
        elif self._to.staff_id:
            await self._api.send_to_user(self._to.staff_id, "sampleMarkdown", param)
        else:
            # External users have no staff id, and their sessionWebhook is gone.
            raise PlatformError(PLATFORM, "unreachable", "no sessionWebhook and no staff id")
