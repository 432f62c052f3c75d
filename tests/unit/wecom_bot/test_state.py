"""AI-bot state in the store: stream state, the per-user in-flight count, first sight.
Runs against the memory, SQLite, Redis and Redis Cluster backends, as several instances would
share it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.wecom_bot.state import STALE_GRACE, BotState, StreamState
from gateway.store.base import Store
from gateway.store.factory import open_store


@pytest.fixture(params=["memory", "sqlite", "redis", "redis-cluster"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "memory":
        url = "memory://"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    elif request.param == "redis":
        url = request.getfixturevalue("redis_url")
    else:
        url = request.getfixturevalue("redis_cluster_url")
    backend = open_store(url)
    yield backend
    await backend.aclose()


@pytest.fixture
def bot() -> str:
    # A fresh bot name per test: the Redis server is shared by the whole session.
    return f"bot-{uuid.uuid4().hex[:8]}"


async def test_stream_state_round_trips(store: Store, bot: str) -> None:
    state = BotState(store, bot)
    assert await state.read("s1") is None
    await state.write("s1", StreamState("**hi** 你好", False, 123.0))
    assert await state.read("s1") == StreamState("**hi** 你好", False, 123.0)


async def test_a_fourth_answer_in_flight_is_refused(store: Store, bot: str) -> None:
    state = BotState(store, bot)
    assert [await state.enter("u1") for _ in range(4)] == [True, True, True, False]
    assert await state.enter("u2")  # per user
    await state.leave("u1")
    assert await state.enter("u1")
    assert not await state.enter("u1")


async def test_concurrent_entries_never_exceed_three(store: Store, bot: str) -> None:
    state = BotState(store, bot)
    results = await asyncio.gather(*(state.enter("u1") for _ in range(8)))
    assert sum(results) == 3


async def test_the_count_never_goes_negative(store: Store, bot: str) -> None:
    state = BotState(store, bot)
    await state.leave("u1")  # e.g. the count expired while the answer ran
    assert [await state.enter("u1") for _ in range(4)] == [True, True, True, False]


async def test_first_sight_is_once_per_msgid(store: Store, bot: str) -> None:
    state = BotState(store, bot)
    assert await state.first_sight("m1")
    assert not await state.first_sight("m1")
    assert await BotState(store, bot + "-other").first_sight("m1")  # per bot


def test_a_corrupt_state_reads_as_none() -> None:
    assert StreamState.loads("{") is None
    assert StreamState.loads('{"content": 1}') is None


def test_an_abandoned_stream_is_closed_for_wecom() -> None:
    live = StreamState("half", False, close_at=1000.0)
    assert live.as_seen(1000.0, "*(cut off)*") is live
    stale = live.as_seen(1000.0 + STALE_GRACE + 1, "*(cut off)*")
    assert stale.finish and stale.content == "half\n\n*(cut off)*"
    done = StreamState("all", True, close_at=0.0)
    assert done.as_seen(10**9, "*(cut off)*") is done
