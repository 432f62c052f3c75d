"""Run this instance's jobs: one at a time per conversation, in the order they came, and
many conversations at once.

Jobs reach the scheduler from the durable inbox's feed, already in order within each
conversation (gateway/inbox/__init__.py says how the feeds keep that order across
instances). A later message must see the conversation the earlier one created, so the
jobs of one conversation run one after the other; different conversations run
concurrently, up to `max_concurrent`, and the rest wait here. A job with a `lane` of its own
(`/stop`, a rating) waits only behind its lane (`Job.queue_key`), never behind the answer it
is about.

Acks first. An answer costs several times the CPU of an ack (a Dify stream and platform
calls), so while messages keep arriving, new answers wait, and the ack path keeps the event
loop to itself. A burst is over once no message was accepted for QUIET_S. During a long
burst, answers that waited MAX_HOLD_S start anyway, but only while fewer than
BURST_RUNNING answers are running: a start *rate* was tried first, and it started answers
faster than the process could finish them, which slowed acks, which lengthened the burst.
Even once quiet, answers start in slices of START_SLICE with a yield between, so a pause
that only looked like the end of a burst costs little when acks resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from gateway.models import Job

log = logging.getLogger(__name__)

Worker = Callable[[Job], Awaitable[None]]

QUIET_S = 0.02
MAX_HOLD_S = 0.3
BURST_RUNNING = 32
START_SLICE = 64
TICK_S = 0.01


class Scheduler:
    def __init__(
        self,
        worker: Worker,
        *,
        max_concurrent: int,
        on_done: Callable[[Job], None] | None = None,
    ) -> None:
        self._worker = worker
        self._max = max_concurrent
        self._on_done = on_done
        self._ready: deque[tuple[float, Job]] = deque()  # (ready since, job), oldest first
        # queue key (the conversation's, or a lane) -> jobs waiting behind the one that is
        # queued or running (None until a second job arrives: most never need the queue)
        self._waiting: dict[str, deque[Job] | None] = {}
        self._queued = 0  # enqueued, not started
        self._running: dict[asyncio.Task[None], Job] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._last_accept = 0.0
        self._hurry = False  # start whatever waits, at once (shutting down)
        self._closed = False  # start nothing more

    @property
    def in_flight(self) -> int:
        return len(self._running)

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def last_accept(self) -> float:
        """time.monotonic() of the last accepted message (0.0 before the first)."""
        return self._last_accept

    def oldest_wait(self) -> float:
        """Seconds the oldest job that has not started yet has been waiting here."""
        return time.monotonic() - self._ready[0][0] if self._ready else 0.0

    def note_accept(self) -> None:
        """This instance acked a message: hold new answers back while the burst lasts."""
        self._last_accept = time.monotonic()

    def room(self, most: int) -> int:
        """How many more jobs to take from the feed: up to `most` waiting here, but while a
        burst of acks is on only enough for BURST_RUNNING to wait (they are held anyway;
        the rest can wait in the inbox until the burst is over)."""
        if not self._hurry and time.monotonic() - self._last_accept < QUIET_S:
            most = min(most, BURST_RUNNING)
        return most - self._queued

    async def wait_idle(self) -> None:
        """Return once nothing is queued or running."""
        await self._idle.wait()

    def enqueue(self, job: Job) -> None:
        """Run `job` after every job of its conversation enqueued before it."""
        if self._closed:
            return
        self._idle.clear()
        self._queued += 1
        key = job.queue_key
        if key in self._waiting:
            waiting = self._waiting[key]
            if waiting is None:
                waiting = self._waiting[key] = deque()
            waiting.append(job)
        else:
            self._waiting[key] = None
            self._ready.append((time.monotonic(), job))
            self._wake.set()
        if self._dispatcher is None:
            self._dispatcher = asyncio.create_task(self._dispatch(), name="inbox dispatcher")

    def discard(self, gone: Callable[[Job], bool]) -> list[Job]:
        """Forget queued jobs and cancel running ones for which `gone(job)` holds (their
        shard now belongs to another instance, which resumes them). Returns the queued
        jobs dropped (running ones end through the worker as usual)."""
        dropped: list[Job] = []
        keep: deque[tuple[float, Job]] = deque()
        for since, job in self._ready:
            if gone(job):
                # Nothing of this conversation runs: its whole queue goes.
                dropped.append(job)
                dropped += self._waiting.pop(job.queue_key, None) or ()
            else:
                keep.append((since, job))
        self._ready = keep
        for task, job in list(self._running.items()):
            if gone(job):
                waiting = self._waiting.get(job.queue_key)
                if waiting:
                    dropped += waiting
                    waiting.clear()
                task.cancel()
        self._queued -= len(dropped)
        self._check_idle()
        return dropped

    def take_back(self) -> list[Job]:
        """Forget every job that has not started, and return them; running ones go on.
        For a shutdown that leaves them to another instance (they stay in the inbox)."""
        dropped = [job for _, job in self._ready]
        self._ready.clear()
        running = {job.conversation_key for job in self._running.values()}
        for key, waiting in list(self._waiting.items()):
            dropped += waiting or ()
            if key in running:
                self._waiting[key] = None  # its running job ends with nothing behind it
            else:
                del self._waiting[key]
        self._queued -= len(dropped)
        self._check_idle()
        return dropped

    async def _dispatch(self) -> None:
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            while self._ready and len(self._running) < self._max and not self._closed:
                now = time.monotonic()
                quiet_for = now - self._last_accept
                if quiet_for >= QUIET_S or self._hurry:
                    self._start(START_SLICE)
                    await asyncio.sleep(0)
                    continue
                # A burst is on: start only answers that have waited too long, and only while
                # few are running.
                overdue = 0
                room = BURST_RUNNING - len(self._running)
                for since, _ in self._ready:
                    if now - since < MAX_HOLD_S or overdue >= room:
                        break
                    overdue += 1
                self._start(overdue)
                await asyncio.sleep(min(TICK_S, QUIET_S - quiet_for))

    def _start(self, count: int) -> None:
        while count > 0 and self._ready and len(self._running) < self._max:
            count -= 1
            _, job = self._ready.popleft()
            self._queued -= 1
            task = asyncio.create_task(self._run(job), name=f"answer {job.job_id}")
            self._running[task] = job
            task.add_done_callback(self._done)

    async def _run(self, job: Job) -> None:
        try:
            await self._worker(job)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("answer %s failed", job.job_id)
        finally:
            self._next_of(job.queue_key)

    def _next_of(self, queue_key: str) -> None:
        waiting = self._waiting.get(queue_key)
        if waiting:
            self._ready.append((time.monotonic(), waiting.popleft()))
        else:
            self._waiting.pop(queue_key, None)

    def _done(self, task: asyncio.Task[None]) -> None:
        job = self._running.pop(task)
        if self._on_done is not None:
            self._on_done(job)
        self._wake.set()
        self._check_idle()

    def _check_idle(self) -> None:
        if not self._running and not self._queued:
            self._idle.set()

    async def drain(self, grace: float) -> None:
        """Finish what is here (running and queued: this instance took them) within
        `grace` seconds, then cancel whatever still runs. Jobs left unfinished stay in the
        durable inbox, where another instance (or the next start) resumes them."""
        self._hurry = True
        self._wake.set()
        if not self._idle.is_set():
            log.info(
                "waiting up to %.0fs for %d answers (%d not started yet)",
                grace,
                len(self._running) + self._queued,
                self._queued,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace)
        self._closed = True
        self._wake.set()
        if self._dispatcher is not None:
            await self._dispatcher
        if self._queued:
            log.warning("%d answers not started; they stay in the inbox", self._queued)
        pending = set(self._running)
        for task in pending:
            task.cancel()
        if pending:
            log.warning(
                "stopped %d answers still running after %.0fs; they stay in the inbox",
                len(pending),
                grace,
            )
            await asyncio.wait(pending, timeout=5)
