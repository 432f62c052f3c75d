"""Display names: asked of the platform once per user, bounded, and never fatal."""

from __future__ import annotations

import pytest

from adapters import names
from adapters.names import DisplayNames
from gateway.models import ChatType, InboundMessage
from gateway.platform import PlatformError


def message(user_id: str, user_name: str = "") -> InboundMessage:
    return InboundMessage(
        bot="b",
        platform="slack",
        event_id="e",
        message_id="m",
        chat_id="c",
        chat_type=ChatType.DIRECT,
        user_id=user_id,
        user_name=user_name,
        text="hi",
        received_at=0.0,
    )


async def test_names_are_looked_up_once_and_a_failure_falls_back_to_the_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[str] = []

    async def lookup(user_id: str) -> str | None:
        asked.append(user_id)
        if user_id == "U-broken":
            raise PlatformError("slack", "user_not_visible")
        return {"U1": "Ada"}.get(user_id)

    monkeypatch.setattr(names, "CACHE_SIZE", 2)
    display = DisplayNames("slack", "b", lookup)
    assert await display.of(message("U1")) == "Ada"
    assert await display.of(message("U1")) == "Ada"
    assert await display.of(message("U2", user_name="Grace")) == "Grace"  # the event had it
    assert await display.of(message("U3")) == "U3"  # the platform has no name
    assert await display.of(message("U-broken")) == "U-broken"
    assert asked == ["U1", "U3", "U-broken"]
    assert await display.of(message("U4")) == "U4"  # a full cache starts over
    assert await display.of(message("U1")) == "Ada"
    assert asked == ["U1", "U3", "U-broken", "U4", "U1"]
