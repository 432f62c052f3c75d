"""SQLite store: the embedded, single-instance default that survives restarts.

Group commit on the event loop. Operations queue up and run together, as one transaction,
at the next turn of the loop, so a burst of webhook claims costs one commit rather than one
each, and no thread handoff sits on the ack path. (A writer thread was tried first: with the
process busy, every claim waited for a GIL handoff, and acks fell to a few hundred a second.)
With WAL and synchronous=NORMAL a commit is a write to the log, not an fsync. Checkpoints,
the only slow part, run on a background thread with their own connection, so they never
stall the loop.

One process only: the lock is in-process. Use Redis for several instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, TypeVar

from gateway.store.base import DEFAULT_CLAIM_TTL, KeyedLocks, StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
# Often, so the WAL stays small: commits append whole pages, a busy gateway writes several
# MB a second, and a small WAL keeps lookups cheap and a restart's recovery short.
_CHECKPOINT_EVERY_S = 1.0
_WAL_LIMIT_BYTES = 16 << 20
_PURGE_EVERY_S = 300.0
_PURGE_BATCH = 5000  # rows per purge, so a purge never holds the loop for long
_LOOKUP_CHUNK = 500  # keys per claim lookup, well under SQLite's bound-parameter limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS conversations (
    key TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL);
"""

Op = Callable[[sqlite3.Connection], Any]


class SQLiteStore:
    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._pending: list[tuple[Op, asyncio.Future[Any]]] = []
        # Claims batch separately: one lookup and one insert for all of a tick's claims.
        self._pending_claims: list[tuple[list[str], float, asyncio.Future[bool]]] = []
        self._flush_scheduled = False
        self._locks = KeyedLocks()
        self._next_purge = time.monotonic() + _PURGE_EVERY_S
        self._checkpointer: asyncio.Task[None] | None = None
        self._closed = False

    # --- connection and group commit ----------------------------------------------------

    def _connect(self, *, for_checkpoints: bool = False) -> sqlite3.Connection:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=5000")
        if not for_checkpoints:
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL + WAL: a process crash loses nothing; a power cut may lose the last
            # commits. Claims lost that way mean a rare double answer, not lost data.
            conn.execute("PRAGMA synchronous=NORMAL")
            # Checkpoints happen on our own thread instead (see _checkpoint_forever).
            conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT_BYTES}")
            conn.executescript(_SCHEMA)
        return conn

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self._conn = self._connect()
            except (sqlite3.Error, OSError) as exc:
                raise StoreUnavailable(f"cannot open SQLite store {self._path}: {exc}") from exc
            if self._path != ":memory:":
                self._checkpointer = asyncio.get_running_loop().create_task(
                    self._checkpoint_forever(), name="sqlite checkpoints"
                )
        return self._conn

    def _future(self) -> asyncio.Future[Any]:
        """A future the next flush resolves (scheduling that flush if need be)."""
        if self._closed:
            raise StoreUnavailable("store is closed")
        loop = asyncio.get_running_loop()
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return loop.create_future()

    async def _call(self, op: Op) -> Any:
        future = self._future()
        self._pending.append((op, future))
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        claims, self._pending_claims = self._pending_claims, []
        try:
            conn = self._connection()
        except StoreUnavailable as exc:
            for future in _futures(batch, claims):
                if not future.done():
                    future.set_exception(StoreUnavailable(str(exc)))
            return
        results: list[tuple[asyncio.Future[Any], bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            if claims:
                results += [(f, True, won) for f, won in self._claim_all(conn, claims)]
            for op, future in batch:
                try:
                    results.append((future, True, op(conn)))
                except sqlite3.Error as exc:
                    results.append((future, False, StoreUnavailable(str(exc))))
            if time.monotonic() >= self._next_purge:
                self._next_purge = time.monotonic() + _PURGE_EVERY_S
                self._purge(conn)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("SQLite batch failed: %s", exc)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failed = StoreUnavailable(str(exc))
            results = [(future, False, failed) for future in _futures(batch, claims)]
        for future, ok, value in results:
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    @staticmethod
    def _purge(conn: sqlite3.Connection) -> None:
        now = time.time()
        conn.execute(
            "DELETE FROM claims WHERE rowid IN "
            "(SELECT rowid FROM claims WHERE expires_at <= ? LIMIT ?)",
            (now, _PURGE_BATCH),
        )
        conn.execute(
            "DELETE FROM kv WHERE rowid IN (SELECT rowid FROM kv WHERE expires_at IS NOT NULL"
            " AND expires_at <= ? LIMIT ?)",
            (now, _PURGE_BATCH),
        )

    async def _checkpoint_forever(self) -> None:
        """PASSIVE checkpoints never block writers; they run off the loop."""
        conn = await asyncio.to_thread(self._connect, for_checkpoints=True)
        try:
            while True:
                await asyncio.sleep(_CHECKPOINT_EVERY_S)
                try:
                    await asyncio.to_thread(conn.execute, "PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:
                    log.warning("SQLite checkpoint failed: %s", exc)
        finally:
            conn.close()

    # --- Store ---------------------------------------------------------------------------

    async def claim(self, keys: Sequence[str], ttl: float = DEFAULT_CLAIM_TTL) -> bool:
        future: asyncio.Future[bool] = self._future()
        self._pending_claims.append((list(keys), ttl, future))
        return await future

    @staticmethod
    def _claim_all(
        conn: sqlite3.Connection, claims: list[tuple[list[str], float, asyncio.Future[bool]]]
    ) -> list[tuple[asyncio.Future[bool], bool]]:
        """Every claim of one flush: one lookup and one insert for all of them, instead of
        two statements each. Claims are decided in arrival order, so of two in one batch
        that share a key (Slack's `message` and `app_mention`), the first wins."""
        now = time.time()
        wanted = list({k for keys, _, _ in claims for k in keys})
        taken: set[str] = set()
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            chunk = wanted[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT key FROM claims WHERE key IN ({marks}) AND expires_at > ?", (*chunk, now)
            )
            taken.update(key for (key,) in rows)
        decided: list[tuple[asyncio.Future[bool], bool]] = []
        rows_to_write: list[tuple[str, float]] = []
        for keys, ttl, future in claims:
            won = taken.isdisjoint(keys)
            if won:
                taken.update(keys)
                rows_to_write += [(k, now + ttl) for k in keys]
            decided.append((future, won))
        conn.executemany(
            "INSERT OR REPLACE INTO claims (key, expires_at) VALUES (?, ?)", rows_to_write
        )
        return decided

    async def get_conversation(self, key: str) -> str | None:
        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT conversation_id FROM conversations WHERE key = ?", (key,)
            ).fetchone()
            return None if row is None else str(row[0])

        result: str | None = await self._call(run)
        return result

    async def set_conversation(self, key: str, conversation_id: str) -> None:
        await self._call(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO conversations (key, conversation_id, updated_at)"
                " VALUES (?, ?, ?)",
                (key, conversation_id, time.time()),
            )
        )

    async def delete_conversation(self, key: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM conversations WHERE key = ?", (key,)).rowcount > 0

        result: bool = await self._call(run)
        return result

    def lock(self, key: str, ttl: float = 60.0) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(key)

    async def get(self, key: str) -> str | None:
        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT value FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
                (key, time.time()),
            ).fetchone()
            return None if row is None else str(row[0])

        result: str | None = await self._call(run)
        return result

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        expires = None if ttl is None else time.time() + ttl
        await self._call(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)",
                (key, value, expires),
            )
        )

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
            conn.execute(
                "INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)",
                (key, str(value), None if ttl is None else now + ttl),
            )
            return value

        result: int = await self._call(run)
        return result

    async def ping(self) -> None:
        await self._call(lambda conn: conn.execute("SELECT 1").fetchone())

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
            self._conn = None


def _futures(
    batch: list[tuple[Op, asyncio.Future[Any]]],
    claims: list[tuple[list[str], float, asyncio.Future[bool]]],
) -> list[asyncio.Future[Any]]:
    """Every caller waiting on one flush (to fail them all when the flush fails)."""
    return [f for _, f in batch] + [f for _, _, f in claims]
