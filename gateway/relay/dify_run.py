"""Ask the Dify app one question (or follow a paused run) into the answer's stream.

`Relay` (jobs.py) decides whether a job asks Dify at all; this module does the asking: the
request, the run's events, a conversation Dify forgot, what goes under the answer, and
stopping the run an earlier attempt left behind. How a failed run ends is failures.py.

Text, files, steps and the end of the run go to `AnswerBuilder` (gateway/answer.py), which
turns them into sink calls. `Started` and `Paused` are the gateway's own business and stop
here: `Started` is checkpointed (a later attempt stops this run by its task id), opens the
answer's record (what clicks on it read) and names the conversation; `Paused` becomes the
form the user answers (gateway/form_answers.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from gateway import lifelog
from gateway.answer import AnswerBuilder
from gateway.answers import AnswerRecord, Answers
from gateway.app_params import AppParameters
from gateway.attachments import Attachments, Prepared
from gateway.clicks import Clicks
from gateway.config import DifyApp
from gateway.controls import Controls, FormChoice
from gateway.dify import (
    ConversationGone,
    DifyClient,
    DifyError,
    DifyEvent,
    DifyHTTPError,
    Finished,
    Paused,
    Started,
    TextDelta,
    TextReplace,
)
from gateway.form_answers import FormAnswers
from gateway.inbox import Progress
from gateway.metrics import Metrics
from gateway.models import Job
from gateway.platform import Adapter
from gateway.relay.context import CHAT_MODES, QuestionContext
from gateway.relay.failures import finish_or_fail
from gateway.store.base import Store, StoreUnavailable
from gateway.streaming import AnswerStream
from gateway.words import Words

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0  # stopping an earlier attempt's run must not hold up this one


@dataclass
class _Run:
    """What the events of one run told so far."""

    conversation_id: str | None
    record: AnswerRecord | None = None
    finished: Finished | None = None
    paused: Paused | None = None
    text_seen: bool = False
    sent: float = field(default_factory=time.monotonic)  # for the time to the first token


class AppRunner:
    """Runs questions of any bot of the relay's config against their Dify apps."""

    def __init__(
        self,
        *,
        adapters: Mapping[str, Adapter],
        apps: Mapping[str, DifyApp],
        dify: DifyClient,
        store: Store,
        metrics: Metrics,
        words: Mapping[str, Words],
        parameters: AppParameters,
        answers: Answers,
        clicks: Clicks,
        form_answers: FormAnswers,
        context: QuestionContext,
    ) -> None:
        self._adapters = adapters
        self._apps = apps
        self._dify = dify
        self._store = store
        self._metrics = metrics
        self._words = words
        self._attachments = Attachments(dify, parameters)
        self._answers = answers
        self._clicks = clicks
        self._form_answers = form_answers
        self._context = context

    async def run(
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

        async def ask() -> AnswerRecord | None:
            if resume_run:
                prepared = Prepared(query="")
            else:
                # The user's files are downloaded here, in the worker, then handed to Dify.
                prepared = await self._attachments.prepare(job, adapter, app, words)
            return await self._ask(job, app, stream, prepared, progress, resume_run)

        return await finish_or_fail(job, app, stream, words=words, metrics=self._metrics, ask=ask)

    async def stop_replaced(self, job: Job, progress: Progress) -> None:
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

    async def _ask(
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
        greeting = "" if resume_run else await self._context.greeting(job, app, conversation_id)
        builder = AnswerBuilder(
            stream,
            options=job.options,
            words=words,
            links=self._context.file_links(app),
            fetch=lambda output: self._context.fetch_file(job, app, output),
            greeting="\n\n".join(filter(None, [greeting, *prepared.notes])),
        )
        if prepared.nothing_to_ask:
            await builder.complete(None)
            return None
        request = await self._context.request(job, app, prepared, conversation_id)
        run = _Run(conversation_id)
        for attempt in (1, 2):
            try:
                if resume_run:
                    events = self._dify.resume(app, resume_run, job.dify_user)
                else:
                    events = self._dify.stream(app, request)
                async for event in events:
                    await self._on_event(job, chat_like, event, run, builder, progress)
                break
            except ConversationGone:
                if attempt == 2 or builder.text_started:
                    raise
                log.info("conversation for %s is gone in Dify; starting a new one", key)
                await self._store.delete_conversation(key)
                run.conversation_id = request.conversation_id = None
            except DifyHTTPError as exc:
                if exc.code == "conversation_completed" and chat_like:
                    # Dify ended it: the next message starts a new one.
                    await self._store.delete_conversation(key)
                raise
        choice: FormChoice | None = None
        if run.paused is not None:
            shown, choice = await self._form_answers.paused(job, run.paused, words)
            await builder.handle(TextDelta(("\n\n" if builder.text_started else "") + shown))
        return await self._end(job, builder, stream, run, choice)

    async def _on_event(
        self,
        job: Job,
        chat_like: bool,
        event: DifyEvent,
        run: _Run,
        builder: AnswerBuilder,
        progress: Progress,
    ) -> None:
        """One event of the run: the gateway's own (`Started`, `Paused`) are kept in
        `run`; every other goes on to the answer."""
        if not run.text_seen and isinstance(event, TextDelta | TextReplace):
            run.text_seen = True
            seconds = time.monotonic() - run.sent
            self._metrics.dify_first_token.labels(job.app).observe(seconds)
            lifelog.first_token(job, seconds)
        if isinstance(event, Started):
            if event.task_id:
                await progress.save(task_id=event.task_id)
                run.record = AnswerRecord.of(job, event.task_id, event.message_id)
                await self._keep(self._answers.started, run.record)
            if chat_like and event.conversation_id and event.conversation_id != run.conversation_id:
                run.conversation_id = event.conversation_id
                await self._context.remember_conversation(job.conversation_key, run.conversation_id)
            return
        if isinstance(event, Paused):
            run.paused = event
            return
        if isinstance(event, Finished):
            run.finished = event
        await builder.handle(event)

    async def _end(
        self,
        job: Job,
        builder: AnswerBuilder,
        stream: AnswerStream,
        run: _Run,
        choice: FormChoice | None,
    ) -> AnswerRecord | None:
        """The stream ended well: note a stop, offer what goes under the answer (👍/👎; a
        form's actions when the run paused on one, and nothing to rate: it is not done),
        and mark the answer's record finished. The record, when suggested questions are
        to follow the final message."""
        record = run.record
        stopped = record is not None and await self._clicks.stop_asked(job.job_id)
        await builder.complete(run.finished, stopped=stopped)
        controls, suggest = self._clicks.final_controls(job, record, stopped)
        if run.paused is not None:
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
