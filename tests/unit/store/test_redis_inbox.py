"""The Redis inbox across instances: shards shared evenly, taken over after a silent death,
given up when another instance holds the lease, and handed on at shutdown. On one Redis
server and on a Redis Cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.inbox import Inbox, Progress
from gateway.metrics import Metrics
from gateway.models import Job
from gateway.store.base import StoreUnavailable
from gateway.store.redis import RedisStore
from gateway.store.redis_feed import RedisShardFeed
from gateway.store.redis_inbox import ShardKeys
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


async def test_a_new_instance_gets_its_share_within_seconds_whatever_the_lease(
    stores: Callable[[], RedisStore],
) -> None:
    """The heartbeat runs at least every second, not only at a third of the lease: a new
    instance (a scale-out, a rolling deploy) works within a beat or two, not after 5-10 s."""
    feeds = []
    for store in (stores(), stores()):
        feed = store.feed(lease_s=15.0)
        assert isinstance(feed, RedisShardFeed)
        await feed.start([].append)
        feeds.append(feed)
    a, b = feeds
    await wait_for(lambda: len(owned(a)) == len(owned(b)) == SHARDS // 2, within=4)
    assert owned(a) | owned(b) == set(range(SHARDS))
    for feed in feeds:
        await feed.close()


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


async def test_a_lease_that_lapsed_while_nobody_took_it_is_kept_with_its_work(
    stores: Callable[[], RedisStore], any_redis: str
) -> None:
    """Redis was unreachable (frozen, restarting) for longer than the lease, and no other
    instance took the shard meanwhile: the instance keeps it, and its answers go on."""
    store = stores()
    lost: list[Callable[[Job], bool]] = []
    a = await start(store, lost)
    mine = job(1, "conversation-x")
    assert await store.accept(["k1"], mine)
    (taken,) = await take_all(a, 1)
    shard = ShardKeys("dify-gateway:", SHARDS).shard_of(mine.conversation_key)
    raw = redis_servers.client(any_redis)
    try:
        await raw.delete(f"dify-gateway:{{inbox:{shard}}}:lease")  # it expired
        await asyncio.sleep(LEASE_S)  # a heartbeat or two
        assert await raw.get(f"dify-gateway:{{inbox:{shard}}}:lease") == a.instance
    finally:
        await raw.aclose()
    assert lost == [] and shard in owned(a)
    await a.finish(taken)
    a.done(taken)
    await a.close()


async def test_a_lapsed_lease_that_another_instance_held_meanwhile_is_lost(
    stores: Callable[[], RedisStore], any_redis: str
) -> None:
    """The lease lapsed and another instance took the shard (and let it go again) before
    this one noticed: that one may have resumed these jobs, so this one stops them."""
    store = stores()
    lost: list[Callable[[Job], bool]] = []
    a = await start(store, lost)
    mine = job(1, "conversation-x")
    shard = ShardKeys("dify-gateway:", SHARDS).shard_of(mine.conversation_key)
    raw = redis_servers.client(any_redis)
    try:
        # At once, or A's heartbeat could find its lease gone and its epoch still current.
        await raw.eval(
            "redis.call('DEL', KEYS[1]) return redis.call('INCR', KEYS[2])",
            2,
            f"dify-gateway:{{inbox:{shard}}}:lease",
            f"dify-gateway:{{inbox:{shard}}}:epoch",  # someone else's lease
        )
        await wait_for(lambda: bool(lost), within=5, what="the loss noticed")
    finally:
        await raw.aclose()
    assert lost[0](mine)
    await a.close()


async def test_after_redis_lost_everything_new_jobs_are_read_again(
    stores: Callable[[], RedisStore], any_redis: str
) -> None:
    """A restart without persistence drops the streams and their consumer groups: the
    instance takes its shards again and makes the groups again, or it would read nothing."""
    store = stores()
    a = await start(store)
    raw = redis_servers.client(any_redis)
    try:
        await raw.flushdb()
    finally:
        await raw.aclose()
    assert await store.accept(["k1"], job(1))  # XADD makes a stream with no group
    taken: list[Job] = []
    async with asyncio.timeout(5):
        while not taken:
            try:
                taken = await a.take(100, 0.05)
            except StoreUnavailable:  # NOGROUP, until the heartbeat notices (the pump waits)
                await asyncio.sleep(0.05)
    assert [j.job_id for j in taken] == ["b:m1"]
    await a.close()


async def test_a_job_whose_lost_attempt_is_still_ending_is_handed_out_once_it_ended(
    stores: Callable[[], RedisStore], any_redis: str
) -> None:
    """The shard is lost and taken back before the attempt it cancelled has ended: the
    job is handed out again as soon as that attempt is done, not left pending for good."""
    store = stores()
    lost: list[Callable[[Job], bool]] = []
    a = await start(store, lost)
    mine = job(1, "conversation-x")
    assert await store.accept(["k1"], mine)
    (taken,) = await take_all(a, 1)
    shard = ShardKeys("dify-gateway:", SHARDS).shard_of(mine.conversation_key)
    raw = redis_servers.client(any_redis)
    try:
        await raw.set(f"dify-gateway:{{inbox:{shard}}}:lease", "someone-else", px=300)
        await wait_for(lambda: bool(lost), within=5, what="the loss noticed")
        # The other instance let go at once; A takes the shard back at a heartbeat.
        await wait_for(lambda: shard in owned(a), within=5, what="the shard taken back")
    finally:
        await raw.aclose()
    assert await a.take(100, 0.05) == []  # its cancelled attempt is still ending
    a.done(taken)  # now it has ended
    (again,) = await take_all(a, 1)
    assert again.job_id == mine.job_id
    await a.close()


async def test_a_job_read_from_a_shard_let_go_meanwhile_is_left_to_its_next_owner(
    stores: Callable[[], RedisStore],
) -> None:
    store = stores()
    a = await start(store)
    assert await store.accept(["k1"], job(1, "late"))
    # A's read of the shard is under way when shutdown lets go of the (idle) shard.
    read_done, carry_on = asyncio.Event(), asyncio.Event()
    plain = a._do

    async def slow_read(call: Callable[[], Any]) -> Any:
        result = await plain(call)
        if not read_done.is_set() and isinstance(result, list) and any(result):
            read_done.set()
            await carry_on.wait()
        return result

    a._do = slow_read
    taking = asyncio.create_task(a.take(100, 0.05))
    await asyncio.wait_for(read_done.wait(), 5)
    await a.stop_taking()
    assert not owned(a)
    carry_on.set()
    assert await taking == []  # not A's any more: A must not answer it
    b = await start(stores())
    (taken,) = await take_all(b, 1)  # the shard's next owner claims it
    assert taken.job_id == "b:m1"
    await a.close()
    await b.close()


async def test_at_shutdown_answers_not_started_go_to_the_other_instance(
    stores: Callable[[], RedisStore],
) -> None:
    answered: list[tuple[str, str]] = []
    first_started, first_may_end = asyncio.Event(), asyncio.Event()

    def inbox(name: str, store: RedisStore) -> Inbox:
        async def work(j: Job, progress: Progress) -> None:
            if j.job_id == "b:m1":
                first_started.set()
                await first_may_end.wait()
            answered.append((name, j.job_id))

        async def give_up(j: Job, progress: Progress) -> None:
            raise AssertionError(j.job_id)

        return Inbox(
            store,
            # Longer than LEASE_S: a loaded machine must not make this a takeover.
            store.feed(lease_s=3),
            work,
            give_up,
            max_concurrent=1,
            max_queued=100,
            max_attempts=3,
            metrics=Metrics(),
        )

    keys = ShardKeys("dify-gateway:", SHARDS)
    other = next(f"d{n}" for n in range(99) if keys.shard_of(f"d{n}") != keys.shard_of("c"))
    store_a = stores()
    a = inbox("a", store_a)
    await a.start()
    assert await a.accept(job(1, "c"), ["k1"])
    await asyncio.wait_for(first_started.wait(), 5)
    # m2 waits behind m1 (one conversation); m3, of another shard, for a free slot.
    for n, conversation in ((2, "c"), (3, other)):
        assert await a.accept(job(n, conversation), [f"k{n}"])
    await wait_for(lambda: a.scheduler.queued == 2, within=5, what="a holds m2 and m3")
    b = inbox("b", stores())
    await b.start()
    await wait_for(lambda: b.feed.instances() == 2, within=5, what="b up")
    draining = asyncio.create_task(a.drain(10))
    # A leaves what it has not started to B, rather than working through its whole queue
    # within the grace period (on a busy machine that can outlast it, and an answer cut
    # off then is asked of Dify again by the instance that resumes it): m3's shard goes
    # to B at once, while A's m1 still runs.
    await wait_for(lambda: ("b", "b:m3") in answered, within=5, what="b answers m3")
    assert answered == [("b", "b:m3")]  # m2 still waits for m1: order within a chat
    first_may_end.set()
    await asyncio.wait_for(draining, 5)
    await wait_for(lambda: len(answered) == 3, within=5, what="every message answered")
    assert answered == [("b", "b:m3"), ("a", "b:m1"), ("b", "b:m2")]
    await a.close()
    await b.drain(1)
    await b.close()
    assert await store_a.feed(lease_s=LEASE_S).pending() == 0
