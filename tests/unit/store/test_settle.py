"""`WhenSettled`: a group commit waits while its queue grows, never longer than MAX_TURNS."""

from __future__ import annotations

import asyncio

from gateway.store.settle import MAX_TURNS, HalfBatches, WhenSettled


class Queue:
    def __init__(self) -> None:
        self.items: list[int] = []
        self.commits: list[list[int]] = []
        self.settle = WhenSettled(lambda: len(self.items), self.commit)

    def add(self, item: int) -> None:
        self.items.append(item)
        self.settle.schedule()

    def commit(self) -> None:
        self.commits.append(self.items)
        self.items = []


async def test_a_lone_call_waits_for_no_extra_turn() -> None:
    queue = Queue()
    queue.add(1)
    assert queue.commits == []  # never inside the turn that queued it
    await asyncio.sleep(0)
    assert queue.commits == [[1]]


async def test_calls_of_one_turn_go_together() -> None:
    queue = Queue()
    for item in range(5):
        queue.add(item)
    # More than the first call: a burst may be under way, so it looks once more.
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert queue.commits == [[0, 1, 2, 3, 4]]


async def test_calls_that_keep_coming_are_gathered_into_one_commit() -> None:
    queue = Queue()
    queue.add(0)
    queue.add(1)
    for item in range(2, 4):  # more calls in each of the next turns
        await asyncio.sleep(0)
        assert queue.commits == []
        queue.add(item)
    await asyncio.sleep(0)  # a turn that queues nothing ...
    assert queue.commits == []
    await asyncio.sleep(0)  # ... so the next look commits
    assert queue.commits == [[0, 1, 2, 3]]


async def test_a_queue_that_never_stops_growing_commits_after_max_turns() -> None:
    queue = Queue()
    queue.add(0)
    queue.add(1)
    turns = 0
    while not queue.commits:
        await asyncio.sleep(0)
        turns += 1
        queue.add(turns + 1)
    assert turns == MAX_TURNS + 1
    assert queue.commits[0] == list(range(MAX_TURNS + 2))
    # What came after goes with the next commit.
    await asyncio.sleep(0)
    assert queue.commits[1] == [MAX_TURNS + 2]


class Server:
    """Batches HalfBatches sends, answered when the test says so."""

    def __init__(self) -> None:
        self.pacing = HalfBatches(self.send)
        self.queued = 0
        self.out: list[int] = []  # the sizes of the batches sent and not answered

    def call(self) -> None:
        self.queued += 1
        self.pacing.add()

    def send(self) -> int:
        self.out.append(self.queued)
        self.queued = 0
        return 1

    def answer(self) -> None:
        self.pacing.returned(self.out.pop(0))


async def test_a_lone_call_goes_at_once() -> None:
    server = Server()
    server.call()
    assert server.out == [1]


async def test_under_load_batches_alternate_in_halves() -> None:
    """32 clients, each sending again once answered: one half is out while the other
    comes in, whatever the split the first rounds made."""
    server = Server()
    for _ in range(32):
        server.call()
    assert server.out == [1]  # nothing was known of the load yet
    sizes = []
    for _ in range(12):
        size = server.out[0]
        server.answer()  # the queued half goes out as the batch before it returns ...
        sizes.append(size)
        for _ in range(size):  # ... and those answered send again
            server.call()
    assert sizes[-4:] == [16, 16, 16, 16]
    assert server.out == [16]


async def test_a_few_calls_below_half_the_load_wait_at_most_wait_s() -> None:
    server = Server()
    for _ in range(32):
        server.call()
    server.answer()
    server.answer()  # the load is known (32), nothing is out
    server.call()
    assert server.out == []
    await asyncio.sleep(HalfBatches.WAIT_S * 3)
    assert server.out == [1]


async def test_calls_behind_a_batch_that_never_returns_go_after_hold_s() -> None:
    server = Server()
    server.call()  # out, and its server stops answering
    server.call()
    server.call()
    assert server.out == [1]
    await asyncio.sleep(HalfBatches.HOLD_S * 3)
    assert server.out == [1, 2]
