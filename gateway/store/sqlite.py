"""SQLite store: the embedded, single-instance default that survives restarts.

Group commit on the event loop. Operations queue up and run together, as one transaction,
once the burst that queued them is in (gateway/store/settle.py), so a burst of webhook
claims costs one commit rather than one each, and no thread handoff sits on the ack path.
(A writer thread was tried first: with the process busy, every claim waited for a GIL
handoff, and acks fell to a few hundred a second.)
With WAL and synchronous=NORMAL a commit is a write to the log, not an fsync. Checkpoints,
the only slow part, run on a background thread with their own connection, so they never
stall the loop.

Each part of the `Store` has its own table: `claim_log`, `conversations` and `kv` (shared
state); locks are in-process (`KeyedLocks`).

The inbox table is keyed by a sequence number the store hands out, with no index on the job
id: the ids are random, so an index put every accepted job on a B-tree leaf of its own and
tripled what each commit wrote (145 KiB of WAL for a tick of 32 webhooks, 43 KiB without).
The store knows each kept job's row from memory (`_rows`), filled when it opens.

Dedupe claims are an append-only log on disk and an index in memory (gateway/store/claims.py
says why), rebuilt from the log when the store opens. A claim is decided at once against the
index and answered once its row is committed; if the commit fails, the claim is released, so
the platform's retry of the 503 is not taken for a duplicate.

One process only: the lock and the claim index are in-process, so a second gateway on the
same file would answer retries twice. The store therefore holds an exclusive lock on
`<path>.lock` while it is open, and a second process gets a clear StoreUnavailable (and
never becomes ready). Use Redis for several instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, TypeVar

import orjson

from gateway.inbox.feed import JobRecord, OneProcessFeed
from gateway.models import Job
from gateway.store.base import DEFAULT_CLAIM_TTL, StoreUnavailable, Subscription
from gateway.store.claims import ClaimIndex
from gateway.store.fanout import LocalBroadcast
from gateway.store.local_locks import KeyedLocks
from gateway.store.settle import WhenSettled

log = logging.getLogger(__name__)
T = TypeVar("T")
# Often, so the WAL stays small: commits append whole pages, a busy gateway writes several
# MB a second, and a small WAL keeps lookups cheap and a restart's recovery short.
_CHECKPOINT_EVERY_S = 1.0
_WAL_LIMIT_BYTES = 16 << 20
_PURGE_EVERY_S = 300.0
_PURGE_BATCH = 5000  # rows per purge, so a purge never holds the loop for long

_SCHEMA = """
CREATE TABLE IF NOT EXISTS claim_log (key TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS conversations (
    key TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL);
CREATE TABLE IF NOT EXISTS inbox (
    seq INTEGER PRIMARY KEY, job_id TEXT NOT NULL, job BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, checkpoint TEXT);
CREATE TABLE IF NOT EXISTS dead_letters (
    job_id TEXT NOT NULL, job BLOB NOT NULL, reason TEXT NOT NULL, attempts INTEGER NOT NULL,
    failed_at REAL NOT NULL);
"""
# A claim waiting for the next commit: its keys, when they expire, who waits for the
# outcome, and the job it keeps in the inbox (none for a bare claim).
_PendingClaim = tuple[Sequence[str], float, "asyncio.Future[bool]", Job | None]

Op = Callable[[sqlite3.Connection], Any]


class SQLiteStore(OneProcessFeed):
    def __init__(self, path: str) -> None:
        super().__init__()
        # job id -> its row in the inbox table, for every job kept there (committed)
        self._rows: dict[str, int] = {}
        self._next_row = 1
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._pending: list[tuple[Op, asyncio.Future[Any]]] = []
        self._claims = ClaimIndex()  # filled from the log when the connection opens
        # Claims decided since the last flush: (keys, ends, future), written in one insert.
        self._pending_claims: list[_PendingClaim] = []
        # Commits what was queued once a burst's calls are in (gateway/store/settle.py).
        self._commit = WhenSettled(self._queued, self._flush)
        self._locks = KeyedLocks()
        self._broadcast = LocalBroadcast()  # one process owns this store
        self._next_purge = time.monotonic() + _PURGE_EVERY_S
        self._checkpointer: asyncio.Task[None] | None = None
        self._lock_fd: int | None = None  # holds <path>.lock while the store is open
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
            _migrate_claims_table(conn)
            _migrate_inbox_table(conn)
        return conn

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._lock_file()
            conn: sqlite3.Connection | None = None
            try:
                conn = self._connect()
                self._claims = _load_claims(conn)
                self._rows = dict(conn.execute("SELECT job_id, seq FROM inbox ORDER BY seq"))
                self._next_row = max(self._rows.values(), default=0) + 1
            except (sqlite3.Error, OSError) as exc:
                if conn is not None:
                    conn.close()
                raise StoreUnavailable(f"cannot open SQLite store {self._path}: {exc}") from exc
            self._conn = conn
            if self._path != ":memory:":
                self._checkpointer = asyncio.get_running_loop().create_task(
                    self._checkpoint_forever(), name="sqlite checkpoints"
                )
        return self._conn

    def _lock_file(self) -> None:
        if self._lock_fd is not None or self._path == ":memory:":
            return
        lock_path = self._path + ".lock"
        try:
            Path(lock_path).parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self._path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise StoreUnavailable(
                f"SQLite store {self._path} is in use by another gateway process; "
                "several instances need store: redis://"
            ) from exc
        self._lock_fd = fd

    def _future(self) -> asyncio.Future[Any]:
        """A future the next flush resolves."""
        if self._closed:
            raise StoreUnavailable("store is closed")
        return asyncio.get_running_loop().create_future()

    async def _call(self, op: Op) -> Any:
        future = self._future()
        self._pending.append((op, future))
        self._commit.schedule()
        return await future

    def _queued(self) -> int:
        return len(self._pending) + len(self._pending_claims)

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        claims, self._pending_claims = self._pending_claims, []
        try:
            conn = self._connection()
        except StoreUnavailable as exc:
            self._fail(batch, claims, exc)
            return
        results: list[tuple[asyncio.Future[Any], bool, Any]] = []
        kept: dict[str, int] = {}  # rows this flush adds to the inbox
        try:
            conn.execute("BEGIN IMMEDIATE")
            if claims:
                conn.executemany(
                    "INSERT INTO claim_log (key, expires_at) VALUES (?, ?)",
                    [(key, ends) for keys, ends, _, _ in claims for key in keys],
                )
                # The jobs go in with their claims, in the same commit: never one alone.
                rows = []
                for _, _, _, job in claims:
                    # Kept once, as INSERT OR IGNORE on a unique id would.
                    if job is not None and job.job_id not in self._rows and job.job_id not in kept:
                        kept[job.job_id] = row = self._next_row + len(kept)
                        rows.append((row, job.job_id, job.to_json()))
                if rows:
                    conn.executemany("INSERT INTO inbox (seq, job_id, job) VALUES (?, ?, ?)", rows)
                results += [(future, True, True) for _, _, future, _ in claims]
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
            self._fail(batch, claims, StoreUnavailable(str(exc)))
            return
        if claims:
            self._next_row += len(kept)
            self._rows.update(kept)
            self._queue.put([job for _, _, _, job in claims if job is not None])
        for future, ok, value in results:
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def _fail(
        self,
        batch: list[tuple[Op, asyncio.Future[Any]]],
        claims: list[_PendingClaim],
        exc: StoreUnavailable,
    ) -> None:
        """Fail every caller of a flush that could not commit, releasing its claims."""
        for keys, ends, _, _ in claims:
            self._claims.release(keys, ends)
        for future in [f for _, f in batch] + [f for _, _, f, _ in claims]:
            if not future.done():
                future.set_exception(StoreUnavailable(str(exc)))

    @staticmethod
    def _purge(conn: sqlite3.Connection) -> None:
        now = time.time()
        conn.execute(
            "DELETE FROM claim_log WHERE rowid IN "
            "(SELECT rowid FROM claim_log WHERE expires_at <= ? LIMIT ?)",
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
        return await self._claim(keys, ttl, None)

    async def _claim(self, keys: Sequence[str], ttl: float, job: Job | None) -> bool:
        if self._closed:
            raise StoreUnavailable("store is closed")
        self._connection()  # the index is complete once the log is loaded
        now = time.time()
        if not self._claims.claim(keys, now, ttl):
            return False
        future: asyncio.Future[bool] = self._future()
        self._pending_claims.append((keys, now + ttl, future, job))
        self._commit.schedule()
        return await future

    # --- Inbox ---------------------------------------------------------------------------

    async def accept(self, keys: Sequence[str], job: Job, ttl: float = DEFAULT_CLAIM_TTL) -> bool:
        return await self._claim(keys, ttl, job)

    async def _load_kept(self) -> list[Job]:
        unreadable: list[str] = []  # moved to the dead letters: no longer in the inbox

        def run(conn: sqlite3.Connection) -> list[Job]:
            rows = conn.execute("SELECT seq, job_id, job FROM inbox ORDER BY seq").fetchall()
            jobs = []
            for row, job_id, raw in rows:
                try:
                    jobs.append(Job.from_json(raw))
                except ValueError:
                    log.error("inbox: job %s is unreadable; moving it to the dead letters", job_id)
                    _dead_letter(conn, row, job_id, raw, "unreadable", 0)
                    unreadable.append(job_id)
            return jobs

        jobs: list[Job] = await self._call(run)
        for job_id in unreadable:
            self._rows.pop(job_id, None)
        if jobs:
            log.info("inbox: resuming %d jobs kept from the last run", len(jobs))
        return jobs

    async def begin(self, job: Job) -> JobRecord:
        def run(conn: sqlite3.Connection) -> JobRecord:
            row = conn.execute(
                "UPDATE inbox SET attempts = attempts + 1 WHERE seq = ?"
                " RETURNING attempts, checkpoint",
                (self._rows.get(job.job_id),),
            ).fetchone()
            if row is None:
                return JobRecord(1)
            checkpoint = orjson.loads(row[1]) if row[1] else {}
            return JobRecord(int(row[0]), checkpoint if isinstance(checkpoint, dict) else {})

        record: JobRecord = await self._call(run)
        return record

    async def checkpoint(self, job: Job, state: Mapping[str, Any]) -> None:
        data = orjson.dumps(dict(state)).decode()
        await self._call(
            lambda conn: conn.execute(
                "UPDATE inbox SET checkpoint = ? WHERE seq = ?",
                (data, self._rows.get(job.job_id)),
            )
        )

    async def finish(self, job: Job) -> None:
        row = self._rows.get(job.job_id)
        await self._call(lambda conn: conn.execute("DELETE FROM inbox WHERE seq = ?", (row,)))
        # Forgotten once the delete is committed: a failed one is tried again.
        self._rows.pop(job.job_id, None)

    async def dead_letter(self, job: Job, reason: str) -> None:
        row = self._rows.get(job.job_id)

        def run(conn: sqlite3.Connection) -> None:
            found = conn.execute("SELECT attempts FROM inbox WHERE seq = ?", (row,)).fetchone()
            attempts = int(found[0]) if found else 0
            _dead_letter(conn, row, job.job_id, job.to_json(), reason, attempts)

        await self._call(run)
        self._rows.pop(job.job_id, None)

    def backlog(self) -> int:
        return len(self._rows)

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

    # --- Broadcast ---------------------------------------------------------------------

    async def publish(self, channel: str, data: str) -> None:
        await self._broadcast.publish(channel, data)

    async def subscribe(self, channel: str) -> Subscription:
        return await self._broadcast.subscribe(channel)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._broadcast.aclose()
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
            self._conn = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None


def _dead_letter(
    conn: sqlite3.Connection, row: int | None, job_id: str, job: bytes, reason: str, attempts: int
) -> None:
    conn.execute(
        "INSERT INTO dead_letters (job_id, job, reason, attempts, failed_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (job_id, job, reason, attempts, time.time()),
    )
    conn.execute("DELETE FROM inbox WHERE seq = ?", (row,))


def _load_claims(conn: sqlite3.Connection) -> ClaimIndex:
    claims = ClaimIndex()
    rows = conn.execute(
        "SELECT key, expires_at FROM claim_log WHERE expires_at > ? ORDER BY expires_at",
        (time.time(),),
    )
    for key, ends in rows:
        claims.add((key,), ends, None)
    return claims


def _migrate_claims_table(conn: sqlite3.Connection) -> None:
    """Stores made before the claim log kept claims in an indexed `claims` table: carry
    the live ones over, so retries of recent events stay duplicates across the upgrade."""
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'claims'")
    if found.fetchone() is None:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "INSERT INTO claim_log (key, expires_at)"
            " SELECT key, expires_at FROM claims WHERE expires_at > ?",
            (time.time(),),
        )
        conn.execute("DROP TABLE claims")
        conn.execute("COMMIT")
    except sqlite3.Error:
        conn.execute("ROLLBACK")
        raise


def _migrate_inbox_table(conn: sqlite3.Connection) -> None:
    """Stores made before the inbox lost its job-id index (see the module docstring):
    rebuild the table without it, keeping every job, its attempts and checkpoint."""
    if not conn.execute("PRAGMA index_list(inbox)").fetchall():
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE inbox_new (seq INTEGER PRIMARY KEY, job_id TEXT NOT NULL,"
            " job BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, checkpoint TEXT)"
        )
        conn.execute(
            "INSERT INTO inbox_new SELECT seq, job_id, job, attempts, checkpoint FROM inbox"
        )
        conn.execute("DROP TABLE inbox")
        conn.execute("ALTER TABLE inbox_new RENAME TO inbox")
        conn.execute("COMMIT")
    except sqlite3.Error:
        conn.execute("ROLLBACK")
        raise
