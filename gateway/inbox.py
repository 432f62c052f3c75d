"""The inbox: where acked messages wait for a worker.

This is the seam for "nothing acked is ever lost". Today `accept()` dedupes in the store
(an atomic claim of every dedupe key) and queues the job in this process. The durable inbox
will make `accept()` also persist the job (Redis Streams, or a SQLite table) before the ack,
and feed `_start()` from the store, so that any instance can finish what another began. The
edge, the job format and the workers do not change.

Ordering: jobs of one conversation run one at a time, in arrival order (a later message must
see the conversation the earlier one created). Different conversations run concurrently, up
to `max_concurrent`; beyond that they wait here, and acks never wait for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from gateway.metrics import Metrics
from gateway.models import Job
from gateway.store.base import DEFAULT_CLAIM_TTL, Store

log = logging.getLogger(__name__)

Worker = Callable[[Job], Awaitable[None]]


class Inbox:
    def __init__(
        self, store: Store, worker: Worker, *, max_concurrent: int, metrics: Metrics
    ) -> None:
        self._store = store
        self._worker = worker
        self._max = max_concurrent
        self._metrics = metrics
        self._ready: deque[Job] = deque()
        # conversation key -> jobs waiting behind the one that is queued or running
        self._waiting: dict[str, deque[Job]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    @property
    def queued(self) -> int:
        return len(self._ready) + sum(len(q) for q in self._waiting.values())

    async def wait_idle(self) -> None:
        """Return once nothing is queued or running (for the demo, tests and benchmarks)."""
        await self._idle.wait()

    async def accept(self, job: Job, dedupe_keys: list[str]) -> bool:
        """Dedupe and enqueue. False for a duplicate. Raises `StoreUnavailable`."""
        if not await self._store.claim(dedupe_keys, DEFAULT_CLAIM_TTL):
            return False
        if self._closed:
            # Claimed while shutting down: nobody here will answer it. The durable inbox
            # closes this gap; until then the edge answers 503 before reaching this point.
            log.warning("job %s accepted during shutdown and dropped", job.job_id)
            return True
        self._idle.clear()
        waiting = self._waiting.get(job.conversation_key)
        if waiting is not None:
            waiting.append(job)
        else:
            self._waiting[job.conversation_key] = deque()
            self._ready.append(job)
            self._start()
        self._metrics.queued.set(self.queued)
        return True

    def _start(self) -> None:
        while self._ready and len(self._tasks) < self._max:
            job = self._ready.popleft()
            task = asyncio.create_task(self._run(job), name=f"answer {job.job_id}")
            self._tasks.add(task)
            task.add_done_callback(self._done)
        self._metrics.running.set(len(self._tasks))

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
            self._ready.append(waiting.popleft())
        else:
            self._waiting.pop(conversation_key, None)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._closed:
            self._start()
        if not self._tasks and not self._ready:
            self._idle.set()
        self._metrics.running.set(len(self._tasks))
        self._metrics.queued.set(self.queued)

    async def drain(self, grace: float) -> None:
        """Stop starting jobs; let running ones finish for up to `grace` seconds."""
        self._closed = True
        dropped = self.queued
        if dropped:
            log.warning("shutting down with %d queued answers not started", dropped)
        if self._tasks:
            log.info("waiting up to %.0fs for %d answers in flight", grace, len(self._tasks))
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("cancelled %d answers still running after %.0fs", len(pending), grace)
                await asyncio.wait(pending, timeout=5)
