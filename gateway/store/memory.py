"""In-process store, for tests and throwaway runs: nothing survives a restart. The parts of
the `Store` are kept apart: claims in a `ClaimIndex`, the inbox's jobs, conversations and
shared state in dicts, locks in `KeyedLocks`."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from gateway.inbox.feed import JobRecord, OneProcessFeed
from gateway.models import Job
from gateway.store.base import DEFAULT_CLAIM_TTL, Subscription
from gateway.store.claims import ClaimIndex
from gateway.store.fanout import LocalBroadcast
from gateway.store.local_locks import KeyedLocks


class MemoryStore(OneProcessFeed):
    def __init__(self) -> None:
        super().__init__()
        self._claims = ClaimIndex()
        self._kept: dict[str, JobRecord] = {}  # the inbox: job id -> attempts, checkpoint
        self.dead_letters: list[tuple[Job, str]] = []
        self._conversations: dict[str, str] = {}
        self._values: dict[str, tuple[str, float | None]] = {}
        self._locks = KeyedLocks()
        self._broadcast = LocalBroadcast()  # one process owns this store
        self._next_purge = 0.0

    async def claim(self, keys: Sequence[str], ttl: float = DEFAULT_CLAIM_TTL) -> bool:
        return self._claims.claim(keys, time.time(), ttl)

    # --- Inbox -------------------------------------------------------------------------

    async def accept(self, keys: Sequence[str], job: Job, ttl: float = DEFAULT_CLAIM_TTL) -> bool:
        if not self._claims.claim(keys, time.time(), ttl):
            return False
        self._kept.setdefault(job.job_id, JobRecord(0))
        self._queue.put((job,))
        return True

    async def begin(self, job: Job) -> JobRecord:
        record = self._kept.setdefault(job.job_id, JobRecord(0))
        record.attempts += 1
        return JobRecord(record.attempts, dict(record.checkpoint))

    async def checkpoint(self, job: Job, state: Mapping[str, Any]) -> None:
        if job.job_id in self._kept:
            self._kept[job.job_id].checkpoint = dict(state)

    async def finish(self, job: Job) -> None:
        self._kept.pop(job.job_id, None)

    async def dead_letter(self, job: Job, reason: str) -> None:
        self._kept.pop(job.job_id, None)
        self.dead_letters.append((job, reason))

    def backlog(self) -> int:
        return len(self._kept)

    # --- Conversations -----------------------------------------------------------------

    async def get_conversation(self, key: str) -> str | None:
        return self._conversations.get(key)

    async def set_conversation(self, key: str, conversation_id: str) -> None:
        self._conversations[key] = conversation_id

    async def delete_conversation(self, key: str) -> bool:
        return self._conversations.pop(key, None) is not None

    def lock(self, key: str, ttl: float = 60.0) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(key)

    async def get(self, key: str) -> str | None:
        item = self._values.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= time.time():
            del self._values[key]
            return None
        return value

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        now = time.time()
        if now >= self._next_purge:  # values that expire unread would otherwise pile up
            self._next_purge = now + 60.0
            self._values = {k: v for k, v in self._values.items() if v[1] is None or v[1] > now}
        self._values[key] = (value, None if ttl is None else now + ttl)

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)

    async def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        current = await self.get(key)
        value = int(current or 0) + delta
        await self.set(key, str(value), ttl)
        return value

    async def ping(self) -> None:
        return None

    # --- Broadcast ---------------------------------------------------------------------

    async def publish(self, channel: str, data: str) -> None:
        await self._broadcast.publish(channel, data)

    async def subscribe(self, channel: str) -> Subscription:
        return await self._broadcast.subscribe(channel)

    async def aclose(self) -> None:
        await self._broadcast.aclose()
