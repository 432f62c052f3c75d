"""Feishu card forms end to end: a paused run's form with its fields in the card (a text box,
a menu, the actions as submit buttons), answered through signed `card.action.trigger`
callbacks with `form_value`, over the webhook and the long connection; and the 👎 that
asks why in the card, whose reason reaches Dify. And what must not work: a form answered
twice (412), by someone else in a per-user scope, a forged or replayed submit, hostile
`form_value` shapes."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.feishu.buttons import FEEDBACK_ID, REASON_NAME
from gateway.emulator import DifyEmulator, Form, ScriptedReply
from gateway.words import ENGLISH
from tests.conftest import GatewayFactory, make_config
from tests.fakes.feishu import (
    FakeFeishu,
    FakeMessage,
    button_value,
    buttons_of,
    click_event,
    inputs_of,
    message_event,
)
from tests.helpers import wait_for
from tests.integration.test_feishu_e2e import (
    BOT,
    Client,
    answered,
    bot_mention,
    feishu_ws_bot,
    post,
    start,
)
from tests.integration.test_feishu_interactive import answered_card, card_text, labelled


def booking(**form: Any) -> ScriptedReply:
    then = ScriptedReply(chunks=["Booked."])
    fields = {"fields": ["note"], "selects": [("room", ["Small", "Large"])]}
    return ScriptedReply(chunks=["Shall I book it?"], form=Form(then=then, **(fields | form)))


def card_elements(feishu: FakeFeishu, message: FakeMessage) -> list[dict[str, Any]]:
    card = feishu.card_of(message.message_id)
    assert card is not None
    return card.elements()


async def submit(
    client: Client,
    feishu: FakeFeishu,
    message: FakeMessage,
    label: str,
    form_value: Any,
    **kwargs: Any,
) -> dict[str, Any]:
    """Press the submit button `label` of the card's form, with `form_value` typed in."""
    button = labelled(feishu, message)[label]
    event = click_event(
        button_value(button),
        message_id=message.message_id,
        form_value=form_value,
        name=button.get("name", ""),
        **kwargs,
    )
    response = await post(client, event)
    assert response.status == 200
    assert await response.json() == {}  # the card stays; the worker updates it
    return event


def named(feishu: FakeFeishu, message: FakeMessage) -> dict[str, dict[str, Any]]:
    """The card's inputs by their `name`."""
    return {e["name"]: e for e in inputs_of(card_elements(feishu, message))}


# --- a form's fields ---------------------------------------------------------------------


async def test_a_form_s_fields_are_in_the_card_and_its_submit_answers_with_them(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    dify.reply(booking(defaults=[("note", "none"), ("room", "Large")]))
    message = await answered_card(client, gateway, feishu, "book a room")
    # A text box with its default typed in, a menu with its default chosen, the actions.
    inputs = named(feishu, message)
    note, room = inputs.values()
    assert note["tag"] == "input" and note["default_value"] == "none"
    assert room["tag"] == "select_static" and room["initial_option"] == "Large"
    assert [o["value"] for o in room["options"]] == ["Small", "Large"]
    assert list(labelled(feishu, message)) == ["Approve", "Reject"]
    assert "1. Approve" in card_text(feishu, message)  # the text fallback stays

    typed = {note["name"]: "  by the window  ", room["name"]: "Small"}
    await submit(client, feishu, message, "Reject", typed)
    await answered(gateway)
    (answer,) = dify.forms.answers
    assert answer["action"] == "reject" and answer["user"] == f"{BOT}:ou_user"
    assert answer["inputs"] == {"note": "by the window", "room": "Small"}
    assert any("Booked." in t for t in feishu.transcript())


async def test_fields_missing_from_the_submit_keep_their_defaults(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    dify.reply(booking(defaults=[("note", "none")]))
    message = await answered_card(client, gateway, feishu, "book a room")
    room = next(n for n, e in named(feishu, message).items() if e["tag"] == "select_static")
    # The menu sends an option that is not one (a stale card, a forged value): its default.
    await submit(client, feishu, message, "Approve", {room: "Huge"})
    await answered(gateway)
    (answer,) = dify.forms.answers
    assert answer["action"] == "approve"
    assert answer["inputs"] == {"note": "none", "room": "Small"}  # no default: the first


async def test_a_form_submitted_twice_is_said_plainly(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    dify.reply(booking())
    message = await answered_card(client, gateway, feishu, "book a room")
    note = next(iter(named(feishu, message)))
    await submit(client, feishu, message, "Approve", {note: "first"})
    await answered(gateway)
    await submit(client, feishu, message, "Reject", {note: "second"})
    await answered(gateway)
    assert [(a["status"], a["inputs"]["note"]) for a in dify.forms.answers] == [
        (200, "first"),
        (412, "second"),
    ]
    assert len(dify.forms.resumes) == 1
    assert ENGLISH.form_closed in feishu.transcript()


async def test_in_a_per_user_scope_another_user_s_submit_is_refused(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    routes = [{"match": {}, "scope": "chat_user"}]
    client, gateway = await start(gateway_factory, dify, feishu, routes=routes)
    dify.reply(booking())
    await post(client, message_event("@_user_1 book", chat_type="group", mentions=bot_mention()))
    await answered(gateway, within=10)
    (message,) = feishu.messages.values()
    note = next(iter(named(feishu, message)))
    await submit(client, feishu, message, "Approve", {note: "mine"}, operator="ou_other")
    await answered(gateway)
    assert dify.forms.answers == []
    assert ENGLISH.form_not_yours in feishu.transcript()
    # The asker still can.
    await submit(client, feishu, message, "Approve", {note: "mine"})
    await answered(gateway)
    assert [(a["action"], a["inputs"]["note"]) for a in dify.forms.answers] == [("approve", "mine")]


async def test_a_forged_or_replayed_submit_answers_nothing_more(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    dify.reply(booking())
    message = await answered_card(client, gateway, feishu, "book a room")
    note = next(iter(named(feishu, message)))
    button = labelled(feishu, message)["Approve"]
    event = click_event(button_value(button), message_id=message.message_id, form_value={})
    event["event"]["action"]["form_value"] = {note: "forged"}
    assert (await post(client, event, encrypt_key="another key")).status == 401
    forged = click_event(
        button_value(button), message_id=message.message_id, form_value={}, token="wrong"
    )
    assert (await post(client, forged)).status == 401
    await answered(gateway)
    assert dify.forms.answers == []
    # Feishu's retry carries the same event id: the form is answered once.
    assert (await post(client, event)).status == 200
    assert (await post(client, event)).status == 200
    await answered(gateway)
    assert [(a["status"], a["inputs"]["note"]) for a in dify.forms.answers] == [(200, "forged")]


@pytest.mark.parametrize(
    "form_value",
    [
        "a string",
        ["a", "list"],
        42,
        {"dgw_field_0": {"nested": ["x"]}, "dgw_field_1": 7, "unknown": "x"},
        {"dgw_field_0": "y" * 100_000, "dgw_field_1": None},
    ],
)
async def test_hostile_form_values_answer_with_what_can_be_read(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu, form_value: Any
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    dify.reply(booking(defaults=[("note", "none")]))
    message = await answered_card(client, gateway, feishu, "book a room")
    await submit(client, feishu, message, "Approve", form_value)
    await answered(gateway)
    (answer,) = dify.forms.answers
    assert answer["status"] == 200 and answer["inputs"]["room"] == "Small"
    note = answer["inputs"]["note"]
    assert note == "none" or note == "y" * 1000  # a string cut to what a text box takes


async def test_a_form_without_fields_keeps_plain_buttons(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    dify.reply(booking(fields=[], selects=[]))
    message = await answered_card(client, gateway, feishu, "book a room")
    assert inputs_of(card_elements(feishu, message)) == []
    assert all(e.get("tag") != "form" for e in card_elements(feishu, message))
    assert list(labelled(feishu, message)) == ["Approve", "Reject"]


async def test_the_fallback_card_answers_with_the_defaults(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    feishu.inject("POST", "cardkit/v1/cards$", code=99991672)
    client, gateway = await start(gateway_factory, dify, feishu)
    dify.reply(booking(defaults=[("note", "none")]))
    message = await answered_card(client, gateway, feishu, "book a room")
    assert message.card is not None and "schema" not in message.card  # JSON 1.0: no form
    assert inputs_of(list(message.card["elements"])) == []
    await submit(client, feishu, message, "Approve", None)
    await answered(gateway)
    (answer,) = dify.forms.answers
    assert answer["inputs"] == {"note": "none", "room": "Small"}


async def test_a_form_is_answered_over_the_long_connection(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    bot = feishu_ws_bot(feishu, locale="en")
    _, gateway = await gateway_factory(make_config(dify, {BOT: bot}))
    await wait_for(lambda: gateway.adapters[BOT].ready, what="long connection up")
    dify.reply(booking())
    await feishu.push_event(message_event("book a room"))
    await wait_for(lambda: len(feishu.messages) == 1, what="the answer's card")
    await answered(gateway, within=10)
    (message,) = feishu.messages.values()
    note, room = named(feishu, message)
    button = labelled(feishu, message)["Approve"]
    typed = {note: "quiet please", room: "Large"}
    event = click_event(button_value(button), message_id=message.message_id, form_value=typed)
    frame_id = await feishu.push_event(event, kind="card")
    await wait_for(lambda: frame_id in feishu.acks, what="the submit acked")
    await answered(gateway)
    (answer,) = dify.forms.answers
    assert answer["inputs"] == {"note": "quiet please", "room": "Large"}


# --- the reason for a 👎 -----------------------------------------------------------------


def feedback_element(feishu: FakeFeishu, message: FakeMessage) -> dict[str, Any]:
    return next(e for e in card_elements(feishu, message) if e.get("element_id") == FEEDBACK_ID)


async def rate(client: Client, feishu: FakeFeishu, message: FakeMessage, face: str) -> None:
    value = button_value(labelled(feishu, message)[face])
    event = click_event(value, message_id=message.message_id)
    assert (await post(client, event)).status == 200


async def test_a_thumbs_down_asks_why_in_the_card_and_the_reason_reaches_dify(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    message = await answered_card(client, gateway, feishu)
    await rate(client, feishu, message, "👎")
    await answered(gateway)
    # The 👍/👎 row became a small form: 👍/👎 (👎 chosen), a text box, Send.
    asked = feedback_element(feishu, message)
    assert asked["tag"] == "form"
    assert [i["name"] for i in inputs_of([asked])] == [REASON_NAME]
    assert [b["text"]["content"] for b in buttons_of([asked])] == ["👍", "👎", "Send"]
    assert card_text(feishu, message) == "Noted."  # the answer stays as it was

    await submit(client, feishu, message, "Send", {REASON_NAME: " It missed the point. "})
    await answered(gateway)
    assert [(f["rating"], f.get("content")) for f in dify.feedbacks] == [
        ("dislike", None),
        ("dislike", "It missed the point."),
    ]
    assert all(f["user"] == f"{BOT}:ou_user" for f in dify.feedbacks)
    # The card shows the choice, without the form.
    shown = feedback_element(feishu, message)
    assert shown["tag"] == "column_set"
    like, dislike = buttons_of([shown])
    assert (like["type"], dislike["type"]) == ("default", "primary")
    assert len(feishu.messages) == 1  # nothing posted besides the answer


async def test_an_empty_reason_or_a_thumbs_up_hides_the_form(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    message = await answered_card(client, gateway, feishu)
    await rate(client, feishu, message, "👎")
    await answered(gateway)
    await submit(client, feishu, message, "Send", {})  # nothing typed
    await answered(gateway)
    assert feedback_element(feishu, message)["tag"] == "column_set"
    assert [f["rating"] for f in dify.feedbacks] == ["dislike", "dislike"]
    assert not any(f.get("content") for f in dify.feedbacks)

    await rate(client, feishu, message, "👎")  # withdraws it
    await answered(gateway)
    await rate(client, feishu, message, "👎")  # asks again
    await answered(gateway)
    assert feedback_element(feishu, message)["tag"] == "form"
    # 👍 from inside the form: the rating changes and the form goes.
    await submit(client, feishu, message, "👍", {REASON_NAME: "never mind"})
    await answered(gateway)
    assert [f["rating"] for f in dify.feedbacks][-1] == "like"
    assert dify.feedbacks[-1].get("content") is None
    shown = feedback_element(feishu, message)
    assert shown["tag"] == "column_set"
    assert [b["type"] for b in buttons_of([shown])] == ["primary", "default"]


async def test_the_reason_for_another_user_s_answer_is_sent_as_its_asker(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    """Anyone who sees the answer may rate it; Dify takes a rating from its asker only."""
    client, gateway = await start(gateway_factory, dify, feishu)
    message = await answered_card(client, gateway, feishu)
    await rate(client, feishu, message, "👎")
    await answered(gateway)
    await submit(client, feishu, message, "Send", {REASON_NAME: "wrong"}, operator="ou_bob")
    await answered(gateway)
    assert [(f["user"], f.get("content")) for f in dify.feedbacks][-1] == (
        f"{BOT}:ou_user",
        "wrong",
    )
