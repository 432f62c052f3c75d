"""The Slack adapter: Events API over HTTP, or Socket Mode; streaming replies in threads."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from adapters.names import DisplayNames
from adapters.slack.api import SlackAPI
from adapters.slack.connection import SocketModeSession
from adapters.slack.convert import parse_body, to_outcome
from adapters.slack.sink import UPDATE_PACING, SlackReplySink, StreamingSupport
from adapters.slack.verify import SigningKey, verify_signature
from gateway.config import SlackBot
from gateway.longconn import LongConnection
from gateway.models import Attachment, InboundMessage, Outcome, WebhookRequest
from gateway.platform import (
    AdapterContext,
    Capabilities,
    Delivery,
    Download,
    MalformedRequest,
    NotReady,
    ProbeStep,
    ReplySink,
    attempt,
)

# markdown_text takes 12,000 chars per call and Slack rejects markdown blocks past ~13k
# (bolt-js#2509); the chat.update path has 40,000 for `text`. One limit for both modes.
MAX_MESSAGE_CHARS = 12_000


class SlackAdapter:
    platform = "slack"

    def __init__(self, bot: str, config: SlackBot, context: AdapterContext) -> None:
        self.bot = bot
        self._config = config
        self._context = context
        self._api = SlackAPI(
            context.http, config.resolved_api_base, config.bot_token.get_secret_value()
        )
        self.capabilities = Capabilities(
            can_edit=True,
            max_message=MAX_MESSAGE_CHARS,
            unit="chars",
            pacing=UPDATE_PACING,
            threaded_groups=True,
            buttons=True,
        )
        self._streaming = StreamingSupport()
        self._bot_user_id: str | None = None
        self._socket = LongConnection(f"slack socket {bot}")
        self._names = DisplayNames(self.platform, bot, self._user_name)
        secret = config.signing_secret
        self._signing_key = None if secret is None else SigningKey(secret.get_secret_value())

    @property
    def serves_webhook(self) -> bool:
        return self._config.mode == "events"

    @property
    def ready(self) -> bool:
        return self._bot_user_id is not None and (self.serves_webhook or self._socket.up)

    async def start(self) -> None:
        identity = await self._api.call("auth.test", form=True)
        self._bot_user_id = str(identity["user_id"])
        if self._config.mode == "socket":
            assert self._config.app_token is not None  # the config check requires it
            app_api = SlackAPI(
                self._context.http,
                self._config.resolved_api_base,
                self._config.app_token.get_secret_value(),
            )
            session = SocketModeSession(
                self.bot, app_api, self._on_socket_payload, self._socket.set_up
            )
            self._socket.start(session.run)

    async def aclose(self) -> None:
        await self._socket.stop()

    async def probe(self) -> list[ProbeStep]:
        """`auth.test` with the bot token; in Socket Mode also `apps.connections.open` with
        the app token (it hands out a socket URL; nothing connects to it)."""

        async def identity() -> str:
            body = await self._api.call("auth.test", form=True)
            team = body.get("team") or body.get("team_id") or "?"
            return f"team {team}, bot user {body.get('user') or body.get('user_id') or '?'}"

        steps = [await attempt("auth.test (bot_token)", identity)]
        if self._config.mode == "socket":
            assert self._config.app_token is not None  # the config check requires it
            app_api = SlackAPI(
                self._context.http,
                self._config.resolved_api_base,
                self._config.app_token.get_secret_value(),
            )

            async def socket_url() -> str:
                await app_api.call("apps.connections.open", form=True)
                return "Socket Mode allowed"

            steps.append(await attempt("apps.connections.open (app_token)", socket_url))
        return steps

    # --- inbound -------------------------------------------------------------------------

    async def handle(self, request: WebhookRequest) -> Outcome:
        if request.method != "POST":
            raise MalformedRequest("Slack sends events with POST")
        assert self._signing_key is not None  # required in events mode
        verify_signature(self._signing_key, request.headers, request.body, request.received_at)
        return self._parse(parse_body(request.body), request.received_at)

    def _parse(self, payload: dict[str, Any], received_at: float) -> Outcome:
        if payload.get("type") == "event_callback" and self._bot_user_id is None:
            # Without our own user id we cannot tell our echoes or mentions apart.
            raise NotReady("bot identity (auth.test) not known yet")
        return to_outcome(
            payload, bot=self.bot, bot_user_id=self._bot_user_id, received_at=received_at
        )

    async def _on_socket_payload(self, payload: dict[str, Any]) -> Delivery:
        return await self._context.deliver(lambda: self._parse(payload, time.time()))

    # --- outbound ------------------------------------------------------------------------

    def open_reply(
        self, message: InboundMessage, resume: Mapping[str, Any] | None = None
    ) -> ReplySink:
        return SlackReplySink(
            self._api,
            self._context.budget,
            self._streaming,
            message,
            resume,
            words=self._context.words,
        )

    async def download(self, attachment: Attachment) -> Download:
        data, content_type = await self._api.download(str(attachment.source["url"]))
        return Download(data, attachment.name, attachment.mime_type or content_type)

    async def display_name(self, message: InboundMessage) -> str:
        return await self._names.of(message)

    async def _user_name(self, user_id: str) -> str | None:
        body = await self._api.call("users.info", {"user": user_id}, form=True)
        user = body.get("user") or {}
        profile = user.get("profile") or {}
        name = profile.get("display_name") or profile.get("real_name") or user.get("name")
        return str(name) if name else None
