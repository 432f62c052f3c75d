"""What only the SQLite store does: survive restarts, refuse a second process, batch
commits, release claims it could not commit, and carry old stores' claims and inbox over."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from gateway.store.base import StoreUnavailable
from gateway.store.sqlite import SQLiteStore
from tests.unit.store.test_inbox import job, no_loss, take_all


async def test_sqlite_state_survives_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "restart.db")
    first = SQLiteStore(path)
    await first.set_conversation("c", "conv-9")
    assert await first.claim(["event:long"], 60)
    assert await first.claim(["event:brief"], 0.2)
    await first.aclose()
    await asyncio.sleep(0.3)
    second = SQLiteStore(path)
    assert await second.get_conversation("c") == "conv-9"
    assert not await second.claim(["event:long"], 60)
    assert await second.claim(["event:brief"], 60)
    await second.aclose()


async def test_a_second_process_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    """Two gateways on one SQLite file would each dedupe alone and answer retries twice."""
    path = str(tmp_path / "shared.db")
    first = SQLiteStore(path)
    await first.ping()
    second = SQLiteStore(path)
    with pytest.raises(StoreUnavailable, match="redis"):
        await second.claim(["event:1"], 60)
    await second.aclose()
    await first.aclose()
    third = SQLiteStore(path)  # the lock went with the first store
    await third.ping()
    await third.aclose()


async def test_sqlite_batches_a_burst_of_claims(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "burst.db"))
    results = await asyncio.gather(*(store.claim([f"burst-{i}"], 60) for i in range(2000)))
    assert all(results)
    again = await asyncio.gather(*(store.claim([f"burst-{i}"], 60) for i in range(0, 2000, 7)))
    assert not any(again)
    await store.aclose()


async def test_an_unopenable_sqlite_file_raises_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = SQLiteStore(str(blocker / "store.db"))
    with pytest.raises(StoreUnavailable):
        await store.ping()
    await store.aclose()


async def test_a_failed_sqlite_commit_releases_its_claims(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The edge answers 503 and the platform retries: the retry must not be a duplicate."""
    store = SQLiteStore(str(tmp_path / "fail.db"))
    assert await store.claim(["warm"], 60)

    class BrokenConnection:
        in_transaction = False

        def execute(self, sql: str, *args: object) -> None:
            raise sqlite3.OperationalError("disk I/O error")

    real = store._conn
    monkeypatch.setattr(store, "_conn", BrokenConnection())
    with pytest.raises(StoreUnavailable):
        await store.claim(["event:1", "msg:1"], 60)
    monkeypatch.setattr(store, "_conn", real)
    assert await store.claim(["event:1", "msg:1"], 60)
    assert not await store.claim(["msg:1"], 60)
    await store.aclose()


async def test_sqlite_carries_live_claims_over_from_the_old_claims_table(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE claims (key TEXT PRIMARY KEY, expires_at REAL NOT NULL)")
    now = time.time()
    old.executemany(
        "INSERT INTO claims VALUES (?, ?)", [("event:live", now + 600), ("event:old", now - 1)]
    )
    old.commit()
    old.close()
    store = SQLiteStore(str(path))
    assert not await store.claim(["event:live"], 60)
    assert await store.claim(["event:old"], 60)
    await store.aclose()
    tables = {row[0] for row in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert "claims" not in tables and "claim_log" in tables


async def test_sqlite_rebuilds_an_old_inbox_table_keeping_its_jobs(tmp_path: Path) -> None:
    """Stores made when the inbox had a unique job-id index: every job comes back, with its
    attempts and checkpoint, and the table no longer has the index."""
    path = tmp_path / "old-inbox.db"
    first = job(1, "a"), job(2, "b")
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE inbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL"
        " UNIQUE, job BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, checkpoint TEXT)"
    )
    old.executemany(
        "INSERT INTO inbox (job_id, job, attempts, checkpoint) VALUES (?, ?, ?, ?)",
        [(j.job_id, j.to_json(), n, '{"sent": "x"}' if n else None) for n, j in enumerate(first)],
    )
    old.commit()
    old.close()
    store = SQLiteStore(str(path))
    feed = store.feed(lease_s=2.0)
    await feed.start(no_loss)
    assert [j.job_id for j in await take_all(feed, 2)] == [j.job_id for j in first]
    record = await feed.begin(first[1])
    assert (record.attempts, record.checkpoint) == (2, {"sent": "x"})
    assert store.backlog() == 2
    assert await store.accept(["event:new"], job(3, "c"))
    await feed.finish(first[0])
    assert store.backlog() == 2
    await feed.close()
    await store.aclose()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA index_list(inbox)").fetchall() == []
    assert [row[0] for row in conn.execute("SELECT job_id FROM inbox ORDER BY seq")] == [
        first[1].job_id,
        job(3, "c").job_id,
    ]


async def test_a_finish_that_did_not_commit_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job whose removal failed stays in the inbox, and the next try removes it."""
    store = SQLiteStore(str(tmp_path / "finish.db"))
    feed = store.feed(lease_s=2.0)
    await feed.start(no_loss)
    kept = job(1)
    assert await store.accept(["event:1"], kept)
    await take_all(feed, 1)

    class BrokenConnection:
        in_transaction = False

        def execute(self, sql: str, *args: object) -> None:
            raise sqlite3.OperationalError("disk I/O error")

    real = store._conn
    monkeypatch.setattr(store, "_conn", BrokenConnection())
    with pytest.raises(StoreUnavailable):
        await feed.finish(kept)
    monkeypatch.setattr(store, "_conn", real)
    assert store.backlog() == 1
    await feed.finish(kept)
    assert store.backlog() == 0
    await feed.close()
    await store.aclose()
    rows = sqlite3.connect(tmp_path / "finish.db").execute("SELECT count(*) FROM inbox")
    assert rows.fetchone() == (0,)
