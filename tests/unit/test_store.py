"""One suite, every backend: memory, SQLite and a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway.store.base import KeyedLocks, Store, StoreUnavailable
from gateway.store.factory import open_store
from gateway.store.redis import RedisStore
from gateway.store.sqlite import SQLiteStore

BACKENDS = ["memory", "sqlite", "redis"]


@pytest.fixture
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """A factory: calling it twice gives two handles on the same storage (two instances
    of the gateway, or one restarted), except for memory, which shares nothing."""
    kind = request.param
    if kind == "memory":
        shared = open_store("memory://")
        return lambda: shared
    if kind == "sqlite":
        path = tmp_path / "store.db"
        return lambda: open_store(f"sqlite:///{path}")
    url = request.getfixturevalue("redis_url")
    return lambda: open_store(url)


@pytest.fixture
async def store(
    make_store: Callable[[], Store], request: pytest.FixtureRequest
) -> AsyncIterator[Store]:
    if request.node.callspec.params["make_store"] == "redis":
        flush = aioredis.Redis.from_url(request.getfixturevalue("redis_url"))
        await flush.flushdb()
        await flush.aclose()
    s = make_store()
    yield s
    await s.aclose()


each_backend = pytest.mark.parametrize("make_store", BACKENDS, indirect=True)


@each_backend
async def test_claim_is_all_or_nothing(store: Store) -> None:
    assert await store.claim(["a", "b"], 60)
    assert not await store.claim(["b", "c"], 60)
    assert await store.claim(["c"], 60)  # "c" was not claimed by the failed attempt
    assert not await store.claim(["a"], 60)


@each_backend
async def test_claims_expire(store: Store) -> None:
    assert await store.claim(["short"], 0.2)
    assert not await store.claim(["short"], 0.2)
    await asyncio.sleep(0.3)
    assert await store.claim(["short"], 0.2)


@each_backend
async def test_concurrent_claims_of_one_key_let_exactly_one_through(store: Store) -> None:
    results = await asyncio.gather(*(store.claim(["race", f"other-{i}"], 60) for i in range(50)))
    assert sum(results) == 1


@each_backend
async def test_claims_at_once_are_decided_in_order_and_all_or_nothing(store: Store) -> None:
    # SQLite decides a whole tick's claims in one batch (in arrival order; Redis in whichever
    # order the commands land): exactly one of two overlapping claims wins, and the loser
    # keeps none of its keys.
    first, second, apart = await asyncio.gather(
        store.claim(["a", "b"], 60), store.claim(["b", "c"], 60), store.claim(["d"], 60)
    )
    assert first != second and apart
    loser_only_key = "c" if first else "a"
    assert await store.claim([loser_only_key], 60)
    assert not await store.claim(["b"], 60)
    assert not await store.claim(["d"], 60)


@each_backend
async def test_conversations(store: Store) -> None:
    assert await store.get_conversation("app/user:bot:U1") is None
    await store.set_conversation("app/user:bot:U1", "conv-1")
    await store.set_conversation("app/user:bot:U1", "conv-2")
    assert await store.get_conversation("app/user:bot:U1") == "conv-2"
    assert await store.delete_conversation("app/user:bot:U1")
    assert not await store.delete_conversation("app/user:bot:U1")
    assert await store.get_conversation("app/user:bot:U1") is None


@each_backend
async def test_key_values_with_ttl(store: Store) -> None:
    await store.set("k", "v")
    await store.set("brief", "x", ttl=0.2)
    assert await store.get("k") == "v"
    assert await store.get("brief") == "x"
    await asyncio.sleep(0.3)
    assert await store.get("brief") is None
    await store.delete("k")
    assert await store.get("k") is None


@each_backend
async def test_incr(store: Store) -> None:
    assert await store.incr("n") == 1
    assert await store.incr("n", 2) == 3
    assert await store.incr("n", -1) == 2
    assert await store.incr("gone", ttl=0.2) == 1
    await asyncio.sleep(0.3)
    assert await store.incr("gone", ttl=0.2) == 1


@each_backend
async def test_lock_is_exclusive_and_ordered(store: Store) -> None:
    order: list[str] = []

    async def hold(name: str, pause: float) -> None:
        async with store.lock("conv"):
            order.append(f"{name}+")
            await asyncio.sleep(pause)
            order.append(f"{name}-")

    first = asyncio.create_task(hold("a", 0.1))
    await asyncio.sleep(0.02)
    await asyncio.gather(first, hold("b", 0.0))
    assert order == ["a+", "a-", "b+", "b-"]


@pytest.mark.parametrize("make_store", ["redis"], indirect=True)
async def test_a_second_instance_sees_the_same_state(
    store: Store, make_store: Callable[[], Store]
) -> None:
    """Another instance on the same Redis sees conversations and claims at once.
    (memory:// keeps nothing across instances, by design.)"""
    await store.set_conversation("c", "conv-9")
    assert await store.claim(["event:1"], 60)
    other = make_store()
    try:
        assert await other.get_conversation("c") == "conv-9"
        assert not await other.claim(["event:1"], 60)
    finally:
        await other.aclose()


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


@each_backend
async def test_ping(store: Store) -> None:
    await store.ping()


# --- backend specifics (not parametrised) ----------------------------------------------------


async def test_sqlite_batches_a_burst_of_claims(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "burst.db"))
    results = await asyncio.gather(*(store.claim([f"burst-{i}"], 60) for i in range(2000)))
    assert all(results)
    again = await asyncio.gather(*(store.claim([f"burst-{i}"], 60) for i in range(0, 2000, 7)))
    assert not any(again)
    await store.aclose()


async def test_an_unreachable_redis_raises_store_unavailable() -> None:
    store = RedisStore("redis://127.0.0.1:1/0")
    with pytest.raises(StoreUnavailable):
        await store.claim(["x"], 1)
    with pytest.raises(StoreUnavailable):
        await store.ping()
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


async def test_keyed_locks_forget_keys_nobody_holds_or_waits_for() -> None:
    locks = KeyedLocks()
    async with locks.hold("conv"):
        waiter = asyncio.create_task(locks.hold("conv").__aenter__())
        await asyncio.sleep(0)
        waiter.cancel()  # gave up waiting: must not leave a user behind
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
    assert locks._locks == {}
    async with locks.hold("conv"):  # and the key is free again
        pass
    assert locks._locks == {}
