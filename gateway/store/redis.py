"""Redis store: what several gateway instances behind a load balancer share, on one Redis
server or a Redis Cluster (the connection: `redis_client.py`).

Claims are `SET NX` under a Lua script (all keys or none); the conversation lock is a token
lock that its holder renews and only its holder can release. The durable inbox (stream
shards, accepting in one Lua call) is in `redis_inbox.py`, this instance's leases and feed
in `redis_feed.py`. Each part of the `Store` has its own namespace (`dify-gateway:claim:`,
`conv:`, `lock:`, `kv:` for shared state and `bc:` for broadcast channels, in
`redis_broadcast.py`), so the same key in two parts names two things.

On a cluster, a Lua call may only touch keys of one hash slot. Every call here but `claim`
has one key; the inbox keeps each shard in one slot. The claims of one `claim` call must
share a slot, and a key must have the same name whatever it is claimed with, so on a cluster
all claims carry one hash tag: `dify-gateway:{claim}:<key>`. They are few (messages are
claimed by the inbox, in its shards' slots; only WeCom AI-bot callbacks claim here). On one
server the names stay as they were, so an upgrade forgets no claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from gateway.inbox.feed import JobFeed
from gateway.models import Job
from gateway.store.base import DEFAULT_CLAIM_TTL, StoreUnavailable, Subscription
from gateway.store.redis_broadcast import RedisBroadcast, listener_factory
from gateway.store.redis_client import RedisConnection, stop
from gateway.store.redis_feed import RedisShardFeed, instance_name
from gateway.store.redis_inbox import RedisInbox, ShardKeys
from gateway.store.redis_url import parse_cluster_url

PREFIX = "dify-gateway:"
DEFAULT_MAX_CONNECTIONS = 64

_CLAIM = """
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then return 0 end
end
for _, key in ipairs(KEYS) do
  redis.call('SET', key, '1', 'PX', ARGV[1])
end
return 1
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_INCR = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return value
"""


class RedisStore:
    def __init__(
        self, url: str, *, max_connections: int = DEFAULT_MAX_CONNECTIONS, shards: int = 16
    ) -> None:
        self._connection = RedisConnection(url, max_connections=max_connections)
        self._redis = self._connection.client
        self._do = self._connection.call
        self._command = self._connection.command
        self._script = self._connection.script
        self._claims = f"{PREFIX}{{claim}}:" if self._connection.cluster else f"{PREFIX}claim:"
        self._claim = self._redis.register_script(_CLAIM)
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)
        self._incr = self._redis.register_script(_INCR)
        self._inbox = RedisInbox(self._connection, ShardKeys(PREFIX, shards))
        # On a cluster, PUBLISH reaches the subscribers on every node: listening on one node
        # (the first one the URL lists) hears every channel.
        listen_on = parse_cluster_url(url).single if self._connection.cluster else url
        self._broadcast = RedisBroadcast(
            listener_factory(listen_on), self._redis, self._do, prefix=f"{PREFIX}bc:"
        )

    @property
    def cluster(self) -> bool:
        """Whether this store is on a Redis Cluster."""
        return self._connection.cluster

    async def claim(self, keys: Sequence[str], ttl: float = DEFAULT_CLAIM_TTL) -> bool:
        names = [self._claims + k for k in keys]
        return bool(await self._script(self._claim, names, [int(ttl * 1000)]))

    async def accept(self, keys: Sequence[str], job: Job, ttl: float = DEFAULT_CLAIM_TTL) -> bool:
        return await self._inbox.accept(keys, job, ttl)

    def feed(self, *, lease_s: float) -> JobFeed:
        return RedisShardFeed(self._inbox, instance=instance_name(), lease_s=lease_s)

    async def get_conversation(self, key: str) -> str | None:
        value = await self._command("GET", f"{PREFIX}conv:{key}")
        return None if value is None else str(value)

    async def set_conversation(self, key: str, conversation_id: str) -> None:
        await self._command("SET", f"{PREFIX}conv:{key}", conversation_id)

    async def delete_conversation(self, key: str) -> bool:
        return bool(await self._command("DEL", f"{PREFIX}conv:{key}"))

    def lock(self, key: str, ttl: float = 60.0) -> AbstractAsyncContextManager[None]:
        return self._hold(f"{PREFIX}lock:{key}", ttl)

    @asynccontextmanager
    async def _hold(self, name: str, ttl: float) -> AsyncIterator[None]:
        token = uuid.uuid4().hex
        ttl_ms = int(ttl * 1000)
        delay = 0.01
        while await self._command("SET", name, token, "NX", "PX", ttl_ms) is None:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)

        async def keep_alive() -> None:
            while True:
                await asyncio.sleep(ttl / 3)
                with contextlib.suppress(StoreUnavailable):
                    await self._script(self._renew, [name], [token, ttl_ms])

        renewer = asyncio.create_task(keep_alive())
        try:
            yield
        finally:
            await stop(renewer)
            with contextlib.suppress(StoreUnavailable):
                await self._script(self._release, [name], [token])

    async def get(self, key: str) -> str | None:
        value = await self._command("GET", f"{PREFIX}kv:{key}")
        return None if value is None else str(value)

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        if ttl is None:
            await self._command("SET", f"{PREFIX}kv:{key}", value)
        else:
            await self._command("SET", f"{PREFIX}kv:{key}", value, "PX", max(1, int(ttl * 1000)))

    async def delete(self, key: str) -> None:
        await self._command("DEL", f"{PREFIX}kv:{key}")

    async def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        ttl_ms = 0 if ttl is None else max(1, int(ttl * 1000))
        return int(await self._script(self._incr, [f"{PREFIX}kv:{key}"], [delta, ttl_ms]))

    async def publish(self, channel: str, data: str) -> None:
        await self._broadcast.publish(channel, data)

    async def subscribe(self, channel: str) -> Subscription:
        return await self._broadcast.subscribe(channel)

    async def ping(self) -> None:
        await self._do(self._redis.ping)

    async def aclose(self) -> None:
        await self._broadcast.aclose()
        await self._connection.aclose()
