"""gateway/limits.py on its own: the allow and deny lists, the minute windows, the once-an-hour
notice, and a store that does not answer (the question goes through)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.config import Route, parse_config
from gateway.inbox import Progress
from gateway.limits import Limits, admits
from gateway.metrics import Metrics
from gateway.models import ChatType, InboundMessage, Job
from gateway.router import Router
from gateway.store.base import StoreUnavailable
from gateway.store.memory import MemoryStore
from gateway.words import ENGLISH


def message(user: str = "U1", chat: str = "C1") -> InboundMessage:
    return InboundMessage(
        bot="b",
        platform="slack",
        event_id="e",
        message_id="m",
        chat_id=chat,
        chat_type=ChatType.GROUP,
        user_id=user,
        text="hi",
        received_at=0.0,
    )


def job(user: str = "U1", chat: str = "C1") -> Job:
    return Job(
        job_id="b:m",
        message=message(user, chat),
        app="main",
        scope="user",
        conversation_key="k",
        dify_user="b:U1",
        accepted_at=0.0,
    )


def limits(
    routes: list[dict[str, Any]], bot_limit: int = 0, store: Any = None
) -> tuple[Limits, list[float]]:
    config = parse_config(
        {
            "dify": {"apps": {"main": {"api_key": "k"}}},
            "bots": {
                "b": {
                    "platform": "slack",
                    "app": "main",
                    "bot_token": "xoxb-1",
                    "signing_secret": "s",
                    "rate_limit_per_minute": bot_limit,
                }
            },
            "routes": routes,
        },
        env={},
    )
    now = [1_000_020.0]
    return (
        Limits(
            bots=config.bots,
            router=Router(config),
            store=store or MemoryStore(),
            metrics=Metrics(),
            words={"b": ENGLISH},
            clock=lambda: now[0],
        ),
        now,
    )


def test_allow_and_deny_lists() -> None:
    assert admits(Route(), message())
    route = Route(allow_users=("U1",), deny_chats=("C9",))
    assert admits(route, message("U1"))
    assert not admits(route, message("U2"))
    assert not admits(route, message("U1", "C9"))
    both = Route(allow_users=("U1",), allow_chats=("C1",))
    assert admits(both, message("U1", "C1")) and not admits(both, message("U1", "C2"))
    assert not admits(Route(deny_users=("U1",)), message("U1"))


async def test_each_minute_has_its_own_count() -> None:
    check, now = limits([{"user_rate_limit_per_minute": 1}])
    assert await check.check(job(), question=True) is None
    refusal = await check.check(job(), question=True)
    assert refusal is not None and refusal.reason == "rate_limited"
    assert refusal.notice == ENGLISH.user_rate_limited
    assert await check.check(job("U2"), question=True) is None  # another user
    assert await check.check(job(), question=False) is None  # a command: not counted
    now[0] += 60
    assert await check.check(job(), question=True) is None


async def test_a_refused_user_is_told_once_an_hour() -> None:
    store = MemoryStore()
    check, _ = limits([{"deny_users": ["U1"]}], store=store)
    first = await check.check(job(), question=True)
    again = await check.check(job(), question=False)
    assert first is not None and first.notice == ENGLISH.access_refused
    assert again is not None and again.reason == "refused" and again.notice is None
    # Where a reply is pending for every message (web chat, WeCom AI bot), it is told each time.
    pending = await check.check(job(), question=True, must_reply=True)
    assert pending is not None and pending.notice == ENGLISH.access_refused


class DownStore(MemoryStore):
    async def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        raise StoreUnavailable("down")

    async def claim(self, keys: Sequence[str], ttl: float = 1.0) -> bool:
        raise StoreUnavailable("down")


async def test_a_store_that_does_not_answer_lets_questions_through() -> None:
    check, _ = limits([{"user_rate_limit_per_minute": 1}], bot_limit=1, store=DownStore())
    for _ in range(3):
        assert await check.check(job(), question=True) is None
    denied, _ = limits([{"deny_users": ["U1"]}], store=DownStore())
    refusal = await denied.check(job(), question=True)
    assert refusal is not None and refusal.notice is None  # refused, but not told


class Checkpoints:
    """The one call `Progress.save` makes of a job feed."""

    def __init__(self) -> None:
        self.saved: list[dict[str, Any]] = []

    async def checkpoint(self, job: Job, checkpoint: dict[str, Any]) -> None:
        self.saved.append(dict(checkpoint))


async def test_a_refusal_is_decided_once_per_job_across_attempts() -> None:
    check, _ = limits([{"user_rate_limit_per_minute": 1}])
    feed = Checkpoints()
    first = Progress(feed, job(), 1, {})
    assert await check.admit(job(), first, question=True, must_reply=False) is None
    # A resumed attempt of a job that was let through is not counted again.
    again = Progress(feed, job(), 2, {})
    assert await check.admit(job(), again, question=True, must_reply=False) is None
    refused = Progress(feed, job(), 1, {})
    refusal = await check.admit(job(), refused, question=True, must_reply=False)
    assert refusal is not None and refusal.reason == "rate_limited"
    assert feed.saved[-1]["refused"] == {"reason": "rate_limited", "notice": refusal.notice}
    # Its next attempt repeats the refusal from the checkpoint, without counting.
    resumed = Progress(feed, job(), 2, dict(feed.saved[-1]))
    assert await check.admit(job(), resumed, question=True, must_reply=False) == refusal
