"""Answer one job: conversation -> Dify stream -> reply sink -> remember the conversation.

The relay knows no platform; the adapter knows no Dify.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any, Literal

from gateway.config import DifyApp
from gateway.dify import (
    ChatRequest,
    ConversationGone,
    DeadlineExceeded,
    DifyClient,
    DifyError,
    FileOutput,
    Finished,
    Started,
    TextDelta,
    TextReplace,
)
from gateway.metrics import Metrics
from gateway.models import InboundMessage, Job
from gateway.pacing import BotBudget
from gateway.platform import Adapter, PlatformError
from gateway.router import Router, render_inputs
from gateway.store import keys
from gateway.store.base import Store
from gateway.streaming import AnswerStream
from gateway.words import Words, dify_failure

log = logging.getLogger(__name__)

CHECKPOINT_TTL = 24 * 3600.0
ANSWER_RECORD_TTL = 7 * 24 * 3600.0
_DIFY_FILE_TYPES = {"image": "image", "document": "document", "audio": "audio", "video": "video"}


def _command(text: str) -> str | None:
    word = text.strip().lower()
    return word if word in ("/reset", "/help") else None


class Relay:
    def __init__(
        self,
        *,
        adapters: Mapping[str, Adapter],
        budgets: Mapping[str, BotBudget],
        words: Mapping[str, Words],
        apps: Mapping[str, DifyApp],
        dify: DifyClient,
        store: Store,
        router: Router,
        metrics: Metrics,
    ) -> None:
        self._adapters = adapters
        self._budgets = budgets
        self._words = words
        self._apps = apps
        self._dify = dify
        self._store = store
        self._router = router
        self._metrics = metrics

    async def answer(self, job: Job) -> None:
        bot = job.message.bot
        adapter = self._adapters[bot]
        async with self._store.lock(job.conversation_key):
            if job.message.notice is not None:
                await self._say(job, adapter, job.message.notice)
                self._metrics.answers.labels(bot, "notice").inc()
                return
            command = _command(job.message.text)
            if command is not None and not job.message.attachments:
                await self._run_command(job, adapter, command)
                return
            resume = await self._store.get(keys.reply_checkpoint(job.job_id))
            sink = adapter.open_reply(job.message, json.loads(resume) if resume else None)

            saved = resume is not None

            async def checkpoint(snapshot: dict[str, Any]) -> None:
                nonlocal saved
                saved = True
                await self._store.set(
                    keys.reply_checkpoint(job.job_id), json.dumps(snapshot), CHECKPOINT_TTL
                )

            stream = AnswerStream(
                sink,
                adapter.capabilities,
                self._budgets[bot],
                checkpoint=checkpoint,
                empty_answer=self._words[bot].empty_answer,
            )
            await stream.begin()
            result = await self._produce(job, adapter, stream)
            self._metrics.answers.labels(bot, result).inc()
            self._metrics.updates.labels(bot).inc(stream.updates)
            self._metrics.answer_seconds.labels(bot).observe(time.time() - job.accepted_at)
            if saved:
                await self._store.delete(keys.reply_checkpoint(job.job_id))

    async def _produce(self, job: Job, adapter: Adapter, stream: AnswerStream) -> str:
        """Run Dify into the stream and deliver the end. Returns the result label."""
        app = self._apps[job.app]
        words = self._words[job.message.bot]
        try:
            async with asyncio.timeout(app.timeout_s):
                query, files = await self._attachments(job, adapter, app)
                await self._stream_answer(job, app, stream, query, files)
        except TimeoutError:
            self._metrics.dify_errors.labels(job.app, "deadline").inc()
            late = DeadlineExceeded(f"no answer within {app.timeout_s:.0f}s")
            await stream.fail(dify_failure(words, late))
            return "deadline"
        except DifyError as exc:
            log.warning("answer %s: %s", job.job_id, exc)
            self._metrics.dify_errors.labels(job.app, type(exc).__name__).inc()
            await stream.fail(dify_failure(words, exc))
            return "dify_error"
        except _AttachmentFailed:
            await stream.fail(words.unreadable_file)
            return "attachment_error"
        except Exception:
            log.exception("answer %s failed", job.job_id)
            await stream.fail(words.something_went_wrong)
            return "error"
        await stream.finish()
        return "ok"

    async def _stream_answer(
        self,
        job: Job,
        app: DifyApp,
        stream: AnswerStream,
        query: str,
        files: list[dict[str, Any]],
    ) -> None:
        chat_like = app.mode in ("chat", "agent", "chatflow")
        key = job.conversation_key
        conversation_id = await self._store.get_conversation(key) if chat_like else None
        inputs: dict[str, str] = {}
        if job.input_templates:
            uses_name = any("{user_name}" in t for t in job.input_templates.values())
            name = job.message.user_name
            if uses_name and not name:
                name = await self._adapters[job.message.bot].display_name(job.message)
            inputs = render_inputs(job.input_templates, job.message, name)
        request = ChatRequest(
            query=query,
            user=job.dify_user,
            inputs=inputs,
            conversation_id=conversation_id,
            files=files,
            trace_id=job.job_id,
        )
        finished: Finished | None = None
        outputs: list[FileOutput] = []
        for attempt in (1, 2):
            try:
                async for event in self._dify.stream(app, request):
                    if isinstance(event, TextDelta):
                        stream.append(event.text)
                    elif isinstance(event, TextReplace):
                        stream.replace(event.text)
                    elif isinstance(event, Started):
                        if chat_like and event.conversation_id != conversation_id:
                            conversation_id = event.conversation_id
                            await self._store.set_conversation(key, conversation_id)
                    elif isinstance(event, FileOutput):
                        outputs.append(event)
                    elif isinstance(event, Finished):
                        finished = event
                break
            except ConversationGone:
                if attempt == 2 or stream.text:
                    raise
                log.info("conversation for %s is gone in Dify; starting a new one", key)
                await self._store.delete_conversation(key)
                conversation_id = request.conversation_id = None
        if finished is not None:
            if finished.output_text and not stream.text.strip():
                stream.append(finished.output_text)
            await self._record_answer(job, finished)
        words = self._words[job.message.bot]
        for output in outputs:
            image = output.type == "image"
            label = words.image if image else words.file
            stream.append(f"\n\n{'!' if image else ''}[{label}]({output.url})")
        if finished is not None and finished.citations:
            sources = "\n".join(f"{i}. {name}" for i, name in enumerate(finished.citations, 1))
            stream.append(f"\n\n---\n**{words.sources}**\n{sources}")

    async def _attachments(
        self, job: Job, adapter: Adapter, app: DifyApp
    ) -> tuple[str, list[dict[str, Any]]]:
        """Download the user's files (here, in the worker), hand them to Dify."""
        query = job.message.text.strip()
        files: list[dict[str, Any]] = []
        for attachment in job.message.attachments:
            try:
                download = await adapter.download(attachment)
                if attachment.kind == "audio":
                    heard = await self._dify.audio_to_text(
                        app, job.dify_user, download.name, download.data, download.mime_type
                    )
                    query = f"{query}\n{heard}".strip()
                    continue
                file_id = await self._dify.upload_file(
                    app, job.dify_user, download.name, download.data, download.mime_type
                )
            except (PlatformError, DifyError) as exc:
                log.warning("answer %s: attachment %s failed: %s", job.job_id, attachment.name, exc)
                if not query:
                    raise _AttachmentFailed() from exc
                continue
            files.append(
                {
                    "type": _DIFY_FILE_TYPES[attachment.kind],
                    "transfer_method": "local_file",
                    "upload_file_id": file_id,
                }
            )
        if not query:
            words = self._words[job.message.bot]
            names = ", ".join(a.name for a in job.message.attachments)
            query = words.files_without_text(names) if names else words.empty_message
        return query, files

    async def _record_answer(self, job: Job, finished: Finished) -> None:
        if not finished.message_id:
            return
        record = {"app": job.app, "user": job.dify_user, "message_id": finished.message_id}
        await self._store.set(keys.answer_record(job.job_id), json.dumps(record), ANSWER_RECORD_TTL)

    async def _run_command(self, job: Job, adapter: Adapter, command: str) -> None:
        if command == "/reset":
            await self._store.delete_conversation(job.conversation_key)
            text = self._words[job.message.bot].new_conversation
        else:
            text = self._words[job.message.bot].help
        await self._say(job, adapter, text)
        self._metrics.answers.labels(job.message.bot, command.lstrip("/")).inc()

    async def _say(self, job: Job, adapter: Adapter, text: str) -> None:
        """Reply with a fixed text (a command's answer, a notice), no Dify involved."""
        sink = adapter.open_reply(job.message)
        stream = AnswerStream(sink, adapter.capabilities, self._budgets[job.message.bot])
        stream.append(text)
        await stream.finish()

    # --- hooks adapters may use (AssistantHooks) -----------------------------------------

    async def opening_statement(self, message: InboundMessage) -> str | None:
        adapter = self._adapters[message.bot]
        decision = self._router.decide(
            message, threaded_groups=adapter.capabilities.threaded_groups
        )
        app = self._apps[decision.app]
        try:
            params = await self._dify.parameters(app, f"{message.bot}:{message.user_id}")
        except DifyError as exc:
            log.warning("opening statement for %s: %s", message.bot, exc)
            return None
        statement = params.get("opening_statement")
        return statement if isinstance(statement, str) and statement.strip() else None

    async def feedback(self, job_id: str, rating: Literal["like", "dislike"] | None) -> None:
        raw = await self._store.get(keys.answer_record(job_id))
        if raw is None:
            log.info("feedback for unknown answer %s ignored", job_id)
            return
        record = json.loads(raw)
        app = self._apps.get(record["app"])
        if app is None:
            return
        try:
            await self._dify.feedback(app, record["message_id"], record["user"], rating)
        except DifyError as exc:
            log.warning("feedback for %s failed: %s", job_id, exc)


class _AttachmentFailed(Exception):
    """The only content of the message was a file we could not read."""
