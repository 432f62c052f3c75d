"""The Redis store's batcher (one server): calls of the same moment share one round trip,
each call gets its own reply or error, scripts a server lost are loaded again, and a Redis
that does not answer fails the calls in bounded time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import DataError

from gateway.store.base import StoreUnavailable
from gateway.store.redis import RedisStore
from gateway.store.redis_batch import Batcher, pack
from tests import redis_servers


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    raw = redis_servers.client(redis_url)
    await raw.flushdb()
    await raw.aclose()
    store = RedisStore(redis_url)
    yield store
    await store.aclose()


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many commands each write to a Redis socket carried, from now on."""
    seen: list[int] = []
    send = AbstractConnection.send_packed_command

    async def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        seen.append(1 if isinstance(command, bytes | str) else _commands_in(command))
        await send(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    yield seen


def _commands_in(chunks: Any) -> int:
    return sum(bytes(chunk).count(b"\r\n*") for chunk in chunks) + 1


def test_commands_are_packed_as_redis_py_packs_them() -> None:
    commands: list[tuple[Any, ...]] = [
        ("SET", "k", "värde ✓", "PX", 1500),
        ("EVALSHA", "a" * 40, 2, "s", "c", 7, 0.25, b"\x00job\r\n" * 2000, memoryview(b"mv")),
        ("SCRIPT", "LOAD", "return 1"),
    ]
    expected = aioredis.Redis().connection_pool.make_connection().pack_commands(commands)
    assert pack(commands) == [b"".join(expected)]


def test_a_value_redis_cannot_take_fails_the_batch_as_in_redis_py() -> None:
    for value in (True, None, object()):
        with pytest.raises(DataError):
            pack([("SET", "k", value)])


async def test_calls_made_together_share_one_round_trip(
    store: RedisStore, writes: list[int]
) -> None:
    await store.set("warm", "1")  # the batcher's connection is open from here on
    writes.clear()
    await asyncio.gather(*(store.set(f"k{i}", str(i)) for i in range(100)))
    values = await asyncio.gather(*(store.get(f"k{i}") for i in range(100)))
    assert values == [str(i) for i in range(100)]
    assert len(writes) == 2  # one for the sets, one for the gets
    assert sum(writes) >= 200


async def test_on_a_cluster_calls_made_together_share_a_round_trip_per_node(
    redis_cluster_url: str, writes: list[int]
) -> None:
    await redis_servers.flush(redis_cluster_url)
    store = RedisStore(redis_cluster_url)
    try:
        await store.set("warm", "1")
        writes.clear()
        await asyncio.gather(*(store.set(f"k{i}", str(i)) for i in range(100)))
        assert await asyncio.gather(*(store.get(f"k{i}") for i in range(100))) == [
            str(i) for i in range(100)
        ]
        assert await asyncio.gather(store.claim(["a"], 60), store.claim(["a"], 60)) == [
            True,
            False,
        ]
    finally:
        await store.aclose()
    # A write per node and tick (three nodes, three ticks), and a few the cluster client
    # makes of its own; one by one, the 202 calls would have been 202 writes.
    assert len(writes) <= 12
    assert sum(writes) >= 200


async def test_a_failing_call_fails_alone(store: RedisStore) -> None:
    await store.set("text", "not a number")
    results = await asyncio.gather(
        store.incr("text"), store.get("text"), store.incr("n"), return_exceptions=True
    )
    assert isinstance(results[0], StoreUnavailable)
    assert results[1:] == ["not a number", 1]


async def test_scripts_the_server_lost_are_loaded_again(store: RedisStore, redis_url: str) -> None:
    assert await store.claim(["a"], 60)
    raw = redis_servers.client(redis_url)
    try:
        await raw.script_flush()
    finally:
        await raw.aclose()
    # Both calls were refused (NOSCRIPT), the script was loaded, and they ran once each.
    results = await asyncio.gather(store.claim(["a"], 60), store.claim(["b"], 60))
    assert results == [False, True]
    assert not await store.claim(["b"], 60)


async def test_a_caller_that_gives_up_leaves_the_others_their_replies(store: RedisStore) -> None:
    await store.set("k", "v")
    abandoned = asyncio.ensure_future(store.get("k"))
    kept = asyncio.ensure_future(store.get("k"))
    await asyncio.sleep(0)
    abandoned.cancel()
    assert await kept == "v"
    assert await store.get("k") == "v"  # the connection is still in step


async def test_a_connection_the_server_closed_is_opened_again_before_a_call(
    store: RedisStore, redis_url: str
) -> None:
    """Redis restarted, or dropped idle clients: the next call must not fail for it."""
    await store.set("k", "v")
    raw = redis_servers.client(redis_url)
    try:
        killed = await raw.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    finally:
        await raw.aclose()
    assert killed >= 1
    await asyncio.sleep(0.05)  # the server's close reaches this process
    assert await store.get("k") == "v"


async def test_a_redis_that_does_not_answer_fails_the_batch_in_time() -> None:
    """A server that takes the connection and never answers (a frozen Redis)."""
    connections: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
    batcher = Batcher(client, timeout=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await batcher.command("GET", "k")
        assert time.monotonic() - started < 2.0
        assert connections  # it did reach the server
    finally:
        await batcher.aclose()
        await client.aclose()
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_call_with_a_bound_fails_at_its_bound_not_the_batch_timeout() -> None:
    """The ack path's bound (`within`): an accept gives up well inside the platform's ack
    deadline even when the batch it is in would wait longer."""
    connections: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
    batcher = Batcher(client, timeout=30)
    script = client.register_script("return 1")
    try:
        started = time.monotonic()
        bounded = batcher.script(script, ["k"], [], within=0.2)
        also = batcher.script(script, ["k"], [], within=0.2)
        with pytest.raises(StoreUnavailable, match=r"within 0\.2 s"):
            await bounded
        with pytest.raises(StoreUnavailable):
            await also
        assert time.monotonic() - started < 2.0
    finally:
        await batcher.aclose()
        await client.aclose()
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_calls_after_close_fail_cleanly(redis_url: str) -> None:
    store = RedisStore(redis_url)
    await store.aclose()
    with pytest.raises(StoreUnavailable):
        await store.get("k")
