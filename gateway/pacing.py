"""One update budget per bot, shared by all of its answers in flight.

Platforms count edits per message *and* per workspace or app (Slack's method tiers, Feishu's
app-wide limits). So each answer's update interval is the larger of its per-message minimum
and its fair share of the bot's rate: with `n` answers drawing on a budget of `r` updates per
second, each one updates every `n / r` seconds. A 429 pauses the whole bot.

Discrete, expensive calls (Slack's `chat.startStream`, Tier 2) take tokens from a bucket
instead (`try_take`), so a sink can fall back to a cheaper path when the bucket is empty.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.platform import Pacing


class _Bucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now


class BotBudget:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._active: dict[str, int] = {}
        self._paused_until = 0.0
        self._buckets: dict[str, _Bucket] = {}

    def join(self, pacing: Pacing) -> None:
        """An answer starts drawing on `pacing.budget`."""
        self._active[pacing.budget] = self._active.get(pacing.budget, 0) + 1

    def leave(self, pacing: Pacing) -> None:
        left = self._active.get(pacing.budget, 0) - 1
        if left > 0:
            self._active[pacing.budget] = left
        else:
            self._active.pop(pacing.budget, None)

    def interval(self, pacing: Pacing) -> float:
        """Seconds between two updates of one message, given how many share the budget."""
        sharing = max(1, self._active.get(pacing.budget, 0))
        return max(pacing.min_interval, sharing / pacing.budget_per_second)

    def slow_down(self, seconds: float) -> None:
        """The platform rate-limited us: pause every update of this bot for `seconds`."""
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self._clock())

    def try_take(self, name: str, per_second: float, burst: float) -> bool:
        """Take one token from the bucket `name` if there is one (no waiting)."""
        now = self._clock()
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = _Bucket(per_second, burst, now)
        bucket.tokens = min(bucket.burst, bucket.tokens + (now - bucket.stamp) * bucket.rate)
        bucket.stamp = now
        if bucket.tokens >= 1.0 and self.paused_for() == 0.0:
            bucket.tokens -= 1.0
            return True
        return False
