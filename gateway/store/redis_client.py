"""The Redis store's connection, to one server or to a Redis Cluster, and the ways its calls
go out: `command` and `script` for single calls (batched with the other calls of the same
moment, `redis_batch.py`), `call` for anything else (a pipeline of one's own,
a command whose reply needs redis-py's parsing).

Connections are bounded, and a caller *waits* for a free one. redis-py's default async pool
raises `MaxConnectionsError` for the 101st concurrent command instead, and a burst of answers
(each issuing a few commands at once) failed wholesale that way. One server: a
`BlockingConnectionPool`. A cluster: redis-py's cluster client keeps a pool per node that
raises when full and has no blocking variant, so a semaphore lets at most `max_connections`
calls run at once; each call holds at most one connection per node (a pipeline one per node
it touches), so no node's pool fills up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import SSLConnection, parse_url
from redis.commands.core import AsyncScript
from redis.exceptions import RedisClusterException, RedisError

from gateway.store.base import StoreUnavailable
from gateway.store.redis_batch import Batcher, ClusterBatcher
from gateway.store.redis_url import is_cluster, parse_cluster_url

T = TypeVar("T")
RedisClient = aioredis.Redis | RedisCluster
RedisPipeline = Pipeline | ClusterPipeline

# How long a command waits for a free connection before the store counts as down.
POOL_WAIT_S = 10.0
_OPTIONS: dict[str, Any] = {
    "decode_responses": True,
    "socket_connect_timeout": 5,
    "socket_timeout": 10,
    "health_check_interval": 30,
}


class RedisConnection:
    """A Redis store's client. `cluster` tells which kind it is."""

    def __init__(self, url: str, *, max_connections: int) -> None:
        self.cluster = is_cluster(url)
        self._slots: asyncio.Semaphore | None = None
        self._batcher: Batcher | ClusterBatcher
        if self.cluster:
            self.client: RedisClient = _cluster_client(url, max_connections)
            self._slots = asyncio.Semaphore(max_connections)
            self._batcher = ClusterBatcher(self.client, self.call)
        else:
            pool = aioredis.BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=POOL_WAIT_S, **_OPTIONS
            )
            # from_pool: the client owns the pool and closes it in aclose().
            self.client = aioredis.Redis.from_pool(pool)
            self._batcher = Batcher(self.client, timeout=_OPTIONS["socket_timeout"])

    def command(self, *command: Any) -> Awaitable[Any]:
        """Send one command; its reply as Redis gives it (`SET` answers "OK" or None on one
        server, True or None on a cluster, where redis-py parses it). `StoreUnavailable`
        if Redis fails."""
        return self._batcher.command(*command)

    def script(
        self,
        script: AsyncScript,
        keys: Sequence[str],
        args: Sequence[Any],
        *,
        within: float | None = None,
    ) -> Awaitable[Any]:
        """Run a Lua script; its reply. `StoreUnavailable` if Redis fails, or with `within`
        if no reply came within so many seconds."""
        return self._batcher.script(script, keys, args, within=within)

    async def call(self, call: Callable[[], Awaitable[T]], /) -> T:
        """Run one Redis exchange (a command, a script or a pipeline), turning every way
        Redis can fail into `StoreUnavailable`.

        A cancellation asked for while the exchange ran ends it with `CancelledError`, even
        when redis-py lost it: on Python 3.11 it writes each command under `asyncio.wait_for`,
        which returns the result instead of raising when the cancel lands as the write
        completes (almost always, for a cancel that lands while a command is written). A
        cancelled heartbeat then ran on, and whoever awaited it hung; a timeout around the
        call never fired."""
        task = asyncio.current_task()
        asked = task.cancelling() if task is not None else 0
        try:
            result = await self._call(call)
        except StoreUnavailable:
            if task is not None and task.cancelling() > asked:
                raise asyncio.CancelledError from None  # not an outage: we were cancelled
            raise
        if task is not None and task.cancelling() > asked:
            raise asyncio.CancelledError
        return result

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            if self._slots is None:
                return await call()
            try:
                async with asyncio.timeout(POOL_WAIT_S):
                    await self._slots.acquire()
            except TimeoutError:
                raise StoreUnavailable("redis: no free connection in time") from None
            try:
                return await call()
            finally:
                self._slots.release()
        except (RedisError, RedisClusterException, OSError) as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    async def queue_script(
        pipe: RedisPipeline, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]
    ) -> None:
        """Queue a Lua script on a pipeline. A cluster pipeline sends the script's text
        (`EVAL`): unlike one server's pipeline, it neither loads the script first nor runs
        it again after `NOSCRIPT` (a node restarted, or failed over, has none loaded)."""
        if isinstance(pipe, ClusterPipeline):
            pipe.eval(script.script, len(keys), *keys, *args)  # type: ignore[arg-type]
        else:
            await script(keys=keys, args=args, client=pipe)

    async def aclose(self) -> None:
        await self._batcher.aclose()
        await self.client.aclose()


async def stop(task: asyncio.Task[Any]) -> None:
    """Cancel a background loop that talks to Redis (a lease heartbeat, a lock renewer) and
    wait for its end, cancelling again until it ends.

    Once is not enough on Python 3.11: redis-py sends each command under `asyncio.wait_for`
    (it has a socket timeout), and 3.11's `wait_for` returns the result, swallowing the
    cancellation, when the send completes just as the cancel arrives. The loop then ran on
    forever, and whoever awaited it (closing the inbox, leaving a lock) hung."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _cluster_client(url: str, max_connections: int) -> RedisCluster:
    target = parse_cluster_url(url)
    options: dict[str, Any] = dict(parse_url(target.single))
    for seed_only in ("host", "port", "db"):
        options.pop(seed_only, None)
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
        # One more than the calls let through at once: room for a topology refresh, which
        # the client runs on a node's pool in the middle of a call.
        max_connections=max_connections + 1,
        **{**_OPTIONS, **options},
    )
