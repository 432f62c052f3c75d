"""The reply side of every job, whatever it is: its stream, a fixed text, and the
bookkeeping once the job is done (metrics, the log line, the status page).

A job may be an attempt after another one (its instance died, its lease lapsed): the stream
resumes the platform message or card its checkpoint names, and checkpoints each platform
message it creates at once. The window in which a crash can leave a message nobody
finishes is the one store write after each post.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from gateway import lifelog
from gateway.activity import Activity
from gateway.inbox import Progress
from gateway.metrics import Metrics
from gateway.models import Job
from gateway.pacing import BotBudget
from gateway.platform import Adapter
from gateway.streaming import AnswerStream
from gateway.words import Words

ANSWERED = "answered"  # checkpoint field: the final text is delivered


class Replies:
    """Opens the replies of the relay's jobs and records how each job ended."""

    def __init__(
        self,
        *,
        budgets: Mapping[str, BotBudget],
        words: Mapping[str, Words],
        metrics: Metrics,
        activity: Activity,
    ) -> None:
        self._budgets = budgets
        self._words = words
        self._metrics = metrics
        self._activity = activity
        # When the user first saw each answer in flight (job id -> epoch seconds).
        self._first_seen: dict[str, float] = {}

    def open_stream(self, job: Job, adapter: Adapter, progress: Progress) -> AnswerStream:
        """The answer's stream, resuming the platform message a checkpoint names, and
        checkpointing each platform message it creates."""
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

    async def say(self, job: Job, adapter: Adapter, text: str, progress: Progress) -> None:
        """Reply with a fixed text (a command's answer, a notice), no Dify involved."""
        stream = self.open_stream(job, adapter, progress)
        stream.append(text)
        await stream.finish()
        await progress.save(**{ANSWERED: True})

    def finished(self, job: Job, result: str) -> None:
        """Count a finished message, log its end, and keep it for the status page."""
        self._metrics.answers.labels(job.message.bot, result).inc()
        lifelog.finished(job, result, time.time() - job.accepted_at)
        self.remember(job, result)

    def remember(self, job: Job, result: str) -> None:
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

    def forget(self, job: Job) -> None:
        """The job's attempt is over: its first-seen time is kept only while it runs."""
        self._first_seen.pop(job.job_id, None)
