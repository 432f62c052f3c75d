"""A run that pauses on a form, and the answer that resumes it (docs/interactive.md, "Forms").

- **The pause** (`paused`): the forms the run waits for are completed from Dify when the
  stream only named them, kept in the store (gateway/forms.py) and shown at the end of the
  answer as text: what the form says and its numbered actions. A form the API cannot
  answer (email or console delivery) gets one line saying so.
- **The answer** (`submit`): a reply in words to a waiting form, or a click on one of its
  actions, is checked (only the asker, or anyone in a shared conversation), POSTed to
  Dify as the run's user, and the relay then follows the resumed run
  (`GET /workflow/{run_id}/events`) into a new answer, through the normal streaming engine.
  Dify takes a form once: a second answer, or one after it expired, gets "already answered
  or expired" (412).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

from gateway.config import DifyApp
from gateway.controls import FormChoice, FormPrompt
from gateway.dify import DifyClient, DifyError, DifyHTTPError, HumanInput, Paused
from gateway.forms import (
    Forms,
    PendingForm,
    answerable,
    as_text,
    inputs,
    read_reply,
)
from gateway.inbox import Progress
from gateway.models import Action, Job
from gateway.platform import AsksForm
from gateway.store.base import StoreUnavailable
from gateway.words import Words, dify_failure

log = logging.getLogger(__name__)

DIFY_CALL_TIMEOUT_S = 10.0
# Checkpoint field: Dify took the answer; the run and its user (a retry follows the run,
# the form itself being forgotten by then).
SUBMITTED = "form_submitted"
GONE = (404, 412)  # the form is unknown to Dify, answered already, or expired


@dataclass(frozen=True, slots=True)
class Resume:
    """Follow run `run_id` for `job` (its `dify_user` the run's)."""

    job: Job
    run_id: str


class FormAnswers:
    def __init__(self, *, apps: Mapping[str, DifyApp], dify: DifyClient, forms: Forms) -> None:
        self._apps = apps
        self._dify = dify
        self._forms = forms

    # --- the pause -----------------------------------------------------------------------

    async def paused(self, job: Job, paused: Paused, words: Words) -> tuple[str, FormChoice | None]:
        """Keep the forms `paused` names: the text that shows them under the answer, and
        the actions of the first as buttons (where the platform has them)."""
        app = self._apps[job.app]
        texts: list[str] = []
        choice: FormChoice | None = None
        waiting = True  # a reply in words answers the first form the chat can answer
        for form in paused.forms:
            form = await self._complete(app, form)
            texts.append(as_text(form, words))
            if not answerable(form) or form.token is None:
                continue
            pending = PendingForm(
                token=form.token,
                run_id=paused.run_id,
                app=job.app,
                dify_user=job.dify_user,
                conversation_key=job.conversation_key,
                asker=job.message.user_id,
                scope=job.scope,
                form=form,
            )
            try:
                await self._forms.keep(pending, waiting=waiting)
            except StoreUnavailable as exc:
                log.warning("answer %s: form not kept (it cannot be answered): %s", job.job_id, exc)
                continue
            if waiting:
                actions = tuple((a.id, a.title, a.style) for a in form.actions)
                choice = FormChoice(form.token, actions, form.fields)
            waiting = False
        # One "answer it elsewhere" line for several such forms.
        return "\n\n".join(dict.fromkeys(texts)), choice

    async def _complete(self, app: DifyApp, form: HumanInput) -> HumanInput:
        """A form the stream only named, read from Dify (unchanged if that fails)."""
        if form.complete or form.token is None:
            return form
        try:
            async with asyncio.timeout(DIFY_CALL_TIMEOUT_S):
                return await self._dify.form(app, form.token)
        except (DifyError, TimeoutError) as exc:
            log.warning("a paused run's form could not be read: %s", exc)
            return form

    # --- the answer ----------------------------------------------------------------------

    async def reply_to_form(self, job: Job) -> Action | None:
        """A message that answers the conversation's waiting form, as a form action."""
        try:
            pending = await self._forms.waiting(job.conversation_key)
        except StoreUnavailable as exc:
            log.info("answer %s: waiting form not read: %s", job.job_id, exc)
            return None
        if pending is None:
            return None
        return Action(kind="form", answer_id=pending.token, comment=job.message.text)

    async def drop_waiting(self, conversation_key: str) -> None:
        try:
            await self._forms.drop_waiting(conversation_key)
        except StoreUnavailable as exc:
            log.info("waiting form of %s not dropped: %s", conversation_key, exc)

    async def submit(
        self,
        job: Job,
        action: Action,
        words: Words,
        progress: Progress,
        asker: AsksForm | None = None,
    ) -> tuple[Resume | None, str | None]:
        """Answer the form `action` names: (the run to follow, or None; a text to reply
        with, or None). A click on a form with a field to fill asks for it first, where
        the sink can (`asker`); the answer comes back as another click."""
        submitted = progress.checkpoint.get(SUBMITTED)
        if isinstance(submitted, dict):  # an earlier attempt answered it: follow the run
            user, run_id = str(submitted.get("user")), str(submitted.get("run_id"))
            return Resume(replace(job, dify_user=user), run_id), None
        pending = await self._forms.get(action.answer_id)
        if pending is None:
            return None, words.expired
        if not pending.may_submit(job):
            log.info("form %s: %s may not answer it", pending.run_id, job.message.user_id)
            return None, words.form_not_yours
        if action.value:  # a click
            if action.value not in {a.id for a in pending.form.actions}:
                return None, words.expired
            if await self._asked(pending, action, asker):
                return None, None
            chosen: tuple[str, str] | None = (action.value, action.comment)
        else:
            chosen = read_reply(pending.form, action.comment)
        if chosen is None:
            return None, as_text(pending.form, words)  # not an answer: show the form again
        action_id, text = chosen
        app = self._apps.get(pending.app)
        if app is None:
            return None, words.expired
        try:
            async with asyncio.timeout(DIFY_CALL_TIMEOUT_S):
                values = inputs(pending.form, text, action.inputs)
                user = pending.dify_user
                await self._dify.submit_form(app, pending.token, values, action_id, user)
        except DifyHTTPError as exc:
            log.info("form %s: Dify refused the answer: %s", pending.run_id, exc)
            if exc.status in GONE:
                await self._forget(pending)
                return None, words.form_closed
            return None, dify_failure(words, exc)
        except (DifyError, TimeoutError) as exc:
            log.warning("form %s: answer not sent: %s", pending.run_id, exc)
            return None, words.dify_unavailable
        await progress.save(**{SUBMITTED: {"run_id": pending.run_id, "user": pending.dify_user}})
        await self._forget(pending, answered=True)
        log.info("form %s: answered by %s", pending.run_id, job.message.user_id)
        return Resume(replace(job, dify_user=pending.dify_user), pending.run_id), None

    @staticmethod
    async def _asked(pending: PendingForm, action: Action, asker: AsksForm | None) -> bool:
        """Whether the sink asked for the form's fields (the click's answer follows)."""
        form = pending.form
        if not form.fields or action.comment or action.inputs or asker is None:
            return False
        chosen = next(a.title for a in form.actions if a.id == action.value)
        prompt = FormPrompt(pending.token, action.value, chosen, form.title, form.fields)
        return await asker.ask_form(prompt)

    async def _forget(self, pending: PendingForm, *, answered: bool = False) -> None:
        try:
            if answered:
                await self._forms.answered(pending)
            else:
                await self._forms.forget(pending)
        except StoreUnavailable as exc:
            log.info("form %s not forgotten (Dify refuses it again): %s", pending.run_id, exc)
