"""Each bot's state: what changes it, one log line per change, secrets masked, the gauge."""

from __future__ import annotations

import asyncio
import contextvars
import logging

import pytest

from gateway.bot_state import BotState, BotStates, Phase, connection_failed, reporting_for
from gateway.logs import Masker
from gateway.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watched(ready: list[bool], clock: Clock | None = None) -> BotStates:
    states = BotStates(mask=Masker(["sekrit-token"]), clock=clock or Clock())
    states.add("s", "slack", "socket", lambda: ready[0])
    return states


def test_a_bot_starts_as_starting_and_is_up_once_started_and_ready() -> None:
    ready = [False]
    clock = Clock()
    states = watched(ready, clock)
    (state,) = states.snapshot()
    assert (state.bot, state.platform, state.mode) == ("s", "slack", "socket")
    assert state.state is Phase.STARTING and state.since == 1000.0 and state.last_error is None
    ready[0] = True
    assert states.snapshot()[0].state is Phase.STARTING  # not started yet: ready is not read
    clock.now = 1005.0
    states.started("s")
    state = states.snapshot()[0]
    assert state.state is Phase.UP and state.up and state.since == 1005.0


def test_a_failed_start_is_retrying_with_its_error_masked() -> None:
    states = watched([False])
    states.failed("s", "PlatformError: slack API error invalid_auth for sekrit-token")
    state = states.get("s")
    assert state is not None and state.state is Phase.RETRYING and not state.up
    assert state.last_error == "PlatformError: slack API error invalid_auth for ***"


def test_a_dropped_connection_is_retrying_and_coming_back_is_up() -> None:
    ready = [True]
    states = watched(ready)
    states.started("s")
    ready[0] = False
    assert states.snapshot()[0].state is Phase.RETRYING
    ready[0] = True
    state = states.snapshot()[0]
    assert state.state is Phase.UP
    assert states.get("unknown") is None


def test_each_change_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.bot_state")
    ready = [False]
    states = watched(ready)
    states.started("s")
    for error in ("first", "second", "third"):
        states.failed("s", error)  # still retrying: no new line, the newest reason kept
    assert states.snapshot()[0].last_error == "third"
    ready[0] = True
    for _ in range(3):
        states.refresh()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "bot s (slack) is starting",
        "bot s (slack) is retrying: first",
        "bot s (slack, socket) is up",
    ]


def test_stopped_and_removed_bots() -> None:
    ready = [True]
    states = watched(ready)
    states.started("s")
    states.stop("s")
    assert states.snapshot()[0].state is Phase.STOPPED
    states.failed("s", "late failure")  # a stopped bot stays stopped
    assert states.snapshot()[0].state is Phase.STOPPED
    states.remove("s")
    assert states.snapshot() == []


def test_an_adapter_whose_ready_raises_is_retrying_not_an_error() -> None:
    def broken() -> bool:
        raise RuntimeError("bug")

    states = BotStates()
    states.add("b", "feishu", "webhook", broken)
    states.started("b")
    assert states.snapshot()[0].state is Phase.RETRYING


async def test_connection_failures_are_reported_from_the_bots_tasks() -> None:
    states = watched([False])
    connection_failed("nobody listens outside a bot's context")

    async def long_connection() -> None:
        await asyncio.sleep(0)
        connection_failed("ConnectionClosed: websocket closed")

    with reporting_for(states, "s"):
        task = asyncio.create_task(long_connection())
    await task
    state = states.snapshot()[0]
    assert state.state is Phase.RETRYING
    assert state.last_error == "ConnectionClosed: websocket closed"


def test_the_gauge_follows_the_states() -> None:
    metrics = Metrics()
    ready = [True]
    states = watched(ready)
    states.add("f", "feishu", "websocket", lambda: False)
    metrics.watch_bots(states.snapshot)
    states.started("s")
    text = metrics.render().decode()
    assert 'dify_gateway_bot_up{bot="s",mode="socket",platform="slack"} 1.0' in text
    assert 'dify_gateway_bot_up{bot="f",mode="websocket",platform="feishu"} 0.0' in text
    states.remove("f")
    assert 'bot="f"' not in metrics.render().decode()


def test_bot_state_is_a_plain_frozen_record() -> None:
    state = BotState("b", "web", "auth:token", Phase.UP, 1.0)
    with pytest.raises(AttributeError):
        state.state = Phase.STOPPED  # type: ignore[misc]


def test_a_replaced_adapters_connection_does_not_report_into_its_successor() -> None:
    states = watched([False])
    with reporting_for(states, "s"):
        old_adapters_tasks = contextvars.copy_context()
    states.add("s", "slack", "socket", lambda: True)  # a reload rebuilt the bot
    old_adapters_tasks.run(connection_failed, "the old socket dropped")
    assert states.snapshot()[0].state is Phase.STARTING
    assert states.snapshot()[0].last_error is None
    with reporting_for(states, "s"):
        connection_failed("the new socket dropped")
    assert states.snapshot()[0].last_error == "the new socket dropped"
