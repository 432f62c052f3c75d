"""The inbox: where acked messages wait for a worker.

This is the seam for "nothing acked is ever lost". Today `accept()` dedupes in the store
(an atomic claim of every dedupe key) and queues the job in this process. The durable inbox
will make `accept()` also persist the job (Redis Streams, or a SQLite table) before the ack,
and feed `_start()` from the store, so that any instance can finish what another began. The
edge, the job format and the workers do not change.

Ordering: jobs of one conversation run one at a time, in arrival order (a later message must
see the conversation the earlier one created). Different conversations run concurrently, up
to `max_concurrent`; beyond that they wait here, and acks never wait for them (see QUIET_S).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from gateway.metrics import Metrics
from gateway.models import Job
from gateway.store.base import DEFAULT_CLAIM_TTL, Claims

log = logging.getLogger(__name__)

Worker = Callable[[Job], Awaitable[None]]

# Acks first. An answer costs several times the CPU of an ack (a Dify stream and platform
# calls), so while messages keep arriving, new answers wait, and the ack path keeps the event
# loop to itself. A burst is over once no message was accepted for QUIET_S. During a long
# burst, answers that waited MAX_HOLD_S start anyway, but only while fewer than
# BURST_RUNNING answers are running: a start *rate* was tried first, and it started answers
# faster than the process could finish them, which slowed acks, which lengthened the burst.
# Even once quiet, answers start in slices of START_SLICE with a yield between, so a pause
# that only looked like the end of a burst costs little when acks resume.
QUIET_S = 0.02
MAX_HOLD_S = 0.3
BURST_RUNNING = 32
START_SLICE = 64
TICK_S = 0.01


class Inbox:
    def __init__(
        self, store: Claims, worker: Worker, *, max_concurrent: int, metrics: Metrics
    ) -> None:
        self._store = store
        self._worker = worker
        self._max = max_concurrent
        self._ready: deque[tuple[float, Job]] = deque()  # (ready since, job), oldest first
        # conversation key -> jobs waiting behind the one that is queued or running (None
        # until a second job arrives: most conversations never need the queue)
        self._waiting: dict[str, deque[Job] | None] = {}
        self._queued = 0  # accepted, not started
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._last_accept = 0.0
        metrics.watch_queue(lambda: self._queued, lambda: len(self._tasks))
        self._draining = False  # no new accepts: start whatever waits, at once
        self._closed = False  # stop starting anything

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def last_accept(self) -> float:
        """time.monotonic() of the last accepted message (0.0 before the first)."""
        return self._last_accept

    async def wait_idle(self) -> None:
        """Return once nothing is queued or running (for the demo, tests and benchmarks)."""
        await self._idle.wait()

    async def accept(self, job: Job, dedupe_keys: list[str]) -> bool:
        """Dedupe and enqueue. False for a duplicate. Raises `StoreUnavailable`."""
        if not await self._store.claim(dedupe_keys, DEFAULT_CLAIM_TTL):
            return False
        if self._draining:
            # Claimed while shutting down: nobody here will answer it. The durable inbox
            # closes this gap; until then the edge answers 503 before reaching this point.
            log.warning("job %s accepted during shutdown and dropped", job.job_id)
            return True
        self._last_accept = now = time.monotonic()
        self._idle.clear()
        self._queued += 1
        key = job.conversation_key
        if key in self._waiting:
            waiting = self._waiting[key]
            if waiting is None:
                waiting = self._waiting[key] = deque()
            waiting.append(job)
        else:
            self._waiting[key] = None
            self._ready.append((now, job))
            self._wake.set()
        if self._dispatcher is None:
            self._dispatcher = asyncio.create_task(self._dispatch(), name="inbox dispatcher")
        return True

    async def _dispatch(self) -> None:
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            while self._ready and len(self._tasks) < self._max and not self._closed:
                now = time.monotonic()
                quiet_for = now - self._last_accept
                if quiet_for >= QUIET_S or self._draining:
                    self._start(START_SLICE)
                    await asyncio.sleep(0)
                    continue
                # A burst is on: start only answers that have waited too long, and only while
                # few are running.
                overdue = 0
                room = BURST_RUNNING - len(self._tasks)
                for since, _ in self._ready:
                    if now - since < MAX_HOLD_S or overdue >= room:
                        break
                    overdue += 1
                self._start(overdue)
                await asyncio.sleep(min(TICK_S, QUIET_S - quiet_for))

    def _start(self, count: int) -> None:
        while count > 0 and self._ready and len(self._tasks) < self._max:
            count -= 1
            _, job = self._ready.popleft()
            self._queued -= 1
            task = asyncio.create_task(self._run(job), name=f"answer {job.job_id}")
            self._tasks.add(task)
            task.add_done_callback(self._done)

    async def _run(self, job: Job) -> None:
        try:
            await self._worker(job)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("answer %s failed", job.job_id)
        finally:
            self._next_of(job.conversation_key)

    def _next_of(self, conversation_key: str) -> None:
        waiting = self._waiting.get(conversation_key)
        if waiting:
            self._ready.append((time.monotonic(), waiting.popleft()))
        else:
            self._waiting.pop(conversation_key, None)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()
        if not self._tasks and not self._queued:
            self._idle.set()

    async def drain(self, grace: float) -> None:
        """Answer what was accepted (queued jobs too: they were acked) within `grace`
        seconds; then cancel whatever still runs. The edge stops accepting first."""
        self._draining = True
        self._wake.set()
        if not self._idle.is_set():
            log.info(
                "waiting up to %.0fs for %d answers (%d not started yet)",
                grace,
                len(self._tasks) + self._queued,
                self._queued,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace)
        self._closed = True
        self._wake.set()
        if self._dispatcher is not None:
            await self._dispatcher
        if self._queued:
            log.warning("shut down with %d accepted answers never started", self._queued)
        pending = set(self._tasks)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("cancelled %d answers still running after %.0fs", len(pending), grace)
            await asyncio.wait(pending, timeout=5)
