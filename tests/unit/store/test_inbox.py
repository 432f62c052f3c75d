"""`Inbox` (accept = claim and keep; the feed of kept jobs), on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from gateway.inbox.feed import JobFeed
from gateway.models import ChatType, InboundMessage, Job
from gateway.store.base import Store


def job(n: int, conversation: str = "conv") -> Job:
    message = InboundMessage(
        bot="b",
        platform="slack",
        event_id=f"e{n}",
        message_id=f"m{n}",
        chat_id="c",
        chat_type=ChatType.DIRECT,
        user_id="u",
        text=f"question {n}",
        received_at=0.0,
    )
    return Job(
        job_id=f"b:m{n}",
        message=message,
        app="a",
        scope="user",
        conversation_key=conversation,
        dify_user="b:u",
        accepted_at=0.0,
    )


def no_loss(_: Callable[[Job], bool]) -> None:
    raise AssertionError("a single instance never loses its jobs")


@pytest.fixture
async def feed(store: Store) -> AsyncIterator[JobFeed]:
    feed = store.feed(lease_s=2.0)
    await feed.start(no_loss)
    yield feed
    await feed.close()


async def take_all(feed: JobFeed, count: int) -> list[Job]:
    taken: list[Job] = []
    async with asyncio.timeout(5):
        while len(taken) < count:
            taken += await feed.take(100, 0.1)
    return taken


async def test_a_duplicate_is_refused_and_kept_once(store: Store, feed: JobFeed) -> None:
    assert await store.accept(["b:event:1", "b:msg:1"], job(1))
    assert not await store.accept(["b:event:2", "b:msg:1"], job(1))
    assert await feed.pending() == 1
    assert [j.job_id for j in await take_all(feed, 1)] == ["b:m1"]
    # The refused accept claimed nothing: its other key is still free.
    assert await store.accept(["b:event:2"], job(2))


async def test_a_key_named_twice_in_one_accept_is_claimed_once(store: Store, feed: JobFeed) -> None:
    assert await store.accept(["b:msg:1", "b:msg:1"], job(1))
    assert not await store.accept(["b:msg:1"], job(1))
    assert await feed.pending() == 1


async def test_concurrent_accepts_of_one_message_keep_exactly_one(
    store: Store, feed: JobFeed
) -> None:
    results = await asyncio.gather(
        *(store.accept(["b:msg:1", f"b:event:{i}"], job(1)) for i in range(20))
    )
    assert sum(results) == 1
    assert await feed.pending() == 1


async def test_jobs_of_a_conversation_come_out_in_order(store: Store, feed: JobFeed) -> None:
    for n in range(5):
        assert await store.accept([f"k{n}"], job(n))
    assert [j.job_id for j in await take_all(feed, 5)] == [f"b:m{n}" for n in range(5)]


async def test_attempts_and_checkpoints_are_kept_until_the_job_is_finished(
    store: Store, feed: JobFeed
) -> None:
    assert await store.accept(["k1"], job(1))
    (taken,) = await take_all(feed, 1)
    first = await feed.begin(taken)
    assert (first.attempts, first.checkpoint) == (1, {})
    await feed.checkpoint(taken, {"sink": {"ts": "1.2"}, "task_id": "t1"})
    second = await feed.begin(taken)
    assert (second.attempts, second.checkpoint) == (2, {"sink": {"ts": "1.2"}, "task_id": "t1"})
    await feed.finish(taken)
    feed.done(taken)
    assert await feed.pending() == 0


async def test_a_dead_letter_leaves_the_inbox(store: Store, feed: JobFeed) -> None:
    assert await store.accept(["k1"], job(1))
    (taken,) = await take_all(feed, 1)
    await feed.begin(taken)
    await feed.dead_letter(taken, "failed 3 attempts")
    feed.done(taken)
    assert await feed.pending() == 0
    assert not await store.accept(["k1"], job(1))  # still a duplicate


@pytest.mark.parametrize("backend", ["sqlite", "redis", "redis-cluster"])
async def test_kept_jobs_outlive_the_process_that_accepted_them(
    make_store: Callable[[], Store], store: Store
) -> None:
    # Accepted, never taken: the process died right after the ack.
    assert await store.accept(["k1"], job(1))
    assert await store.accept(["k2"], job(2))
    await store.aclose()
    later = make_store()
    feed = later.feed(lease_s=2.0)
    try:
        await feed.start(no_loss)
        assert [j.job_id for j in await take_all(feed, 2)] == ["b:m1", "b:m2"]
        assert not await later.accept(["k1"], job(1))
    finally:
        await feed.close()
        await later.aclose()
