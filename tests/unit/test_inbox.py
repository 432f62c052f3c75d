"""The inbox: dedupe, per-conversation order, bounded concurrency, attempts and dead
letters, the bound on unanswered messages, bounded shutdown, and jobs kept across a
restart (SQLite)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.inbox import Inbox, InboxFull, JobRecord, Progress
from gateway.inbox import durable as durable_module
from gateway.inbox.scheduler import BURST_RUNNING, QUIET_S, Scheduler
from gateway.metrics import Metrics
from gateway.models import ChatType, InboundMessage, Job
from gateway.store.base import Store, StoreUnavailable
from gateway.store.memory import MemoryStore
from gateway.store.sqlite import SQLiteStore

Work = Callable[[Job, Progress], Awaitable[None]]


def job(n: int, conversation: str, text: str | None = None) -> Job:
    msg = InboundMessage(
        bot="b",
        platform="slack",
        event_id=f"e{n}",
        message_id=f"m{n}",
        chat_id="c",
        chat_type=ChatType.DIRECT,
        user_id="u",
        text=str(n) if text is None else text,
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


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(durable_module, "STORE_RETRY_S", (0.01, 0.02, 0.05))


gave_up: list[str] = []


async def give_up(j: Job, progress: Progress) -> None:
    gave_up.append(j.job_id)


@pytest.fixture
async def inboxes() -> AsyncIterator[Callable[..., Awaitable[Inbox]]]:
    made: list[Inbox] = []
    gave_up.clear()

    async def make(work: Work, store: Store | None = None, **settings: int) -> Inbox:
        store = store if store is not None else MemoryStore()
        inbox = Inbox(
            store,
            store.feed(lease_s=15),
            work,
            give_up,
            max_concurrent=settings.get("max_concurrent", 4),
            max_queued=settings.get("max_queued", 10_000),
            max_attempts=settings.get("max_attempts", 3),
            metrics=Metrics(),
        )
        await inbox.start()
        made.append(inbox)
        return inbox

    yield make
    for inbox in made:
        await inbox.drain(1)
        await inbox.close()


async def test_duplicates_are_refused(inboxes: Callable[..., Awaitable[Inbox]]) -> None:
    ran: list[str] = []

    async def work(j: Job, progress: Progress) -> None:
        ran.append(j.job_id)

    inbox = await inboxes(work)
    assert await inbox.accept(job(1, "c1"), ["b:event:1", "b:msg:1"])
    assert not await inbox.accept(job(1, "c1"), ["b:event:2", "b:msg:1"])
    await inbox.wait_idle()
    assert ran == ["b:m1"]


async def test_one_conversation_runs_in_order_others_run_alongside(
    inboxes: Callable[..., Awaitable[Inbox]],
) -> None:
    log: list[str] = []
    gate = asyncio.Event()

    async def work(j: Job, progress: Progress) -> None:
        log.append(f"start {j.message.text}")
        if j.message.text == "1":
            await gate.wait()
        log.append(f"end {j.message.text}")

    inbox = await inboxes(work, max_concurrent=8)
    await inbox.accept(job(1, "c1"), ["k1"])
    await inbox.accept(job(2, "c1"), ["k2"])
    await inbox.accept(job(3, "c2"), ["k3"])
    await asyncio.sleep(0.05)
    assert log == ["start 1", "start 3", "end 3"]  # 2 waits behind 1; 3 is not blocked
    gate.set()
    await inbox.wait_idle()
    assert log[3:] == ["end 1", "start 2", "end 2"]


async def test_concurrency_is_bounded_and_the_rest_queue(
    inboxes: Callable[..., Awaitable[Inbox]],
) -> None:
    running = 0
    peak = 0

    async def work(j: Job, progress: Progress) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1

    inbox = await inboxes(work, max_concurrent=3)
    for n in range(20):
        assert await inbox.accept(job(n, f"c{n}"), [f"k{n}"])
    await asyncio.sleep(QUIET_S + 0.02)  # answers start once the burst of accepts is over
    assert inbox.in_flight == 3 and inbox.queued == 17
    await inbox.wait_idle()
    assert peak == 3


async def test_a_failing_job_is_retried_then_dead_lettered_and_its_conversation_goes_on(
    inboxes: Callable[..., Awaitable[Inbox]],
) -> None:
    attempts: list[int] = []
    done: list[str] = []

    async def work(j: Job, progress: Progress) -> None:
        if j.message.text == "1":
            attempts.append(progress.attempt)
            await progress.save(sink={"ts": f"t{progress.attempt}"})
            raise RuntimeError("boom")
        done.append(j.message.text)

    store = MemoryStore()
    inbox = await inboxes(work, store, max_attempts=3)
    await inbox.accept(job(1, "c"), ["k1"])
    await inbox.accept(job(2, "c"), ["k2"])
    await inbox.wait_idle()
    assert attempts == [1, 2, 3]
    assert gave_up == ["b:m1"]
    assert [(j.job_id, reason) for j, reason in store.dead_letters] == [
        ("b:m1", "failed 3 attempts")
    ]
    assert done == ["2"]  # the next message of the conversation was answered after it
    assert store.backlog() == 0


async def test_a_retry_resumes_from_the_last_attempts_checkpoint(
    inboxes: Callable[..., Awaitable[Inbox]],
) -> None:
    seen: list[dict[str, object]] = []

    async def work(j: Job, progress: Progress) -> None:
        seen.append(dict(progress.checkpoint))
        if progress.attempt == 1:
            await progress.save(sink={"ts": "100.1"}, task_id="task-1")
            raise RuntimeError("the platform refused the final text")

    inbox = await inboxes(work)
    await inbox.accept(job(1, "c"), ["k1"])
    await inbox.wait_idle()
    assert seen == [{}, {"sink": {"ts": "100.1"}, "task_id": "task-1"}]


async def test_past_the_bound_new_messages_are_refused_and_accepted_ones_answered(
    inboxes: Callable[..., Awaitable[Inbox]],
) -> None:
    gate = asyncio.Event()
    answered: list[str] = []

    async def work(j: Job, progress: Progress) -> None:
        await gate.wait()
        answered.append(j.job_id)

    inbox = await inboxes(work, max_queued=5)
    for n in range(5):
        assert await inbox.accept(job(n, f"c{n}"), [f"k{n}"])
    with pytest.raises(InboxFull):
        await inbox.accept(job(9, "c9"), ["k9"])
    gate.set()
    await inbox.wait_idle()
    assert sorted(answered) == [f"b:m{n}" for n in range(5)]
    assert await inbox.accept(job(9, "c9"), ["k9"])  # room again


async def test_drain_waits_then_cancels(inboxes: Callable[..., Awaitable[Inbox]]) -> None:
    finished: list[str] = []

    async def work(j: Job, progress: Progress) -> None:
        await asyncio.sleep(0.05 if j.message.text == "quick" else 10)
        finished.append(j.message.text)

    inbox = await inboxes(work)
    await inbox.accept(job(1, "a", "quick"), ["k1"])
    await inbox.accept(job(2, "b"), ["k2"])
    await asyncio.sleep(0.05)
    await inbox.drain(0.3)
    assert finished == ["quick"]
    assert inbox.in_flight == 0


async def test_sqlite_keeps_what_was_not_finished_and_the_next_start_resumes_it(
    tmp_path: Path, inboxes: Callable[..., Awaitable[Inbox]]
) -> None:
    path = str(tmp_path / "gw.db")
    started = asyncio.Event()

    async def hang(j: Job, progress: Progress) -> None:
        await progress.save(sink={"ts": "1.5"})
        started.set()
        await asyncio.sleep(60)

    first = SQLiteStore(path)
    inbox = await inboxes(hang, first)
    assert await inbox.accept(job(1, "c"), ["k1"])
    assert await inbox.accept(job(2, "c"), ["k2"])
    await asyncio.wait_for(started.wait(), 5)
    await inbox.drain(0.05)  # job 1 is cut short, job 2 never started
    await inbox.close()
    await first.aclose()

    resumed: list[tuple[str, int, dict[str, object]]] = []

    async def work(j: Job, progress: Progress) -> None:
        resumed.append((j.job_id, progress.attempt, dict(progress.checkpoint)))

    second = SQLiteStore(path)
    restarted = await inboxes(work, second)
    await restarted.wait_idle()
    assert resumed == [("b:m1", 2, {"sink": {"ts": "1.5"}}), ("b:m2", 1, {})]
    assert not await restarted.accept(job(1, "c"), ["k1"])  # still a duplicate
    await restarted.drain(1)
    await second.aclose()


async def test_answers_wait_while_acks_keep_arriving_but_not_too_long(
    inboxes: Callable[..., Awaitable[Inbox]],
) -> None:
    started: dict[str, float] = {}
    loop = asyncio.get_running_loop()

    async def work(j: Job, progress: Progress) -> None:
        started[j.message.text] = loop.time()

    inbox = await inboxes(work, max_concurrent=100)
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


async def test_a_flood_of_concurrent_accepts_stops_at_the_bound(
    inboxes: Callable[..., Awaitable[Inbox]],
) -> None:
    """Accepts still on their way to the store count against the bound: twenty arriving
    at once do not all see an empty inbox."""
    gate = asyncio.Event()

    async def work(j: Job, progress: Progress) -> None:
        await gate.wait()

    class SlowStore(MemoryStore):
        async def accept(self, keys: Sequence[str], j: Job, ttl: float = 1.0) -> bool:
            await asyncio.sleep(0.01)  # a store round trip
            return await super().accept(keys, j, ttl)

    inbox = await inboxes(work, SlowStore(), max_queued=5)
    results = await asyncio.gather(
        *(inbox.accept(job(n, f"c{n}"), [f"k{n}"]) for n in range(20)), return_exceptions=True
    )
    assert results.count(True) == 5
    assert all(isinstance(r, InboxFull) for r in results if r is not True)
    gate.set()
    await inbox.wait_idle()


class ForgetfulStore(MemoryStore):
    """Takes no checkpoint (the store is away whenever one is saved)."""

    async def checkpoint(self, j: Job, state: Mapping[str, Any]) -> None:
        raise StoreUnavailable("redis is away")


async def test_an_attempt_stopped_with_its_lease_leaves_its_checkpoint_to_the_next_here(
    inboxes: Callable[..., Awaitable[Inbox]],
) -> None:
    """The lease was lost and the attempt cancelled, with checkpoints the store never took
    (it was away). When the job comes back to this process, the next attempt starts from
    them: the same platform message, or nothing at all if the answer was delivered."""
    seen: list[dict[str, object]] = []
    started = asyncio.Event()

    async def work(j: Job, progress: Progress) -> None:
        seen.append(dict(progress.checkpoint))
        if progress.attempt == 1:
            await progress.save(sink={"ts": "100.1"}, answered=True)
            started.set()
            await asyncio.sleep(60)  # still finishing up when the lease goes

    store = ForgetfulStore()
    inbox = await inboxes(work, store)
    the_job = job(1, "c")
    await inbox.accept(the_job, ["k1"])
    await asyncio.wait_for(started.wait(), 5)
    inbox._lost(lambda j: True)  # the feed lost the job's shard: its attempt is cancelled
    await inbox.scheduler.wait_idle()
    inbox.scheduler.enqueue(the_job)  # the shard came back, and the job with it
    await inbox.wait_idle()
    assert seen == [{}, {"sink": {"ts": "100.1"}, "answered": True}]


async def test_a_checkpoint_left_here_is_not_used_after_another_instance_tried_the_job(
    inboxes: Callable[..., Awaitable[Inbox]],
) -> None:
    seen: list[dict[str, object]] = []

    async def work(j: Job, progress: Progress) -> None:
        seen.append(dict(progress.checkpoint))
        if progress.attempt == 1:
            await progress.save(sink={"ts": "old"})
            raise RuntimeError("boom")

    class OthersTriedToo(ForgetfulStore):
        async def begin(self, j: Job) -> JobRecord:
            record = await super().begin(j)
            if record.attempts == 2:  # attempt 2 ran elsewhere; this is attempt 3
                record = await super().begin(j)
            return record

    inbox = await inboxes(work, OthersTriedToo())
    await inbox.accept(job(1, "c"), ["k1"])
    await inbox.wait_idle()
    assert seen == [{}, {}]  # the stale checkpoint of attempt 1 was not used by attempt 3


async def test_an_answer_whose_finish_was_never_recorded_is_not_redone_here(
    inboxes: Callable[..., Awaitable[Inbox]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store was away after the answer went out, through every try to take the job
    out of the inbox (and for its `answered` checkpoint). When the job comes back to this
    process (its shard taken again), the next attempt only takes it out."""
    monkeypatch.setattr(durable_module, "FINISH_TRIES", 2)
    seen: list[dict[str, object]] = []
    answered = asyncio.Event()

    async def work(j: Job, progress: Progress) -> None:
        seen.append(dict(progress.checkpoint))
        if progress.checkpoint.get("answered"):
            return  # what Relay.answer does: nothing left to show or to ask
        await progress.save(answered=True)
        answered.set()

    class AwayAfterTheAnswer(ForgetfulStore):
        away = True
        finishes = 0

        async def finish(self, j: Job) -> None:
            self.finishes += 1
            if self.away:
                raise StoreUnavailable("redis is away")
            await super().finish(j)

    store = AwayAfterTheAnswer()
    inbox = await inboxes(work, store)
    the_job = job(1, "c")
    await inbox.accept(the_job, ["k1"])
    await asyncio.wait_for(answered.wait(), 5)
    await inbox.scheduler.wait_idle()
    assert store.finishes == 2  # gave up: the job is still in the inbox
    store.away = False
    inbox.scheduler.enqueue(the_job)  # the shard came back, and the job with it
    await inbox.wait_idle()
    assert seen == [{}, {"answered": True}]
    assert store.finishes == 3 and gave_up == []


async def test_the_scheduler_gives_back_what_has_not_started_and_finishes_what_runs() -> None:
    ran: list[str] = []
    gate = asyncio.Event()

    async def work(j: Job) -> None:
        ran.append(j.job_id)
        await gate.wait()

    scheduler = Scheduler(work, max_concurrent=1)
    for n, conversation in ((1, "c"), (2, "c"), (3, "d")):
        scheduler.enqueue(job(n, conversation))
    await asyncio.sleep(QUIET_S * 3)
    assert ran == ["b:m1"] and scheduler.queued == 2
    # m2 waited behind m1 (its conversation), m3 for a free slot.
    assert sorted(j.job_id for j in scheduler.take_back()) == ["b:m2", "b:m3"]
    assert scheduler.queued == 0 and scheduler.in_flight == 1
    gate.set()
    await asyncio.wait_for(scheduler.wait_idle(), 5)
    await scheduler.drain(1)
    assert ran == ["b:m1"]  # nothing given back ran here
    assert scheduler.take_back() == []


async def test_during_a_burst_the_inbox_reads_no_more_than_the_held_answers_need(
    inboxes: Callable[..., Awaitable[Inbox]],
) -> None:
    """While acks keep coming, answers wait (acks first); once BURST_RUNNING of them wait
    here, the rest stay in the inbox until the burst is over, then all are answered."""
    answered: list[str] = []

    async def work(j: Job, progress: Progress) -> None:
        answered.append(j.job_id)

    inbox = await inboxes(work, max_concurrent=64)
    accepted = 0
    most_held = 0
    async with asyncio.timeout(10):
        while accepted < 200:  # a burst: a message every few ms, never quiet for QUIET_S
            await inbox.accept(job(accepted, f"c{accepted}"), [f"k{accepted}"])
            accepted += 1
            most_held = max(most_held, inbox.scheduler.queued)  # read from the feed
            await asyncio.sleep(QUIET_S / 10)
    assert not answered or len(answered) < 100  # held while the burst lasted
    assert BURST_RUNNING <= most_held < 100  # read only as far as the held answers need
    await inbox.wait_idle()
    assert sorted(answered) == sorted(f"b:m{n}" for n in range(200))
