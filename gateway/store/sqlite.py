"""SQLite store: the embedded, single-instance default that survives restarts.

Every operation runs on one dedicated thread that owns the connection. The thread drains
whatever has queued up and runs it as one transaction, so a burst of webhook claims costs one
commit, not one each, and the event loop never blocks on disk. WAL lets readers proceed while
a batch commits.

One process only: the lock is in-process. Use Redis for several instances.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, TypeVar

from gateway.store.base import DEFAULT_CLAIM_TTL, KeyedLocks, StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
_MAX_BATCH = 1024
_PURGE_EVERY_S = 300.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS conversations (
    key TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL);
"""


class _Op:
    __slots__ = ("fn", "future", "loop")

    def __init__(
        self, fn: Callable[[sqlite3.Connection], Any], future: asyncio.Future[Any]
    ) -> None:
        self.fn = fn
        self.future = future
        self.loop = future.get_loop()


def _settle(results: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in results:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class SQLiteStore:
    def __init__(self, path: str) -> None:
        self._path = path
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._locks = KeyedLocks()
        self._closed = False

    # --- the writer thread ---------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._thread_lock:
            if self._thread is None:
                ready: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._run, args=(ready,), name="sqlite-store", daemon=True
                )
                self._thread.start()
                error = ready.get()
                if error is not None:
                    self._thread = None
                    raise StoreUnavailable(f"cannot open SQLite store: {error}") from error

    def _open(self) -> sqlite3.Connection:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL + WAL: a crash of the process loses nothing; a power cut may lose the last
        # commits. Claims lost that way mean a rare double answer, not lost data.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(_SCHEMA)
        return conn

    def _run(self, ready: queue.SimpleQueue[BaseException | None]) -> None:
        try:
            conn = self._open()
        except Exception as exc:  # reported to the opener
            ready.put(exc)
            return
        ready.put(None)
        next_purge = time.time() + _PURGE_EVERY_S
        while True:
            op = self._queue.get()
            if op is None:
                break
            batch = [op]
            stop = False
            while len(batch) < _MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._run_batch(conn, batch)
            if time.time() >= next_purge:
                next_purge = time.time() + _PURGE_EVERY_S
                self._purge(conn)
            if stop:
                break
        conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        results: list[tuple[asyncio.Future[Any], bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                try:
                    results.append((op.future, True, op.fn(conn)))
                except sqlite3.Error as exc:
                    results.append((op.future, False, StoreUnavailable(str(exc))))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("SQLite batch failed: %s", exc)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            results = [(op.future, False, StoreUnavailable(str(exc))) for op in batch]
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]]
        by_loop = {}
        for op, result in zip(batch, results, strict=True):
            by_loop.setdefault(op.loop, []).append(result)
        for loop, items in by_loop.items():
            # One wake-up per batch rather than one per operation.
            if not loop.is_closed():
                loop.call_soon_threadsafe(_settle, items)

    @staticmethod
    def _purge(conn: sqlite3.Connection) -> None:
        now = time.time()
        try:
            conn.execute("DELETE FROM claims WHERE expires_at <= ?", (now,))
            conn.execute("DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
        except sqlite3.Error as exc:
            log.warning("SQLite purge failed: %s", exc)

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreUnavailable("store is closed")
        self._ensure_thread()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put(_Op(fn, future))
        return await future

    # --- Store ---------------------------------------------------------------------------

    async def claim(self, keys: Sequence[str], ttl: float = DEFAULT_CLAIM_TTL) -> bool:
        keys = list(keys)

        def run(conn: sqlite3.Connection) -> bool:
            now = time.time()
            marks = ",".join("?" * len(keys))
            taken = conn.execute(
                f"SELECT 1 FROM claims WHERE key IN ({marks}) AND expires_at > ? LIMIT 1",
                (*keys, now),
            ).fetchone()
            if taken:
                return False
            conn.executemany(
                "INSERT OR REPLACE INTO claims (key, expires_at) VALUES (?, ?)",
                [(k, now + ttl) for k in keys],
            )
            return True

        return await self._call(run)

    async def get_conversation(self, key: str) -> str | None:
        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT conversation_id FROM conversations WHERE key = ?", (key,)
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._call(run)

    async def set_conversation(self, key: str, conversation_id: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO conversations (key, conversation_id, updated_at)"
                " VALUES (?, ?, ?)",
                (key, conversation_id, time.time()),
            )

        await self._call(run)

    async def delete_conversation(self, key: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM conversations WHERE key = ?", (key,))
            return cur.rowcount > 0

        return await self._call(run)

    def lock(self, key: str, ttl: float = 60.0) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(key)

    async def get(self, key: str) -> str | None:
        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT value FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
                (key, time.time()),
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._call(run)

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        def run(conn: sqlite3.Connection) -> None:
            expires = None if ttl is None else time.time() + ttl
            conn.execute(
                "INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)",
                (key, value, expires),
            )

        await self._call(run)

    async def delete(self, key: str) -> None:
        await self._call(lambda conn: conn.execute("DELETE FROM kv WHERE key = ?", (key,)))

    async def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        def run(conn: sqlite3.Connection) -> int:
            now = time.time()
            row = conn.execute(
                "SELECT value FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
                (key, now),
            ).fetchone()
            value = (int(row[0]) if row else 0) + delta
            expires = None if ttl is None else now + ttl
            conn.execute(
                "INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)",
                (key, str(value), expires),
            )
            return value

        return await self._call(run)

    async def ping(self) -> None:
        await self._call(lambda conn: conn.execute("SELECT 1").fetchone())

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        thread = self._thread
        if thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(thread.join, 10.0)
