"""`Broadcast` (publish/subscribe), on every backend; on Redis also between two instances,
and across a lost connection."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from gateway.store import fanout, redis_broadcast
from gateway.store.base import GAP, Store, StoreUnavailable, Subscription
from gateway.store.factory import open_store


async def next_of(subscription: Subscription, within: float = 3.0) -> str:
    async with asyncio.timeout(within):
        return await anext(aiter(subscription))


async def nothing_more(subscription: Subscription, within: float = 0.2) -> None:
    with pytest.raises(TimeoutError):
        await next_of(subscription, within)


async def test_every_subscriber_of_a_channel_gets_each_message_in_order(store: Store) -> None:
    first = await store.subscribe("user:a")
    second = await store.subscribe("user:a")
    other = await store.subscribe("user:b")
    for n in range(5):
        await store.publish("user:a", f"m{n}")
    assert [await next_of(first) for _ in range(5)] == [f"m{n}" for n in range(5)]
    assert [await next_of(second) for _ in range(5)] == [f"m{n}" for n in range(5)]
    await nothing_more(other)
    for subscription in (first, second, other):
        await subscription.aclose()


async def test_nobody_listening_means_nobody_gets_it(store: Store) -> None:
    await store.publish("user:a", "lost")  # no history: a later subscriber never sees it
    late = await store.subscribe("user:a")
    await nothing_more(late)
    await store.publish("user:a", "seen")
    assert await next_of(late) == "seen"
    await late.aclose()


async def test_a_closed_subscription_ends_and_gets_nothing_more(store: Store) -> None:
    subscription = await store.subscribe("user:a")
    stays = await store.subscribe("user:a")
    await subscription.aclose()
    await subscription.aclose()  # idempotent
    await store.publish("user:a", "after")
    assert [data async for data in subscription] == []
    assert await next_of(stays) == "after"
    await stays.aclose()


async def test_resubscribing_after_the_last_listener_left_works(store: Store) -> None:
    for n in range(3):
        subscription = await store.subscribe("user:a")
        await store.publish("user:a", f"round {n}")
        assert await next_of(subscription) == f"round {n}"
        await subscription.aclose()


async def test_empty_data_is_refused_because_it_means_a_gap(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.publish("user:a", GAP)


async def test_a_reader_that_falls_behind_gets_a_gap_not_an_endless_queue(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fanout, "QUEUE_LIMIT", 3)
    subscription = await store.subscribe("user:slow")
    for n in range(4):
        await store.publish("user:slow", f"m{n}")
    await asyncio.sleep(0.2)  # on Redis, let the messages come back before reading any
    got = [await next_of(subscription)]
    while got[-1] != "m3" and len(got) < 5:
        got.append(await next_of(subscription))
    assert got == [GAP, "m3"]  # the queued messages dropped, the gap, then the news
    await subscription.aclose()


@pytest.mark.parametrize("backend", ["redis", "redis-cluster"])
async def test_two_instances_on_one_redis_hear_each_other(
    store: Store, make_store: Callable[[], Store]
) -> None:
    other = make_store()
    try:
        subscription = await other.subscribe("user:a")
        await store.publish("user:a", "from the first instance")
        assert await next_of(subscription) == "from the first instance"
        await subscription.aclose()
    finally:
        await other.aclose()


@pytest.mark.parametrize("backend", ["redis"])
async def test_redis_after_a_lost_connection_subscribers_read_a_gap_then_news(
    store: Store, redis_url: str
) -> None:
    subscription = await store.subscribe("user:a")
    admin = aioredis.Redis.from_url(redis_url)
    try:
        # Kill the subscriber connection from the server side, as a Redis restart or a
        # failover does.
        assert await admin.client_kill_filter(_type="pubsub") >= 1
        assert await next_of(subscription, within=10) == GAP
        await store.publish("user:a", "after the reconnect")
        assert await next_of(subscription) == "after the reconnect"
    finally:
        await admin.aclose()
        await subscription.aclose()


async def test_redis_subscribe_fails_clearly_when_redis_is_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redis_broadcast, "SUBSCRIBE_WAIT_S", 0.5)
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = open_store(f"redis://127.0.0.1:{port}/0")
    try:
        with pytest.raises(StoreUnavailable):
            await store.subscribe("user:a")
        with pytest.raises(StoreUnavailable):
            await store.publish("user:a", "x")
    finally:
        await store.aclose()
