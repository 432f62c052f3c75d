"""What a click on an answer needs, kept in the store so that any instance can handle it.

An answer's record is written when Dify names its run (the task id a stop needs) and again
when it ends (its suggested questions, the rating chosen later). Alongside, the
conversation's *running* marker names the answer being written, for `/stop`. Both expire:
a click on an answer whose record is gone gets a polite "this has expired".

Who may click (docs/interactive.md): anyone who sees the answer may rate it and pick a
suggestion (as themselves); only the asker, or anyone in a shared conversation scope
(`chat`, `thread`), may stop it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from gateway.models import Job
from gateway.store import keys
from gateway.store.base import SharedState

log = logging.getLogger(__name__)

RECORD_TTL = 7 * 24 * 3600.0
STOP_TTL = 3600.0
SHARED_SCOPES = ("chat", "thread")


@dataclass(frozen=True, slots=True)
class AnswerRecord:
    job_id: str
    app: str
    dify_user: str  # the run's Dify user: stops and ratings must name it
    conversation_key: str
    asker: str  # the platform user id of whoever asked
    scope: str
    task_id: str = ""
    message_id: str = ""  # Dify's, for ratings and suggested questions
    suggestions: tuple[str, ...] = ()
    rating: str = ""  # `like`, `dislike`, or empty
    finished: bool = False

    @classmethod
    def of(cls, job: Job, task_id: str, message_id: str) -> AnswerRecord:
        return cls(
            job_id=job.job_id,
            app=job.app,
            dify_user=job.dify_user,
            conversation_key=job.conversation_key,
            asker=job.message.user_id,
            scope=job.scope,
            task_id=task_id,
            message_id=message_id,
        )

    def may_stop(self, job: Job) -> bool:
        """The asker may stop an answer, and anyone in its shared conversation."""
        if job.message.user_id == self.asker:
            return True
        return self.scope in SHARED_SCOPES and job.conversation_key == self.conversation_key

    def encode(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def decode(cls, raw: str) -> AnswerRecord | None:
        try:
            data: Any = json.loads(raw)
            data["suggestions"] = tuple(str(s) for s in data.get("suggestions") or ())
            return cls(**data)
        except (ValueError, TypeError, KeyError, AttributeError):
            log.warning("an unreadable answer record was ignored")
            return None


@dataclass(slots=True)
class Answers:
    """The records in the store (every call may raise `StoreUnavailable`)."""

    store: SharedState
    running_ttl: dict[str, float] = field(default_factory=dict)  # app -> its timeout

    async def started(self, record: AnswerRecord) -> None:
        """The run is named: keep its record, and mark it as the conversation's answer."""
        await self.store.set(keys.answer_record(record.job_id), record.encode(), RECORD_TTL)
        ttl = self.running_ttl.get(record.app, 600.0) + 60.0
        await self.store.set(keys.answer_running(record.conversation_key), record.job_id, ttl)

    async def ended(self, record: AnswerRecord) -> None:
        """The answer is delivered: its record says so (and keeps its suggestions)."""
        finished = replace(record, finished=True)
        await self.store.set(keys.answer_record(record.job_id), finished.encode(), RECORD_TTL)
        running = keys.answer_running(record.conversation_key)
        if await self.store.get(running) == record.job_id:
            await self.store.delete(running)

    async def get(self, job_id: str) -> AnswerRecord | None:
        raw = await self.store.get(keys.answer_record(job_id))
        return None if raw is None else AnswerRecord.decode(raw)

    async def save(self, record: AnswerRecord) -> None:
        await self.store.set(keys.answer_record(record.job_id), record.encode(), RECORD_TTL)

    async def running(self, conversation_key: str) -> str | None:
        return await self.store.get(keys.answer_running(conversation_key))

    async def ask_to_stop(self, job_id: str) -> None:
        await self.store.set(keys.answer_stop(job_id), "1", STOP_TTL)

    async def stop_asked(self, job_id: str) -> bool:
        return await self.store.get(keys.answer_stop(job_id)) is not None
