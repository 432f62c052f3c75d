"""The inbox: dedupe, per-conversation order, bounded concurrency, bounded shutdown."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from gateway.inbox import QUIET_S, Inbox
from gateway.metrics import Metrics
from gateway.models import ChatType, InboundMessage, Job
from gateway.store.memory import MemoryStore


def job(n: int, conversation: str) -> Job:
    msg = InboundMessage(
        bot="b",
        platform="slack",
        event_id=f"e{n}",
        message_id=f"m{n}",
        chat_id="c",
        chat_type=ChatType.DIRECT,
        user_id="u",
        text=str(n),
        received_at=0.0,
    )
    return Job(
        job_id=f"b:m{n}",
        message=msg,
        app="a",
        scope="user",
        conversation_key=conversation,
        dify_user="b:u",
        accepted_at=0.0,
    )


async def test_duplicates_are_refused() -> None:
    ran: list[str] = []

    async def work(j: Job) -> None:
        ran.append(j.job_id)

    inbox = Inbox(MemoryStore(), work, max_concurrent=4, metrics=Metrics())
    assert await inbox.accept(job(1, "c1"), ["b:event:1", "b:msg:1"])
    assert not await inbox.accept(job(1, "c1"), ["b:event:2", "b:msg:1"])
    await inbox.wait_idle()
    assert ran == ["b:m1"]


async def test_one_conversation_runs_in_order_others_run_alongside() -> None:
    log: list[str] = []
    gate = asyncio.Event()

    async def work(j: Job) -> None:
        log.append(f"start {j.message.text}")
        if j.message.text == "1":
            await gate.wait()
        log.append(f"end {j.message.text}")

    inbox = Inbox(MemoryStore(), work, max_concurrent=8, metrics=Metrics())
    await inbox.accept(job(1, "c1"), ["k1"])
    await inbox.accept(job(2, "c1"), ["k2"])
    await inbox.accept(job(3, "c2"), ["k3"])
    await asyncio.sleep(0.05)
    assert log == ["start 1", "start 3", "end 3"]  # 2 waits behind 1; 3 is not blocked
    gate.set()
    await inbox.wait_idle()
    assert log[3:] == ["end 1", "start 2", "end 2"]


async def test_concurrency_is_bounded_and_the_rest_queue() -> None:
    running = 0
    peak = 0

    async def work(j: Job) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1

    inbox = Inbox(MemoryStore(), work, max_concurrent=3, metrics=Metrics())
    for n in range(20):
        assert await inbox.accept(job(n, f"c{n}"), [f"k{n}"])
    await asyncio.sleep(QUIET_S + 0.02)  # answers start once the burst of accepts is over
    assert inbox.in_flight == 3 and inbox.queued == 17
    await inbox.wait_idle()
    assert peak == 3


async def test_a_failing_job_does_not_stop_its_conversation() -> None:
    done: list[str] = []

    async def work(j: Job) -> None:
        if j.message.text == "1":
            raise RuntimeError("boom")
        done.append(j.message.text)

    inbox = Inbox(MemoryStore(), work, max_concurrent=2, metrics=Metrics())
    await inbox.accept(job(1, "c"), ["k1"])
    await inbox.accept(job(2, "c"), ["k2"])
    await inbox.wait_idle()
    assert done == ["2"]


async def test_drain_waits_then_cancels() -> None:
    finished: list[str] = []

    async def work(j: Job) -> None:
        await asyncio.sleep(0.05 if j.message.text == "quick" else 10)
        finished.append(j.message.text)

    inbox = Inbox(MemoryStore(), work, max_concurrent=4, metrics=Metrics())
    quick, slow = job(1, "a"), job(2, "b")
    await inbox.accept(
        replace(quick, message=replace(quick.message, text="quick")),
        ["k1"],
    )
    await inbox.accept(slow, ["k2"])
    await inbox.drain(0.3)
    assert finished == ["quick"]
    assert inbox.in_flight == 0


async def test_answers_wait_while_acks_keep_arriving_but_not_too_long() -> None:
    started: dict[str, float] = {}
    loop = asyncio.get_running_loop()

    async def work(j: Job) -> None:
        started[j.message.text] = loop.time()

    inbox = Inbox(MemoryStore(), work, max_concurrent=100, metrics=Metrics())
    begin = loop.time()
    n = 0
    while loop.time() - begin < 0.6:  # a burst: a message every millisecond for 0.6 s
        await inbox.accept(job(n, f"c{n}"), [f"k{n}"])
        n += 1
        await asyncio.sleep(0.001)
    burst_end = loop.time()
    await inbox.wait_idle()
    first = started["0"] - begin
    # The first answer was held back (acks first), but for no more than about MAX_HOLD_S.
    assert 0.25 <= first <= 0.45
    # Nothing waited much longer than MAX_HOLD_S plus a tick, burst or not.
    assert all(started[str(i)] <= burst_end + 0.1 for i in range(n))
