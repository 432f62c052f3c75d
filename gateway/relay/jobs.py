"""Answer one job from the durable inbox: what it is, and who answers it.

A job is one of: a message the rate limits refuse (answered with their notice), a notice of
the gateway's own, a command (`/reset`, `/help`, `/stop`), a click on the gateway's buttons
(gateway/clicks.py), an answer to a paused run's form (gateway/form_answers.py), or a
question for the Dify app (dify_run.py). Whichever it is, its reply and its bookkeeping go
through replies.py, so every job is counted, logged and shown on the status page once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from gateway import commands
from gateway.activity import Activity
from gateway.answers import Answers
from gateway.app_params import AppParameters
from gateway.clicks import Clicks
from gateway.config import DifyApp
from gateway.controls import Controls
from gateway.dify import DifyClient
from gateway.form_answers import FormAnswers, Resume
from gateway.forms import Forms
from gateway.inbox import Progress
from gateway.limits import Limits
from gateway.metrics import Metrics
from gateway.models import Action, InboundMessage, Job
from gateway.pacing import BotBudget
from gateway.platform import Adapter, AsksForm
from gateway.relay.context import QuestionContext
from gateway.relay.dify_run import AppRunner
from gateway.relay.replies import ANSWERED, Replies
from gateway.router import Router
from gateway.store.base import Store
from gateway.words import Words

log = logging.getLogger(__name__)


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
    """Answers the jobs of every bot of one config (a reload builds a new one)."""

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
        self._apps = apps
        self._store = store
        self._metrics = metrics
        self._words = words
        self._limits = limits
        self._replies = Replies(budgets=budgets, words=words, metrics=metrics, activity=activity)
        parameters = AppParameters(dify, apps)
        answers = Answers(store, {name: app.timeout_s for name, app in apps.items()})
        self._clicks = Clicks(
            adapters=adapters,
            apps=apps,
            dify=dify,
            answers=answers,
            parameters=parameters,
            words=words,
        )
        self._form_answers = FormAnswers(apps=apps, dify=dify, forms=Forms(store))
        self._context = QuestionContext(
            adapters=adapters, router=router, dify=dify, store=store, parameters=parameters
        )
        self._runner = AppRunner(
            adapters=adapters,
            apps=apps,
            dify=dify,
            store=store,
            metrics=metrics,
            words=words,
            parameters=parameters,
            answers=answers,
            clicks=self._clicks,
            form_answers=self._form_answers,
            context=self._context,
        )

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
            self._replies.forget(job)

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
                    await self._replies.say(job, adapter, refusal.notice, progress)
                self._replies.finished(job, refusal.reason)
                return
        if job.message.notice is not None:
            await self._replies.say(job, adapter, job.message.notice, progress)
            self._replies.finished(job, "notice")
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
            await self._runner.stop_replaced(job, progress)
        stream = self._replies.open_stream(job, adapter, progress)
        if adapter.capabilities.buttons:
            stream.offer(Controls(job.job_id, stop=True))
        await stream.begin()
        result, follow_up = await self._runner.run(job, adapter, stream, progress, resume_run)
        self._metrics.updates.labels(bot).inc(stream.updates)
        self._metrics.answer_seconds.labels(bot).observe(time.time() - job.accepted_at)
        self._replies.finished(job, result)
        await progress.save(**{ANSWERED: True})
        if follow_up is not None:
            await self._clicks.suggest(job, follow_up, stream)

    async def _click(
        self, job: Job, adapter: Adapter, action: Action, progress: Progress
    ) -> Job | None:
        """Handle a click (or `/stop`): the question to answer (a suggestion), or None."""
        question, reply = await self._clicks.handle(job, action)
        if reply is not None:
            await self._replies.say(job, adapter, reply, progress)
        if question is None:
            self._replies.finished(job, action.kind)
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
            await self._replies.say(job, adapter, reply, progress)
        if resume is None:
            self._replies.finished(job, "form")
        return resume

    async def give_up(self, job: Job, progress: Progress) -> None:
        """The job failed too often: end its answer with a short notice (unless an
        attempt delivered the answer and only failed to record that: never a notice under
        a complete answer)."""
        if progress.checkpoint.get(ANSWERED):
            return
        stream = self._replies.open_stream(job, self._adapters[job.message.bot], progress)
        try:
            await stream.fail(self._words[job.message.bot].gave_up)
        finally:
            self._replies.remember(job, "gave_up")
            self._replies.forget(job)

    async def _run_command(
        self, job: Job, adapter: Adapter, command: str, progress: Progress
    ) -> None:
        if command == "/reset":
            await self._store.delete_conversation(job.conversation_key)
            await self._form_answers.drop_waiting(job.conversation_key)
            text = self._words[job.message.bot].new_conversation
        else:
            text = self._words[job.message.bot].help
        await self._replies.say(job, adapter, text, progress)
        self._replies.finished(job, command.lstrip("/"))

    # --- hooks adapters may use (AssistantHooks) -----------------------------------------

    async def opening_statement(self, message: InboundMessage) -> str | None:
        """For an adapter's welcome (a WeCom AI bot's `enter_chat`): the statement greets
        the user there, so their first answer does not greet them again."""
        return await self._context.welcome(message)
