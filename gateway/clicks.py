"""Clicks on what the gateway posted, and `/stop`, handled in the worker like any message.

A click is an `InboundMessage` with an `Action` (gateway/models.py): verified, deduped and
acked by its adapter and the intake like a message, then handled here, in the conversation's
order (a rating or a stop in a lane of its own: gateway/commands.py). What it needs comes
from the answer's record in the store (gateway/answers.py), so any instance can handle it.

- **Stop** (the button, `/stop`, and the quiet stop before a `/reset`): stop the run's task
  with the run's Dify user, and mark the answer stopped; the answer, wherever it is written,
  ends with what it had plus "(stopped)".
- **Feedback**: rate the Dify message as the user who asked it (Dify takes no other), keep
  the choice, and show it on the message where the platform can.
- **Suggestion**: ask the suggested question as the user who clicked, in their conversation,
  exactly as if they had typed it (`handle` hands the job back to be answered).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import replace

from gateway.answers import AnswerRecord, Answers
from gateway.app_params import AppParameters, suggests_questions
from gateway.config import DifyApp
from gateway.controls import MAX_SUGGESTIONS, Controls, Rating
from gateway.dify import DifyClient, DifyError
from gateway.models import Action, Job
from gateway.platform import Adapter, PlatformError, ShowsControls
from gateway.store.base import StoreUnavailable
from gateway.streaming import AnswerStream
from gateway.words import Words

log = logging.getLogger(__name__)

DIFY_CALL_TIMEOUT_S = 5.0
CHAT_MODES = ("chat", "agent", "chatflow")
RATED_MODES = (*CHAT_MODES, "completion")  # a workflow run has no message to rate
_RATINGS: dict[str, Rating | None] = {"like": "like", "dislike": "dislike", "": None}


class Clicks:
    def __init__(
        self,
        *,
        adapters: Mapping[str, Adapter],
        apps: Mapping[str, DifyApp],
        dify: DifyClient,
        answers: Answers,
        parameters: AppParameters,
        words: Mapping[str, Words],
    ) -> None:
        self._adapters = adapters
        self._apps = apps
        self._dify = dify
        self._answers = answers
        self._parameters = parameters
        self._words = words

    async def handle(self, job: Job, action: Action) -> tuple[Job | None, str | None]:
        """Handle a click: (a job to answer as a question, or None; a text to reply with,
        or None)."""
        words = self._words[job.message.bot]
        if action.kind == "stop":
            return None, await self._stop(job, action, words)
        record = await self._answers.get(action.answer_id)
        if record is None:
            log.info("click on answer %s, which is no longer known", action.answer_id)
            return None, words.expired if self._shows_buttons(job) else None
        if action.kind == "feedback":
            await self._rate(job, action, record)
            return None, None
        try:
            question = record.suggestions[int(action.value)]
        except (ValueError, IndexError):
            log.info("click on suggestion %r of %s, which has none", action.value, record.job_id)
            return None, words.expired
        return replace(job, message=replace(job.message, text=question, action=None)), None

    def _shows_buttons(self, job: Job) -> bool:
        """A click on a button the gateway drew: a platform with its own feedback (the
        WeCom AI bot) shows no reply to a click."""
        return self._adapters[job.message.bot].capabilities.buttons

    # --- stop ----------------------------------------------------------------------------

    async def _stop(self, job: Job, action: Action, words: Words) -> str | None:
        quiet = action.value == "reset"  # before a /reset, which says what happened
        button = bool(action.answer_id)
        target = action.answer_id or await self._answers.running(job.conversation_key)
        record = await self._answers.get(target) if target else None
        if record is None:
            if button:
                return words.expired
            return None if quiet else words.nothing_to_stop
        if record.finished:
            return None if quiet or button else words.nothing_to_stop
        if not record.may_stop(job):
            log.info("answer %s: %s may not stop it", record.job_id, job.message.user_id)
            return None if quiet else words.not_yours_to_stop
        await self._answers.ask_to_stop(record.job_id)
        app = self._apps.get(record.app)
        if app is not None and record.task_id:
            try:
                async with asyncio.timeout(DIFY_CALL_TIMEOUT_S):
                    await self._dify.stop(app, record.task_id, record.dify_user)
                log.info("answer %s: stopped by %s", record.job_id, job.message.user_id)
            except (DifyError, TimeoutError) as exc:
                log.warning("answer %s: could not stop its run: %s", record.job_id, exc)
        return None if quiet or button else words.stopping

    # --- feedback ------------------------------------------------------------------------

    async def _rate(self, job: Job, action: Action, record: AnswerRecord) -> None:
        rating = _RATINGS.get(action.value)
        app = self._apps.get(record.app)
        if app is None or not record.message_id:
            return
        try:
            async with asyncio.timeout(DIFY_CALL_TIMEOUT_S):
                await self._dify.feedback(
                    app, record.message_id, record.dify_user, rating, action.comment
                )
        except (DifyError, TimeoutError) as exc:
            log.warning("answer %s: rating not sent: %s", record.job_id, exc)
            return
        record = replace(record, rating=rating or "")
        await self._answers.save(record)
        sink = self._adapters[job.message.bot].open_reply(job.message)
        if isinstance(sink, ShowsControls):
            controls = Controls(
                record.job_id,
                feedback=True,
                rating=rating,
                ask_reason=rating == "dislike" and not action.comment,
                suggestions=record.suggestions,
            )
            try:
                await sink.show(controls)
            except PlatformError as exc:
                log.info("answer %s: the rating is not shown: %s", record.job_id, exc)

    # --- the end of an answer ------------------------------------------------------------

    def final_controls(
        self, job: Job, record: AnswerRecord | None, stopped: bool
    ) -> tuple[Controls | None, bool]:
        """What goes under a finished answer where the platform shows buttons: 👍/👎 with
        the final text; and whether to ask the app for suggested questions once the text
        is out (`suggest`: the final text never waits for them)."""
        adapter = self._adapters[job.message.bot]
        app = self._apps[job.app]
        if record is None or not record.message_id or not adapter.capabilities.buttons:
            return None, False
        feedback = job.options.feedback and app.mode in RATED_MODES
        later = job.options.suggestions and not stopped and app.mode in CHAT_MODES
        return Controls(job.job_id, feedback=feedback), later

    async def suggest(self, job: Job, record: AnswerRecord, stream: AnswerStream) -> None:
        """After the final message: the app's suggested questions, kept in the answer's
        record for a click, then shown under the message with an edit. Best effort."""
        app = self._apps[job.app]
        try:
            if not suggests_questions(await self._parameters.get(job.app)):
                return
            async with asyncio.timeout(DIFY_CALL_TIMEOUT_S):
                questions = await self._dify.suggested(app, record.message_id, record.dify_user)
            suggestions = tuple(q.strip() for q in questions[:MAX_SUGGESTIONS] if q.strip())
            if not suggestions:
                return
            # A rating may have landed since the answer ended: keep it.
            record = replace(await self._answers.get(job.job_id) or record, suggestions=suggestions)
            await self._answers.save(record)
        except (DifyError, TimeoutError, StoreUnavailable) as exc:
            log.info("answer %s: no suggested questions: %s", job.job_id, exc)
            return
        feedback = job.options.feedback and app.mode in RATED_MODES
        rating = _RATINGS.get(record.rating or "")
        controls = Controls(job.job_id, feedback=feedback, rating=rating, suggestions=suggestions)
        await stream.amend(controls)

    async def stop_asked(self, job_id: str) -> bool:
        """Whether someone stopped the answer (checked once, at its end)."""
        try:
            return await self._answers.stop_asked(job_id)
        except StoreUnavailable as exc:
            log.info("answer %s: stop flag not read: %s", job_id, exc)
            return False
