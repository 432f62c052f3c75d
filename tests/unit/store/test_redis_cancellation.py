"""A cancelled Redis call ends the task that made it, even when redis-py lost the cancel.

On Python 3.11 redis-py writes each command under `asyncio.wait_for`, which returns the
result instead of raising when a cancellation lands as the write completes. The inbox's
heartbeat, cancelled once by `close()`, then ran on and `close()` hung."""

from __future__ import annotations

import asyncio
import random

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.store.base import StoreUnavailable
from gateway.store.redis_client import RedisConnection

NOWHERE = "redis://127.0.0.1:1/0"  # never connected to: the calls below are fakes


async def swallows_a_cancel() -> str:
    """What 3.11's `wait_for` does when the cancel and the end of the send coincide."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        return "sent"
    raise AssertionError("not cancelled")


async def fails_after_a_cancel() -> str:
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        raise RedisConnectionError("the connection went with the cancel") from None
    raise AssertionError("not cancelled")


@pytest.fixture
async def connection() -> RedisConnection:
    return RedisConnection(NOWHERE, max_connections=1)


async def test_a_cancel_that_the_call_swallowed_still_ends_the_task(
    connection: RedisConnection,
) -> None:
    task = asyncio.create_task(connection.call(swallows_a_cancel))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_a_cancel_is_not_mistaken_for_an_outage(connection: RedisConnection) -> None:
    """A task being cancelled must not go on as if Redis were down (a heartbeat would
    retry, and give up its shards' work)."""
    task = asyncio.create_task(connection.call(fails_after_a_cancel))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_timeout_around_a_call_fires_even_when_the_call_swallowed_it(
    connection: RedisConnection,
) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await connection.call(swallows_a_cancel)


async def test_an_outage_is_still_an_outage(connection: RedisConnection) -> None:
    async def fails() -> str:
        raise RedisConnectionError("refused")

    with pytest.raises(StoreUnavailable):
        await connection.call(fails)


async def test_a_task_already_cancelled_still_cleans_up_through_calls(
    connection: RedisConnection,
) -> None:
    """Only a cancel asked for *during* a call ends it: a task that caught an earlier one
    (releasing a lock, letting go of its shards) still gets its calls' results."""
    results: list[str] = []

    async def ok() -> str:
        await asyncio.sleep(0)
        return "released"

    async def body() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            results.append(await connection.call(ok))
            results.append(await connection.call(ok))

    task = asyncio.create_task(body())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert results == ["released", "released"]


@pytest.fixture(params=["redis_url", "redis_cluster_url"], ids=["redis", "redis-cluster"])
def any_redis(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


async def test_a_loop_of_real_calls_ends_at_the_first_cancel(any_redis: str) -> None:
    """Cancelled once at random moments (most land while a command is written, where
    redis-py loses them), a loop of pipelines ends every time, and at once."""
    connection = RedisConnection(any_redis, max_connections=4)
    script = connection.client.register_script("return redis.call('PEXPIRE', KEYS[1], ARGV[1])")

    async def renew() -> list[object]:
        async with connection.client.pipeline(transaction=False) as pipe:
            for key in ("{t}a", "{t}b", "{t}c"):
                await connection.queue_script(pipe, script, [key], [1000])
            return list(await pipe.execute())

    async def heartbeat() -> None:
        while True:  # no sleep: every cancel lands in a call
            await connection.call(renew)

    try:
        for _ in range(60):
            task = asyncio.create_task(heartbeat())
            await asyncio.sleep(random.uniform(0, 0.005))
            task.cancel()
            done, _pending = await asyncio.wait({task}, timeout=5)
            assert done == {task}, "the cancel was lost: the loop ran on"
            assert task.cancelled()
    finally:
        await connection.aclose()
