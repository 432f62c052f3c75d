"""Small helpers for tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.runtime import Gateway


async def wait_for(predicate: Callable[[], bool], within: float = 5.0, what: str = "") -> None:
    """Poll `predicate` until it is true; fail the test after `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what or predicate}")
        await asyncio.sleep(0.01)


def bot_state(gateway: Gateway, bot: str) -> str:
    """The bot's state as the status page shows it (`missing` for a bot it does not know)."""
    state = gateway.bot_states.get(bot)
    return "missing" if state is None else state.state.value
