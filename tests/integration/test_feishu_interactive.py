"""Feishu card buttons end to end: 👍/👎, suggested questions and Stop on the CardKit card
and the PATCHed fallback card, clicked through signed `card.action.trigger` callbacks (the
webhook and the long connection), the inbox, the Dify emulator and the fake Feishu; and the
clicks that must not work (forged, replayed, expired, a stop by someone who did not ask)."""

from __future__ import annotations

import time
from typing import Any

from adapters.feishu.buttons import FEEDBACK_ID, STOP_ID
from gateway.emulator import DifyEmulator, Form, ScriptedReply
from gateway.runtime import Gateway
from gateway.store import keys
from gateway.words import ENGLISH
from tests.conftest import GatewayFactory, make_config
from tests.fakes.feishu import (
    FakeFeishu,
    FakeMessage,
    button_value,
    buttons_of,
    click_event,
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

SLOW = ScriptedReply(chunks=[f"word{i} " for i in range(60)], delay=0.1)


def card_elements(feishu: FakeFeishu, message: FakeMessage) -> list[dict[str, Any]]:
    card = feishu.card_of(message.message_id)
    if card is not None:
        return card.elements()
    assert message.card is not None
    return list(message.card["elements"])


def labelled(feishu: FakeFeishu, message: FakeMessage) -> dict[str, dict[str, Any]]:
    """The message's buttons by their label."""
    return {b["text"]["content"]: b for b in buttons_of(card_elements(feishu, message))}


async def click(
    client: Client, feishu: FakeFeishu, message: FakeMessage, label: str, **kwargs: Any
) -> Any:
    value = button_value(labelled(feishu, message)[label])
    event = click_event(value, message_id=message.message_id, **kwargs)
    response = await post(client, event)
    assert response.status == 200
    assert await response.json() == {}  # the card stays as it is; the worker updates it
    return event


async def answered_card(
    client: Client, gateway: Gateway, feishu: FakeFeishu, text: str = "how long?"
) -> FakeMessage:
    await post(client, message_event(text))
    await answered(gateway, within=10)
    (message,) = feishu.messages.values()
    return message


# --- feedback --------------------------------------------------------------------------


async def test_a_finished_card_has_thumbs_and_a_click_rates_it_in_dify(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    message = await answered_card(client, gateway, feishu)
    card = feishu.card_of(message.message_id)
    assert card is not None and not card.streaming and card.text() == "Noted."
    assert list(labelled(feishu, message)) == ["👍", "👎"]
    assert STOP_ID not in {e.get("element_id") for e in card.elements()}  # gone at the end

    await click(client, feishu, message, "👍")
    await answered(gateway)
    (rating,) = dify.feedbacks
    assert rating["rating"] == "like" and rating["user"] == f"{BOT}:ou_user"
    # The card's 👍/👎 show the choice; its text stays.
    like, dislike = buttons_of(card.elements())
    assert like["type"] == "primary" and dislike["type"] == "default"
    assert card.text() == "Noted." and card.history[-1][1] == "element"

    # A second click on the choice withdraws it; the other one changes it.
    await click(client, feishu, message, "👍")
    await answered(gateway)
    await click(client, feishu, message, "👎")
    await answered(gateway)
    assert [f["rating"] for f in dify.feedbacks] == ["like", None, "dislike"]
    assert len(feishu.messages) == 1  # nothing posted besides the answer


async def test_the_fallback_card_has_thumbs_too(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    feishu.inject("POST", "cardkit/v1/cards$", code=99991672)
    client, gateway = await start(gateway_factory, dify, feishu)
    message = await answered_card(client, gateway, feishu)
    assert message.card is not None and "schema" not in message.card  # JSON 1.0
    assert list(labelled(feishu, message)) == ["👍", "👎"]
    await click(client, feishu, message, "👎")
    await answered(gateway)
    assert [(f["rating"], f["user"]) for f in dify.feedbacks] == [("dislike", f"{BOT}:ou_user")]


async def test_a_forged_a_stale_and_a_replayed_click_rate_nothing_more(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    message = await answered_card(client, gateway, feishu)
    value = button_value(labelled(feishu, message)["👍"])
    event = click_event(value, message_id=message.message_id)
    # Forged: signed with another key; wrong token. Stale: a timestamp past the window.
    assert (await post(client, event, encrypt_key="another key")).status == 401
    forged = click_event(value, message_id=message.message_id, token="wrong")
    assert (await post(client, forged)).status == 401
    stale = int(time.time()) - 3600
    assert (await post(client, event, timestamp=stale)).status == 401
    await answered(gateway)
    assert dify.feedbacks == []
    # Feishu's retry of a callback carries its event id again: it counts once.
    assert (await post(client, event)).status == 200
    assert (await post(client, event)).status == 200
    await answered(gateway)
    assert [f["rating"] for f in dify.feedbacks] == ["like"]


async def test_a_click_on_an_answer_the_gateway_forgot_says_it_expired(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    message = await answered_card(client, gateway, feishu)
    value = button_value(labelled(feishu, message)["👍"])
    answer_id = str(value["dgw"]).rsplit("|", 1)[1]
    await gateway.store.delete(keys.answer_record(answer_id))  # its TTL ran out
    await click(client, feishu, message, "👍")
    await answered(gateway)
    assert dify.feedbacks == []
    assert ENGLISH.expired in feishu.transcript()


# --- suggested questions ---------------------------------------------------------------


async def test_suggested_questions_follow_the_text_and_a_click_asks_as_the_clicker(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    dify.parameters["suggested_questions_after_answer"] = {"enabled": True}
    dify.suggested = ["Who approves?", "Can I carry them over?"]
    message = await answered_card(client, gateway, feishu)
    card = feishu.card_of(message.message_id)
    assert card is not None
    assert list(labelled(feishu, message)) == [
        "Who approves?",
        "Can I carry them over?",
        "👍",
        "👎",
    ]
    # The card was finished (text and 👍/👎) before the questions were asked for.
    (call,) = dify.suggested_calls
    closed = next(t for t, op, _ in card.history if op == "replace")
    assert closed < call["at"] and card.text() == "Noted."

    dify.responder = lambda request, turn: ScriptedReply(chunks=["Your manager."])
    await click(client, feishu, message, "Who approves?")
    await answered(gateway, within=10)
    asked = dify.requests[-1]
    assert asked["query"] == "Who approves?" and asked["user"] == f"{BOT}:ou_user"
    assert asked["conversation_id"] in dify.conversations  # the same conversation goes on
    assert feishu.transcript()[-1] == "Your manager."


# --- stop --------------------------------------------------------------------------------


def streaming_card_with_stop(feishu: FakeFeishu) -> FakeMessage | None:
    for message in feishu.messages.values():
        card = feishu.card_of(message.message_id)
        if card is None or not card.streaming or "word2" not in card.text():
            continue
        if STOP_ID in {e.get("element_id") for e in card.elements()}:
            return message
    return None


async def test_the_stop_button_on_the_streaming_card_stops_the_run(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    dify.responder = lambda request, turn: SLOW
    await post(client, message_event("write a lot"))
    await wait_for(lambda: streaming_card_with_stop(feishu) is not None, within=10)
    message = streaming_card_with_stop(feishu)
    assert message is not None
    await click(client, feishu, message, ENGLISH.stop_button)
    await answered(gateway, within=15)
    (stop,) = dify.stops
    assert stop["user"] == f"{BOT}:ou_user"
    card = feishu.card_of(message.message_id)
    assert card is not None and not card.streaming
    assert card.text().startswith("word0") and "word59" not in card.text()
    assert "stopped" in card.text()
    assert STOP_ID not in {e.get("element_id") for e in card.elements()}
    assert FEEDBACK_ID in {e.get("element_id") for e in card.elements()}


async def test_a_stop_by_someone_who_did_not_ask_is_refused(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    routes = [{"match": {}, "scope": "chat_user"}]  # each person has their own conversation
    client, gateway = await start(gateway_factory, dify, feishu, routes=routes)
    dify.responder = lambda request, turn: ScriptedReply(
        chunks=[f"word{i} " for i in range(30)], delay=0.1
    )
    await post(client, message_event("@_user_1 write", chat_type="group", mentions=bot_mention()))
    await wait_for(lambda: streaming_card_with_stop(feishu) is not None, within=10)
    message = streaming_card_with_stop(feishu)
    assert message is not None
    await click(client, feishu, message, ENGLISH.stop_button, operator="ou_other")
    await answered(gateway, within=15)
    assert dify.stops == []
    assert ENGLISH.not_yours_to_stop in feishu.transcript()
    card = feishu.card_of(message.message_id)
    assert card is not None and "word29" in card.text()


# --- the long connection -------------------------------------------------------------------


async def test_a_click_over_the_long_connection_rates_the_answer(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    dify.responder = lambda request, turn: ScriptedReply(chunks=["Noted."])
    bot = feishu_ws_bot(feishu, locale="en")
    _, gateway = await gateway_factory(make_config(dify, {BOT: bot}))
    await wait_for(lambda: gateway.adapters[BOT].ready, what="long connection up")
    await feishu.push_event(message_event("how long?"))
    await wait_for(lambda: len(feishu.messages) == 1, what="the answer's card")
    await answered(gateway, within=10)
    (message,) = feishu.messages.values()
    value = button_value(labelled(feishu, message)["👍"])
    click = click_event(value, message_id=message.message_id)
    frame_id = await feishu.push_event(click, kind="card")  # a card callback's frame
    await wait_for(lambda: frame_id in feishu.acks, what="the click acked")
    await answered(gateway)
    assert [(f["rating"], f["user"]) for f in dify.feedbacks] == [("like", f"{BOT}:ou_user")]


# --- a human-input form ------------------------------------------------------------------


async def test_a_form_s_actions_are_buttons_on_the_card_and_a_click_answers_it(
    gateway_factory: GatewayFactory, dify: DifyEmulator, feishu: FakeFeishu
) -> None:
    client, gateway = await start(gateway_factory, dify, feishu)
    then = ScriptedReply(chunks=["Booked."])
    dify.reply(ScriptedReply(chunks=["Shall I book it?"], form=Form(then=then)))
    message = await answered_card(client, gateway, feishu, "book a room")
    # The form's actions, and nothing to rate: the run is not done.
    assert list(labelled(feishu, message)) == ["Approve", "Reject"]
    assert "1. Approve" in card_text(feishu, message)

    await click(client, feishu, message, "Reject")
    await answered(gateway)
    (answer,) = dify.forms.answers
    assert (answer["action"], answer["user"]) == ("reject", f"{BOT}:ou_user")
    assert any("Booked." in card_text(feishu, m) for m in feishu.messages.values())

    # A second click: Dify took the form once, and says so (412).
    await click(client, feishu, message, "Approve")
    await answered(gateway)
    assert len(dify.forms.resumes) == 1
    assert any(ENGLISH.form_closed in card_text(feishu, m) for m in feishu.messages.values())


def card_text(feishu: FakeFeishu, message: FakeMessage) -> str:
    card = feishu.card_of(message.message_id)
    if card is not None:
        return card.text()
    return str(message.card or message.text)
