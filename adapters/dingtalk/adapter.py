"""The DingTalk robot adapter: Stream mode (default) or HTTP callbacks, one parser, and
markdown or AI-card replies.

- Stream mode serves no webhook: messages arrive on the bot's WebSocket (connection.py) and go
  to the core through `context.deliver`, which accepts them exactly as webhooks are and says
  whether to ack the frame.
- HTTP mode: `POST /webhooks/<bot>` signed with `timestamp` + `sign` (verify.py), each sign
  accepted once (replay.py), acked at once with `{}`.
- With `card_template_id`, answers stream into an AI card; without, they arrive as finished
  markdown messages of at most 18,000 bytes (DingTalk rejects a message over 20,000 bytes:
  "message too long, exceed 20000 bytes").
- Buttons (Stop, 👍/👎, suggested questions, a form's actions: card_buttons.py) need a card
  template of the operator's own, not the built-in AI card, and Stream mode: clicks come
  back on the Stream connection (card_clicks.py), read and accepted like messages. HTTP mode
  has no buttons: the HTTP card callback's request signing is not established, and an
  unsigned callback is never taken (`/stop` works everywhere).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from adapters.dingtalk.api import DingtalkApi
from adapters.dingtalk.card_buttons import BUILTIN_AI_CARD, ButtonCardSink
from adapters.dingtalk.card_clicks import CardPlaces, click_message, read_click
from adapters.dingtalk.connection import StreamClient
from adapters.dingtalk.convert import PLATFORM, Skip, parse_robot_message
from adapters.dingtalk.frames import SUBSCRIPTIONS, FrameError, StreamFrame
from adapters.dingtalk.media import MediaSender
from adapters.dingtalk.replay import SignLedger
from adapters.dingtalk.reply import Destination, MarkdownSender
from adapters.dingtalk.sink import CARD_PACING, MARKDOWN_PACING, CardSink, MarkdownSink
from adapters.dingtalk.verify import verify_signature
from gateway import safejson
from gateway.config import DingtalkBot
from gateway.files import file_name, file_type
from gateway.models import (
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
    PlatformError,
    ProbeStep,
    ReplySink,
    attempt,
)

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 18_000
HTTP_ACK = HttpResponse.json({})


class DingtalkAdapter:
    platform = PLATFORM

    def __init__(self, bot: str, config: DingtalkBot, context: AdapterContext) -> None:
        self.bot = bot
        self._config = config
        self._context = context
        self._secret = config.client_secret.get_secret_value()
        self.api = DingtalkApi(
            context.http,
            context.store,
            api_base=config.resolved_api_base,
            client_id=config.client_id,
            client_secret=self._secret,
            robot_code=config.resolved_robot_code,
        )
        self._stream = StreamClient(bot, self.api, self._on_stream_message, self._on_card_click)
        self._signs = SignLedger(context.store, bot)
        self._places = CardPlaces(context.store, bot)
        self._started = False
        template = config.card_template_id
        self._buttons = bool(template) and template != BUILTIN_AI_CARD and config.mode == "stream"
        if template:
            self.capabilities = Capabilities(
                can_edit=True,
                max_message=MAX_MESSAGE_BYTES,
                unit="bytes",
                pacing=CARD_PACING,
                buttons=self._buttons,
            )
        else:
            self.capabilities = Capabilities(
                can_edit=False,
                max_message=MAX_MESSAGE_BYTES,
                unit="bytes",
                pacing=MARKDOWN_PACING,
            )

    # --- lifetime ----------------------------------------------------------------------

    @property
    def serves_webhook(self) -> bool:
        return self._config.serves_webhook

    @property
    def ready(self) -> bool:
        return self._stream.connected if self._config.mode == "stream" else self._started

    async def start(self) -> None:
        if self._config.mode == "stream":
            self._stream.start()
        else:
            await self.api.token.get()  # fails fast on a wrong client id or secret
        self._started = True

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def probe(self) -> list[ProbeStep]:
        """An access token (client_id and client_secret); in Stream mode also
        `connections/open`, which hands out a ticket that nothing uses."""

        async def token() -> str:
            await self.api.token.get()
            return "client_id and client_secret accepted"

        async def stream() -> str:
            await self.api.open_connection(SUBSCRIPTIONS)
            return "Stream mode allowed"

        steps = [await attempt("oauth2/accessToken", token)]
        if self._config.mode == "stream":
            steps.append(await attempt("gateway/connections/open", stream))
        return steps

    # --- inbound -----------------------------------------------------------------------

    async def handle(self, request: WebhookRequest) -> Outcome:
        """HTTP mode: verify the sign (401), parse the body (400), take the sign as used
        (401 when another body used it; 503 when the store fails), ack with `{}`."""
        if request.method != "POST":
            raise MalformedRequest("DingTalk sends callbacks with POST")
        now_ms = int(request.received_at * 1000)
        signed = verify_signature(request.headers, self._secret, now_ms=now_ms)
        try:
            payload = safejson.loads(request.body)
        except safejson.JSONError as exc:
            raise MalformedRequest(f"body: {exc}") from None
        result = parse_robot_message(
            self.bot, payload, received_at=request.received_at, words=self._context.words
        )
        # A robot message always has its msgId by now (parse_robot_message requires it).
        msg_id = result.message_id if isinstance(result, InboundMessage) else payload["msgId"]
        await self._signs.accept(signed.sign, msg_id, ttl=signed.valid_for(now_ms))
        if isinstance(result, Skip):
            return Ignored(result.reason, ack=HTTP_ACK)
        return Messages((result,), ack=HTTP_ACK)

    async def _on_stream_message(self, frame: StreamFrame) -> Delivery:
        """Stream mode: a robot-message frame, read and handed to the core, which says
        whether to ack it or leave it for DingTalk to deliver again."""
        return await self._context.deliver(lambda: self._read_stream_message(frame))

    def _read_stream_message(self, frame: StreamFrame) -> Outcome:
        try:
            payload = frame.payload()
        except FrameError as exc:
            raise MalformedRequest(str(exc)) from None  # a redelivery would be as malformed
        result = parse_robot_message(
            self.bot,
            payload,
            received_at=time.time(),
            words=self._context.words,
            frame_id=frame.message_id or None,
        )
        if isinstance(result, Skip):
            log.info("bot %s: ignoring a robot message: %s", self.bot, result.reason)
            return Ignored(result.reason)
        return Messages((result,))

    async def _on_card_click(self, frame: StreamFrame) -> Delivery:
        """Stream mode: a click on a card's button, read and handed to the core like a
        message (acked once it is durable)."""
        return await self._context.deliver(lambda: self._read_card_click(frame))

    async def _read_card_click(self, frame: StreamFrame) -> Outcome:
        """The click, from where the card was posted (read from the store: a store that
        fails raises `StoreUnavailable`, and the frame is delivered again)."""
        try:
            payload = frame.payload()
        except FrameError as exc:
            raise MalformedRequest(str(exc)) from None
        click = read_click(payload)
        if isinstance(click, str):
            log.info("bot %s: ignoring a card callback: %s", self.bot, click)
            return Ignored(click)
        if not frame.message_id:
            raise MalformedRequest("card callback frame without a messageId")
        place = await self._places.get(click.out_track_id)
        return Messages((click_message(self.bot, click, place, frame.message_id, time.time()),))

    # --- outbound ----------------------------------------------------------------------

    def open_reply(
        self, message: InboundMessage, resume: Mapping[str, Any] | None = None
    ) -> ReplySink:
        destination = Destination.of(message)
        template = self._config.card_template_id
        # A card goes to IM_ROBOT.<staffId> in a one-to-one chat: external users have none.
        words = self._context.words
        if template and (destination.group or destination.staff_id):
            if self._buttons:
                clicked = str(message.reply_to.get("card") or "")  # a click's sink
                chosen = str(message.reply_to.get("chosen") or "")  # a form's action clicked
                return ButtonCardSink(
                    self.api,
                    destination,
                    template,
                    resume,
                    words=words,
                    places=self._places,
                    clicked=clicked,
                    chosen=chosen,
                )
            return CardSink(self.api, destination, template, resume, words=words)
        sender = MarkdownSender(self.api, destination, self.bot, words=words)
        return MarkdownSink(sender, MediaSender(self.api, destination), resume)

    async def download(self, attachment: Attachment) -> Download:
        code = str(attachment.source.get("download_code") or "")
        if not code:
            raise PlatformError(PLATFORM, "no_download_code", attachment.name)
        data, content_type = await self.api.download(code)
        mime = file_type(data, content_type)
        name = file_name(attachment.name, mime, keep_extension=True)
        return Download(data=data, name=name, mime_type=mime)

    async def display_name(self, message: InboundMessage) -> str:
        return message.user_name or message.user_id
