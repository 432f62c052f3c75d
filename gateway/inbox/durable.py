"""The durable inbox: what is acked is kept, and what is kept is answered exactly once.

- **Accept** (the ack path): the store claims the message's dedupe keys and keeps the job in
  one atomic step, before the platform gets its 2xx. A store that is down or too slow means
  503 (the platform retries), and so does an inbox that already holds its bound of
  unanswered messages.
- **Work**: a pump takes this instance's jobs from the store's feed into the scheduler
  (one at a time per conversation, in order); each job runs through the worker with a
  `Progress` it checkpoints into, and leaves the inbox only once answered.
- **Attempts**: every start counts. A job that fails (a bug, a platform that keeps refusing
  the answer) is retried after a pause; one that was started `max_attempts` times (it may
  also have crashed the process each time) goes to the dead letters, and the user gets a
  short notice.
- **Shutdown**: nothing new is taken; what this instance holds is finished within the
  grace period; the rest stays in the inbox for another instance or the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from gateway.inbox.feed import InboxFull, JobFeed
from gateway.inbox.scheduler import Scheduler
from gateway.metrics import Metrics
from gateway.models import Job
from gateway.store.base import DEFAULT_CLAIM_TTL, StoreUnavailable

log = logging.getLogger(__name__)

LOCAL_QUEUE = 1024  # jobs taken from the feed but not started, at most
UNSAVED_KEPT = 4096  # checkpoints of attempts that did not end here, kept for the next one
TAKE_WAIT_S = 1.0
ROOM_POLL_S = 0.01  # how soon the inbox looks again for room to read jobs into
FINISH_TRIES = 8  # recording an answer that was delivered: retried for about a minute
STORE_RETRY_S = (0.5, 1.0, 2.0, 5.0, 10.0)


class Accepting(Protocol):
    """The store's half of accepting: claim and keep, atomically."""

    async def accept(
        self, keys: Sequence[str], job: Job, ttl: float = DEFAULT_CLAIM_TTL
    ) -> bool: ...


class Progress:
    """One attempt at a job: its number, and the checkpoint it saves as the answer goes.

    Saving is best effort: a checkpoint only helps a takeover, so a store error here is
    logged and never reaches the user."""

    def __init__(self, feed: JobFeed, job: Job, attempt: int, checkpoint: dict[str, Any]):
        self._feed = feed
        self._job = job
        self.attempt = attempt
        self.checkpoint = checkpoint

    @property
    def resumed(self) -> bool:
        """Another attempt (maybe another instance) worked on this job before."""
        return self.attempt > 1

    async def save(self, **fields: Any) -> None:
        self.checkpoint.update(fields)
        try:
            await self._feed.checkpoint(self._job, self.checkpoint)
        except StoreUnavailable as exc:
            log.warning("job %s: checkpoint not saved: %s", self._job.job_id, exc)


class Undeliverable(Exception):
    """Raised by a worker for a job no attempt can answer (its bot or app was removed by a
    reload): the job goes to the dead letters at once, with one log line."""


JobWorker = Callable[[Job, Progress], Awaitable[None]]
GiveUp = Callable[[Job, Progress], Awaitable[None]]


class Inbox:
    def __init__(
        self,
        store: Accepting,
        feed: JobFeed,
        worker: JobWorker,
        give_up: GiveUp,
        *,
        max_concurrent: int,
        max_queued: int,
        max_attempts: int,
        metrics: Metrics,
    ) -> None:
        self._store = store
        self.feed = feed
        self._worker = worker
        self._give_up = give_up
        self._max_queued = max_queued
        self._max_attempts = max_attempts
        self._metrics = metrics
        self.scheduler = Scheduler(self._run, max_concurrent=max_concurrent, on_done=feed.done)
        self._pump: asyncio.Task[None] | None = None
        self._started = asyncio.Event()  # the feed is up
        self._stopping = False
        self._accepting = 0  # accepts on their way to the store
        # job id -> (attempt, checkpoint) of this process's last attempt at a job that did
        # not end (failed, or stopped with its lease): the next attempt here starts from it,
        # including what the store could not take at the time.
        self._unsaved: dict[str, tuple[int, dict[str, Any]]] = {}
        metrics.watch_inbox(self)

    # --- accepting (the ack path) ------------------------------------------------------

    async def accept(self, job: Job, dedupe_keys: Sequence[str]) -> bool:
        """Keep `job` durably unless one of its keys was seen. False for a duplicate.
        Raises `StoreUnavailable` (or `InboxFull`, a kind of it for the caller) -> 503."""
        # Accepts still on their way count too: a flood arrives all at once.
        if self.feed.backlog() + self._accepting >= self._max_queued * self.feed.instances():
            self._metrics.inbox_full.inc()
            raise InboxFull("the inbox is full")
        self._accepting += 1
        try:
            accepted = await self._store.accept(dedupe_keys, job)
        finally:
            self._accepting -= 1
        if accepted:
            self.scheduler.note_accept()
            self.feed.accepted(job)
        return accepted

    # --- working -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start working in the background (a store that is down now is retried)."""
        self._pump = asyncio.create_task(self._pump_forever(), name="inbox pump")

    async def _pump_forever(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                await self.feed.start(self._lost)
                self._started.set()
                break
            except StoreUnavailable as exc:
                failures += 1
                if failures == 1:
                    log.error("inbox: cannot start (store unavailable: %s); retrying", exc)
                await asyncio.sleep(STORE_RETRY_S[min(failures, len(STORE_RETRY_S)) - 1])
        failures = 0
        while not self._stopping:
            # During a burst of acks only as many as the held answers need: reading more
            # jobs then (on Redis, parsing each back from its stream) would slow the acks.
            room = self.scheduler.room(LOCAL_QUEUE)
            if room <= 0:
                await asyncio.sleep(ROOM_POLL_S)
                continue
            try:
                jobs = await self.feed.take(room, TAKE_WAIT_S)
            except StoreUnavailable as exc:
                failures += 1
                if failures == 1:
                    log.error("inbox: cannot read jobs from the store: %s", exc)
                await asyncio.sleep(STORE_RETRY_S[min(failures, len(STORE_RETRY_S)) - 1])
                continue
            if failures:
                log.info("inbox: reading jobs again")
                failures = 0
            for job in jobs:
                self.scheduler.enqueue(job)

    def _lost(self, gone: Callable[[Job], bool]) -> None:
        for job in self.scheduler.discard(gone):
            self.feed.done(job)

    async def _run(self, job: Job) -> None:
        """Answer `job`, retrying failed attempts, and take it out of the inbox."""
        while True:
            progress = await self._begin(job)
            if progress.attempt > 1:
                self._metrics.inbox_resumed.labels(job.message.bot).inc()
            if progress.attempt > self._max_attempts:
                await self._dead_letter(job, progress)
                return
            try:
                await self._worker(job, progress)
            except asyncio.CancelledError:
                self._keep_unsaved(job, progress)
                raise
            except Undeliverable as exc:
                await self._dead_letter(job, progress, str(exc))
                return
            except Exception:
                log.exception("job %s: attempt %d failed", job.job_id, progress.attempt)
                self._keep_unsaved(job, progress)
                await asyncio.sleep(STORE_RETRY_S[min(progress.attempt, len(STORE_RETRY_S)) - 1])
                continue
            try:
                finished = await self._retry_store(self._finish(job), job, "finish", FINISH_TRIES)
            except asyncio.CancelledError:
                self._keep_unsaved(job, progress)  # answered: the next attempt only finishes
                raise
            if finished is None:
                # Still in the inbox (the store was away all along): when it comes back
                # here, the next attempt only takes it out, even if the `answered`
                # checkpoint never reached the store.
                self._keep_unsaved(job, progress)
            return

    def _finish(self, job: Job) -> Callable[[], Awaitable[bool]]:
        async def finish() -> bool:
            await self.feed.finish(job)
            return True

        return finish

    async def _begin(self, job: Job) -> Progress:
        """Count an attempt. A checkpoint this process made in the attempt just before
        (and nobody else attempted the job since) is good here even where the store did
        not take it (it was away): the new attempt finishes the message the last began,
        or, if that one delivered the answer, only takes the job out of the inbox."""
        record = await self._retry_store(lambda: self.feed.begin(job), job, "start")
        checkpoint = dict(record.checkpoint)
        last = self._unsaved.pop(job.job_id, None)
        if last is not None and last[0] == record.attempts - 1:
            checkpoint.update(last[1])
        return Progress(self.feed, job, record.attempts, checkpoint)

    def _keep_unsaved(self, job: Job, progress: Progress) -> None:
        self._unsaved[job.job_id] = (progress.attempt, progress.checkpoint)
        if len(self._unsaved) > UNSAVED_KEPT:  # jobs another instance took over
            del self._unsaved[next(iter(self._unsaved))]

    async def _dead_letter(self, job: Job, progress: Progress, why: str | None = None) -> None:
        if why is None:
            reason = f"failed {progress.attempt - 1} attempts"
            log.error("job %s: gave up after %s; moved to the dead letters", job.job_id, reason)
        else:
            reason = why
            log.warning("job %s: %s; dropped (moved to the dead letters)", job.job_id, why)
        self._metrics.dead_letters.labels(job.message.bot).inc()
        try:
            await self._give_up(job, progress)
        except Exception as exc:
            log.warning("job %s: could not tell the user: %s", job.job_id, exc)
        await self._retry_store(
            lambda: self.feed.dead_letter(job, reason), job, "dead-letter", FINISH_TRIES
        )

    async def _retry_store(
        self,
        call: Callable[[], Awaitable[Any]],
        job: Job,
        what: str,
        tries: int | None = None,
    ) -> Any:
        """A store call of the worker: retried while the store is away (never shown to
        the user). With `tries`, give up after that many and log it."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call()
            except StoreUnavailable as exc:
                if tries is not None and attempt >= tries:
                    log.error("job %s: %s not recorded: %s", job.job_id, what, exc)
                    return None
                if attempt == 1:
                    log.warning(
                        "job %s: %s: store unavailable (%s); retrying", job.job_id, what, exc
                    )
                await asyncio.sleep(STORE_RETRY_S[min(attempt, len(STORE_RETRY_S)) - 1])

    # --- lifetime ----------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return self.scheduler.in_flight

    @property
    def queued(self) -> int:
        """Jobs on this instance that have not started yet."""
        return self.scheduler.queued + self.feed.waiting()

    @property
    def last_accept(self) -> float:
        return self.scheduler.last_accept

    def oldest_wait(self) -> float:
        return self.scheduler.oldest_wait()

    def backlog(self) -> int:
        return self.feed.backlog()

    async def wait_idle(self) -> None:
        """Return once the whole inbox is answered: nothing here, and nothing kept that
        any instance still has to answer (for the demo, tests and benchmarks)."""
        if self._pump is None:
            raise RuntimeError("the inbox was never started: nothing would ever be answered")
        await self._started.wait()
        while True:
            await self.scheduler.wait_idle()
            if not self.feed.waiting() and not await self._pending():
                await asyncio.sleep(0)  # a job finishing right now clears the scheduler next
                if self.scheduler.in_flight == 0 and self.scheduler.queued == 0:
                    return
            await asyncio.sleep(0.01)

    async def _pending(self) -> int:
        """The store's count of unanswered messages; while it is away, nothing is known
        to be answered (an outage is no reason to stop waiting)."""
        try:
            return await self.feed.pending()
        except StoreUnavailable:
            await asyncio.sleep(0.1)
            return -1

    async def drain(self, grace: float) -> None:
        """Take nothing more; finish what this instance holds within `grace` seconds."""
        if self._stopping:
            return
        self._stopping = True
        with contextlib.suppress(StoreUnavailable):
            await self.feed.stop_taking()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        if self.feed.others_take_over():
            # Answers that have not started are left to the instance that takes over, so
            # this one lets go of its shards once the running answers end. Working through
            # the whole queue here could outlast the grace period on a busy machine, and an
            # answer cut off then is asked of Dify again by the instance that resumes it.
            left = self.scheduler.take_back()
            for job in left:
                self.feed.done(job)
            if left:
                log.info("left %d answers not started to the other instances", len(left))
        await self.scheduler.drain(grace)

    async def close(self) -> None:
        with contextlib.suppress(StoreUnavailable):
            await self.feed.close()
