"""The WeCom self-built app adapter (`platform: wecom`): encrypted XML callbacks in,
`message/send` out, one member at a time.

Inbound (doc "接收消息与事件"; crypto doc path/91144):
- `GET ?msg_signature&timestamp&nonce&echostr`: URL verification. Verify, decrypt echostr
  and answer its plaintext, bare, within 1 s.
- `POST` with the same query and an XML envelope: parse (DTDs refused: 400), verify the
  signature over `Encrypt` and decrypt with our corp id as receiveid (401), then ack with
  an empty 200 at once; the answer goes out later through `message/send`.

`msg_signature` covers the timestamp, so both are refused (401) when the timestamp is
further than `max_timestamp_age_s` (default 1 h) from now, either way; inside that window a
replay is caught by the dedupe on MsgId (kept 8 h).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from adapters.names import DisplayNames
from adapters.wecom.api import WecomAPI
from adapters.wecom.convert import parse_envelope, parse_xml, to_message
from adapters.wecom.crypto import WecomCrypto, check_timestamp
from adapters.wecom.quota import MemberQuota
from adapters.wecom.sink import MAX_MESSAGE_BYTES, PACING, WecomAppSink
from gateway.config import WecomBot
from gateway.files import file_name, image_type
from gateway.models import (
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
    Download,
    MalformedRequest,
    ProbeStep,
    ReplySink,
    VerificationFailed,
    attempt,
)
from gateway.store import keys

log = logging.getLogger(__name__)

_MAX_PARAM = 1024  # an echostr of a 19-digit number is 88 characters


def _param(query: Mapping[str, str], name: str) -> str:
    value = query.get(name, "")
    if not value or len(value) > _MAX_PARAM:
        raise VerificationFailed(f"wecom: missing or oversized {name}")
    # The edge decodes the query as a form, where a raw `+` means a space; base64 has no
    # spaces, so any space was a `+` that WeCom did not percent-encode.
    return value.replace(" ", "+")


class WecomAppAdapter:
    platform = "wecom"

    def __init__(self, bot: str, config: WecomBot, context: AdapterContext) -> None:
        self.bot = bot
        self._config = config
        self._context = context
        self._crypto = WecomCrypto(
            config.token.get_secret_value(),
            config.encoding_aes_key.get_secret_value(),
            config.corp_id,
        )
        self._api = WecomAPI(
            context.http,
            context.store,
            api_base=config.resolved_api_base,
            corp_id=config.corp_id,
            secret=config.secret.get_secret_value(),
            agent_id=config.agent_id,
        )
        self._quota = MemberQuota(
            context.store, keys.wecom_quota_scope(config.corp_id, config.agent_id)
        )
        self.capabilities = Capabilities(
            can_edit=False,
            max_message=MAX_MESSAGE_BYTES,
            unit="bytes",
            pacing=PACING,
        )
        self._token_ok = False
        self._names = DisplayNames(self.platform, bot, self._api.user_name)

    @property
    def serves_webhook(self) -> bool:
        return True

    @property
    def ready(self) -> bool:
        return self._token_ok

    async def start(self) -> None:
        """Fetch the access token once: it proves corp_id and secret are right."""
        await self._api.token.get()
        self._token_ok = True

    async def aclose(self) -> None:
        """Nothing to close: the HTTP client belongs to the core."""

    async def probe(self) -> list[ProbeStep]:
        """`gettoken` (corp_id and secret), then `agent/get` (agent_id is this app's)."""

        async def token() -> str:
            await self._api.token.get()
            return "corp_id and secret accepted"

        async def agent() -> str:
            body = await self._api.call("agent/get", agentid=str(self._config.agent_id))
            return f"app {body.get('name') or self._config.agent_id}"

        steps = [await attempt("gettoken", token)]
        if steps[0].error is None:
            steps.append(await attempt("agent/get", agent))
        return steps

    # --- inbound -------------------------------------------------------------------------

    async def handle(self, request: WebhookRequest) -> Outcome:
        if request.method == "GET":
            return self._verify_url(request.query, request.received_at)
        if request.method != "POST":
            raise MalformedRequest("WeCom calls with GET (URL check) or POST (callbacks)")
        # Parse first, so a hostile body is a fast 400 whatever its query says.
        envelope = parse_envelope(request.body)
        timestamp = _param(request.query, "timestamp")
        check_timestamp(timestamp, request.received_at, self._config.max_timestamp_age_s)
        plaintext = self._crypto.verify_and_decrypt(
            _param(request.query, "msg_signature"),
            timestamp,
            _param(request.query, "nonce"),
            envelope.encrypt,
        )
        fields = parse_xml(plaintext)
        result = to_message(
            fields,
            bot=self.bot,
            agent_id=self._config.agent_id,
            received_at=request.received_at,
            words=self._context.words,
        )
        if isinstance(result, str):
            return Ignored(result)
        return Messages((result,))

    def _verify_url(self, query: Mapping[str, str], received_at: float) -> Answered:
        echostr = _param(query, "echostr")
        timestamp = _param(query, "timestamp")
        check_timestamp(timestamp, received_at, self._config.max_timestamp_age_s)
        plaintext = self._crypto.verify_and_decrypt(
            _param(query, "msg_signature"),
            timestamp,
            _param(query, "nonce"),
            echostr,
        )
        # The exact bytes WeCom encrypted: no quotes, BOM or newline may be added.
        return Answered(HttpResponse(body=plaintext, content_type="text/plain"), "url check")

    # --- outbound ------------------------------------------------------------------------

    def open_reply(
        self, message: InboundMessage, resume: Mapping[str, Any] | None = None
    ) -> ReplySink:
        return WecomAppSink(self._api, self._quota, message.reply_to, resume)

    async def download(self, attachment: Attachment) -> Download:
        data, content_type, _ = await self._api.download_media(str(attachment.source["media_id"]))
        if attachment.kind == "audio":
            # media/get may label AMR as octet-stream; Dify needs `audio/amr` to accept it.
            return Download(data, attachment.name, attachment.mime_type or content_type)
        mime = image_type(data, content_type, default="image/jpeg")
        return Download(data, file_name(attachment.name, mime), mime)

    async def display_name(self, message: InboundMessage) -> str:
        return await self._names.of(message)
