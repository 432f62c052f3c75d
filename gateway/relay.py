"""Answer one job: conversation -> Dify stream -> reply sink -> remember the conversation.

The relay knows no platform; the adapter knows no Dify.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from gateway import commands, dify_files, lifelog
from gateway.activity import Activity
from gateway.answer import AnswerBuilder
from gateway.answers import AnswerRecord, Answers
from gateway.app_params import AppParameters, opening_statement
from gateway.attachments import AttachmentFailed, Attachments, Prepared, file_input_value
from gateway.clicks import Clicks
from gateway.config import DifyApp
from gateway.controls import Controls, FormChoice
from gateway.dify import (
    ChatRequest,
    ConversationGone,
    DeadlineExceeded,
    DifyClient,
    DifyError,
    DifyHTTPError,
    FileOutput,
    Finished,
    Paused,
    Started,
    TextDelta,
    TextReplace,
)
from gateway.form_answers import FormAnswers, Resume
from gateway.forms import Forms
from gateway.inbox import Progress
from gateway.limits import Limits
from gateway.metrics import Metrics
from gateway.models import Action, ChatType, InboundMessage, Job
from gateway.pacing import BotBudget
from gateway.platform import Adapter, AsksForm, OutputFile
from gateway.router import Router, conversation_key, render_inputs
from gateway.store import keys
from gateway.store.base import Store, StoreUnavailable
from gateway.streaming import AnswerStream
from gateway.words import Words, dify_failure

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0
ANSWERED = "answered"  # checkpoint field: the final text is delivered
CHAT_MODES = ("chat", "agent", "chatflow")
# The name `_produce` catches it by: the only content was a file that could not be read.
_AttachmentFailed = AttachmentFailed


def _asks_dify(message: InboundMessage) -> bool:
    """Whether the message is a question for the app (what rate limits count): not a
    command, a click or a notice of the gateway's own. A suggested question clicked is
    one: it asks the app like a typed one."""
    if message.notice is not None:
        return False
    if message.action is not None:
        return message.action.kind == "suggestion"
    return commands.command(message.text) is None or bool(message.attachments)


def _quiet_stop(message: InboundMessage) -> bool:
    """The stop that goes ahead of a `/reset` (commands.stop_before_reset): the `/reset`
    itself is admitted or refused, and says so once."""
    action = message.action
    return action is not None and action.kind == "stop" and action.value == "reset"


class Relay:
    def __init__(
        self,
        *,
        adapters: Mapping[str, Adapter],
        budgets: Mapping[str, BotBudget],
        apps: Mapping[str, DifyApp],
        dify: DifyClient,
        store: Store,
        router: Router,
        metrics: Metrics,
        words: Mapping[str, Words],
        limits: Limits,
        activity: Activity,
    ) -> None:
        self._adapters = adapters
        self._budgets = budgets
        self._apps = apps
        self._dify = dify
        self._store = store
        self._router = router
        self._metrics = metrics
        self._words = words
        self._limits = limits
        self._activity = activity
        # When the user first saw each answer in flight (job id -> epoch seconds).
        self._first_seen: dict[str, float] = {}
        self._parameters = AppParameters(dify, apps)
        self._attachments_of = Attachments(dify, self._parameters)
        self._answers = Answers(store, {name: app.timeout_s for name, app in apps.items()})
        self._clicks = Clicks(
            adapters=adapters,
            apps=apps,
            dify=dify,
            answers=self._answers,
            parameters=self._parameters,
            words=words,
        )
        self._form_answers = FormAnswers(apps=apps, dify=dify, forms=Forms(store))

    def adapter(self, bot: str) -> Adapter | None:
        """The adapter this relay answers `bot` with (None: not a bot of its config)."""
        return self._adapters.get(bot)

    def has_app(self, app: str) -> bool:
        return app in self._apps

    async def answer(self, job: Job, progress: Progress) -> None:
        """Answer `job`. A resumed job (another attempt, maybe on another instance, worked
        on it before) stops the run it replaces and finishes in the same platform message
        or card, from the checkpoint.

        Raises only for what a later attempt may fix (the store away before anything was
        shown, a platform that kept refusing the final text): the inbox retries then.

        Once the final text is delivered, the checkpoint says so (`answered`): an attempt
        after that one (the store failed while the job was being taken out of the inbox,
        long enough for its lease to lapse) has nothing left to show or to ask Dify."""
        try:
            await self._answer(job, progress)
        finally:
            self._first_seen.pop(job.job_id, None)  # kept only while the answer runs

    async def _answer(self, job: Job, progress: Progress) -> None:
        bot = job.message.bot
        adapter = self._adapters[bot]
        if progress.checkpoint.get(ANSWERED):
            log.info("answer %s: delivered by an earlier attempt", job.job_id)
            return
        if not _quiet_stop(job.message):
            must_reply = adapter.capabilities.awaits_every_reply
            refusal = await self._limits.admit(
                job, progress, question=_asks_dify(job.message), must_reply=must_reply
            )
            if refusal is not None:
                if refusal.notice is not None:
                    await self._say(job, adapter, refusal.notice, progress)
                self._finished(job, refusal.reason)
                return
        if job.message.notice is not None:
            await self._say(job, adapter, job.message.notice, progress)
            self._finished(job, "notice")
            return
        action = job.message.action
        command = None if job.message.attachments else commands.command(job.message.text)
        if command == "/stop" and action is None:
            action = Action(kind="stop", answer_id="")
        if action is None and command is None and not job.message.attachments:
            action = await self._form_answers.reply_to_form(job)
        resume_run = ""
        if action is not None and action.kind == "form":
            resume = await self._answer_form(job, adapter, action, progress)
            if resume is None:
                return
            job, resume_run = resume.job, resume.run_id
        elif action is not None:
            question = await self._click(job, adapter, action, progress)
            if question is None:
                return
            job = question
        elif command is not None:
            await self._run_command(job, adapter, command, progress)
            return
        if progress.resumed:
            await self._stop_replaced_run(job, progress)
        stream = self._open_stream(job, adapter, progress)
        if adapter.capabilities.buttons:
            stream.offer(Controls(job.job_id, stop=True))
        await stream.begin()
        result, follow_up = await self._produce(job, adapter, stream, progress, resume_run)
        self._metrics.updates.labels(bot).inc(stream.updates)
        self._metrics.answer_seconds.labels(bot).observe(time.time() - job.accepted_at)
        self._finished(job, result)
        await progress.save(**{ANSWERED: True})
        if follow_up is not None:
            await self._clicks.suggest(job, follow_up, stream)

    async def _click(
        self, job: Job, adapter: Adapter, action: Action, progress: Progress
    ) -> Job | None:
        """Handle a click (or `/stop`): the question to answer (a suggestion), or None."""
        question, reply = await self._clicks.handle(job, action)
        if reply is not None:
            await self._say(job, adapter, reply, progress)
        if question is None:
            self._finished(job, action.kind)
        return question

    async def _answer_form(
        self, job: Job, adapter: Adapter, action: Action, progress: Progress
    ) -> Resume | None:
        """Answer a form (a reply in words, a click): the run to follow, or None."""
        words = self._words[job.message.bot]
        sink = adapter.open_reply(job.message) if action.value else None
        asker = sink if isinstance(sink, AsksForm) else None
        resume, reply = await self._form_answers.submit(job, action, words, progress, asker)
        if reply is not None:
            await self._say(job, adapter, reply, progress)
        if resume is None:
            self._finished(job, "form")
        return resume

    def _finished(self, job: Job, result: str) -> None:
        """Count a finished message, log its end, and keep it for the status page."""
        self._metrics.answers.labels(job.message.bot, result).inc()
        lifelog.finished(job, result, time.time() - job.accepted_at)
        self._remember(job, result)

    def _remember(self, job: Job, result: str) -> None:
        """Keep a finished message for the status page (gateway/activity.py)."""
        message = job.message
        self._activity.record(
            bot=message.bot,
            chat_type=message.chat_type.value,
            outcome=result,
            accepted_at=job.accepted_at,
            first_update_at=self._first_seen.get(job.job_id),
            text=message.text,
        )

    def _open_stream(self, job: Job, adapter: Adapter, progress: Progress) -> AnswerStream:
        """The answer's stream, resuming the platform message a checkpoint names, and
        checkpointing each platform message it creates (the window in which a crash can
        leave a message nobody finishes is the one store write after each post)."""
        snapshot = progress.checkpoint.get("sink")
        sink = adapter.open_reply(job.message, snapshot if isinstance(snapshot, dict) else None)

        async def checkpoint(snapshot: dict[str, Any]) -> None:
            await progress.save(sink=snapshot)

        def seen() -> None:
            self._first_seen.setdefault(job.job_id, time.time())
            since_ack = time.time() - job.accepted_at
            self._metrics.first_update.labels(bot).observe(since_ack)
            lifelog.first_update(job, since_ack)

        bot = job.message.bot
        return AnswerStream(
            sink,
            adapter.capabilities,
            self._budgets[bot],
            checkpoint=checkpoint,
            empty_answer=self._words[bot].empty_answer,
            on_visible=seen,
        )

    async def _stop_replaced_run(self, job: Job, progress: Progress) -> None:
        """The attempt before this one may still be running in Dify (its instance died,
        not Dify): stop it, so it does not keep spending tokens. Best effort."""
        task_id = progress.checkpoint.get("task_id")
        app = self._apps.get(job.app)
        if not isinstance(task_id, str) or not task_id or app is None:
            return
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await self._dify.stop(app, task_id, job.dify_user)
            log.info("answer %s: stopped the run of the previous attempt", job.job_id)
        except (DifyError, TimeoutError) as exc:
            log.info("answer %s: could not stop the previous run: %s", job.job_id, exc)

    async def give_up(self, job: Job, progress: Progress) -> None:
        """The job failed too often: end its answer with a short notice (unless an
        attempt delivered the answer and only failed to record that: never a notice under
        a complete answer)."""
        if progress.checkpoint.get(ANSWERED):
            return
        stream = self._open_stream(job, self._adapters[job.message.bot], progress)
        try:
            await stream.fail(self._words[job.message.bot].gave_up)
        finally:
            self._remember(job, "gave_up")
            self._first_seen.pop(job.job_id, None)

    async def _produce(
        self,
        job: Job,
        adapter: Adapter,
        stream: AnswerStream,
        progress: Progress,
        resume_run: str = "",
    ) -> tuple[str, AnswerRecord | None]:
        """Run Dify into the stream and deliver the end: the result label, and the answer's
        record when suggested questions are to follow. `resume_run`: follow that paused
        run, whose form was just answered, instead of asking."""
        app = self._apps[job.app]
        words = self._words[job.message.bot]
        try:
            async with asyncio.timeout(app.timeout_s):
                if resume_run:
                    prepared = Prepared(query="")
                else:
                    prepared = await self._attachments(job, adapter, app)
                follow_up = await self._stream_answer(
                    job, app, stream, prepared, progress, resume_run
                )
        except TimeoutError:
            self._metrics.dify_errors.labels(job.app, "deadline").inc()
            late = DeadlineExceeded(f"no answer within {app.timeout_s:.0f}s")
            await stream.fail(dify_failure(words, late))
            return "deadline", None
        except DifyError as exc:
            log.warning("answer %s: %s", job.job_id, exc)
            self._metrics.dify_errors.labels(job.app, type(exc).__name__).inc()
            await stream.fail(dify_failure(words, exc))
            return "dify_error", None
        except _AttachmentFailed:
            await stream.fail(words.unreadable_file)
            return "attachment_error", None
        except StoreUnavailable:
            # Only reads before the first word reach here (conversation, token): the store
            # is away, not the answer broken. The inbox tries again, in the same message.
            stream.abandon()
            raise
        except Exception:
            log.exception("answer %s failed", job.job_id)
            await stream.fail(words.something_went_wrong)
            return "error", None
        await stream.finish()
        return "ok", follow_up

    async def _stream_answer(
        self,
        job: Job,
        app: DifyApp,
        stream: AnswerStream,
        prepared: Prepared,
        progress: Progress,
        resume_run: str = "",
    ) -> AnswerRecord | None:
        chat_like = app.mode in CHAT_MODES
        key = job.conversation_key
        conversation_id = await self._store.get_conversation(key) if chat_like else None
        words = self._words[job.message.bot]
        greeting = "" if resume_run else await self._greeting(job, app, conversation_id)
        builder = AnswerBuilder(
            stream,
            options=job.options,
            words=words,
            links=dify_files.FileLinks(
                lambda url: dify_files.is_dify_file(url, app),
                lambda url: dify_files.resolve(url, app),
            ),
            fetch=lambda output: self._fetch_file(job, app, output),
            greeting="\n\n".join(filter(None, [greeting, *prepared.notes])),
        )
        if prepared.nothing_to_ask:
            await builder.complete(None)
            return None
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
        finished: Finished | None = None
        paused: Paused | None = None
        choice: FormChoice | None = None
        sent, first_text = time.monotonic(), True
        record: AnswerRecord | None = None
        for attempt in (1, 2):
            try:
                if resume_run:
                    events = self._dify.resume(app, resume_run, job.dify_user)
                else:
                    events = self._dify.stream(app, request)
                async for event in events:
                    if first_text and isinstance(event, TextDelta | TextReplace):
                        first_text = False
                        self._first_token(job, time.monotonic() - sent)
                    if isinstance(event, Started):
                        if event.task_id:
                            await progress.save(task_id=event.task_id)
                            record = AnswerRecord.of(job, event.task_id, event.message_id)
                            await self._keep(self._answers.started, record)
                        if (
                            chat_like
                            and event.conversation_id
                            and event.conversation_id != conversation_id
                        ):
                            conversation_id = event.conversation_id
                            await self._remember_conversation(key, conversation_id)
                        continue
                    if isinstance(event, Paused):
                        paused = event
                        continue
                    if isinstance(event, Finished):
                        finished = event
                    await builder.handle(event)
                break
            except ConversationGone:
                if attempt == 2 or builder.text_started:
                    raise
                log.info("conversation for %s is gone in Dify; starting a new one", key)
                await self._store.delete_conversation(key)
                conversation_id = request.conversation_id = None
            except DifyHTTPError as exc:
                if exc.code == "conversation_completed" and chat_like:
                    # Dify ended it: the next message starts a new one.
                    await self._store.delete_conversation(key)
                raise
        if paused is not None:
            shown, choice = await self._form_answers.paused(job, paused, words)
            await builder.handle(TextDelta(("\n\n" if builder.text_started else "") + shown))
        return await self._end(job, builder, stream, finished, record, paused is not None, choice)

    async def _end(
        self,
        job: Job,
        builder: AnswerBuilder,
        stream: AnswerStream,
        finished: Finished | None,
        record: AnswerRecord | None,
        paused: bool = False,
        choice: FormChoice | None = None,
    ) -> AnswerRecord | None:
        """The stream ended well: note a stop, offer what goes under the answer (👍/👎; a
        form's actions when the run paused on one, and nothing to rate: it is not done),
        and mark the answer's record finished. The record, when suggested questions are
        to follow the final message."""
        stopped = record is not None and await self._clicks.stop_asked(job.job_id)
        await builder.complete(finished, stopped=stopped)
        controls, suggest = self._clicks.final_controls(job, record, stopped)
        if paused:
            shows = self._adapters[job.message.bot].capabilities.buttons and choice is not None
            controls, suggest = (Controls(job.job_id, form=choice) if shows else None), False
        if controls is not None and (controls.final or controls.form):
            stream.offer(controls)
        if record is None:
            return None
        await self._keep(self._answers.ended, record)
        return record if suggest else None

    async def _keep(
        self, write: Callable[[AnswerRecord], Awaitable[None]], record: AnswerRecord
    ) -> None:
        """Write an answer's record. The answer goes on regardless: without its record,
        a click on it says it expired (logged)."""
        try:
            await write(record)
        except StoreUnavailable as exc:
            log.warning("answer %s: record not kept: %s", record.job_id, exc)

    def _first_token(self, job: Job, seconds: float) -> None:
        self._metrics.dify_first_token.labels(job.app).observe(seconds)
        lifelog.first_token(job, seconds)

    async def _inputs(self, job: Job) -> dict[str, object]:
        if not job.input_templates:
            return {}
        uses_name = any("{user_name}" in t for t in job.input_templates.values())
        name = job.message.user_name
        if uses_name and not name:
            name = await self._adapters[job.message.bot].display_name(job.message)
        return dict(render_inputs(job.input_templates, job.message, name))

    async def _greeting(self, job: Job, app: DifyApp, conversation_id: str | None) -> str:
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

    async def _fetch_file(self, job: Job, app: DifyApp, output: FileOutput) -> OutputFile | None:
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

    async def _remember_conversation(self, key: str, conversation_id: str) -> None:
        """Store the conversation id Dify just named. The answer goes on regardless: if the
        store stays away, the next message starts a new conversation (logged)."""
        for wait in (0.1, 0.5, 2.0, None):
            try:
                await self._store.set_conversation(key, conversation_id)
                return
            except StoreUnavailable as exc:
                if wait is None:
                    log.error("conversation %s not remembered: %s", key, exc)
                    return
                await asyncio.sleep(wait)

    async def _attachments(self, job: Job, adapter: Adapter, app: DifyApp) -> Prepared:
        """Download the user's files (here, in the worker), hand them to Dify."""
        return await self._attachments_of.prepare(job, adapter, app, self._words[job.message.bot])

    async def _run_command(
        self, job: Job, adapter: Adapter, command: str, progress: Progress
    ) -> None:
        if command == "/reset":
            await self._store.delete_conversation(job.conversation_key)
            await self._form_answers.drop_waiting(job.conversation_key)
            text = self._words[job.message.bot].new_conversation
        else:
            text = self._words[job.message.bot].help
        await self._say(job, adapter, text, progress)
        self._finished(job, command.lstrip("/"))

    async def _say(self, job: Job, adapter: Adapter, text: str, progress: Progress) -> None:
        """Reply with a fixed text (a command's answer, a notice), no Dify involved."""
        stream = self._open_stream(job, adapter, progress)
        stream.append(text)
        await stream.finish()
        await progress.save(**{ANSWERED: True})

    # --- hooks adapters may use (AssistantHooks) -----------------------------------------

    async def opening_statement(self, message: InboundMessage) -> str | None:
        """For an adapter's welcome (a WeCom AI bot's `enter_chat`): the statement greets
        the user there, so their first answer does not greet them again."""
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
