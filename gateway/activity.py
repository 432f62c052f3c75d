"""What this instance answered lately, for the status page (gateway/status_page.py): the last
messages of each bot, and per-minute counts and latencies over the last hour.

In memory and per instance: each instance's status page shows its own view (a load balancer
decides which instance a message reaches). Bounded whatever the traffic: `RECENT` records per
bot, and per minute a fixed histogram of latencies rather than the latencies themselves.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

RECENT = 50
MINUTES = 60
# Upper bounds of the latency histogram's buckets, in seconds (about 25% apart); a p95
# read from it is off by at most one bucket's width.
BOUNDS: tuple[float, ...] = tuple(round(0.05 * 1.25**i, 3) for i in range(40))
# What an answer's outcome counts as on the charts (the rest are answers that worked, or
# replies the gateway gave itself: commands, notices, limits).
FAILURES = frozenset({"dify_error", "deadline", "error", "attachment_error", "gave_up"})


@dataclass(frozen=True, slots=True)
class Record:
    """One finished message. `first_update_s`: from the ack to the first thing the chat
    showed of the answer, its thinking state included (None if nothing was shown);
    `total_s`: from the ack to the end."""

    at: float
    bot: str
    chat_type: str
    outcome: str
    first_update_s: float | None
    total_s: float
    text: str | None = None

    @property
    def failed(self) -> bool:
        return self.outcome in FAILURES


@dataclass(slots=True)
class Minute:
    """Answers, failures and a latency histogram (total time) of one minute."""

    index: int  # minutes since the epoch
    answers: int = 0
    errors: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS) + 1))

    def add(self, record: Record) -> None:
        self.answers += 1
        self.errors += record.failed
        self.buckets[bisect.bisect_left(BOUNDS, record.total_s)] += 1


def percentile(buckets: Sequence[int], q: float) -> float | None:
    """The `q` quantile (0..1) of a histogram over `BOUNDS`, as its bucket's upper bound
    (the last bucket, past every bound, reads as the largest bound)."""
    total = sum(buckets)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(buckets):
        seen += count
        if seen >= rank:
            return BOUNDS[min(i, len(BOUNDS) - 1)]
    return BOUNDS[-1]


@dataclass(frozen=True, slots=True)
class HourPoint:
    """One minute on the charts: `minute` is minutes since the epoch."""

    minute: int
    answers: int
    errors: int
    p95_s: float | None


class Activity:
    def __init__(self, *, keep_text: bool = False, clock: Callable[[], float] = time.time) -> None:
        # `server.status_show_text`: without it no message text is kept, not even here.
        self._keep_text = keep_text
        self._clock = clock
        self._recent: dict[str, deque[Record]] = {}
        self._minutes: deque[Minute] = deque(maxlen=MINUTES)

    def record(
        self,
        *,
        bot: str,
        chat_type: str,
        outcome: str,
        accepted_at: float,
        first_update_at: float | None,
        text: str | None = None,
    ) -> None:
        now = self._clock()
        first = None if first_update_at is None else max(0.0, first_update_at - accepted_at)
        kept = text if self._keep_text else None
        entry = Record(now, bot, chat_type, outcome, first, max(0.0, now - accepted_at), kept)
        self._recent.setdefault(bot, deque(maxlen=RECENT)).appendleft(entry)
        self._minute(int(now // 60)).add(entry)

    def _minute(self, index: int) -> Minute:
        if not self._minutes or self._minutes[-1].index != index:
            self._minutes.append(Minute(index))
        return self._minutes[-1]

    def recent(self, bot: str) -> list[Record]:
        """The bot's last `RECENT` messages, newest first."""
        return list(self._recent.get(bot, ()))

    def hour(self) -> list[HourPoint]:
        """The last 60 minutes, oldest first, every minute present (0 when idle)."""
        now = int(self._clock() // 60)
        kept = {m.index: m for m in self._minutes}
        points = []
        for index in range(now - MINUTES + 1, now + 1):
            m = kept.get(index)
            if m is None:
                points.append(HourPoint(index, 0, 0, None))
            else:
                points.append(HourPoint(index, m.answers, m.errors, percentile(m.buckets, 0.95)))
        return points

    def hour_p95(self) -> float | None:
        """The p95 of every answer's total time in the last hour."""
        first = int(self._clock() // 60) - MINUTES + 1
        merged = [0] * (len(BOUNDS) + 1)
        for m in self._minutes:
            if m.index >= first:
                merged = [a + b for a, b in zip(merged, m.buckets, strict=True)]
        return percentile(merged, 0.95)
