"""The AI card's button variables, and reading a click on one back (card_buttons.py,
card_clicks.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.dingtalk.card_buttons import variables
from adapters.dingtalk.card_clicks import (
    UNKNOWN_ANSWER,
    CardClick,
    CardPlace,
    click_message,
    read_click,
)
from adapters.dingtalk.frames import CARD_TOPIC, parse_frame
from gateway.controls import Controls, FormChoice
from gateway.models import ChatType
from gateway.platform import MalformedRequest

DATA = Path(__file__).parents[2] / "data" / "dingtalk"
OFF = {"showStop": "false", "showFeedback": "false", "liked": "false", "disliked": "false"}


def test_a_card_being_written_shows_stop_only() -> None:
    shown = variables(Controls("ding:m1", stop=True), writing=True, stop_label="停止")
    assert shown["showStop"] == "true" and shown["stopLabel"] == "停止"
    assert shown["showFeedback"] == "false" and shown["showSuggestion1"] == "false"


def test_a_finished_card_shows_the_rating_and_the_suggestions() -> None:
    controls = Controls("ding:m1", feedback=True, rating="dislike", suggestions=("A?", "B?"))
    shown = variables(controls, writing=False, stop_label="Stop")
    assert {k: shown[k] for k in OFF} == {**OFF, "showFeedback": "true", "disliked": "true"}
    assert [shown[f"suggestion{i}"] for i in (1, 2, 3)] == ["A?", "B?", ""]
    assert [shown[f"showSuggestion{i}"] for i in (1, 2, 3)] == ["true", "true", "false"]
    assert all(isinstance(v, str) for v in shown.values())  # DingTalk takes strings only


@pytest.mark.parametrize(
    "controls",
    [
        None,
        Controls("ding:m1", stop=True),  # a Stop is only for a card being written
        Controls("ding:m1", feedback=True, form=FormChoice("tok", (("a", "Approve", ""),))),
    ],
)
def test_a_card_that_ends_without_final_controls_shows_no_button(
    controls: Controls | None,
) -> None:
    shown = variables(controls, writing=False, stop_label="Stop")
    assert {k: shown[k] for k in OFF} == OFF
    assert shown["suggestion1"] == "" and shown["showSuggestion1"] == "false"


def test_the_sample_click_reads_back() -> None:
    frame = parse_frame((DATA / "card_callback_frame.json").read_text())
    assert frame.topic == CARD_TOPIC
    click = read_click(frame.payload())
    assert click == CardClick(
        "dgw53d6dda444c74f5f17bf4534333c1a46", "manager807", "feedback", "like"
    )


@pytest.mark.parametrize(
    ("action_ids", "params", "expected"),
    [
        (["stop"], {}, ("stop", "")),
        (["dislike"], {}, ("feedback", "dislike")),
        (["suggestion3"], {}, ("suggestion", "2")),
        (["button_node_a1", "suggestion2"], {}, ("suggestion", "1")),
        (["button_node_a1"], {"action": "like"}, ("feedback", "like")),
    ],
)
def test_the_button_is_its_action_id_or_its_action_param(
    action_ids: list[str], params: dict[str, str], expected: tuple[str, str]
) -> None:
    content = json.dumps({"cardPrivateData": {"actionIds": action_ids, "params": params}})
    click = read_click({"outTrackId": "dgw1", "userId": "u1", "content": content})
    assert isinstance(click, CardClick) and (click.kind, click.value) == expected


@pytest.mark.parametrize(
    "content",
    [
        json.dumps({"cardPrivateData": {"actionIds": ["share"], "params": {"action": "x"}}}),
        json.dumps({"cardPrivateData": {"actionIds": "like"}}),  # not a list
        json.dumps({"cardPrivateData": ["like"]}),
        json.dumps({}),
    ],
)
def test_a_callback_from_no_button_of_ours_is_ignored(content: str) -> None:
    assert isinstance(read_click({"outTrackId": "t", "userId": "u", "content": content}), str)


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"userId": "u", "content": "{}"},
        {"outTrackId": "t", "userId": 7, "content": "{}"},
        {"outTrackId": "t", "userId": "u", "content": "not json"},
        {"outTrackId": "t", "userId": "u", "content": "[1]"},
        {"outTrackId": "t", "userId": "u", "content": 7},
        {"outTrackId": "t", "userId": "u"},
    ],
)
def test_a_malformed_callback_is_a_clean_rejection(payload: object) -> None:
    with pytest.raises(MalformedRequest):
        read_click(payload)


def test_a_click_comes_from_the_card_s_conversation() -> None:
    click = CardClick("dgw1", "u2", "suggestion", "0")
    place = CardPlace("ding:msg1==", "cidGroup1==", group=True)
    message = click_message("ding", click, place, "f1", received_at=1.0)
    assert (message.chat_id, message.chat_type, message.user_id) == (
        "cidGroup1==",
        ChatType.GROUP,
        "u2",
    )
    assert message.action is not None and message.action.answer_id == "ding:msg1=="
    assert message.dedupe_keys == ("frame:f1",)
    assert message.reply_to["card"] == "dgw1" and message.reply_to["conversation_type"] == "2"


def test_a_click_on_an_unknown_card_is_answered_one_to_one() -> None:
    message = click_message("ding", CardClick("dgw9", "u2", "stop", ""), None, "f2", 1.0)
    assert message.chat_type is ChatType.DIRECT and message.reply_to["sender_staff_id"] == "u2"
    assert message.action is not None and message.action.answer_id == UNKNOWN_ANSWER + "dgw9"


@pytest.mark.parametrize("raw", ["", "[]", "{}", '{"answer": 7, "conversation": "c"}', "x"])
def test_an_unreadable_card_place_is_none(raw: str) -> None:
    assert CardPlace.decode(raw) is None


def test_a_card_place_round_trips() -> None:
    place = CardPlace("ding:m1", "cid1==", group=False)
    assert CardPlace.decode(place.encode()) == place
