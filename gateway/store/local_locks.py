"""In-process locks by key: the `Locks` of the memory and SQLite stores, which serve one
process, so an asyncio lock is the whole story (Redis locks across instances instead)."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager


class KeyedLocks:
    """Locks by key, each dropped when nobody holds or waits for it."""

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
