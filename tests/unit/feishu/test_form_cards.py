"""The forms in the gateway's Feishu cards (a paused run's fields, the reason for a 👎), and
their submits read back totally: what was typed, bounded, or nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters.feishu import form_cards
from adapters.feishu.buttons import (
    FEEDBACK_ID,
    MAX_FIELD_CHARS,
    REASON_NAME,
    Where,
    field_name,
    to_click,
)
from adapters.feishu.sink import CardKitSupport, FeishuReplySink
from gateway.controls import Controls, FormChoice
from gateway.dify_events import FormField
from gateway.models import InboundMessage
from gateway.platform import PlatformError
from gateway.words import ENGLISH
from gateway.words import SIMPLIFIED_CHINESE as CHINESE
from tests.fakes.feishu import (
    FakeFeishu,
    button_value,
    buttons_of,
    click_event,
    form_errors,
    inputs_of,
)

WHERE = Where(chat_type="p2p", thread="", in_thread=False, card_id="7355", created_ms=99)
NOTE = FormField("note", "paragraph", "A note\nfor us", "none")
ROOM = FormField("room", "select", "Room", "", ("Small", "Large", "Small"))
CHOICE = FormChoice("tok", (("ok", "Approve", "primary"), ("no", "Reject", "")), (NOTE, ROOM))


def read(payload: dict[str, Any]) -> InboundMessage:
    click = to_click(payload, bot="fs", platform="feishu", received_at=1.0)
    assert not isinstance(click, str)
    return click


def submit(element: dict[str, Any], label: str, form_value: Any) -> InboundMessage:
    button = next(b for b in buttons_of([element]) if b["text"]["content"] == label)
    return read(click_event(button_value(button), message_id="om_card", form_value=form_value))


def test_a_form_s_fields_and_actions_make_one_form_feishu_takes() -> None:
    (form,) = form_cards.final(Controls("fs:om_1", form=CHOICE), WHERE, v2=True)
    assert form["tag"] == "form" and form_errors([form]) is None
    note, room = inputs_of([form])
    assert (note["name"], note["default_value"]) == (field_name(0), "none")
    assert (room["name"], room["initial_option"]) == (field_name(1), "Small")
    assert [o["value"] for o in room["options"]] == ["Small", "Large"]  # told apart
    labels = [e["content"] for e in form["elements"] if e["tag"] == "markdown"]
    assert labels == ["**A note for us**", "**Room**"]
    approve, reject = buttons_of([form])
    assert approve["form_action_type"] == reject["form_action_type"] == "submit"
    assert approve["type"] == "primary" and reject["type"] == "default"


def test_without_fields_or_in_a_json_1_card_a_form_is_plain_buttons() -> None:
    bare = Controls("fs:om_1", form=FormChoice("tok", CHOICE.actions))
    for controls, v2 in ((bare, True), (Controls("fs:om_1", form=CHOICE), False)):
        found = form_cards.final(controls, WHERE, v2=v2)
        assert [b["text"]["content"] for b in buttons_of(found)] == ["Approve", "Reject"]
        assert all(e.get("tag") != "form" for e in found) and inputs_of(found) == []
        assert all("form_action_type" not in b for b in buttons_of(found))


def test_a_submit_brings_the_fields_by_their_dify_names() -> None:
    (form,) = form_cards.final(Controls("fs:om_1", form=CHOICE), WHERE, v2=True)
    click = submit(form, "Reject", {field_name(0): " soon ", field_name(1): "Large"})
    assert click.action is not None and click.action.kind == "form"
    assert (click.action.answer_id, click.action.value) == ("tok", "no")
    assert click.action.inputs == {"note": "soon", "room": "Large"}


@pytest.mark.parametrize(
    ("form_value", "inputs"),
    [
        (None, {}),  # a plain click (no form)
        ("text", {}),
        ([1, 2], {}),
        ({field_name(0): 5, field_name(1): ["Large"]}, {}),  # not strings: the defaults
        ({"note": "by name", "other": "x"}, {}),  # names the card never had
        ({field_name(1): "Large"}, {"room": "Large"}),
        ({field_name(0): "é" * 5000}, {"note": "é" * MAX_FIELD_CHARS}),
    ],
)
def test_a_submit_of_any_shape_reads_back_what_it_can(
    form_value: Any, inputs: dict[str, str]
) -> None:
    (form,) = form_cards.final(Controls("fs:om_1", form=CHOICE), WHERE, v2=True)
    click = submit(form, "Approve", form_value)
    assert click.action is not None and click.action.inputs == inputs


@pytest.mark.parametrize("names", [None, "note", [1, None, ""], {"0": "note"}])
def test_a_submit_whose_value_names_no_fields_fills_none(names: Any) -> None:
    (form,) = form_cards.final(Controls("fs:om_1", form=CHOICE), WHERE, v2=True)
    button = buttons_of([form])[0]
    value = {**button_value(button), "fs": names}
    event = click_event(value, message_id="om_card", form_value={field_name(0): "x"})
    click = read(event)
    assert click.action is not None and click.action.inputs == {}


def test_the_reason_form_takes_the_place_of_the_thumbs() -> None:
    controls = Controls("fs:om_1", feedback=True, rating="dislike", ask_reason=True)
    form = form_cards.reason(controls, WHERE, CHINESE)
    assert form["element_id"] == FEEDBACK_ID and form_errors([form]) is None
    (text,) = inputs_of([form])
    assert text["name"] == REASON_NAME and text["placeholder"]["content"] == CHINESE.reason_label
    _like, dislike, send = buttons_of([form])
    assert dislike["type"] == "primary" and send["text"]["content"] == CHINESE.reason_send
    # Send: 👎 again, with the reason; the click says the reason came.
    click = submit(form, CHINESE.reason_send, {REASON_NAME: "  wrong date  "})
    assert click.action is not None and click.action.kind == "feedback"
    assert (click.action.value, click.action.comment) == ("dislike", "wrong date")
    assert click.reply_to["reason_sent"] is True
    # 👍 in the form is a rating like any other (what was typed is not a reason for it).
    click = submit(form, "👍", {REASON_NAME: "typed"})
    assert click.action is not None and (click.action.value, click.action.comment) == ("like", "")
    assert click.reply_to["reason_sent"] is False


@pytest.mark.parametrize("form_value", [None, {}, {REASON_NAME: 3}, "x", [REASON_NAME]])
def test_a_reason_that_is_not_text_is_an_empty_one(form_value: Any) -> None:
    controls = Controls("fs:om_1", feedback=True, rating="dislike", ask_reason=True)
    form = form_cards.reason(controls, WHERE, ENGLISH)
    click = submit(form, ENGLISH.reason_send, form_value)
    assert click.action is not None and click.action.comment == ""
    assert click.action.value == "dislike" and click.reply_to["reason_sent"] is True


def test_the_fake_refuses_what_feishu_refuses_in_a_form() -> None:
    (form,) = form_cards.final(Controls("fs:om_1", form=CHOICE), WHERE, v2=True)
    unnamed = {**form, "elements": [{"tag": "input"}, *form["elements"]]}
    assert form_errors([unnamed]) is not None
    assert form_errors([form, form]) is not None  # the names twice in one card
    nested = {"tag": "column_set", "columns": [{"tag": "column", "elements": [form]}]}
    assert form_errors([nested]) is not None
    no_submit = {**form, "elements": [e for e in form["elements"] if e["tag"] != "column_set"]}
    assert form_errors([no_submit]) is not None


async def test_a_click_s_sink_asks_why_after_a_thumbs_down(fake: FakeFeishu, api: Any) -> None:
    card_id = await api.create_card(
        {"schema": "2.0", "config": {"streaming_mode": False}, "body": {"elements": []}}
    )
    row = {"tag": "column_set", "element_id": FEEDBACK_ID, "columns": []}
    await api.add_elements(card_id, [row], 1)

    def sink(**clicked: Any) -> FeishuReplySink:
        reply_to = {"message_id": "om_card", "card_id": card_id, "created_ms": 0, **clicked}
        return FeishuReplySink(api, CardKitSupport(), reply_to, "fs:om_x", words=ENGLISH)

    asked = Controls("fs:om_1", feedback=True, rating="dislike", ask_reason=True)
    await sink().show(asked)
    shown = fake.cards[card_id].elements()
    assert [e["tag"] for e in shown] == ["form"] and shown[0]["element_id"] == FEEDBACK_ID
    # The reason came (even an empty one): the choice, without the form.
    await sink(reason_sent=True).show(asked)
    assert [e["tag"] for e in fake.cards[card_id].elements()] == ["column_set"]


async def test_two_clicks_in_one_millisecond_both_reach_the_card(
    fake: FakeFeishu, api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    card_id = await api.create_card(
        {"schema": "2.0", "config": {"streaming_mode": False}, "body": {"elements": []}}
    )
    await api.add_elements(card_id, [{"tag": "column_set", "element_id": FEEDBACK_ID}], 1)
    monkeypatch.setattr("adapters.feishu.sink.time.time", lambda: 1_700_000_000.0)
    reply_to = {"message_id": "om_card", "card_id": card_id, "created_ms": 0}
    sink = FeishuReplySink(api, CardKitSupport(), reply_to, "fs:om_x", words=ENGLISH)
    await sink.show(Controls("fs:om_1", feedback=True, rating="like"))
    first = fake.cards[card_id].sequence
    await sink.show(Controls("fs:om_1", feedback=True, rating="dislike"))
    assert fake.cards[card_id].sequence == first + 1  # refused once, then one number higher
    ops = [op for _, op, _ in fake.cards[card_id].history]
    assert ops[-2:] == ["element", "element"]


async def test_a_click_refused_for_another_reason_is_not_sent_again(
    fake: FakeFeishu, api: Any
) -> None:
    reply_to = {"message_id": "om_card", "card_id": "no_such_card", "created_ms": 0}
    sink = FeishuReplySink(api, CardKitSupport(), reply_to, "fs:om_x", words=ENGLISH)
    with pytest.raises(PlatformError) as refused:
        await sink.show(Controls("fs:om_1", feedback=True, rating="like"))
    assert refused.value.code == "300304"  # card not found: nothing to go again for


def test_the_recorded_submits_read_as_a_form_s_answer_and_a_reason() -> None:
    data = Path(__file__).parents[2] / "data" / "feishu"
    form = read(json.loads((data / "card_action_form_submit.json").read_text()))
    assert form.action is not None and form.action.kind == "form"
    assert form.action.inputs == {"note": "by the window", "room": "Small"}
    reason = read(json.loads((data / "card_action_reason.json").read_text()))
    assert reason.action is not None and reason.action.comment == "It missed the point."
