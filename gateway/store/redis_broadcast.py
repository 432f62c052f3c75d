"""`Broadcast` over Redis pub/sub: what one instance publishes reaches the subscribers on all.

Publishing is an ordinary command on the store's pooled connections. Listening holds a
connection for as long as anything is subscribed, so it must not come from the pool (a
pooled connection held forever is one the other commands never get back): each instance
opens one connection of its own for every channel it listens to, made from the store's URL,
and one reader task dispatches what arrives to the local subscribers (`fanout.py`).

On a Redis Cluster, PUBLISH reaches the subscribers on every node, so listening on any one
node will do: `connect` makes the connection, whatever the store's topology.

That connection is watched: silence for `PING_EVERY_S` gets a PING, and a second silence
counts as a broken connection. After a reconnect every channel is subscribed again, and each
subscriber reads a `GAP` once its channel is back, since messages published meanwhile are
gone. `subscribe()` returns only once Redis confirmed the subscription, so whatever a caller
reads from the store after it cannot fall between its read and the first message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from gateway.store.base import StoreUnavailable
from gateway.store.fanout import ChannelSubscription, Fanout, check_data
from gateway.store.redis_client import stop

log = logging.getLogger(__name__)

PING_EVERY_S = 15.0
SUBSCRIBE_WAIT_S = 5.0  # how long subscribe() waits for Redis to confirm
RECONNECT_MAX_S = 5.0

Do = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]


class Publisher(Protocol):
    """The store's pooled client (one server or a cluster): PUBLISH is an ordinary call."""

    def publish(self, channel: str, message: str) -> Awaitable[Any]: ...


class _Channel:
    """Subscriptions of one channel sent and confirmed on the current connection, and the
    callers waiting for theirs: Redis confirms in order, so the n-th confirmation answers
    the n-th SUBSCRIBE."""

    __slots__ = ("confirmed", "sent", "waiters")

    def __init__(self) -> None:
        self.sent = 0
        self.confirmed = 0
        self.waiters: list[tuple[int, asyncio.Future[None]]] = []


def listener_factory(url: str) -> Callable[[], AbstractConnection]:
    """Connections for listening, made from the store's URL (host, TLS, password, database)
    outside any pool; the URL is read when the first one is made."""

    def make() -> AbstractConnection:
        options = aioredis.ConnectionPool.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=5,
            socket_timeout=10,
            socket_keepalive=True,
        )
        return options.connection_class(**options.connection_kwargs)

    return make


class RedisBroadcast:
    def __init__(
        self,
        connect: Callable[[], AbstractConnection],
        redis: Publisher,
        do: Do,
        *,
        prefix: str,
    ) -> None:
        self._connect = connect  # a new, unpooled connection to listen on
        self._redis = redis  # the store's pooled client, for PUBLISH
        self._do = do
        self._prefix = prefix
        self._fanout = Fanout()
        self._channels: dict[str, _Channel] = {}
        self._conn: AbstractConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._resubscribed: set[str] = set()  # channels that read a GAP once confirmed

    async def publish(self, channel: str, data: str) -> None:
        check_data(data)
        await self._do(lambda: self._redis.publish(self._prefix + channel, data))

    async def subscribe(self, channel: str) -> ChannelSubscription:
        subscription = ChannelSubscription(channel, self._release)
        self._fanout.add(subscription)
        state = self._channels.setdefault(channel, _Channel())
        if state.confirmed and not state.waiters:
            return subscription  # already listening on this connection
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._run(), name="redis broadcast")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._conn is not None:
            state.sent += 1
            state.waiters.append((state.sent, waiter))
            await self._send("SUBSCRIBE", channel)
        else:  # the reader subscribes every channel when it connects
            state.waiters.append((1, waiter))
        try:
            async with asyncio.timeout(SUBSCRIBE_WAIT_S):
                await waiter
        except TimeoutError:
            await subscription.aclose()
            raise StoreUnavailable(f"redis: no subscription to {channel} within 5s") from None
        return subscription

    async def _release(self, subscription: ChannelSubscription) -> None:
        if self._fanout.remove(subscription):
            state = self._channels.pop(subscription.channel, None)
            for _, waiter in state.waiters if state else ():
                waiter.cancel()
            await self._send("UNSUBSCRIBE", subscription.channel)

    async def _send(self, command: str, channel: str) -> None:
        """Best effort: on a broken connection the reader reconnects and subscribes anew."""
        conn = self._conn
        if conn is None or not conn.is_connected:
            return
        with contextlib.suppress(RedisError, OSError):
            await conn.send_command(command, self._prefix + channel, check_health=False)

    # --- the reader ----------------------------------------------------------------------

    async def _run(self) -> None:
        delay = 0.1
        connected_before = False
        while True:
            conn: AbstractConnection | None = None
            try:
                conn = self._connect()
                connect: Callable[[], Awaitable[None]] = conn.connect  # untyped in redis-py
                await connect()
                self._conn = conn
                channels = list(self._channels)
                for channel in channels:
                    state = self._channels[channel]
                    state.sent, state.confirmed = 1, 0
                    state.waiters = [(1, waiter) for _, waiter in state.waiters]
                if channels:
                    names = [self._prefix + c for c in channels]
                    await conn.send_command("SUBSCRIBE", *names, check_health=False)
                if connected_before:
                    self._resubscribed = set(channels)
                    log.info("redis broadcast: reconnected, %d channels", len(channels))
                connected_before = True
                delay = 0.1
                await self._read(conn)
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("redis broadcast: connection lost (%s); reconnecting", exc)
            except Exception:  # a surprise from the client library: never stop listening
                log.exception("redis broadcast: unexpected error; reconnecting")
            finally:
                self._conn = None
                if conn is not None:
                    with contextlib.suppress(RedisError, OSError):
                        await conn.disconnect(nowait=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _read(self, conn: AbstractConnection) -> None:
        pinged = False
        while True:
            # push_request: pub/sub messages are "push" replies, which redis-py would otherwise
            # hand to its push handler (a logger) instead of returning them.
            response = await conn.read_response(timeout=PING_EVERY_S, push_request=True)
            if response is None:
                if pinged:
                    raise TimeoutError(f"no answer to PING within {PING_EVERY_S:.0f}s")
                await conn.send_command("PING", check_health=False)
                pinged = True
                continue
            pinged = False
            if isinstance(response, list) and len(response) == 3:
                self._on_push(str(response[0]), str(response[1]), response[2])

    def _on_push(self, kind: str, name: str, data: Any) -> None:
        channel = name.removeprefix(self._prefix)
        if kind == "message":
            self._fanout.deliver(channel, str(data))
        elif kind == "subscribe":
            state = self._channels.get(channel)
            if state is None:
                return  # unsubscribed meanwhile
            state.confirmed += 1
            ready = [w for n, w in state.waiters if n <= state.confirmed]
            state.waiters = [(n, w) for n, w in state.waiters if n > state.confirmed]
            for waiter in ready:
                if not waiter.done():
                    waiter.set_result(None)
            if channel in self._resubscribed:
                self._resubscribed.discard(channel)
                self._fanout.gap(channel)

    async def aclose(self) -> None:
        if self._reader is not None:
            await stop(self._reader)
            self._reader = None
        await self._fanout.close_all()
