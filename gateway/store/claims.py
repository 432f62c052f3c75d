"""Dedupe claims held in this process: which keys are claimed, and until when.

The memory store keeps its claims here, and so does the SQLite store, as the index over its
append-only claim log. An indexed SQLite table was tried first: dedupe keys are random
(platform event ids), so every claim landed on a different B-tree leaf, and each commit
rewrote one 4 KiB page per key (about 320 KiB of WAL for a tick of 32 webhooks, most of
the cost of an ack). A log appends to one page, and lookups are a dict.

Expiry is incremental, so a store holding hours of claims never stalls the event loop to
sweep them: claims with one TTL expire in the order they were made, so each TTL keeps a
queue in that order, and a sweep (at most once a second) pops only what has expired.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

SWEEP_EVERY_S = 1.0


class ClaimIndex:
    def __init__(self) -> None:
        self._expires: dict[str, float] = {}  # key -> when its claim ends
        # ttl -> (ends, keys) per claim, oldest first; None for claims loaded from a log,
        # which are loaded in order of their end
        self._queues: dict[float | None, deque[tuple[float, Sequence[str]]]] = {}
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._expires)

    def claim(self, keys: Sequence[str], now: float, ttl: float) -> bool:
        """Claim every key until `now + ttl`, or none of them (False) if any is held.
        The index keeps `keys`: pass a sequence nobody changes afterwards."""
        if now >= self._next_sweep:
            self._sweep(now)
        expires = self._expires
        for key in keys:
            held_until = expires.get(key)
            if held_until is not None and held_until > now:
                return False
        self.add(keys, now + ttl, ttl)
        return True

    def add(self, keys: Sequence[str], ends: float, ttl: float | None) -> None:
        """Record claims known to be held until `ends`: just decided (with their `ttl`), or
        loaded from a log (ttl None; load them in order of `ends`)."""
        expires = self._expires
        for key in keys:
            expires[key] = ends
        queue = self._queues.get(ttl)
        if queue is None:
            queue = self._queues[ttl] = deque()
        queue.append((ends, keys))

    def release(self, keys: Iterable[str], ends: float) -> None:
        """Undo claims that could not be made durable, so a platform retry is not taken for
        a duplicate. A key that was claimed again since (a different end) is left alone."""
        for key in keys:
            if self._expires.get(key) == ends:
                del self._expires[key]

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + SWEEP_EVERY_S
        expires = self._expires
        for ttl, queue in list(self._queues.items()):
            while queue and queue[0][0] <= now:
                ends, keys = queue.popleft()
                for key in keys:
                    if expires.get(key) == ends:  # not claimed again (or released) since
                        del expires[key]
            if not queue:
                del self._queues[ttl]
