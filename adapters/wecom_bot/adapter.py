"""The WeCom AI bot (智能机器人, `platform: wecom_bot`).

Two modes, one set of rules:

- **webhook** (default): WeCom POSTs encrypted JSON callbacks to `/webhooks/<bot>` and
  *pulls* the answer: the ack to a user message is a stream reply (`finish:false`), and
  WeCom then sends stream refresh callbacks, each answered from the store with the current
  content, until one answer says `finish:true` (doc path/101031, path/100719).
- **websocket**: one long connection to `resolved_api_base`; callbacks arrive as frames and
  the answer is *pushed* as successive stream frames with the callback's `req_id`
  (aibot-node-sdk `src/ws.ts`). No webhook is served.

Both: a retried msgid gets the same stream back (the stream id is derived from it), at most
3 answers in flight per user (the 4th is told so at once), `enter_chat` gets a welcome,
`feedback_event` goes to Dify's message feedback, as a click (gateway/clicks.py).

Buttons: suggested questions and a form's actions are template cards after the answer
(sink.py, cards.py). A click (`template_card_event`) goes to the core like any click; its
callback is answered with the card redrawn (within 5 s: the HTTP answer, or
`aibot_respond_update_msg`). So a click's answer is no stream but one message: the click's
response_url (webhook mode) or `aibot_send_msg` (WebSocket mode).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from adapters.wecom.crypto import WecomCrypto, aes_key
from adapters.wecom_bot import convert
from adapters.wecom_bot.api import download_media, media_key
from adapters.wecom_bot.channels import FrameChannel, StoreChannel, close_time
from adapters.wecom_bot.connection import WsLink
from adapters.wecom_bot.hosts import redacted, refusal
from adapters.wecom_bot.protocol import (
    MAX_CONTENT_BYTES,
    card_update_body,
    seal,
    stream_body,
    text_body,
    unseal,
    verify_url,
)
from adapters.wecom_bot.sink import NOTE_MARGIN, QuietSink, StreamSink
from adapters.wecom_bot.state import MAX_IN_FLIGHT, BotState, StreamState
from gateway.config import WecomAIBot
from gateway.files import file_name
from gateway.longconn import LongConnection
from gateway.models import (
    EMPTY_OK,
    Answered,
    Attachment,
    HttpResponse,
    Ignored,
    InboundMessage,
    Messages,
    Outcome,
    WebhookRequest,
)
from gateway.platform import (
    AdapterContext,
    Capabilities,
    Delivery,
    Download,
    MalformedRequest,
    NotReady,
    PlatformError,
    ProbeStep,
    ReplySink,
)
from gateway.store.base import StoreUnavailable

log = logging.getLogger(__name__)

# Close a stream 30 s before WeCom's 6-minute refresh window ends, so the close is seen.
CLOSE_AFTER = 330.0


@dataclass(frozen=True, slots=True)
class Admission:
    first: bool  # the first time this msgid was seen
    admitted: bool  # answer it (False: the user's 4th answer in flight)
    state: StreamState | None  # what its stream shows so far, if anything


class WecomBotAdapter:
    platform = "wecom_bot"

    def __init__(self, bot: str, config: WecomAIBot, context: AdapterContext) -> None:
        self.bot = bot
        self._config = config
        self._context = context
        self._words = context.words
        self._state = BotState(context.store, bot)
        self.capabilities = Capabilities(
            can_edit=True,
            max_message=MAX_CONTENT_BYTES - NOTE_MARGIN,  # room for the continuation note
            unit="bytes",
            pacing=FrameChannel.pacing if config.mode == "websocket" else StoreChannel.pacing,
            awaits_every_reply=True,  # each message opens a stream that must be finished
            buttons=True,  # template cards after the answer (suggestions, a form's actions)
        )
        # Tunables that tests shorten; production uses the platform's numbers.
        self.close_after = CLOSE_AFTER
        self.welcome_timeout = 3.0  # WeCom waits 5 s for a welcome reply
        self._crypto: WecomCrypto | None = None
        self._media_key: bytes | None = None
        if config.token is not None and config.encoding_aes_key is not None:
            secret = config.encoding_aes_key.get_secret_value()
            self._crypto = WecomCrypto(config.token.get_secret_value(), secret, "")
            self._media_key = aes_key(secret)
        self._link: WsLink | None = None
        if config.mode == "websocket" and config.bot_id and config.secret is not None:
            self._link = WsLink(
                config.resolved_api_base,
                config.bot_id,
                config.secret.get_secret_value(),
                self._on_frame,
            )
        self._runner = LongConnection(f"wecom_bot link {bot}")
        self._tasks: set[asyncio.Task[None]] = set()

    # --- lifetime ------------------------------------------------------------------------

    @property
    def serves_webhook(self) -> bool:
        return self._config.serves_webhook

    @property
    def ready(self) -> bool:
        return self._link.ready if self._link is not None else self._crypto is not None

    async def start(self) -> None:
        if self._link is not None:
            # The link reports its own readiness (subscription acknowledged): `ready` reads it.
            self._runner.start(self._link.session)

    async def aclose(self) -> None:
        await self._runner.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._link is not None:
            await self._link.aclose()

    async def probe(self) -> list[ProbeStep]:
        """Nothing is tried: in webhook mode the bot calls no WeCom API (its token and key
        check WeCom's callbacks), and in WebSocket mode a second subscription with the same
        bot_id would take the running gateway's connection over."""
        if self._config.serves_webhook:
            why = "webhook mode calls no WeCom API; token and key are checked on each callback"
        else:
            why = "subscribing would take over the running gateway's long connection"
        return [ProbeStep("aibot_subscribe", detail=f"not tried: {why}", skipped=True)]

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run `work` in the background, tracked so `aclose()` can end it."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("wecom_bot %s: background work failed: %r", self.bot, task.exception())

    # --- webhook mode --------------------------------------------------------------------

    async def handle(self, request: WebhookRequest) -> Outcome:
        if self._crypto is None:
            raise NotReady("wecom_bot: no token/encoding_aes_key for webhook mode")
        if request.method == "GET":
            plaintext = verify_url(self._crypto, request, self._config.max_timestamp_age_s)
            return Answered(HttpResponse(body=plaintext), "url verification")
        payload = unseal(self._crypto, request, self._config.max_timestamp_age_s)
        callback = convert.interpret(self.bot, payload, request.received_at, {}, self._words)
        try:
            return await self._answer_callback(callback, self._crypto)
        except StoreUnavailable as exc:
            raise NotReady(f"wecom_bot: store unavailable: {exc}") from None

    async def _answer_callback(self, callback: convert.Callback, crypto: WecomCrypto) -> Outcome:
        if isinstance(callback, convert.StreamRefresh):
            state = await self._state.read(callback.stream_id)
            if state is None:
                shown = StreamState(self._words.thinking, False, 0.0)
            else:
                shown = state.as_seen(time.time(), self._words.interrupted)
            body = stream_body(
                callback.stream_id, shown.content, finish=shown.finish, items=shown.items
            )
            return Answered(seal(crypto, body), "stream refresh")
        if isinstance(callback, convert.EnterChat):
            welcome = await self._welcome(callback.message)
            return Answered(seal(crypto, text_body(welcome)), "enter_chat welcome")
        if isinstance(callback, convert.Feedback):
            if callback.click is None:
                return Ignored("feedback from nobody known")
            return Messages((callback.click,))
        if isinstance(callback, convert.CardClick):
            update = await self._state.card_clicked(callback, self._words)
            ack = seal(crypto, card_update_body(update)) if update is not None else EMPTY_OK
            return Messages((callback.click,), ack=ack)
        if isinstance(callback, convert.Skip):
            return Ignored(callback.reason)
        message = callback.message
        sid = message.reply_to["stream_id"]
        admission = await self._admit(message)
        state = admission.state or StreamState(self._words.thinking, False, 0.0)
        reply = seal(
            crypto,
            stream_body(sid, state.content, finish=state.finish, feedback_id=message.message_id),
        )
        if not admission.admitted:
            return Ignored("too many answers in flight for this user", ack=reply)
        # A retry goes to the core too: its dedupe keys make it a duplicate there.
        return Messages((message,), ack=reply)

    async def _admit(self, message: InboundMessage) -> Admission:
        """A first sight counts the answer in flight, or refuses it as the 4th; a retry
        gets whatever its first sight got."""
        sid = message.reply_to["stream_id"]
        if await self._state.first_sight(message.message_id):
            if await self._state.enter(message.user_id):
                return Admission(True, True, None)
            close_at = close_time(message.received_at, self.close_after)
            refusal = self._words.too_many_questions(MAX_IN_FLIGHT)
            refused = StreamState(refusal, True, close_at, refused=True)
            await self._state.write(sid, refused)
            return Admission(True, False, refused)
        state = await self._state.read(sid)
        return Admission(False, state is None or not state.refused, state)

    # --- events --------------------------------------------------------------------------

    async def _welcome(self, message: InboundMessage) -> str:
        """The routed Dify app's opening statement. enter_chat must be answered in the
        callback (webhook) or within 5 s (WebSocket), so Dify gets a short deadline."""
        try:
            statement = await asyncio.wait_for(
                self._context.assistant.opening_statement(message), self.welcome_timeout
            )
        except Exception as exc:  # a slow or failing Dify must not cost the welcome
            log.warning("wecom_bot %s: no opening statement (%s)", self.bot, type(exc).__name__)
            statement = None
        return statement or self._words.welcome

    async def _feedback(self, feedback: convert.Feedback) -> None:
        """A rating on the long connection: a click like any other (its feedback id is the
        msgid of the question, set on the first stream reply, so it names the answer)."""
        click = feedback.click
        if click is not None:
            await self._context.deliver(lambda: Messages((click,)))

    async def _card_click(self, link: WsLink, req_id: str, callback: convert.CardClick) -> None:
        """A card click on the long connection: to the core, then the card redrawn with
        the event's req_id (WeCom takes the update within 5 s of the event)."""
        click = callback.click
        if await self._context.deliver(lambda: Messages((click,))) is not Delivery.ACK:
            return
        try:
            update = await self._state.card_clicked(callback, self._words)
            if update is not None:
                await link.request("aibot_respond_update_msg", req_id, card_update_body(update))
        except (PlatformError, StoreUnavailable) as exc:
            log.warning("wecom_bot %s: a clicked card was not updated: %s", self.bot, exc)

    # --- websocket mode ------------------------------------------------------------------

    async def _on_frame(self, cmd: str, body: dict[str, Any], req_id: str) -> None:
        link = self._link
        assert link is not None
        try:
            callback = convert.interpret(
                self.bot, body, time.time(), {"req_id": req_id}, self._words
            )
        except MalformedRequest as exc:
            log.warning("wecom_bot %s: ignoring a %s frame: %s", self.bot, cmd, exc)
            return
        if isinstance(callback, convert.EnterChat):
            self._spawn(self._send_welcome(link, req_id, callback.message))
        elif isinstance(callback, convert.Feedback):
            self._spawn(self._feedback(callback))
        elif isinstance(callback, convert.CardClick):
            self._spawn(self._card_click(link, req_id, callback))
        elif isinstance(callback, convert.UserMessage):
            await self._on_message(link, callback.message, req_id)
        else:
            log.debug("wecom_bot %s: ignoring a %s frame", self.bot, cmd)

    async def _send_welcome(self, link: WsLink, req_id: str, message: InboundMessage) -> None:
        welcome = await self._welcome(message)
        await link.request("aibot_respond_welcome_msg", req_id, text_body(welcome))

    async def _on_message(self, link: WsLink, message: InboundMessage, req_id: str) -> None:
        """A user message on the long connection. This channel has no ack and never delivers
        a message again, and it stays up while the gateway shuts down (the answers in flight
        go out on it). So when the core cannot take a message (`Delivery.REDELIVER`: the
        store is down, the gateway is shutting down) the user is told so at once."""
        sid = message.reply_to["stream_id"]
        entered = False  # counted among the user's answers in flight

        async def read() -> Outcome:
            nonlocal entered
            admission = await self._admit(message)
            if not admission.admitted:
                refusal = self._words.too_many_questions(MAX_IN_FLIGHT)
                self._push(link, req_id, stream_body(sid, refusal, finish=True))
                return Ignored("too many answers in flight for this user")
            if not admission.first:
                # A redelivered frame: the answer goes out on the first delivery's req_id.
                log.info("wecom_bot %s: message %s delivered again", self.bot, message.message_id)
                return Ignored("delivered again")
            entered = True
            # The thinking frame goes first, at once: it carries feedback.id, which WeCom
            # reads only on the first reply, and the answer's frames queue behind it.
            first = stream_body(
                sid, self._words.thinking, finish=False, feedback_id=message.message_id
            )
            self._push(link, req_id, first)
            return Messages((message,))

        if await self._context.deliver(read) is Delivery.REDELIVER:
            self._push(link, req_id, stream_body(sid, self._words.cannot_answer_now, finish=True))
            if entered:
                self._spawn(self._state.leave(message.user_id))

    def _push(self, link: WsLink, req_id: str, body: dict[str, Any]) -> None:
        """Queue a reply frame without waiting for its ack (the reader must stay free)."""
        future = link.submit("aibot_respond_msg", req_id, body)
        future.add_done_callback(self._log_failure)

    def _log_failure(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.warning("wecom_bot %s: a reply frame failed: %s", self.bot, future.exception())

    # --- replies -------------------------------------------------------------------------

    def open_reply(
        self, message: InboundMessage, resume: Mapping[str, Any] | None = None
    ) -> ReplySink:
        click = message.reply_to.get("click")
        if click == "feedback":
            return QuietSink(self.capabilities.pacing)
        sid = str(message.reply_to["stream_id"])
        close_at = close_time(float(message.reply_to.get("received_at", 0.0)), self.close_after)
        if click == "card":
            # No stream was opened for a click: the answer goes the overflow's way, whole.
            resume = {"closed": True, "released": True, **(resume or {})}
        channel: StoreChannel | FrameChannel
        if self._link is not None:
            channel = FrameChannel(
                self._link,
                stream_id=sid,
                req_id=str(message.reply_to.get("req_id", "")),
                chat_id=str(message.reply_to["chatid"]),
            )
        else:
            channel = StoreChannel(
                self._state,
                self._context.http,
                stream_id=sid,
                close_at=close_at,
                response_url=str(message.reply_to.get("response_url", "")),
                api_base=self._config.resolved_api_base,
                bot=self.bot,
            )

        async def release() -> None:
            await self._state.leave(message.user_id)

        return StreamSink(
            channel,
            limit=MAX_CONTENT_BYTES,
            close_at=close_at,
            release=release,
            spawn=self._spawn,
            # In WebSocket mode the thinking frame went out when the message arrived.
            thinking=None if self._link is not None else self._words.thinking,
            words=self._words,
            resume=resume,
            keep_card=self._state.keep_card,
            asker=message.user_id,
        )

    async def download(self, attachment: Attachment) -> Download:
        url = str(attachment.source.get("url", ""))
        per_url = attachment.source.get("aeskey")
        key = media_key(str(per_url)) if per_url else self._media_key
        if not url or key is None:
            raise PlatformError(self.platform, "no_media", "the attachment cannot be fetched")
        why = refusal(url, self._config.resolved_api_base, "media")
        if why is not None:
            log.warning("wecom_bot %s: refusing media URL %s (%s)", self.bot, redacted(url), why)
            raise PlatformError(self.platform, "media_url_refused", why)
        media = await download_media(self._context.http, url, key)
        name = media.filename or attachment.name
        if attachment.kind == "image" and media.extension:
            name = file_name(name, media.mime_type)
        return Download(media.data, name, media.mime_type)

    async def display_name(self, message: InboundMessage) -> str:
        # The AI bot's callbacks carry only the userid, and it has no user API to ask.
        return message.user_name or message.user_id
