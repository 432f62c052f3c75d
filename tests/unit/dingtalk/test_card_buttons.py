"""The AI card's button variables, and reading a click on one back (card_buttons.py,
card_clicks.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.dingtalk.api import DingtalkApi
from adapters.dingtalk.card_buttons import ButtonCardSink, variables
from adapters.dingtalk.card_clicks import (
    UNKNOWN_ANSWER,
    CardClick,
    CardPlace,
    CardPlaces,
    click_message,
    read_click,
)
from adapters.dingtalk.frames import CARD_TOPIC, parse_frame
from adapters.dingtalk.reply import Destination
from gateway.controls import Controls, FormChoice
from gateway.models import ChatType
from gateway.platform import MalformedRequest
from gateway.store.memory import MemoryStore
from gateway.words import ENGLISH
from tests.fakes.dingtalk import FakeDingtalk

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


@pytest.mark.parametrize(
    ("shown", "clicked", "sent"),
    [("like", "like", ""), ("like", "dislike", "dislike"), ("", "like", "like")],
)
def test_a_click_on_the_rating_shown_withdraws_it(shown: str, clicked: str, sent: str) -> None:
    place = CardPlace("ding:m1", "cid1==", group=False, rating=shown)
    message = click_message("ding", CardClick("dgw1", "u1", "feedback", clicked), place, "f", 1.0)
    assert message.action is not None and message.action.value == sent


def test_a_click_on_an_unknown_card_is_answered_one_to_one() -> None:
    message = click_message("ding", CardClick("dgw9", "u2", "stop", ""), None, "f2", 1.0)
    assert message.chat_type is ChatType.DIRECT and message.reply_to["sender_staff_id"] == "u2"
    assert message.action is not None and message.action.answer_id == UNKNOWN_ANSWER + "dgw9"


@pytest.mark.parametrize("raw", ["", "[]", "{}", '{"answer": 7, "conversation": "c"}', "x"])
def test_an_unreadable_card_place_is_none(raw: str) -> None:
    assert CardPlace.decode(raw) is None


def test_a_card_place_round_trips() -> None:
    place = CardPlace("ding:m1", "cid1==", group=False, rating="dislike")
    assert CardPlace.decode(place.encode()) == place
    assert CardPlace.decode('{"answer": "a", "conversation": "c", "rating": "meh"}') == (
        CardPlace("a", "c", group=False)
    )


# --- the sink ------------------------------------------------------------------------------


def group_destination() -> Destination:
    return Destination(
        group=True,
        conversation_id="cidGroup1==",
        staff_id="u1",
        nick="Zhang San",
        webhook="",
        webhook_expires_ms=0,
    )


async def test_a_long_answer_shows_stop_on_the_card_being_written_and_thumbs_on_the_last(
    fake: FakeDingtalk, api: DingtalkApi
) -> None:
    store = MemoryStore()
    places = CardPlaces(store, "ding")
    sink = ButtonCardSink(api, group_destination(), "tpl.schema", words=ENGLISH, places=places)
    sink.offer(Controls("ding:m1", stop=True))
    await sink.begin()
    await sink.update("part one")
    await sink.finish("part one", last=False)  # rolled over: the next part gets a new card
    await sink.update("part two")
    first, second = (fake.cards[t] for t in sink.cards)
    assert first.variables["showStop"] == "false" and first.flow[-1] == "3"
    assert second.variables["showStop"] == "true"
    sink.offer(Controls("ding:m1", feedback=True))
    await sink.finish("part two", last=True)
    assert second.variables["showStop"] == "false" and second.variables["showFeedback"] == "true"
    assert first.variables["showFeedback"] == "false"
    # Each card was recorded before it was created, for a click on it.
    for track in sink.cards:
        assert await places.get(track) == CardPlace("ding:m1", "cidGroup1==", group=True)
    await sink.amend(Controls("ding:m1", feedback=True, suggestions=("Next?",)))
    assert second.variables["suggestion1"] == "Next?" and second.content == "part two"


async def test_a_failed_answer_shows_no_button(fake: FakeDingtalk, api: DingtalkApi) -> None:
    places = CardPlaces(MemoryStore(), "ding")
    sink = ButtonCardSink(api, group_destination(), "tpl.schema", words=ENGLISH, places=places)
    sink.offer(Controls("ding:m1", stop=True))
    await sink.begin()
    await sink.fail("Sorry, something went wrong.")
    (card,) = fake.cards.values()
    assert card.flow[-1] == "5"
    assert {k: card.variables[k] for k in OFF} == OFF


async def test_a_sink_without_controls_writes_no_button_and_keeps_no_record(
    fake: FakeDingtalk, api: DingtalkApi
) -> None:
    store = MemoryStore()
    sink = ButtonCardSink(
        api, group_destination(), "tpl.schema", words=ENGLISH, places=CardPlaces(store, "ding")
    )
    await sink.finish(ENGLISH.expired, last=True)  # a note answering a click, say
    ((track, card),) = fake.cards.items()
    assert set(card.variables) == {"msgContent", "flowStatus"}
    assert await CardPlaces(store, "ding").get(track) is None
