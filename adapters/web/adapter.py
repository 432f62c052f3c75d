"""The web chat (`platform: web`): the gateway serves a chat page and a WebSocket itself.

- `GET /chat/<bot>`: the page (page.py), for a site to link to or embed in an iframe.
- `GET /chat/<bot>/ws?token=<jwt>` (`auth: token`) or `?user=<id>` (`auth: none`): the
  socket. The token is checked here, before the edge upgrades anything, so a missing, forged
  or expired token gets a plain 401.

Messages go the way every platform's go (intake, dedupe, inbox, relay, streaming engine);
answers come back through `WebReplySink` and the user's mailbox in the store, so they reach
the socket whichever instance runs the job (mailbox.py).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Mapping
from typing import Any

from adapters.web.convert import uploaded
from adapters.web.mailbox import Mailbox
from adapters.web.page import ChatPage
from adapters.web.session import ChatSession, Limits
from adapters.web.sink import MAX_ANSWER_CHARS, PACING, WebReplySink
from adapters.web.verify import WebUser, anonymous_user, verify_token
from gateway.config import WebBot
from gateway.models import Attachment, HttpResponse, InboundMessage, Outcome, WebhookRequest
from gateway.platform import (
    AdapterContext,
    Capabilities,
    Download,
    MalformedRequest,
    ProbeStep,
    ReplySink,
    RouteHandler,
    ServedSocket,
    Upgrade,
)

SERVICE_RESTART = 1012  # RFC 6455 close code: reconnect, the service is restarting


class WebAdapter:
    platform = "web"

    def __init__(self, bot: str, config: WebBot, context: AdapterContext) -> None:
        self.bot = bot
        self._config = config
        self._context = context
        self.capabilities = Capabilities(
            can_edit=True,
            max_message=MAX_ANSWER_CHARS,
            unit="chars",
            pacing=PACING,
            awaits_every_reply=True,  # the page shows a thinking bubble until the answer
            buttons=True,
        )
        self._mailbox = Mailbox(context.store, bot)
        secret = config.signing_secret
        self._secret = None if secret is None else secret.get_secret_value().encode()
        self.page_path, self.socket_path = WebBot.paths(bot)
        self._page = ChatPage(
            bot=bot,
            socket_path=self.socket_path,
            auth=config.auth,
            words=context.words,
            max_frame_bytes=context.max_body_bytes,
        )
        # Tunables that tests shorten.
        self.limits = Limits(messages_per_minute=config.messages_per_minute)
        self.sessions: set[ChatSession] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._draining = False

    # --- lifetime ------------------------------------------------------------------------

    @property
    def serves_webhook(self) -> bool:
        return False

    @property
    def ready(self) -> bool:
        return True  # nothing to connect to: the store is checked by /readyz itself

    async def start(self) -> None:
        return None

    def begin_shutdown(self) -> None:
        """Close every socket with 1012 (service restart): the pages reconnect, to another
        instance or to this one restarted, and are replayed what they missed."""
        self._draining = True
        for session in list(self.sessions):
            task = asyncio.create_task(session.close(SERVICE_RESTART))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        self.begin_shutdown()
        await asyncio.gather(*self._closing, return_exceptions=True)

    async def probe(self) -> list[ProbeStep]:
        """The web chat has no platform to try: the gateway serves it itself."""
        return [ProbeStep("-", detail="no platform: the gateway serves the chat", skipped=True)]

    # --- the page and the socket ---------------------------------------------------------

    def routes(self) -> Mapping[str, RouteHandler]:
        return {self.page_path: self._serve_page, self.socket_path: self._serve_socket}

    async def _serve_page(self, request: WebhookRequest) -> HttpResponse:
        return self._page.response

    async def _serve_socket(self, request: WebhookRequest) -> Upgrade:
        user = self._identify(request)
        return Upgrade(functools.partial(self._run_session, user))

    def _identify(self, request: WebhookRequest) -> WebUser:
        """The user the request speaks for; raises `VerificationFailed` (401)."""
        if self._config.auth == "none":
            return anonymous_user(request.query.get("user"))
        assert self._secret is not None  # the config requires it with auth: token
        return verify_token(self._secret, request.query.get("token"), time.time())

    async def _run_session(self, user: WebUser, socket: ServedSocket) -> None:
        if self._draining:  # upgraded just as the shutdown began
            await socket.close(SERVICE_RESTART)
            return
        session = ChatSession(
            bot=self.bot,
            user=user,
            socket=socket,
            mailbox=self._mailbox,
            store=self._context.store,
            deliver=self._context.deliver,
            words=self._context.words,
            limits=self.limits,
        )
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)

    async def handle(self, request: WebhookRequest) -> Outcome:
        raise MalformedRequest("a web bot takes no webhooks")  # never routed: serves_webhook

    # --- outbound ------------------------------------------------------------------------

    def open_reply(
        self, message: InboundMessage, resume: Mapping[str, Any] | None = None
    ) -> ReplySink:
        reply_to = str(message.reply_to.get("id") or message.event_id)
        return WebReplySink(self._mailbox, message.user_id, reply_to, resume)

    async def download(self, attachment: Attachment) -> Download:
        data = await uploaded(self._context.store, attachment)
        return Download(data, attachment.name, attachment.mime_type or "application/octet-stream")

    async def display_name(self, message: InboundMessage) -> str:
        return message.user_name or message.user_id
