"""The durable inbox as one instance sees it: the jobs it should work on, and what it records
about each of them while it does.

Every store backend provides a `JobFeed` (`Store.feed()`): Redis hands out the jobs of the
stream shards this instance holds a lease on; SQLite and memory serve one process, which
takes every job. A job stays in the inbox until `finish()` or `dead_letter()`, so whatever
an instance does not finish (a crash, a deploy) is handed out again, to it after a restart
or to another instance, together with its checkpoint.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.models import Job
from gateway.store.base import StoreUnavailable


class InboxFull(StoreUnavailable):
    """The inbox holds as many unanswered messages as it may: refuse new ones (503), so
    the platform retries later, instead of growing without bound."""


@dataclass(slots=True)
class JobRecord:
    """What the inbox remembers of a job between attempts.

    `attempts` counts starts, this one included. `checkpoint` is what the last owner saved
    while answering (the reply sink's snapshot, the Dify task and conversation ids), empty
    on the first attempt."""

    attempts: int
    checkpoint: dict[str, Any] = field(default_factory=dict)


# Called with a predicate over jobs: those it holds for now belong to another instance.
LostJobs = Callable[[Callable[[Job], bool]], None]


class JobFeed(Protocol):
    """This instance's side of the durable inbox."""

    async def start(self, on_lost: LostJobs) -> None:
        """Begin taking jobs (Redis: acquire stream shards, resume their pending jobs)."""

    async def take(self, limit: int, wait: float) -> list[Job]:
        """Up to `limit` jobs to run, in order within each conversation; waits up to `wait`
        seconds when there are none. Each job returned is this instance's until `done()`."""

    async def begin(self, job: Job) -> JobRecord:
        """Count an attempt and return the job's record."""

    async def checkpoint(self, job: Job, state: Mapping[str, Any]) -> None:
        """Replace the job's checkpoint."""

    async def finish(self, job: Job) -> None:
        """The job is answered: remove it from the inbox."""

    async def dead_letter(self, job: Job, reason: str) -> None:
        """Give up on the job: move it to the dead letters, out of the inbox."""

    def done(self, job: Job) -> None:
        """This instance stopped working on `job` (finished or not)."""

    def accepted(self, job: Job) -> None:
        """This instance just accepted `job` into the inbox (a hint: take it soon)."""

    def backlog(self) -> int:
        """About how many messages the whole inbox holds unanswered."""

    async def pending(self) -> int:
        """Exactly how many messages the whole inbox holds unanswered (asks the store)."""

    def waiting(self) -> int:
        """Jobs this instance can take without asking the store (0 where unknown)."""

    def instances(self) -> int:
        """How many gateway instances share the inbox (1 for SQLite and memory)."""

    async def stop_taking(self) -> None:
        """Shutting down: hand out nothing more; let go of what is not being worked on."""

    def others_take_over(self) -> bool:
        """After `stop_taking()`: whether another instance is up to take over the jobs this
        one leaves in the inbox as soon as it lets go of them."""

    async def close(self) -> None:
        """Let go of everything: unfinished jobs go to another instance (or the next
        start)."""


class OneProcessFeed(ABC):
    """The feed of a store that serves a single process (memory; SQLite, whose file lock
    keeps a second process out): every kept job is this process's. A restarted process
    takes over at once what the last one left, since the lock says that one is gone.

    Subclasses keep the jobs (`_kept`) and fill `self._queue` as they accept or load
    them."""

    def __init__(self) -> None:
        self._queue = LocalQueue()

    def feed(self, *, lease_s: float) -> JobFeed:
        return self

    async def start(self, on_lost: LostJobs) -> None:
        self._queue.stopped = False
        self._queue.put(await self._load_kept())

    async def _load_kept(self) -> list[Job]:
        """Jobs kept by an earlier run, oldest first."""
        return []

    async def take(self, limit: int, wait: float) -> list[Job]:
        return await self._queue.take(limit, wait)

    @abstractmethod
    async def begin(self, job: Job) -> JobRecord: ...

    @abstractmethod
    async def checkpoint(self, job: Job, state: Mapping[str, Any]) -> None: ...

    @abstractmethod
    async def finish(self, job: Job) -> None: ...

    @abstractmethod
    async def dead_letter(self, job: Job, reason: str) -> None: ...

    @abstractmethod
    def backlog(self) -> int: ...

    async def pending(self) -> int:
        return self.backlog()

    def waiting(self) -> int:
        return len(self._queue)

    def done(self, job: Job) -> None:
        self._queue.release(job)

    def accepted(self, job: Job) -> None:
        return None  # queued by the store's accept already

    def instances(self) -> int:
        return 1

    async def stop_taking(self) -> None:
        self._queue.stop()

    def others_take_over(self) -> bool:
        return False  # one process: what it leaves waits for its next start

    async def close(self) -> None:
        self._queue.stop()


class LocalQueue:
    """The in-process hand-off for the single-process backends (memory, SQLite): a job
    accepted here is queued at once, and `take()` waits for one. A job is queued once until
    `release()`: the jobs loaded at start may include one that was accepted meanwhile."""

    def __init__(self) -> None:
        self._jobs: deque[Job] = deque()
        self._live: set[str] = set()  # ids queued or handed out, not released yet
        self._ready = asyncio.Event()
        self.stopped = False

    def put(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            if job.job_id not in self._live:
                self._live.add(job.job_id)
                self._jobs.append(job)
        if self._jobs:
            self._ready.set()

    def release(self, job: Job) -> None:
        self._live.discard(job.job_id)

    async def take(self, limit: int, wait: float) -> list[Job]:
        if not self._jobs and not self.stopped:
            self._ready.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._ready.wait()
            except TimeoutError:
                return []
        if self.stopped:
            return []
        count = min(limit, len(self._jobs))
        return [self._jobs.popleft() for _ in range(count)]

    def stop(self) -> None:
        self.stopped = True
        self._ready.set()

    def __len__(self) -> int:
        return len(self._jobs)
