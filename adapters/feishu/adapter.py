"""The Feishu / Lark adapter: encrypted event webhooks or the long connection in, CardKit
streaming cards out. `platform: lark` is the same protocol on open.larksuite.com.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from adapters.feishu import buttons
from adapters.feishu.api import PLATFORM, FeishuAPI
from adapters.feishu.connection import FeishuSocket
from adapters.feishu.convert import ACK, Context, to_message
from adapters.feishu.sink import CARDKIT_PACING, CardKitSupport, FeishuReplySink
from adapters.feishu.verify import event_type, open_body, verify_webhook
from adapters.names import DisplayNames
from gateway import audio
from gateway.config import FeishuBot
from gateway.files import file_name, image_type
from gateway.longconn import LongConnection
from gateway.models import (
    Answered,
    Attachment,
    ChatType,
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

# Card requests must stay under 30 KB. The fallback PATCH carries the card JSON as a string
# inside JSON, so the text is escaped twice: a `"` or `\` costs 4 bytes, a newline 3, and a
# Chinese character its 3 UTF-8 bytes. 7,000 bytes of text is at most 28,000 bytes of
# request in the very worst case, plus under 1 KB of card around it; the CardKit element
# PUT (escaped once) stays under 15 KB.
MAX_MESSAGE_BYTES = 7_000
# A card callback's answer: `{}` leaves the card as it is (a toast or a card may go here).
CLICK_ACK = HttpResponse.json({})


class FeishuAdapter:
    def __init__(self, bot: str, config: FeishuBot, context: AdapterContext) -> None:
        self.bot = bot
        self.platform = config.platform
        self._config = config
        self._context = context
        self._api = FeishuAPI(context.http, context.store, config)
        self.capabilities = Capabilities(
            can_edit=True,
            max_message=MAX_MESSAGE_BYTES,
            unit="bytes",
            pacing=CARDKIT_PACING,
            buttons=True,
        )
        self._cardkit = CardKitSupport()
        self._bot_open_id: str | None = None
        self._voice = False
        self._connection = LongConnection(f"{self.platform} long connection {bot}")
        self._names = DisplayNames(self.platform, bot, self._api.user_name)

    @property
    def serves_webhook(self) -> bool:
        return self._config.serves_webhook

    @property
    def ready(self) -> bool:
        return self._bot_open_id is not None and (self.serves_webhook or self._connection.up)

    async def start(self) -> None:
        # Importing PyAV loads FFmpeg: do it once, here, in a thread, never on the ack path.
        self._voice = await asyncio.to_thread(audio.available)
        self._bot_open_id = await self._api.bot_open_id()
        if self._config.mode == "websocket":
            socket = FeishuSocket(
                f"{self.platform} {self.bot}", self._api, self._on_event, self._connection.set_up
            )
            # The server paces reconnects (ClientConfig), so its `pause` replaces our sleep.
            self._connection.start(socket.run, sleep=socket.pause)

    async def aclose(self) -> None:
        await self._connection.stop()

    async def probe(self) -> list[ProbeStep]:
        """A tenant access token, then the bot's own info (the app has the bot ability)."""

        async def token() -> str:
            await self._api.check_token()
            return "app_id and app_secret accepted"

        async def info() -> str:
            bot = await self._api.bot_info()
            if not bot.get("open_id"):
                raise PlatformError(self.platform, "no_open_id", "bot/v3/info: no bot")
            return f"bot {bot.get('app_name') or bot['open_id']}"

        steps = [await attempt("tenant_access_token", token)]
        if steps[0].error is None:
            steps.append(await attempt("bot/v3/info", info))
        return steps

    # --- inbound -------------------------------------------------------------------------

    async def handle(self, request: WebhookRequest) -> Outcome:
        if request.method != "POST":
            raise MalformedRequest("Feishu sends events with POST")
        token, key = self._config.verification_token, self._config.encrypt_key
        verified = verify_webhook(
            request.body,
            request.headers,
            verification_token=token.get_secret_value() if token else None,
            encrypt_key=key.get_secret_value() if key else None,
            now=time.time(),
        )
        if verified.challenge is not None:
            # Plain JSON even when the request was encrypted, as the SDK answers.
            return Answered(HttpResponse.json({"challenge": verified.challenge}), "challenge")
        return self.parse(verified.payload, request.received_at)

    def parse(self, payload: dict[str, Any], received_at: float) -> Outcome:
        if event_type(payload) == buttons.CLICK_EVENT:
            click = buttons.to_click(
                payload, bot=self.bot, platform=self.platform, received_at=received_at
            )
            if isinstance(click, str):
                return Ignored(click, ack=CLICK_ACK)
            return Messages((click,), ack=CLICK_ACK)
        context = Context(
            self.bot,
            self.platform,
            self._bot_open_id,
            self._voice,
            received_at,
            self._context.words,
        )
        result = to_message(payload, context)
        if isinstance(result, str):
            return Ignored(result, ack=ACK)
        return Messages((result,), ack=ACK)

    async def _on_event(self, data: bytes) -> Delivery:
        """One long-connection event, read and handed to the core (which says 200 or 500).

        Events come in plaintext on the long connection; one that is encrypted anyway is
        decrypted with the configured Encrypt Key."""
        return await self._context.deliver(lambda: self._read_event(data))

    def _read_event(self, data: bytes) -> Outcome:
        key = self._config.encrypt_key
        payload = open_body(data, key.get_secret_value() if key else None)
        return self.parse(payload, time.time())

    # --- outbound ------------------------------------------------------------------------

    def open_reply(
        self, message: InboundMessage, resume: Mapping[str, Any] | None = None
    ) -> ReplySink:
        where = buttons.Where(
            chat_type="p2p" if message.chat_type is ChatType.DIRECT else "group",
            thread=message.thread_id or "",
            in_thread=bool(message.reply_to.get("in_thread")),
        )
        return FeishuReplySink(
            self._api,
            self._cardkit,
            message.reply_to,
            f"{message.bot}:{message.message_id}",
            resume,
            words=self._context.words,
            where=where,
        )

    async def download(self, attachment: Attachment) -> Download:
        source = attachment.source
        data, content_type = await self._api.download(
            str(source["message_id"]), str(source["key"]), str(source["type"])
        )
        if source.get("voice"):
            try:
                data, name, mime = await asyncio.to_thread(audio.convert, data)
            except audio.ConversionError as exc:
                raise PlatformError(PLATFORM, "voice_conversion", str(exc)) from exc
            return Download(data, name, mime)
        if attachment.kind == "image" and source["type"] == "image":
            # Dify checks the extension, and the bytes say best what it should be.
            mime = image_type(data, content_type, default="image/png")
            return Download(data, file_name("image", mime), mime)
        return Download(data, attachment.name, attachment.mime_type or content_type)

    async def display_name(self, message: InboundMessage) -> str:
        return await self._names.of(message)
