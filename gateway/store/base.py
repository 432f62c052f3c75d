"""The storage Protocol. One parametrised test suite (tests/unit/test_store.py) runs
against every backend, so they cannot drift apart."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

# Feishu re-pushes an event at 15 s, 5 min, 1 h and 6 h: a claim must outlive ~7.1 h.
DEFAULT_CLAIM_TTL = 8 * 3600.0


class StoreUnavailable(Exception):
    """The backend did not answer. The edge answers 503 so the platform retries."""


class Store(Protocol):
    async def claim(self, keys: Sequence[str], ttl: float = DEFAULT_CLAIM_TTL) -> bool:
        """Claim every key for `ttl` seconds, atomically: all or nothing.

        Returns False, changing nothing, if any key is already claimed. This is the dedupe
        that makes a platform retry (on any instance) a no-op."""

    async def get_conversation(self, key: str) -> str | None: ...

    async def set_conversation(self, key: str, conversation_id: str) -> None: ...

    async def delete_conversation(self, key: str) -> bool:
        """Forget the conversation; True if there was one."""

    def lock(self, key: str, ttl: float = 60.0) -> AbstractAsyncContextManager[None]:
        """Hold `key` exclusively (across instances for Redis). `ttl` bounds how long a
        crashed holder can block others; a live holder keeps it renewed."""

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, ttl: float | None = None) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        """Add `delta` to an integer counter and return the new value; `ttl` (re)sets its
        expiry."""

    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless the backend answers."""

    async def aclose(self) -> None: ...


class KeyedLocks:
    """In-process locks by key, dropped when nobody holds or waits for them.

    The memory and SQLite stores serve one process, so an asyncio lock is the whole story."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def hold(self, key: str) -> AbstractAsyncContextManager[None]:
        return _Held(self._locks, key)


class _Held:
    """One hold of a keyed lock. A class, not an @asynccontextmanager: every answer holds
    its conversation's lock while it streams, and a suspended generator costs more memory
    per answer than this object."""

    __slots__ = ("_key", "_lock", "_locks")

    def __init__(self, locks: dict[str, tuple[asyncio.Lock, int]], key: str) -> None:
        self._locks = locks
        self._key = key
        self._lock: asyncio.Lock | None = None

    async def __aenter__(self) -> None:
        lock, users = self._locks.get(self._key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[self._key] = (lock, users + 1)
        try:
            await lock.acquire()
        except BaseException:
            self._release_user(lock)  # cancelled while waiting: never held
            raise
        self._lock = lock

    async def __aexit__(self, *exc_info: object) -> None:
        lock = self._lock
        assert lock is not None
        lock.release()
        self._release_user(lock)

    def _release_user(self, lock: asyncio.Lock) -> None:
        _, users = self._locks[self._key]
        if users == 1:
            del self._locks[self._key]
        else:
            self._locks[self._key] = (lock, users - 1)
