"""Small helpers for tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.models import ChatType, InboundMessage, Job

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


def group_job(
    user: str, *, scope: str = "chat", key: str = "main/slack:C1", dify_user: str = "b:U1"
) -> Job:
    """A job for an empty message of `user` in the Slack group C1: enough to ask who may
    stop an answer or answer a form (`scope` and `key` as the route made them)."""
    message = InboundMessage(
        bot="b",
        platform="slack",
        event_id="e",
        message_id="m",
        chat_id="C1",
        chat_type=ChatType.GROUP,
        user_id=user,
        text="",
        received_at=0.0,
    )
    return Job(
        job_id="b:m",
        message=message,
        app="main",
        scope=scope,
        conversation_key=key,
        dify_user=dify_user,
        accepted_at=0.0,
    )
