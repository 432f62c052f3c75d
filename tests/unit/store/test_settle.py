"""`WhenSettled`: a group commit waits while its queue grows, never longer than MAX_TURNS."""

from __future__ import annotations

import asyncio

from gateway.store.settle import MAX_TURNS, WhenSettled


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
