"""Limits and access: who may ask through a route, and how often (docs/operating.md,
"Limits and access").

- Access: a route's `deny_users` / `deny_chats` refuse, and a non-empty `allow_users` /
  `allow_chats` refuses everyone not on it (both lists must let a message through). A
  refused user is told so at most once an hour (a claim in the store); after that their
  messages get no reply at all, so a pilot does not fill a group with refusals. Where the
  user sees a reply pending for every message (the web chat, a WeCom AI bot), every
  refused message gets the notice: silence would leave it pending.
- Rate limits: `routes[].user_rate_limit_per_minute` (one user's questions to one bot) and
  `bots.<name>.rate_limit_per_minute` (the whole bot), each counted per calendar minute in
  the store (`SharedState.incr` with a TTL), so every instance counts against one number.
  Only questions for Dify count: `/reset`, `/help` and the gateway's own notices cost the
  app nothing.

Checked in the worker, just before a question would go to Dify, not on the ack path:
- the ack must stay fast (it reads the store once, for the claim); a limit costs one or two
  more store round trips, which the platform's 3-second ack deadline should not wait for;
- a refused message is still answered, with a short notice instead of the app's answer, and
  that notice goes through the same durable, ordered reply path as any answer (the
  platform's message or card, a thread, a WeCom AI-bot stream), which only the worker has;
- a platform's retry of a refused message is a duplicate like any other: the dedupe
  claimed it at the ack, so it is neither counted nor answered twice.

A store that does not answer lets the question through (logged): a limit protects the app's
quota, and the answer is worth more than the count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from gateway.config import Route
from gateway.inbox import Progress
from gateway.metrics import Metrics
from gateway.models import InboundMessage, Job
from gateway.router import Router
from gateway.store import keys
from gateway.store.base import Claims, SharedState, StoreUnavailable
from gateway.words import Words

log = logging.getLogger(__name__)

WINDOW_S = 60
NOTICE_EVERY_S = 3600.0


class LimitsStore(Claims, SharedState, Protocol):
    """What the limits need from the store: counters, and a claim per refusal notice."""


class BotLimit(Protocol):
    @property
    def rate_limit_per_minute(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a message is not answered by the app, and what the user reads instead (None:
    nothing, they were told within the hour)."""

    reason: Literal["refused", "rate_limited"]
    notice: str | None


def admits(route: Route, message: InboundMessage) -> bool:
    """Whether the route's allow and deny lists let `message` through."""
    user, chat = message.user_id, message.chat_id
    if user in route.deny_users or chat in route.deny_chats:
        return False
    if route.allow_users and user not in route.allow_users:
        return False
    return not route.allow_chats or chat in route.allow_chats


class Limits:
    def __init__(
        self,
        *,
        bots: Mapping[str, BotLimit],
        router: Router,
        store: LimitsStore,
        metrics: Metrics,
        words: Mapping[str, Words],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._bots = bots
        self._router = router
        self._store = store
        self._metrics = metrics
        self._words = words
        self._clock = clock

    async def admit(
        self, job: Job, progress: Progress, *, question: bool, must_reply: bool
    ) -> Refusal | None:
        """`check`, decided once per job: a refusal is kept in the job's checkpoint, so a
        resumed job (another attempt, maybe on another instance) is neither counted again
        nor answered after all; a job an earlier attempt let through is not checked again."""
        kept = progress.checkpoint.get("refused")
        if isinstance(kept, dict):
            notice = kept.get("notice")
            notice = notice if isinstance(notice, str) else None
            if kept.get("reason") == "rate_limited":
                return Refusal("rate_limited", notice)
            return Refusal("refused", notice)
        if progress.resumed:
            return None
        refusal = await self.check(job, question=question, must_reply=must_reply)
        if refusal is not None:
            await progress.save(refused={"reason": refusal.reason, "notice": refusal.notice})
        return refusal

    async def check(self, job: Job, *, question: bool, must_reply: bool = False) -> Refusal | None:
        """None when the message may be answered; else the refusal. `question`: it would go
        to Dify (rate limits count only those). `must_reply`: the platform shows a reply
        pending for every message (`Capabilities.awaits_every_reply`), so a refused user
        is told every time rather than once an hour."""
        message = job.message
        route = self._router.route_for(message)
        if route is not None and not admits(route, message):
            if must_reply:
                return Refusal("refused", self._words[message.bot].access_refused)
            return Refusal("refused", await self._refusal_notice(message))
        if not question:
            return None
        words = self._words[message.bot]
        per_user = route.user_rate_limit_per_minute if route is not None else 0
        if per_user and await self._over(f"user:{message.bot}:{message.user_id}", per_user):
            self._metrics.rate_limited.labels(message.bot, "user").inc()
            return Refusal("rate_limited", words.user_rate_limited)
        per_bot = self._bots[message.bot].rate_limit_per_minute
        if per_bot and await self._over(f"bot:{message.bot}", per_bot):
            self._metrics.rate_limited.labels(message.bot, "bot").inc()
            return Refusal("rate_limited", words.bot_rate_limited)
        return None

    async def _over(self, scope: str, limit: int) -> bool:
        """Count one question against `scope` in this minute; True past `limit`."""
        window = int(self._clock() // WINDOW_S)
        try:
            count = await self._store.incr(keys.rate_count(scope, window), 1, 2 * WINDOW_S)
        except StoreUnavailable as exc:
            log.warning("rate limit %s not counted (the question goes through): %s", scope, exc)
            return False
        return count > limit

    async def _refusal_notice(self, message: InboundMessage) -> str | None:
        """The refusal notice, unless this user was told within the hour."""
        key = keys.access_notice(message.bot, message.user_id)
        try:
            first = await self._store.claim([key], NOTICE_EVERY_S)
        except StoreUnavailable as exc:
            log.warning("bot %s: refusal not told (store unavailable): %s", message.bot, exc)
            return None
        return self._words[message.bot].access_refused if first else None
