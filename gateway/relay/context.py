"""What a question takes along besides its text, and what its answer keeps for the next one.

- The request: the route's Dify `inputs`, rendered for each message (Dify checks them on
  every turn; the user's name is asked of the platform only when a template uses it), and
  the user's files.
- The app's opening statement, shown once per conversation key in a direct chat (a marker
  in the store, so `/reset` does not greet again).
- The conversation id Dify names, kept for the next message.
- The files the app produces, fetched at once: their signed links expire in minutes.

All but the request are best effort: the answer goes on without them. A store that is away
costs a greeting or the conversation (logged), never the answer in progress.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from gateway import dify_files
from gateway.app_params import AppParameters, opening_statement
from gateway.attachments import Prepared, file_input_value
from gateway.config import DifyApp
from gateway.dify import ChatRequest, DifyClient, FileOutput
from gateway.models import ChatType, InboundMessage, Job
from gateway.platform import Adapter, OutputFile
from gateway.router import Router, conversation_key, render_inputs
from gateway.store import keys
from gateway.store.base import Store, StoreUnavailable

log = logging.getLogger(__name__)

CHAT_MODES = ("chat", "agent", "chatflow")  # the modes that keep a conversation
# How long to wait before each new try to store a conversation id (None: give up).
CONVERSATION_RETRY_WAITS_S = (0.1, 0.5, 2.0, None)


class QuestionContext:
    """Request, greeting, conversation id and the app's files, for the relay's answers."""

    def __init__(
        self,
        *,
        adapters: Mapping[str, Adapter],
        router: Router,
        dify: DifyClient,
        store: Store,
        parameters: AppParameters,
    ) -> None:
        self._adapters = adapters
        self._router = router
        self._dify = dify
        self._store = store
        self._parameters = parameters

    async def request(
        self, job: Job, app: DifyApp, prepared: Prepared, conversation_id: str | None
    ) -> ChatRequest:
        """The request for `prepared` (its text and files), with the route's inputs. A
        workflow takes its files in an input variable (`file_input`), not beside it."""
        request = ChatRequest(
            query=prepared.query,
            user=job.dify_user,
            # Route inputs go with every message: Dify checks them on every turn.
            inputs=await self._inputs(job),
            conversation_id=conversation_id,
            files=prepared.files,
            trace_id=job.job_id,
        )
        if prepared.files and app.mode == "workflow" and app.file_input:
            params = await self._parameters.get(job.app)
            request.inputs[app.file_input] = file_input_value(params, app, prepared.files)
            request.files = []
        return request

    async def _inputs(self, job: Job) -> dict[str, object]:
        if not job.input_templates:
            return {}
        uses_name = any("{user_name}" in t for t in job.input_templates.values())
        name = job.message.user_name
        if uses_name and not name:
            name = await self._adapters[job.message.bot].display_name(job.message)
        return dict(render_inputs(job.input_templates, job.message, name))

    async def greeting(self, job: Job, app: DifyApp, conversation_id: str | None) -> str:
        """The app's opening statement, the first time a user talks to the bot in a direct
        chat (remembered per conversation key, so /reset does not greet again)."""
        if (
            conversation_id is not None
            or app.mode not in CHAT_MODES
            or job.message.chat_type is not ChatType.DIRECT
        ):
            return ""
        marker = keys.greeted(job.conversation_key)
        try:
            if await self._store.get(marker) is not None:
                return ""
            statement = opening_statement(await self._parameters.get(job.app))
            await self._store.set(marker, "1")
        except StoreUnavailable as exc:
            log.info("answer %s: greeting skipped: %s", job.job_id, exc)
            return ""
        return statement or ""

    async def welcome(self, message: InboundMessage) -> str | None:
        """The opening statement for an adapter's own welcome (a WeCom AI bot's
        `enter_chat`), marked as shown so the user's first answer does not greet again."""
        adapter = self._adapters[message.bot]
        decision = self._router.decide(
            message, threaded_groups=adapter.capabilities.threaded_groups
        )
        scope_key, _ = conversation_key(message, decision.scope)
        try:
            await self._store.set(keys.greeted(keys.conversation(decision.app, scope_key)), "1")
        except StoreUnavailable as exc:
            log.info("welcome for %s not remembered: %s", message.bot, exc)
        return opening_statement(await self._parameters.get(decision.app))

    async def remember_conversation(self, key: str, conversation_id: str) -> None:
        """Store the conversation id Dify just named. The answer goes on regardless: if the
        store stays away, the next message starts a new conversation (logged)."""
        for wait in CONVERSATION_RETRY_WAITS_S:
            try:
                await self._store.set_conversation(key, conversation_id)
                return
            except StoreUnavailable as exc:
                if wait is None:
                    log.error("conversation %s not remembered: %s", key, exc)
                    return
                await asyncio.sleep(wait)

    @staticmethod
    def file_links(app: DifyApp) -> dify_files.FileLinks:
        """Takes the links to `app`'s files out of the streamed text (the files follow)."""
        return dify_files.FileLinks(
            lambda url: dify_files.is_dify_file(url, app),
            lambda url: dify_files.resolve(url, app),
        )

    async def fetch_file(self, job: Job, app: DifyApp, output: FileOutput) -> OutputFile | None:
        """A file the app produced, fetched at once (its signed link expires in minutes)."""
        if not dify_files.may_fetch(output.url, app):
            log.warning("answer %s: a file of the app is on a host not fetched", job.job_id)
            return None
        try:
            return await dify_files.fetch(
                self._dify.http,
                output.url,
                name=output.name,
                mime_type=output.mime_type,
                link=dify_files.public_link(output.url, app),
            )
        except dify_files.FileFetchFailed as exc:
            log.warning("answer %s: a file of the app could not be fetched: %s", job.job_id, exc)
            return None
