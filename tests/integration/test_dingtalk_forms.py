"""DingTalk form action buttons end to end over Stream mode: a paused run's form shows its
actions as buttons on the AI card of the operator's own template (`formAction1..5`), and a
click answers the form with its fields' defaults, through card-callback frames, the inbox,
the Dify emulator and the fake DingTalk; the resumed run streams into a new card. And what
must not work: a form answered twice (412), by someone else in a per-user scope, a click on
a card the gateway forgot, form variables on the built-in template."""

from __future__ import annotations

from typing import Any

from adapters.dingtalk.card_buttons import BUILTIN_AI_CARD
from adapters.dingtalk.card_clicks import MAX_FORM_ACTIONS
from gateway.emulator import DifyEmulator, Form, ScriptedReply
from gateway.runtime import Gateway
from gateway.words import ENGLISH
from tests.conftest import GatewayFactory
from tests.fakes.dingtalk import Card, FakeDingtalk
from tests.helpers import wait_for
from tests.integration.test_dingtalk_buttons import ASKER, OTHER, ask, click, idle, start

GROUP_SPACE = "dtv1.card//IM_GROUP.cidGroup0001=="


def booking(**form: Any) -> ScriptedReply:
    """A run that pauses on a form with a paragraph field and a select, then says "Booked."."""
    then = ScriptedReply(chunks=["Booked."])
    fields = {"fields": ["note"], "selects": [("room", ["Small", "Large"])]}
    return ScriptedReply(chunks=["Shall I book it?"], form=Form(then=then, **(fields | form)))


async def paused_card(gateway: Gateway, ding: FakeDingtalk, **kw: Any) -> tuple[str, Card]:
    """Ask, and the one card the answer ends in (with the form)."""
    await ask(ding, "book a room", **kw)
    await wait_for(lambda: len(ding.cards) == 1, what="the answer's card")
    await idle(gateway)
    ((track, card),) = ding.cards.items()
    return track, card


def others(ding: FakeDingtalk, track: str) -> list[Card]:
    return [card for t, card in ding.cards.items() if t != track]


async def test_a_form_s_actions_are_buttons_and_a_click_answers_it_with_the_defaults(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    gateway = await start(gateway_factory, dify, ding)
    dify.reply(booking(defaults=[("note", "none")]))
    track, card = await paused_card(gateway, ding)
    shown = card.variables
    assert (shown["formAction1"], shown["formAction2"]) == ("Approve", "Reject")
    assert (shown["showFormAction1"], shown["showFormAction2"]) == ("true", "true")
    assert shown["formAction3"] == "" and shown["showFormAction3"] == "false"
    assert shown["showFeedback"] == "false"  # the answer is not done: nothing to rate
    assert shown["showFormChosen"] == "false" and shown["formChosen"] == ""
    assert "1. Approve" in card.content and "2. Reject" in card.content  # the text stays

    await click(ding, track, "form2")
    await wait_for(lambda: len(ding.cards) == 2, what="the resumed run's card")
    await idle(gateway)
    (answer,) = dify.forms.answers
    assert answer["action"] == "reject" and answer["user"] == f"ding:{ASKER}"
    assert answer["inputs"] == {"note": "none", "room": "Small"}  # defaults; a select's first
    assert [r["user"] for r in dify.forms.resumes] == [f"ding:{ASKER}"]
    (resumed,) = others(ding, track)
    assert resumed.content == "Booked." and resumed.flow[-1] == "3"
    assert resumed.space == f"dtv1.card//IM_ROBOT.{ASKER}"
    # The card clicked says which action was taken, its buttons hidden, its text kept.
    assert card.variables["showFormAction1"] == card.variables["showFormAction2"] == "false"
    assert card.variables["showFormChosen"] == "true"
    assert card.variables["formChosen"] == ENGLISH.form_chosen("Reject")
    assert "1. Approve" in card.content


async def test_a_form_answered_already_says_so(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    gateway = await start(gateway_factory, dify, ding)
    dify.reply(booking())
    track, _ = await paused_card(gateway, ding)
    await click(ding, track, "form1")
    await wait_for(lambda: len(ding.cards) == 2, what="the resumed run's card")
    await idle(gateway)
    await click(ding, track, "form2")  # a stale client showing the buttons still
    await idle(gateway)
    assert [(a["action"], a["status"]) for a in dify.forms.answers] == [
        ("approve", 200),
        ("reject", 412),
    ]
    assert len(dify.forms.resumes) == 1
    assert [c.content for c in others(ding, track)] == ["Booked.", ENGLISH.form_closed]
    # The card keeps saying what was chosen first.
    assert ding.cards[track].variables["formChosen"] == ENGLISH.form_chosen("Approve")


async def test_a_form_answered_in_dify_first_gets_the_412_note(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    gateway = await start(gateway_factory, dify, ding)
    dify.reply(booking())
    track, card = await paused_card(gateway, ding)
    (token,) = dify.forms.runs
    dify.forms.expire(token)
    await click(ding, track, "form1")
    await idle(gateway)
    assert [a["status"] for a in dify.forms.answers] == [412]
    assert dify.forms.resumes == []
    assert [c.content for c in others(ding, track)] == [ENGLISH.form_closed]
    assert card.variables["showFormChosen"] == "false"  # nothing was chosen here


async def test_in_a_per_user_scope_another_user_s_click_is_refused(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    routes = [{"match": {}, "scope": "chat_user"}]
    gateway = await start(gateway_factory, dify, ding, routes=routes)
    dify.reply(booking())
    track, card = await paused_card(gateway, ding, group=True)
    await click(ding, track, "form1", user_id=OTHER)
    await idle(gateway)
    assert dify.forms.answers == []
    (note,) = others(ding, track)
    assert note.content == ENGLISH.form_not_yours and note.space == GROUP_SPACE
    assert card.variables["showFormAction1"] == "true"  # still there for the asker
    # The asker still can.
    await click(ding, track, "form1")
    await wait_for(lambda: len(ding.cards) == 3, what="the resumed run's card")
    await idle(gateway)
    assert [(a["action"], a["user"]) for a in dify.forms.answers] == [("approve", f"ding:{ASKER}")]
    assert [c.content for c in others(ding, track)] == [ENGLISH.form_not_yours, "Booked."]


async def test_in_a_shared_scope_anyone_there_may_answer(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    routes = [{"match": {}, "scope": "chat"}]
    gateway = await start(gateway_factory, dify, ding, routes=routes)
    dify.reply(booking())
    track, _ = await paused_card(gateway, ding, group=True)
    await click(ding, track, "form1", user_id=OTHER)
    await wait_for(lambda: len(ding.cards) == 2, what="the resumed run's card")
    await idle(gateway)
    # Dify hears it as the run's user: the conversation's, whoever clicked.
    run_user = "ding:chat:cidGroup0001=="
    assert [(a["action"], a["user"]) for a in dify.forms.answers] == [("approve", run_user)]
    (resumed,) = others(ding, track)
    assert resumed.content == "Booked." and resumed.space == GROUP_SPACE


async def test_a_reply_in_words_still_answers_and_fills_the_paragraph(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    gateway = await start(gateway_factory, dify, ding)
    dify.reply(booking())
    track, card = await paused_card(gateway, ding)
    await ask(ding, "1 by the window")
    await wait_for(lambda: len(ding.cards) == 2, what="the resumed run's card")
    await idle(gateway)
    (answer,) = dify.forms.answers
    assert answer["action"] == "approve" and answer["inputs"]["note"] == "by the window"
    assert [c.content for c in others(ding, track)] == ["Booked."]
    # The reply does not know the card, whose buttons stay: a click then hears it is done.
    assert card.variables["showFormAction2"] == "true"
    await click(ding, track, "form2")
    await idle(gateway)
    assert [a["status"] for a in dify.forms.answers] == [200, 412]
    assert [c.content for c in others(ding, track)] == ["Booked.", ENGLISH.form_closed]


async def test_a_click_on_a_card_the_gateway_forgot_says_it_expired(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    gateway = await start(gateway_factory, dify, ding)
    dify.reply(booking())
    track, _ = await paused_card(gateway, ding)
    await click(ding, "dgw-long-gone", "form1", user_id=OTHER)
    await click(ding, track, "form4")  # a number the form has no action for
    await idle(gateway)
    assert dify.forms.answers == []
    notes = others(ding, track)
    assert [c.content for c in notes] == [ENGLISH.expired, ENGLISH.expired]
    assert {c.space for c in notes} == {
        f"dtv1.card//IM_ROBOT.{OTHER}",
        f"dtv1.card//IM_ROBOT.{ASKER}",
    }


async def test_only_the_first_actions_are_buttons(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    gateway = await start(gateway_factory, dify, ding)
    many = [(f"a{i}", f"Option {i}") for i in range(1, MAX_FORM_ACTIONS + 3)]
    dify.reply(booking(actions=many, fields=[], selects=[]))
    track, card = await paused_card(gateway, ding)
    titles = [card.variables[f"formAction{i}"] for i in range(1, MAX_FORM_ACTIONS + 1)]
    assert titles == [title for _, title in many[:MAX_FORM_ACTIONS]]
    assert f"formAction{MAX_FORM_ACTIONS + 1}" not in card.variables
    assert f"{MAX_FORM_ACTIONS + 2}. Option {MAX_FORM_ACTIONS + 2}" in card.content
    await click(ding, track, f"form{MAX_FORM_ACTIONS}")
    await wait_for(lambda: len(ding.cards) == 2, what="the resumed run's card")
    await idle(gateway)
    assert [(a["action"], a["inputs"]) for a in dify.forms.answers] == [
        (f"a{MAX_FORM_ACTIONS}", {})
    ]


async def test_the_built_in_ai_card_gets_no_form_variables(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    gateway = await start(gateway_factory, dify, ding, card_template_id=BUILTIN_AI_CARD)
    dify.reply(booking())
    _, card = await paused_card(gateway, ding)
    assert set(card.variables) == {"msgContent", "flowStatus"}
    assert "1. Approve" in card.content  # answered by a reply, as before
    await ask(ding, "2")
    await wait_for(lambda: len(ding.cards) == 2, what="the resumed run's card")
    await idle(gateway)
    assert [a["action"] for a in dify.forms.answers] == ["reject"]
