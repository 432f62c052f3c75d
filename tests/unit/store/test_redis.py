"""What only the Redis store does: share state between instances, fail cleanly, lay its keys
out so that a Redis Cluster runs every call, and never fail a call for want of a connection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gateway.store.base import Store, StoreUnavailable
from gateway.store.redis import RedisStore
from gateway.store.redis_client import stop
from gateway.store.redis_inbox import ShardKeys
from tests import redis_servers
from tests.unit.store.test_inbox import job, no_loss


@pytest.mark.parametrize("backend", ["redis", "redis-cluster"])
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


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:1/0", "redis+cluster://127.0.0.1:1,127.0.0.1:2"]
)
async def test_an_unreachable_redis_raises_store_unavailable(url: str) -> None:
    store = RedisStore(url)
    with pytest.raises(StoreUnavailable):
        await store.claim(["x"], 1)
    with pytest.raises(StoreUnavailable):
        await store.ping()
    await store.aclose()


@pytest.mark.parametrize(
    ("backend", "claim_key"),
    [
        # One server: the names the gateway always used, so an upgrade forgets no claim.
        ("redis", "dify-gateway:claim:event:1"),
        # A cluster: every bare claim in one slot, so a claim of several keys is one Lua call.
        ("redis-cluster", "dify-gateway:{claim}:event:1"),
    ],
)
async def test_the_keys_as_stored(
    backend: str, claim_key: str, store: Store, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("redis_url" if backend == "redis" else "redis_cluster_url")
    assert await store.claim(["event:1"], 60)
    await store.set_conversation("main/user:b:U1", "conv-1")
    await store.set("token:x", "t")
    conversation = job(1, "main/user:b:U1")
    assert await store.accept(["b:Ev1"], conversation)
    shard = ShardKeys("dify-gateway:", 16).shard_of(conversation.conversation_key)
    raw = redis_servers.client(url)
    try:
        assert await raw.get(claim_key) == "1"
        assert await raw.get("dify-gateway:conv:main/user:b:U1") == "conv-1"
        assert await raw.get("dify-gateway:kv:token:x") == "t"
        # The inbox's keys are the same on both: a shard's hash tag means nothing on one server.
        assert await raw.exists(f"dify-gateway:{{inbox:{shard}}}:claim:b:Ev1") == 1
        assert await raw.xlen(f"dify-gateway:{{inbox:{shard}}}:jobs") == 1
    finally:
        await raw.aclose()


async def test_a_cluster_store_waits_for_a_connection_instead_of_failing(
    redis_cluster_url: str,
) -> None:
    """redis-py's cluster client raises `MaxConnectionsError` once a node's pool is full: the
    store lets only as many calls run at once as it may open connections to each node."""
    await redis_servers.flush(redis_cluster_url)
    store = RedisStore(redis_cluster_url, max_connections=3)
    try:

        async def one(i: int) -> bool:
            await store.set(f"k{i}", str(i))
            assert await store.get(f"k{i}") == str(i)
            return await store.accept([f"m{i}"], job(i, f"conversation-{i}"))

        assert all(await asyncio.gather(*(one(i) for i in range(300))))
        connections = {node.name: len(node._connections) for node in store._redis.get_nodes()}
        assert len(connections) == 3
        assert 1 <= max(connections.values()) <= 4  # 3, and one kept for topology refreshes
    finally:
        await store.aclose()


async def test_a_cluster_node_that_lost_its_scripts_still_runs_them(
    redis_cluster_url: str,
) -> None:
    """A restarted or failed-over node has no scripts loaded: calls load them again, and
    pipelines (accepting a tick's messages, renewing leases) send their text."""
    await redis_servers.flush(redis_cluster_url)
    store = RedisStore(redis_cluster_url, shards=8)
    feed = store.feed(lease_s=2.0)
    try:
        await feed.start(no_loss)
        assert await store.claim(["a"], 60)
        assert await store.accept(["m0"], job(0, "c0"))
        raw = redis_servers.client(redis_cluster_url)
        try:
            await raw.script_flush()  # on every primary
        finally:
            await raw.aclose()
        assert await store.claim(["b", "c"], 60)
        assert not await store.claim(["c", "d"], 60)
        accepted = await asyncio.gather(
            *(store.accept([f"m{i}"], job(i, f"c{i}")) for i in range(20))
        )
        assert accepted == [False] + [True] * 19  # m0 was accepted before
        await feed._renew()  # every lease renewed (a lost one would be given up)
        assert len(feed._owned) == 8
        async with store.lock("conv"):
            assert await store.incr("n", 2, ttl=10) == 2
    finally:
        await feed.close()
        await store.aclose()


async def test_stop_ends_a_loop_that_swallowed_a_cancellation() -> None:
    """Python 3.11's `asyncio.wait_for` (which redis-py sends every command under) can
    swallow a cancellation; the inbox's heartbeat then ran on, and closing the inbox hung."""
    swallowed = 0

    async def heartbeat() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # as a send that completed just as the cancel arrived

    task = asyncio.create_task(heartbeat())
    await asyncio.sleep(0)
    async with asyncio.timeout(2):
        await stop(task)
    assert task.cancelled()
    assert swallowed == 1
