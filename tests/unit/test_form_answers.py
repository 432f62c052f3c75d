"""Answering a kept form: who may, what a retry does after Dify took the answer, and a form
the store no longer knows."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

from gateway.dify import DifyClient
from gateway.form_answers import SUBMITTED, FormAnswers
from gateway.forms import Forms
from gateway.inbox import Progress
from gateway.models import Action, Job
from gateway.store.memory import MemoryStore
from gateway.words import ENGLISH
from tests.helpers import group_job
from tests.unit.test_forms import pending


class NoDify:
    """A Dify that must not be called."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Dify called: {name}")


class Checkpoint:
    def __init__(self, **checkpoint: Any) -> None:
        self.checkpoint: dict[str, Any] = checkpoint
        self.saved: list[dict[str, Any]] = []

    async def save(self, **fields: Any) -> None:
        self.checkpoint.update(fields)
        self.saved.append(fields)


def answers(store: MemoryStore) -> FormAnswers:
    return FormAnswers(apps={}, dify=cast(DifyClient, NoDify()), forms=Forms(store))


async def test_another_user_may_not_answer_a_form_of_a_per_user_conversation() -> None:
    store = MemoryStore()
    await Forms(store).keep(pending("user"), waiting=True)
    click = Action(kind="form", answer_id="tok", value="ok")
    progress = cast(Progress, Checkpoint())
    resume, reply = await answers(store).submit(group_job("U2"), click, ENGLISH, progress)
    assert (resume, reply) == (None, ENGLISH.form_not_yours)
    assert await Forms(store).get("tok") == pending("user")  # still answerable by the asker


async def test_a_form_the_store_no_longer_knows_has_expired() -> None:
    click = Action(kind="form", answer_id="gone", value="ok")
    progress = cast(Progress, Checkpoint())
    resume, reply = await answers(MemoryStore()).submit(group_job("U1"), click, ENGLISH, progress)
    assert (resume, reply) == (None, ENGLISH.expired)


async def test_a_retry_after_dify_took_the_answer_follows_the_run_without_submitting() -> None:
    progress = cast(Progress, Checkpoint(**{SUBMITTED: {"run_id": "run", "user": "b:U1"}}))
    click = Action(kind="form", answer_id="tok", comment="1")
    resume, reply = await answers(MemoryStore()).submit(group_job("U2"), click, ENGLISH, progress)
    assert reply is None and resume is not None
    assert (resume.run_id, resume.job.dify_user) == ("run", "b:U1")


async def test_a_reply_is_an_answer_only_while_a_form_waits() -> None:
    store = MemoryStore()
    assert await answers(store).reply_to_form(group_job("U1")) is None
    await Forms(store).keep(pending("user"), waiting=True)
    action = await answers(store).reply_to_form(group_job("U1"))
    assert action == Action(kind="form", answer_id="tok", comment="")
    await answers(store).drop_waiting("main/slack:C1")
    assert await answers(store).reply_to_form(group_job("U1")) is None


def test_a_form_answer_with_its_fields_survives_the_inbox() -> None:
    asked = group_job("U1")
    click = Action(kind="form", answer_id="tok", value="ok", inputs={"comment": "fine"})
    queued = replace(asked, message=replace(asked.message, action=click))
    assert Job.from_json(queued.to_json()).message.action == click
