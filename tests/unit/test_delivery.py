"""The core's one call for long-connection deliveries: every verdict, how each is logged, and
the gateway's shutdown (nothing claimed once it begins; a claim already on its way is
answered, not dropped)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from gateway.config import parse_config
from gateway.delivery import Deliveries
from gateway.inbox import Progress
from gateway.models import (
    Answered,
    ChatType,
    HttpResponse,
    Ignored,
    InboundMessage,
    Job,
    Messages,
    Outcome,
)
from gateway.platform import Delivery, MalformedRequest, NotReady, VerificationFailed
from gateway.relay import Relay
from gateway.runtime import Gateway
from gateway.store.base import StoreUnavailable
from tests.helpers import wait_for

BOT = "sock"


def message(n: int = 1, text: str = "hello") -> InboundMessage:
    return InboundMessage(
        bot=BOT,
        platform="slack",
        event_id=f"Ev{n}",
        message_id=f"{n}.0001",
        chat_id="D1",
        chat_type=ChatType.DIRECT,
        user_id="U1",
        text=text,
        dedupe_keys=(f"event:Ev{n}", f"msg:D1:{n}.0001"),
        received_at=0.0,
    )


class Core:
    """`Deliveries` around an inbox that records what it accepts."""

    def __init__(self) -> None:
        self.accepted: list[InboundMessage] = []
        self.accept_error: Exception | None = None
        self.draining = False
        self.deliver = Deliveries(self._accept, lambda: self.draining).for_bot(BOT)

    async def _accept(self, messages: Sequence[InboundMessage]) -> None:
        if self.accept_error is not None:
            raise self.accept_error
        self.accepted.extend(messages)


def job() -> Job:
    return Job(
        job_id=f"{BOT}:1.0001",
        message=message(),
        app="main",
        scope="user",
        conversation_key="c",
        dify_user=f"{BOT}:U1",
        accepted_at=0.0,
    )


def reading(result: Outcome | Exception) -> Any:
    """A synchronous read that returns or raises `result`, counting its calls."""

    def read() -> Outcome:
        read.calls += 1  # type: ignore[attr-defined]
        if isinstance(result, Exception):
            raise result
        return result

    read.calls = 0  # type: ignore[attr-defined]
    return read


# --- the verdicts ----------------------------------------------------------------------------


async def test_accepted_messages_are_acked() -> None:
    core = Core()
    assert await core.deliver(reading(Messages((message(),)))) is Delivery.ACK
    assert [m.text for m in core.accepted] == ["hello"]


async def test_an_asynchronous_reading_is_awaited() -> None:
    core = Core()

    async def read() -> Outcome:
        await asyncio.sleep(0)
        return Messages((message(),))

    assert await core.deliver(read) is Delivery.ACK
    assert len(core.accepted) == 1


@pytest.mark.parametrize(
    "outcome",
    [Ignored("a bot echo"), Answered(HttpResponse.json({"challenge": "c"}), "challenge")],
)
async def test_ignored_and_answered_deliveries_are_acked_and_not_accepted(
    outcome: Outcome,
) -> None:
    core = Core()
    assert await core.deliver(reading(outcome)) is Delivery.ACK
    assert core.accepted == []


@pytest.mark.parametrize(
    "rejection", [MalformedRequest("not JSON"), VerificationFailed("cannot decrypt")]
)
async def test_a_malformed_delivery_is_acked_and_logged(
    rejection: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    core = Core()
    assert await core.deliver(reading(rejection)) is Delivery.ACK
    (record,) = [r for r in caplog.records if r.name == "gateway.delivery"]
    assert record.levelno == logging.WARNING and str(rejection) in record.getMessage()
    assert core.accepted == []


async def test_an_adapter_that_is_not_ready_gets_the_delivery_again() -> None:
    core = Core()
    assert await core.deliver(reading(NotReady("bot id unknown"))) is Delivery.REDELIVER
    assert core.accepted == []


async def test_a_store_that_cannot_take_the_messages_is_a_redelivery_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    core = Core()
    core.accept_error = StoreUnavailable("redis is down")
    assert await core.deliver(reading(Messages((message(),)))) is Delivery.REDELIVER
    (record,) = [r for r in caplog.records if r.name == "gateway.delivery"]
    assert record.levelno == logging.ERROR and "redis is down" in record.getMessage()
    assert record.exc_info is None  # no traceback for an outage


async def test_a_flood_of_refused_deliveries_logs_a_few_lines_then_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """1,000 deliveries the store cannot take, 1,000 malformed ones and 1,000 adapter bugs:
    each kind is redelivered or acked as always, but logs at most ten lines a minute per
    bot (and one traceback), not one each."""
    core = Core()
    core.accept_error = StoreUnavailable("the inbox is full")
    for _ in range(1000):
        assert await core.deliver(reading(Messages((message(),)))) is Delivery.REDELIVER
        assert await core.deliver(reading(MalformedRequest("not JSON"))) is Delivery.ACK
        assert await core.deliver(reading(KeyError("odd input"))) is Delivery.ACK
    records = [r for r in caplog.records if r.name == "gateway.delivery"]
    full = [r for r in records if "the inbox is full" in r.getMessage()]
    dropped = [r for r in records if "dropping a delivery" in r.getMessage()]
    bugs = [r for r in records if "could not read a delivery" in r.getMessage()]
    assert len(full) == len(dropped) == 10
    # The first bug with its traceback, then ten lines without one.
    assert len(bugs) == 11 and [r.exc_info is not None for r in bugs] == [True] + [False] * 10


async def test_a_store_failure_while_reading_is_a_redelivery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    core = Core()
    assert await core.deliver(reading(StoreUnavailable("down"))) is Delivery.REDELIVER
    (record,) = [r for r in caplog.records if r.name == "gateway.delivery"]
    assert record.levelno == logging.ERROR and record.exc_info is None


async def test_an_adapter_bug_while_reading_is_acked_with_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    core = Core()
    assert await core.deliver(reading(KeyError("odd input"))) is Delivery.ACK
    (record,) = [r for r in caplog.records if r.name == "gateway.delivery"]
    assert record.levelno == logging.ERROR and record.exc_info is not None


async def test_an_unexpected_failure_to_accept_is_a_redelivery() -> None:
    core = Core()
    core.accept_error = RuntimeError("bug in the inbox")
    assert await core.deliver(reading(Messages((message(),)))) is Delivery.REDELIVER


async def test_while_draining_nothing_is_read_or_accepted() -> None:
    core = Core()
    core.draining = True
    read = reading(Messages((message(),)))
    assert await core.deliver(read) is Delivery.REDELIVER
    assert read.calls == 0 and core.accepted == []
    # Even a delivery that would be dropped is left for the next instance to judge.
    assert await core.deliver(reading(MalformedRequest("x"))) is Delivery.REDELIVER


async def test_a_shutdown_that_begins_while_reading_claims_nothing() -> None:
    core = Core()

    async def read() -> Outcome:
        core.draining = True  # begin_shutdown() while the adapter awaited something
        return Messages((message(),))

    assert await core.deliver(read) is Delivery.REDELIVER
    assert core.accepted == []


# --- with a gateway: the real intake, inbox and store ----------------------------------------


@pytest.fixture
async def gateway(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Gateway, list[Job]]]:
    """A gateway with one Socket Mode bot that is never started, and answers recorded
    instead of asking Dify."""
    answered: list[Job] = []

    async def answer(self: Relay, job: Job, progress: Progress) -> None:
        answered.append(job)

    monkeypatch.setattr(Relay, "answer", answer)
    tree = {
        "server": {"shutdown_grace_s": 2},
        "store": "memory://",
        "dify": {"apps": {"main": {"base_url": "http://127.0.0.1:9", "api_key": "k"}}},
        "bots": {
            BOT: {
                "platform": "slack",
                "app": "main",
                "mode": "socket",
                "api_base": "http://127.0.0.1:9/api",
                "bot_token": "xoxb-1",
                "app_token": "xapp-1",
            }
        },
    }
    gw = Gateway(parse_config(tree, env={}))
    await gw.inbox.start()  # the inbox's workers, not the bot
    yield gw, answered
    await gw.aclose()


async def test_duplicates_are_acked_and_answered_once(
    gateway: tuple[Gateway, list[Job]],
) -> None:
    gw, answered = gateway
    deliver = gw.intake.deliver_for(BOT)
    assert await deliver(reading(Messages((message(),)))) is Delivery.ACK
    assert await deliver(reading(Messages((message(),)))) is Delivery.ACK  # redelivered
    await gw.inbox.wait_idle()
    assert [j.message.text for j in answered] == ["hello"]


async def test_a_store_that_raises_leaves_the_delivery_for_redelivery(
    gateway: tuple[Gateway, list[Job]], monkeypatch: pytest.MonkeyPatch
) -> None:
    gw, answered = gateway
    real_accept = gw.store.accept

    async def down(*args: Any, **kwargs: Any) -> bool:
        raise StoreUnavailable("redis is down")

    monkeypatch.setattr(gw.store, "accept", down)
    deliver = gw.intake.deliver_for(BOT)
    assert await deliver(reading(Messages((message(),)))) is Delivery.REDELIVER
    assert gw.inbox.queued == 0 and gw.inbox.in_flight == 0

    monkeypatch.setattr(gw.store, "accept", real_accept)  # back: the redelivery is taken
    assert await deliver(reading(Messages((message(),)))) is Delivery.ACK
    await gw.inbox.wait_idle()
    assert len(answered) == 1


async def test_after_begin_shutdown_nothing_is_claimed(
    gateway: tuple[Gateway, list[Job]], monkeypatch: pytest.MonkeyPatch
) -> None:
    gw, answered = gateway
    claims: list[Sequence[str]] = []
    real_accept = gw.store.accept

    async def accept(keys: Sequence[str], *args: Any) -> bool:
        claims.append(keys)
        return await real_accept(keys, *args)

    monkeypatch.setattr(gw.store, "accept", accept)
    gw.begin_shutdown()
    deliver = gw.intake.deliver_for(BOT)
    assert await deliver(reading(Messages((message(),)))) is Delivery.REDELIVER
    assert claims == [] and answered == []
    assert await gw.store.accept([f"{BOT}:event:Ev1"], job())  # free for the next instance


async def test_a_claim_on_its_way_when_the_drain_begins_is_answered(
    gateway: tuple[Gateway, list[Job]], monkeypatch: pytest.MonkeyPatch
) -> None:
    gw, answered = gateway
    release = asyncio.Event()
    real_accept = gw.store.accept

    async def slow_accept(*args: Any) -> bool:
        await release.wait()  # a slow store round trip
        return await real_accept(*args)

    monkeypatch.setattr(gw.store, "accept", slow_accept)
    deliver = gw.intake.deliver_for(BOT)
    delivery = asyncio.create_task(deliver(reading(Messages((message(),)))))
    await asyncio.sleep(0.01)  # the claim is under way
    drain = asyncio.create_task(gw.drain())
    await asyncio.sleep(0.01)
    assert not drain.done()  # the drain waits for the claim...
    release.set()
    assert await delivery is Delivery.ACK  # ...which ends in an ack...
    await drain
    await wait_for(lambda: len(answered) == 1, what="the answer")  # ...and an answer
