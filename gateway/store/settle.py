"""When a store sends what concurrent requests asked for together: `WhenSettled` (the
SQLite commit) and `HalfBatches` (the Redis accepts).

Committing at the start of the next loop turn takes only what one turn read: under load
about a third of the requests in flight (9 of 32 webhooks per SQLite commit, measured).
Their answers go out together, their clients' next requests come back together, and the
process settles into many small rounds, each paying a commit, a loop turn and its socket
writes.

`WhenSettled` makes a commit wait while calls keep joining it: a turn later it looks again,
and it commits at the first look that finds nothing new (at most MAX_TURNS turns on). A
lone call waits for no extra turn, as nothing joined it. Under load a commit takes in about
all that is in flight, and an ack's CPU on SQLite fell by about a sixth, with a lower p99
(bench/README.md §1). Waiting never idles the process: while a look is queued, the loop
polls for I/O without blocking. A commit costs SQLite no wait, so nothing is gained by
sending part of the work early.

Redis is different: an accept with `appendfsync always` takes about 1 ms to come back, and
a batch of everything in flight leaves the process idle for that long. `HalfBatches` keeps
two halves alternating instead, one at Redis while the other is being worked on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

MAX_TURNS = 4  # turns a commit waits for more calls, at most (bounds the added latency)


class WhenSettled:
    """Calls `commit` once the queue that `size()` measures has stopped growing. The first
    look is at the start of the next loop turn: if nothing joined the call that scheduled
    it, it commits then; otherwise it looks again a turn later, and commits at the first
    look that finds nothing new, or at the MAX_TURNS-th. Call `schedule()` after queueing a
    call."""

    __slots__ = ("_commit", "_scheduled", "_seen", "_size", "_turns")

    def __init__(self, size: Callable[[], int], commit: Callable[[], None]) -> None:
        self._size = size
        self._commit = commit
        self._scheduled = False
        self._seen = 0
        self._turns = 0

    def schedule(self) -> None:
        if self._scheduled:
            return
        self._scheduled = True
        self._seen = self._size()
        self._turns = 0
        asyncio.get_running_loop().call_soon(self._look)

    def _look(self) -> None:
        size = self._size()
        if size > self._seen and self._turns < MAX_TURNS:
            self._seen = size
            self._turns += 1
            asyncio.get_running_loop().call_soon(self._look)
            return
        self._scheduled = False
        self._commit()


class HalfBatches:
    """Paces calls to a server whose round trip is long enough to hide (an accept on Redis
    with `appendfsync always`: about 1 ms, most of it the fsync): at most one batch is out
    at a time, and a batch goes once about half of the calls in progress have queued.

    `WhenSettled` there made one batch of everything in flight; while Redis wrote it, the
    process had nothing left to do, and a third of its time went idle. Two halves
    alternate instead: while one is at Redis, the other is being read, verified and then
    answered. Acks on Redis went from ~8.8k to ~9.9k a second at 32 connections
    (bench/README.md §1).

    "In progress" is the most calls queued and out at once, over the last second or two.
    A batch goes when the queue reaches half of that (or a single call, when one at a
    time is all there is), when the batch out returns with that many queued, or at the
    latest WAIT_S after the first call queued (HOLD_S while a batch is out, whose
    server may have stopped answering: then batches go on anyway, each bounded by its
    own timeout).
    """

    WAIT_S = 0.001  # a call waits at most this long while no batch is out ...
    HOLD_S = 0.005  # ... and this long behind one

    __slots__ = (
        "_calls_out",
        "_out",
        "_peak",
        "_previous_peak",
        "_queued",
        "_send",
        "_timer",
        "_window_ends",
    )

    def __init__(self, send: Callable[[], int]) -> None:
        self._send = send  # sends every queued call; returns how many server calls it made
        self._queued = 0
        self._out = 0  # calls sent and not answered yet
        self._calls_out = 0  # the server calls (several on a cluster) that carry them
        self._timer: asyncio.TimerHandle | None = None
        self._peak = 0  # calls in progress at most, in this window and the one before
        self._previous_peak = 0
        self._window_ends = 0.0

    def add(self) -> None:
        """A call was queued."""
        self._queued += 1
        in_progress = self._queued + self._out
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now >= self._window_ends:
            self._window_ends = now + 1.0
            self._previous_peak, self._peak = self._peak, 0
        if in_progress > self._peak:
            self._peak = in_progress
        if not self._calls_out:
            self._send_or_wait(loop)
        elif self._timer is None:
            # Not longer than that behind a batch out: a server that stopped answering
            # must not hold the next calls for its whole timeout.
            self._timer = loop.call_later(self.HOLD_S, self._waited)

    def returned(self, calls: int) -> None:
        """A server call of the batch out, carrying `calls` calls, was answered (or failed)."""
        self._out -= calls
        self._calls_out -= 1
        if not self._calls_out and self._queued:
            self._send_or_wait(asyncio.get_running_loop())

    def _send_or_wait(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._queued >= max(1, max(self._peak, self._previous_peak) // 2):
            self._go()
        elif self._timer is None:
            self._timer = loop.call_later(self.WAIT_S, self._waited)

    def _waited(self) -> None:
        self._timer = None
        if self._queued:
            self._go()

    def _go(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._out += self._queued
        self._queued = 0
        self._calls_out += self._send()
