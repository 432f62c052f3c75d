"""The per-member send quota of a WeCom app, kept in the store.

WeCom lets one app send one member at most 30 messages a minute and 1,000 an hour, and
silently drops the rest ("超过部分会被丢弃不下发", doc path/90236): no error tells us.
So the sink takes a slot here before every `message/send` and waits when there is none.

Counters are fixed windows in the store (`incr` with a TTL), shared by every instance. A
rolling minute spans at most two fixed minute windows, so a cap of 15 per window keeps any
rolling minute at ≤ 30 however WeCom counts; likewise ≤ 7 ten-minute windows of 142 keep
any rolling hour at ≤ 994. A store outage must not silence answers: then the sink's own
pacing (one part per 3 s) is the only guard, and we say so in the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.store import keys
from gateway.store.base import SharedState, StoreUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Window:
    seconds: int
    cap: int


WINDOWS = (Window(60, 15), Window(600, 142))


class MemberQuota:
    def __init__(
        self,
        store: SharedState,
        scope: str,
        *,
        windows: tuple[Window, ...] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._scope = scope  # keys.wecom_quota_scope: one WeCom app
        self._windows = WINDOWS if windows is None else windows
        self._clock = clock
        self._sleep = sleep

    async def acquire(self, member: str) -> float:
        """Take one send slot for `member`, waiting for one if needed. Returns the seconds
        waited."""
        waited = 0.0
        while True:
            try:
                wait = await self._try_take(member)
            except StoreUnavailable as exc:
                log.warning("wecom send quota unavailable (%s); sending on pacing alone", exc)
                return waited
            if wait <= 0:
                return waited
            await self._sleep(wait)
            waited += wait

    async def _try_take(self, member: str) -> float:
        """0 if a slot was taken, else how long until the full window ends."""
        now = self._clock()
        taken: list[tuple[str, int]] = []
        for window in self._windows:
            index = int(now // window.seconds)
            key = keys.wecom_quota(self._scope, member, window.seconds, index)
            count = await self._store.incr(key, 1, ttl=window.seconds * 2)
            taken.append((key, window.seconds))
            if count > window.cap:
                for undo_key, seconds in taken:  # give the slots back: nothing was sent
                    await self._store.incr(undo_key, -1, ttl=seconds * 2)
                return (index + 1) * window.seconds - now + 0.01
        return 0.0
