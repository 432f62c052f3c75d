"""Human-input forms a paused Dify run waits for, kept in the store so that any instance
can take the answer (docs/interactive.md, "Forms").

When a run pauses on a form Dify lets the API answer (one with a `form_token`), the pause
is kept under the token: the run to resume, its Dify user, the conversation and who asked,
and the form. The conversation's *waiting* marker names the form its next reply answers
(the text fallback every platform has). Both expire with the form.

A reply in words answers a form this way (`read_reply`): a number picks an action (`2`);
a number and text pick an action and fill the form's one paragraph field (`1 looks good`);
text alone fills that field when the form has one action. Fields the reply does not fill
keep their defaults (a select: its default, else its first option).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from gateway.answers import SHARED_SCOPES
from gateway.dify_events import FormAction, FormField, HumanInput
from gateway.models import Job
from gateway.store import keys
from gateway.store.base import SharedState
from gateway.words import Words

log = logging.getLogger(__name__)

FORM_TTL = 7 * 24 * 3600.0  # Dify's own limit on a pause (HUMAN_INPUT_GLOBAL_TIMEOUT_SECONDS)
MIN_TTL = 60.0
_NUMBERED = re.compile(r"^\s*(\d{1,3})\s*[.):]?(?:\s+(.*))?\s*$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class PendingForm:
    token: str
    run_id: str  # the paused run, resumed with GET /workflow/{run_id}/events
    app: str
    dify_user: str  # the run's Dify user: the submit and the resume must name it
    conversation_key: str
    asker: str  # the platform user id of whoever asked
    scope: str
    form: HumanInput

    def may_submit(self, job: Job) -> bool:
        """As with Stop: the asker, and anyone in its shared conversation."""
        if job.message.user_id == self.asker:
            return True
        return self.scope in SHARED_SCOPES and job.conversation_key == self.conversation_key

    def ttl(self, now: float) -> float:
        if self.form.expires_at is None:
            return FORM_TTL
        return max(MIN_TTL, min(FORM_TTL, self.form.expires_at - now))

    def encode(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def decode(cls, raw: str) -> PendingForm | None:
        try:
            data: Any = json.loads(raw)
            form = data.pop("form")
            form["fields"] = tuple(
                FormField(**{**f, "options": tuple(f["options"])}) for f in form["fields"]
            )
            form["actions"] = tuple(FormAction(**a) for a in form["actions"])
            return cls(**data, form=HumanInput(**form))
        except (ValueError, TypeError, KeyError, AttributeError):
            log.warning("an unreadable form record was ignored")
            return None


class Forms:
    """The pending forms in the store (every call may raise `StoreUnavailable`)."""

    def __init__(self, store: SharedState) -> None:
        self._store = store

    async def keep(self, pending: PendingForm, *, waiting: bool) -> None:
        """Keep a pause; `waiting`: the conversation's next reply answers this form."""
        ttl = pending.ttl(time.time())
        await self._store.set(keys.form(pending.token), pending.encode(), ttl)
        if waiting:
            await self._store.set(keys.form_waiting(pending.conversation_key), pending.token, ttl)

    async def get(self, token: str) -> PendingForm | None:
        raw = await self._store.get(keys.form(token))
        return None if raw is None else PendingForm.decode(raw)

    async def waiting(self, conversation_key: str) -> PendingForm | None:
        """The form the conversation's next reply answers, if any."""
        token = await self._store.get(keys.form_waiting(conversation_key))
        return None if token is None else await self.get(token)

    async def answered(self, pending: PendingForm) -> None:
        """The form is answered: the conversation's next reply is a question again. The
        form stays known, so that a second answer (a button clicked again) hears from
        Dify that it was answered (412), as an answer from Dify's own web app would."""
        marker = keys.form_waiting(pending.conversation_key)
        if await self._store.get(marker) == pending.token:
            await self._store.delete(marker)

    async def forget(self, pending: PendingForm) -> None:
        """Dify no longer takes the form (answered, expired)."""
        await self._store.delete(keys.form(pending.token))
        await self.answered(pending)

    async def drop_waiting(self, conversation_key: str) -> None:
        """`/reset`: the next reply is a question again (the form stays answerable by a
        button where the platform has them)."""
        await self._store.delete(keys.form_waiting(conversation_key))


def answerable(form: HumanInput) -> bool:
    """Whether the chat can answer the form: Dify gave it a token (a form sent by email or
    shown in Dify's console has none) and it has an action to pick."""
    return form.token is not None and bool(form.actions)


def paragraph(form: HumanInput) -> FormField | None:
    """The form's one paragraph field, which a reply in words can fill."""
    found = [f for f in form.fields if f.kind == "paragraph"]
    return found[0] if len(found) == 1 else None


def inputs(
    form: HumanInput, text: str = "", filled: Mapping[str, str] | None = None
) -> dict[str, str]:
    """What a submission sends: each field's default, the one paragraph's filled with
    `text` (a reply), or the fields `filled` in a dialog (a select only with one of its
    options)."""
    values: dict[str, str] = {}
    for field in form.fields:
        value = (filled or {}).get(field.name, field.default)
        if field.kind == "select" and value not in field.options:
            value = field.default if field.default in field.options else field.options[0]
        values[field.name] = value
    one = paragraph(form)
    if one is not None and text:
        values[one.name] = text
    return values


def read_reply(form: HumanInput, text: str) -> tuple[str, str] | None:
    """(action id, paragraph text) a reply in words means, or None when it means neither."""
    numbered = _NUMBERED.match(text)
    if numbered is not None:
        index = int(numbered[1]) - 1
        if 0 <= index < len(form.actions):
            return form.actions[index].id, (numbered[2] or "").strip()
    text = text.strip()
    if text and len(form.actions) == 1 and paragraph(form) is not None:
        return form.actions[0].id, text
    return None


def as_text(form: HumanInput, words: Words) -> str:
    """The form as a chat shows it where it has no form of its own: its text, a numbered
    list of its actions, and how to answer (the text fallback)."""
    if not answerable(form):
        return words.form_elsewhere
    parts = [f"**{form.title}**"] if form.title else []
    if form.content:
        parts.append(form.content)
    parts.append("\n".join(f"{i}. {a.title}" for i, a in enumerate(form.actions, 1)))
    one = paragraph(form)
    parts.append(f"_{words.form_reply_with_text(one.label) if one else words.form_reply}_")
    return "\n\n".join(p for p in parts if p)
