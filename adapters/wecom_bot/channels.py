"""Where a WeCom AI-bot stream goes, per mode (see `sink.StreamSink` for what goes).

- **Webhook mode is pulled**: WeCom polls with stream refresh callbacks, so showing the
  stream is a store write that any instance's `handle()` can read back. The overflow is the
  callback's `response_url` (one message), if it is WeCom's (hosts.py); a refused one leaves
  the stream as the only way out, and what does not fit there is dropped with a log line.
  A card of buttons after the answer takes the response_url too, if the overflow left it.
- **WebSocket mode is pushed**: each show is an `aibot_respond_msg` frame with the
  callback's `req_id`; the overflow, and a card of buttons after the answer, are
  `aibot_send_msg` to the chat (any number). Files the
  stream cannot carry are uploaded over the connection and sent with `aibot_send_msg` too
  (`media.py`); webhook mode has no upload (`takes_files` is false).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import httpx

from adapters.wecom_bot import media
from adapters.wecom_bot.api import post_response_url, send_response_url
from adapters.wecom_bot.connection import PLATFORM, WsLink, new_req_id
from adapters.wecom_bot.hosts import redacted, refusal
from adapters.wecom_bot.protocol import markdown_body, stream_body, template_card_body
from adapters.wecom_bot.state import BotState, StreamState
from gateway.platform import OutputFile, Pacing, PlatformError

# A store write is cheap and nobody is rate-limited by it: WeCom's refresh rate is the
# real pace. 0.5 s keeps the content fresh for each refresh without a write per token.
STORE_PACING = Pacing(min_interval=0.5, budget="store", budget_per_second=50.0)
# Frames cost WeCom something; the SDK sets no rate, so stay near 2 per second per answer.
FRAME_PACING = Pacing(min_interval=0.5, budget="frames", budget_per_second=20.0)

log = logging.getLogger(__name__)


class StoreChannel:
    overflow_once = True
    takes_files = False
    pacing = STORE_PACING

    def __init__(
        self,
        state: BotState,
        http: httpx.AsyncClient,
        *,
        stream_id: str,
        close_at: float,
        response_url: str,
        api_base: str,
        bot: str,
    ) -> None:
        self._state = state
        self._http = http
        self._sid = stream_id
        self._close_at = close_at
        self._response_url = response_url
        self._refusal = refusal(response_url, api_base, "response_url")
        self._bot = bot
        self._spent = False  # the response_url takes one message

    @property
    def can_overflow(self) -> bool:
        return self._refusal is None

    async def show(
        self, content: str, *, finish: bool, items: Sequence[dict[str, Any]] = ()
    ) -> None:
        state = StreamState(content, finish, self._close_at, items=tuple(items))
        await self._state.write(self._sid, state)

    async def overflow(self, content: str) -> None:
        if self._refusal is not None:
            log.warning(
                "wecom_bot %s: dropped %d characters of an answer: the response_url %s is "
                "refused (%s)",
                self._bot,
                len(content),
                redacted(self._response_url),
                self._refusal,
            )
            return
        self._spent = True
        await post_response_url(self._http, self._response_url, content)

    async def send_card(self, card: dict[str, Any]) -> None:
        if self._refusal is not None:
            raise PlatformError(PLATFORM, "response_url_refused", self._refusal)
        if self._spent:
            raise PlatformError(PLATFORM, "response_url_used", "the answer took the response_url")
        self._spent = True
        await send_response_url(self._http, self._response_url, template_card_body(card))

    async def upload_file(self, file: OutputFile) -> str:
        raise PlatformError(PLATFORM, "no_upload", "webhook mode cannot send files")

    async def send_file(self, media_id: str) -> None:
        raise PlatformError(PLATFORM, "no_upload", "webhook mode cannot send files")


class FrameChannel:
    overflow_once = False
    takes_files = True
    can_overflow = True
    pacing = FRAME_PACING

    def __init__(self, link: WsLink, *, stream_id: str, req_id: str, chat_id: str) -> None:
        self._link = link
        self._sid = stream_id
        self._req_id = req_id
        self._chat_id = chat_id

    async def show(
        self, content: str, *, finish: bool, items: Sequence[dict[str, Any]] = ()
    ) -> None:
        body = stream_body(self._sid, content, finish=finish, items=items)
        await self._link.request("aibot_respond_msg", self._req_id, body)

    async def overflow(self, content: str) -> None:
        body = {"chatid": self._chat_id, **markdown_body(content)}
        await self._link.request("aibot_send_msg", new_req_id("aibot_send_msg"), body)

    async def send_card(self, card: dict[str, Any]) -> None:
        body = {"chatid": self._chat_id, **template_card_body(card)}
        await self._link.request("aibot_send_msg", new_req_id("aibot_send_msg"), body)

    async def upload_file(self, file: OutputFile) -> str:
        return await media.upload(self._link, file)

    async def send_file(self, media_id: str) -> None:
        body = {"chatid": self._chat_id, **media.file_body(media_id)}
        await self._link.request("aibot_send_msg", new_req_id("aibot_send_msg"), body)


def close_time(received_at: float, window: float) -> float:
    """When a stream begun for a message received at `received_at` must be closed."""
    return (received_at or time.time()) + window
