"""Feishu card callbacks read back totally: a click of ours, or a reason to ignore it."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.feishu.buttons import Where, final, stop, to_click
from gateway.controls import Controls, button_value
from gateway.models import ChatType
from tests.fakes.feishu import button_value as value_of
from tests.fakes.feishu import buttons_of, click_event

WHERE = Where(chat_type="group", thread="omt_1", in_thread=True, card_id="7355", created_ms=99)


def read(payload: dict[str, Any]) -> Any:
    return to_click(payload, bot="fs", platform="feishu", received_at=1.0)


def test_a_rating_click_names_the_answer_the_chat_and_the_card() -> None:
    (like, _dislike) = buttons_of(final(Controls("fs:om_1", feedback=True), WHERE, v2=True))
    click = read(click_event(value_of(like), message_id="om_card", operator="ou_bob"))
    assert not isinstance(click, str)
    assert click.action is not None and click.action.kind == "feedback"
    assert (click.action.answer_id, click.action.value) == ("fs:om_1", "like")
    assert click.user_id == "ou_bob" and click.chat_type is ChatType.GROUP
    assert click.thread_id == "omt_1" and click.reply_to["in_thread"] is True
    assert click.reply_to["card_id"] == "7355" and click.reply_to["created_ms"] == 99
    assert click.reply_to["message_id"] == "om_card"


def test_the_fallback_cards_stop_reads_back_too() -> None:
    where = Where(chat_type="p2p", thread="", in_thread=False)
    (button,) = stop("Stop", Controls("fs:om_1", stop=True), where, v2=False)
    click = read(click_event(value_of(button), message_id="om_card"))
    assert not isinstance(click, str) and click.action is not None
    assert click.action.kind == "stop" and click.chat_type is ChatType.DIRECT
    assert click.reply_to["card_id"] == ""


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"dgw": "not ours"},
        {"dgw": 42},
        {"dgw": "dgw1|explode|x|fs:om_1"},
        {"dgw": button_value("feedback", "")},
        "a string",
        None,
    ],
)
def test_anything_else_is_ignored_never_raised(value: Any) -> None:
    assert isinstance(read(click_event(value, message_id="om_card")), str)


def test_a_callback_missing_who_or_where_is_ignored() -> None:
    value = {"dgw": button_value("feedback", "fs:om_1", "like")}
    event = click_event(value, message_id="")
    assert isinstance(read(event), str)
    event = click_event(value, message_id="om_card")
    event["event"]["operator"] = "nobody"
    assert isinstance(read(event), str)
    assert isinstance(read({"schema": "2.0"}), str)
