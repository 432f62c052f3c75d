"""The AI card's button variables, and reading a click on one back (card_buttons.py,
card_clicks.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.dingtalk.api import DingtalkApi
from adapters.dingtalk.card_buttons import ButtonCardSink, variables
from adapters.dingtalk.card_clicks import (
    MAX_FORM_ACTIONS,
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


REVIEW = FormChoice("tok1", (("approve", "Approve", "primary"), ("reject", "", "default")))


def test_a_card_that_ends_with_a_form_shows_its_actions_instead_of_the_thumbs() -> None:
    shown = variables(Controls("ding:m1", form=REVIEW), writing=False, stop_label="Stop")
    # An action without a title is labelled by its id.
    assert [shown[f"formAction{i}"] for i in (1, 2, 3)] == ["Approve", "reject", ""]
    assert [shown[f"showFormAction{i}"] for i in (1, 2, 3)] == ["true", "true", "false"]
    assert {k: shown[k] for k in OFF} == OFF
    assert (shown["formChosen"], shown["showFormChosen"]) == ("", "false")


def test_a_form_shows_at_most_its_first_actions_and_none_while_written() -> None:
    many = tuple((f"a{i}", f"A{i}", "") for i in range(MAX_FORM_ACTIONS + 2))
    controls = Controls("ding:m1", form=FormChoice("tok1", many))
    shown = variables(controls, writing=False, stop_label="Stop")
    assert shown[f"formAction{MAX_FORM_ACTIONS}"] == f"A{MAX_FORM_ACTIONS - 1}"
    assert f"formAction{MAX_FORM_ACTIONS + 1}" not in shown
    writing = variables(controls, writing=True, stop_label="Stop")
    assert writing["showFormAction1"] == "false" and writing["formAction1"] == ""


def test_a_form_answered_by_a_click_shows_the_choice_and_no_button() -> None:
    shown = variables(None, writing=False, stop_label="Stop", chosen="✅ Answered: Approve")
    assert (shown["formChosen"], shown["showFormChosen"]) == ("✅ Answered: Approve", "true")
    assert all(shown[f"showFormAction{i}"] == "false" for i in range(1, MAX_FORM_ACTIONS + 1))


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
        (["form1"], {}, ("form", "0")),
        ([], {"action": f"form{MAX_FORM_ACTIONS}"}, ("form", str(MAX_FORM_ACTIONS - 1))),
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
        json.dumps({"cardPrivateData": {"actionIds": [f"form{MAX_FORM_ACTIONS + 1}"]}}),
        json.dumps({"cardPrivateData": {"actionIds": ["form0"]}}),
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


FORM_PLACE = CardPlace(
    "ding:m1", "cid1==", group=False, form="tok1", actions=(("approve", "OK"), ("reject", "No"))
)


def test_a_click_on_a_form_s_button_answers_that_form_with_that_action() -> None:
    click = CardClick("dgw1", "u1", "form", "1")
    message = click_message("ding", click, FORM_PLACE, "f", 1.0)
    assert message.action is not None
    assert (message.action.kind, message.action.answer_id, message.action.value) == (
        "form",
        "tok1",
        "reject",
    )
    assert message.reply_to["chosen"] == "No" and message.chat_id == "cid1=="


@pytest.mark.parametrize(
    ("place", "value"),
    [
        (FORM_PLACE, "2"),  # a button the card does not show
        (CardPlace("ding:m1", "cid1==", group=False), "0"),  # a card without a form
        (None, "0"),  # a card the store forgot
        (FORM_PLACE, "x"),  # not a number (a CardClick made elsewhere)
        (FORM_PLACE, "²"),
    ],
)
def test_a_form_click_the_card_cannot_name_names_no_form(
    place: CardPlace | None, value: str
) -> None:
    message = click_message("ding", CardClick("dgw9", "u1", "form", value), place, "f", 1.0)
    assert message.action is not None and message.action.kind == "form"
    assert message.action.answer_id == UNKNOWN_ANSWER + "dgw9"
    assert message.action.value  # a click, not a reply in words: the core says it expired
    assert message.reply_to["chosen"] == ""


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
    assert CardPlace.decode(FORM_PLACE.encode()) == FORM_PLACE
    assert CardPlace.decode('{"answer": "a", "conversation": "c", "rating": "meh"}') == (
        CardPlace("a", "c", group=False)
    )


@pytest.mark.parametrize(
    "extra",
    [
        {"form": "tok1", "actions": [["approve"]]},
        {"form": "tok1", "actions": [["approve", "OK"], ["", "No"]]},
        {"form": "tok1", "actions": [["approve", 7]]},
        {"form": "tok1", "actions": "approve"},
        {"form": "tok1", "actions": []},
        {"form": 7, "actions": [["approve", "OK"]]},
        {"form": "", "actions": [["approve", "OK"]]},
    ],
)
def test_a_card_place_with_an_unreadable_form_has_none(extra: dict[str, object]) -> None:
    raw = json.dumps({"answer": "a", "conversation": "c", **extra})
    assert CardPlace.decode(raw) == CardPlace("a", "c", group=False)


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


async def test_a_card_that_ends_with_a_form_is_recorded_with_it_before_it_shows_it(
    fake: FakeDingtalk, api: DingtalkApi
) -> None:
    places = CardPlaces(MemoryStore(), "ding")
    sink = ButtonCardSink(api, group_destination(), "tpl.schema", words=ENGLISH, places=places)
    sink.offer(Controls("ding:m1", stop=True))
    await sink.begin()
    await sink.update("Shall I?")
    (track,) = sink.cards
    assert await places.get(track) == CardPlace("ding:m1", "cidGroup1==", group=True)
    sink.offer(Controls("ding:m1", form=REVIEW))
    await sink.finish("Shall I?", last=True)
    card = fake.cards[track]
    assert card.variables["showFormAction2"] == "true" and card.variables["showStop"] == "false"
    recorded = await places.get(track)
    assert recorded is not None and recorded.form == "tok1"
    assert recorded.actions == (("approve", "Approve"), ("reject", "reject"))


def click_sink(api: DingtalkApi, chosen: str) -> ButtonCardSink:
    places = CardPlaces(MemoryStore(), "ding")
    return ButtonCardSink(
        api,
        group_destination(),
        "tpl.schema",
        words=ENGLISH,
        places=places,
        clicked="dgwForm",
        chosen=chosen,
    )


async def test_the_answer_a_form_click_resumes_first_marks_the_card_clicked(
    fake: FakeDingtalk, api: DingtalkApi
) -> None:
    sink = ButtonCardSink(
        api,
        group_destination(),
        "tpl.schema",
        words=ENGLISH,
        places=CardPlaces(MemoryStore(), "ding"),
    )
    sink.offer(Controls("ding:m1", form=REVIEW))
    await sink.finish("Shall I?", last=True)
    (track,) = sink.cards
    resumed = ButtonCardSink(
        api,
        group_destination(),
        "tpl.schema",
        words=ENGLISH,
        places=CardPlaces(MemoryStore(), "ding"),
        clicked=track,
        chosen="Approve",
    )
    resumed.offer(Controls("ding:m2", stop=True))
    await resumed.begin()
    clicked = fake.cards[track]
    assert clicked.variables["formChosen"] == ENGLISH.form_chosen("Approve")
    assert clicked.variables["showFormChosen"] == "true"
    assert clicked.variables["showFormAction1"] == "false"
    assert clicked.content == "Shall I?"  # its text stays
    (new,) = (fake.cards[t] for t in resumed.cards)
    assert new.variables["showStop"] == "true" and new.variables["showFormChosen"] == "false"


async def test_a_click_that_is_no_form_s_leaves_the_card_clicked_alone(
    fake: FakeDingtalk, api: DingtalkApi
) -> None:
    sink = click_sink(api, chosen="")  # a suggestion's answer, say
    sink.offer(Controls("ding:m2", stop=True))
    await sink.begin()
    assert [c.path for c in fake.calls if c.method == "PUT"] == []
    assert len(sink.cards) == 1


async def test_the_answer_begins_even_when_the_card_clicked_cannot_be_marked(
    fake: FakeDingtalk, api: DingtalkApi
) -> None:
    fake.fail("/v1.0/card/instances", 500, {"code": "unknown", "message": "boom"})
    sink = click_sink(api, chosen="Approve")
    sink.offer(Controls("ding:m2", stop=True))
    await sink.begin()
    assert [c.body["outTrackId"] for c in fake.calls if c.method == "PUT"] == ["dgwForm"]
    (track,) = sink.cards
    assert fake.cards[track].variables["showStop"] == "true"
