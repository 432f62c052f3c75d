"""The Redis inbox across instances: shards shared evenly, taken over after a silent death,
given up when another instance holds the lease, and handed on at shutdown. On one Redis
server and on a Redis Cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from gateway.models import Job
from gateway.store.redis import RedisStore
from gateway.store.redis_inbox import RedisShardFeed, ShardKeys
from tests import redis_servers
from tests.helpers import wait_for
from tests.unit.store.test_inbox import job

LEASE_S = 0.6
SHARDS = 8


@pytest.fixture(params=["redis_url", "redis_cluster_url"], ids=["redis", "redis-cluster"])
def any_redis(request: pytest.FixtureRequest) -> str:
    """This module's tests run on one Redis server and on a Redis Cluster."""
    return str(request.getfixturevalue(request.param))


@pytest.fixture
async def stores(any_redis: str) -> AsyncIterator[Callable[[], RedisStore]]:
    await redis_servers.flush(any_redis)
    made: list[RedisStore] = []

    def make() -> RedisStore:
        store = RedisStore(any_redis, shards=SHARDS)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()


def owned(feed: RedisShardFeed) -> set[int]:
    return set(feed._owned)


async def start(
    store: RedisStore, lost: list[Callable[[Job], bool]] | None = None
) -> RedisShardFeed:
    feed = store.feed(lease_s=LEASE_S)
    assert isinstance(feed, RedisShardFeed)
    await feed.start((lost if lost is not None else []).append)
    return feed


async def take_all(feed: RedisShardFeed, count: int) -> list[Job]:
    taken: list[Job] = []
    async with asyncio.timeout(5):
        while len(taken) < count:
            taken += await feed.take(100, 0.05)
    return taken


async def test_two_instances_share_the_shards_evenly(stores: Callable[[], RedisStore]) -> None:
    a = await start(stores())
    assert owned(a) == set(range(SHARDS))  # alone, it takes every shard
    b = await start(stores())
    # A lets go of its excess at its next heartbeat; B takes what is free at its own.
    await wait_for(lambda: len(owned(a)) == len(owned(b)) == SHARDS // 2, within=5)
    assert owned(a) | owned(b) == set(range(SHARDS))
    await a.close()
    await wait_for(lambda: owned(b) == set(range(SHARDS)), within=5, what="b takes all")
    await b.close()


async def test_a_silent_instance_is_taken_over_with_its_checkpoint(
    stores: Callable[[], RedisStore],
) -> None:
    first = stores()
    a = await start(first)
    assert await first.accept(["k1"], job(1))
    (taken,) = await take_all(a, 1)
    await a.begin(taken)
    await a.checkpoint(taken, {"sink": {"ts": "9.9"}})
    # A freezes for good: no more heartbeats, no release (kill -9).
    assert a._heartbeat is not None
    a._heartbeat.cancel()
    b = await start(stores())
    started = asyncio.get_running_loop().time()
    (resumed,) = await take_all(b, 1)
    assert resumed.job_id == "b:m1"
    assert asyncio.get_running_loop().time() - started <= LEASE_S + 1.0
    record = await b.begin(resumed)
    assert (record.attempts, record.checkpoint) == (2, {"sink": {"ts": "9.9"}})
    await b.finish(resumed)
    assert await b.pending() == 0
    await b.close()


async def test_an_instance_whose_lease_went_to_another_stops_that_work(
    stores: Callable[[], RedisStore], any_redis: str
) -> None:
    store = stores()
    lost: list[Callable[[Job], bool]] = []
    a = await start(store, lost)
    mine = job(1, "conversation-x")
    shard = ShardKeys("dify-gateway:", SHARDS).shard_of(mine.conversation_key)
    raw = redis_servers.client(any_redis)
    try:
        # Someone else holds the lease now (A was frozen for longer than the lease).
        await raw.set(f"dify-gateway:{{inbox:{shard}}}:lease", "someone-else")
        await wait_for(lambda: bool(lost), within=5, what="the loss noticed")
    finally:
        await raw.aclose()
    assert lost[0](mine)
    assert shard not in owned(a)
    await a.close()


async def test_at_shutdown_idle_shards_go_at_once_and_busy_ones_when_done(
    stores: Callable[[], RedisStore],
) -> None:
    store = stores()
    a = await start(store)
    busy = job(1, "busy")
    assert await store.accept(["k1"], busy)
    (taken,) = await take_all(a, 1)
    busy_shard = ShardKeys("dify-gateway:", SHARDS).shard_of(busy.conversation_key)
    await a.stop_taking()
    assert owned(a) == {busy_shard}
    b = await start(stores())
    await wait_for(lambda: len(owned(b)) == SHARDS - 1, within=5)
    await a.finish(taken)
    a.done(taken)
    await wait_for(lambda: not owned(a), within=5)
    await wait_for(lambda: owned(b) == set(range(SHARDS)), within=5)
    await a.close()
    await b.close()
