"""Publish/subscribe inside one process: the `Broadcast` part of the memory and SQLite stores,
and the local half of the Redis one (`redis_broadcast.py` feeds it from one connection).

A subscription is a bounded queue. A subscriber that falls more than `QUEUE_LIMIT` messages
behind loses what is queued and reads a `GAP` before the next message: one slow reader must
not hold the publisher up, nor grow without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from gateway.store.base import GAP

QUEUE_LIMIT = 1024

Release = Callable[["ChannelSubscription"], Awaitable[None]]


class ChannelSubscription:
    """One listener on one channel (the `Subscription` of every backend)."""

    def __init__(self, channel: str, release: Release) -> None:
        self.channel = channel
        self._release = release
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_LIMIT)
        self._closed = False

    def deliver(self, data: str) -> None:
        if self._closed:
            return
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            self._drop_queued()
            self._queue.put_nowait(GAP)
            self._queue.put_nowait(data)

    def _drop_queued(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        data = await self._queue.get()
        if data is None:  # aclose() woke us up
            raise StopAsyncIteration
        return data

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._drop_queued()
        self._queue.put_nowait(None)
        await self._release(self)


class Fanout:
    """The subscriptions of one process, by channel."""

    def __init__(self) -> None:
        self._channels: dict[str, set[ChannelSubscription]] = {}

    def add(self, subscription: ChannelSubscription) -> bool:
        """Register it; True if it is the channel's first."""
        listeners = self._channels.setdefault(subscription.channel, set())
        listeners.add(subscription)
        return len(listeners) == 1

    def remove(self, subscription: ChannelSubscription) -> bool:
        """Forget it; True if the channel has no listener left."""
        listeners = self._channels.get(subscription.channel)
        if listeners is None or subscription not in listeners:
            return False
        listeners.discard(subscription)
        if listeners:
            return False
        del self._channels[subscription.channel]
        return True

    def channels(self) -> list[str]:
        return list(self._channels)

    def deliver(self, channel: str, data: str) -> None:
        for subscription in list(self._channels.get(channel, ())):
            subscription.deliver(data)

    def gap(self, channel: str) -> None:
        """Tell the channel's subscribers that messages may have been lost."""
        self.deliver(channel, GAP)

    async def close_all(self) -> None:
        for listeners in list(self._channels.values()):
            for subscription in list(listeners):
                await subscription.aclose()


def check_data(data: str) -> None:
    if not data:
        raise ValueError("a broadcast message must not be empty (empty is the gap marker)")


class LocalBroadcast:
    """`Broadcast` for a store that one process owns (memory, SQLite)."""

    def __init__(self) -> None:
        self._fanout = Fanout()

    async def publish(self, channel: str, data: str) -> None:
        check_data(data)
        self._fanout.deliver(channel, data)

    async def subscribe(self, channel: str) -> ChannelSubscription:
        subscription = ChannelSubscription(channel, self._release)
        self._fanout.add(subscription)
        return subscription

    async def _release(self, subscription: ChannelSubscription) -> None:
        self._fanout.remove(subscription)

    async def aclose(self) -> None:
        await self._fanout.close_all()
