"""WeCom AI bot buttons end to end, in webhook and WebSocket mode: the app's suggested
questions and a paused form's actions as template cards after the answer, clicked through
`template_card_event` callbacks (sealed, or frames on the long connection), the inbox, the
Dify emulator and the fake WeCom; the click's callback answered with the card redrawn. And
what must not work: a forged or replayed click, a click on an answer the gateway forgot, a
form answered twice (412)."""

from __future__ import annotations

from typing import Any

from adapters.wecom_bot.cards import DONE
from gateway.controls import read_button_value
from gateway.emulator import DifyEmulator, Form, ScriptedReply
from gateway.runtime import Gateway
from gateway.words import SIMPLIFIED_CHINESE
from tests.conftest import GatewayFactory
from tests.fakes.wecom_bot import (
    FakeWecomBotServer,
    card_click_payload,
    cards_sent,
    markdown_sent,
    text_payload,
)
from tests.helpers import wait_for
from tests.integration import test_wecom_bot_ws as ws
from tests.integration.test_wecom_bot_e2e import (
    PATH,
    SIDE,
    Client,
    answered,
    ask,
    refresh_until_finished,
    start,
)

WORDS = SIMPLIFIED_CHINESE  # the bots have no `locale`
QUESTIONS = ["Who approves?", "Carry days over?"]  # short enough for a button each


def suggesting(dify: DifyEmulator) -> None:
    dify.parameters["suggested_questions_after_answer"] = {"enabled": True}
    dify.suggested = list(QUESTIONS)


def booking() -> ScriptedReply:
    return ScriptedReply(
        chunks=["Shall I book it?"], form=Form(then=ScriptedReply(chunks=["Booked."]))
    )


def keys_of(card: dict[str, Any]) -> dict[str, str]:
    """The card's buttons: text -> key."""
    return {b["text"]: b["key"] for b in card["button_list"]}


# --- webhook mode ------------------------------------------------------------------------


async def first_answer(
    client: Client, gateway: Gateway, wecom: FakeWecomBotServer, text: str, **payload: Any
) -> dict[str, Any]:
    """Ask, refresh the stream to its end; the card that follows through the response_url."""
    url = wecom.response_url("q1")
    stream = await ask(client, text_payload("msg-1", text, response_url=url, **payload))
    await refresh_until_finished(client, stream["id"])
    await answered(gateway)
    await wait_for(lambda: bool(cards_sent(wecom.of("response_url"))), what="the card")
    (card,) = cards_sent(wecom.of("response_url"))
    return card


async def click(
    client: Client, wecom: FakeWecomBotServer, key: str, task_id: str, code: str, **kw: Any
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Click a button (the callback with the response_url `code`): (the payload sent, the
    opened answer to the callback: the card redrawn, or None)."""
    payload = card_click_payload(key, task_id, response_url=wecom.response_url(code), **kw)
    return payload, await SIDE.call(client, PATH, payload)


def sent_to(wecom: FakeWecomBotServer, code: str) -> list[str]:
    return markdown_sent([c for c in wecom.of("response_url") if c.body["code"] == code])


async def test_suggestions_are_a_card_after_the_answer_and_a_click_asks_as_the_clicker(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    client, gateway = await start(gateway_factory, dify, api_base=wecom.base_url)
    suggesting(dify)
    dify.reply(ScriptedReply(chunks=["You get 20 days."]))
    card = await first_answer(client, gateway, wecom, "@bot leave?", user="u1", chatid="grp")
    assert card["card_type"] == "button_interaction"
    assert card["main_title"]["title"] == WORDS.suggestions_title
    assert list(keys_of(card)) == ["Who approves?", "Carry days over?"]

    dify.responder = lambda request, turn: ScriptedReply(chunks=["Your manager."])
    key = keys_of(card)["Who approves?"]
    task = card["task_id"]
    payload, update = await click(client, wecom, key, task, "c1", user="u2", chatid="grp")
    # The callback's answer redraws the card: the same task id, the choice marked.
    assert update is not None and update["response_type"] == "update_template_card"
    redrawn = update["template_card"]
    assert redrawn["task_id"] == card["task_id"]
    assert redrawn["sub_title_text"] == WORDS.card_chosen("Who approves?")
    assert [b["text"] for b in redrawn["button_list"]] == [
        "✓ Who approves?",
        "Carry days over?",
    ]
    assert all(b["key"].startswith(DONE) for b in redrawn["button_list"])

    await answered(gateway)
    await wait_for(lambda: bool(sent_to(wecom, "c1")), what="the answer to the click")
    asked = dify.requests[-1]
    assert asked["query"] == "Who approves?" and asked["user"] == "wecom-ai:u2"
    assert sent_to(wecom, "c1") == ["Your manager."]  # whole, through the click's response_url

    # WeCom sends the callback again (no answer in time, say): the same click, once.
    again = await SIDE.call(client, PATH, payload)
    assert again is not None and again["template_card"]["task_id"] == card["task_id"]
    await answered(gateway)
    assert len(dify.requests) == 2

    # A forged click (wrong signature) is refused before anything is read.
    query, body = SIDE.seal(card_click_payload(key, card["task_id"]))
    forged = await client.post(PATH, params={**query, "msg_signature": "0" * 40}, data=body)
    assert forged.status == 401
    # A click on the redrawn card's buttons is no click at all.
    _, nothing = await click(client, wecom, redrawn["button_list"][0]["key"], card["task_id"], "c2")
    assert nothing is None
    await answered(gateway)
    assert len(dify.requests) == 2 and sent_to(wecom, "c2") == []


async def test_a_click_on_an_answer_the_gateway_forgot_says_it_expired(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    client, gateway = await start(gateway_factory, dify, api_base=wecom.base_url)
    key = "dgw1|suggestion|0|wecom-ai:long-gone"
    assert read_button_value(key) is not None
    _, update = await click(client, wecom, key, "dgw-unknown-card", "c1")
    assert update is None  # no card kept under that task id: nothing to redraw
    await answered(gateway)
    await wait_for(lambda: bool(sent_to(wecom, "c1")), what="the expired note")
    assert sent_to(wecom, "c1") == [WORDS.expired]
    assert dify.requests == []


async def test_a_forms_actions_are_a_card_and_a_click_answers_the_form_once(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    client, gateway = await start(gateway_factory, dify, api_base=wecom.base_url)
    dify.reply(booking())
    card = await first_answer(client, gateway, wecom, "book a room")
    assert card["main_title"]["title"] == WORDS.form_choice_title
    assert list(keys_of(card)) == ["Approve", "Reject"]

    reject = keys_of(card)["Reject"]
    _, update = await click(client, wecom, reject, card["task_id"], "c1")
    assert update is not None
    assert update["template_card"]["sub_title_text"] == WORDS.form_chosen("Reject")
    await answered(gateway)
    (answer,) = dify.forms.answers
    assert (answer["action"], answer["user"]) == ("reject", "wecom-ai:u1")
    assert answer["status"] == 200  # taken
    await wait_for(lambda: bool(sent_to(wecom, "c1")), what="the resumed answer")
    assert sent_to(wecom, "c1") == ["Booked."]

    # The old card clicked again (a client that kept it): Dify takes a form once.
    await click(client, wecom, keys_of(card)["Approve"], card["task_id"], "c2")
    await answered(gateway)
    await wait_for(lambda: bool(sent_to(wecom, "c2")), what="the 412 note")
    assert sent_to(wecom, "c2") == [WORDS.form_closed]
    assert dify.forms.answers[-1]["status"] == 412 and len(dify.forms.resumes) == 1


async def test_someone_else_s_click_on_a_form_leaves_the_card_and_is_refused(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    client, gateway = await start(gateway_factory, dify, api_base=wecom.base_url)
    dify.reply(booking())
    card = await first_answer(client, gateway, wecom, "@bot book a room", chatid="grp")
    key = keys_of(card)["Approve"]
    _, update = await click(client, wecom, key, card["task_id"], "c1", user="u9", chatid="grp")
    assert update is None  # the card stays: the asker may still answer
    await answered(gateway)
    await wait_for(lambda: bool(sent_to(wecom, "c1")), what="the refusal")
    assert sent_to(wecom, "c1") == [WORDS.form_not_yours] and dify.forms.answers == []


# --- WebSocket mode ----------------------------------------------------------------------


async def test_over_the_long_connection_suggestions_and_a_form_are_cards_clicked_back(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    _client, gateway = await ws.start(gateway_factory, dify, wecom)
    suggesting(dify)
    dify.reply(ScriptedReply(chunks=["You get 20 days."]))
    req_id = await wecom.push("aibot_msg_callback", text_payload("ws-1", "leave?"))
    await ws.finished(wecom, req_id)
    await wait_for(lambda: bool(cards_sent(wecom.of("aibot_send_msg"))), what="the card")
    (card,) = cards_sent(wecom.of("aibot_send_msg"))
    assert wecom.of("aibot_send_msg")[0].body["chatid"] == "u1"

    dify.responder = lambda request, turn: booking()
    key = keys_of(card)["Carry days over?"]
    click_req = await wecom.push(
        "aibot_event_callback", card_click_payload(key, card["task_id"], user="u2", flat=True)
    )
    await wait_for(lambda: bool(wecom.replies(click_req)), what="the card update")
    (update,) = wecom.replies(click_req)
    assert update.kind == "aibot_respond_update_msg"
    assert update.body["response_type"] == "update_template_card"
    assert update.body["template_card"]["task_id"] == card["task_id"]
    await answered(gateway)
    asked = dify.requests[-1]
    assert asked["query"] == "Carry days over?" and asked["user"] == "wecom-ws:u2"
    # The answer to a click is one message; it paused on a form: its actions follow.
    await wait_for(lambda: len(cards_sent(wecom.of("aibot_send_msg"))) == 2, what="form card")
    assert any("Shall I book it?" in t for t in markdown_sent(wecom.of("aibot_send_msg")))
    form = cards_sent(wecom.of("aibot_send_msg"))[1]
    assert list(keys_of(form)) == ["Approve", "Reject"]

    approve = card_click_payload(keys_of(form)["Approve"], form["task_id"], user="u2")
    for _ in range(2):  # the same frame twice: one answer
        await wecom.push("aibot_event_callback", approve)
    await wait_for(lambda: bool(dify.forms.answers), what="the form answered")
    await answered(gateway)
    await wait_for(
        lambda: "Booked." in markdown_sent(wecom.of("aibot_send_msg")), what="the resumed run"
    )
    (answer,) = dify.forms.answers
    assert (answer["action"], answer["user"]) == ("approve", "wecom-ws:u2")


async def test_over_the_long_connection_a_click_on_a_forgotten_answer_expired(
    gateway_factory: GatewayFactory, dify: DifyEmulator, wecom: FakeWecomBotServer
) -> None:
    _client, gateway = await ws.start(gateway_factory, dify, wecom)
    key = "dgw1|suggestion|1|wecom-ws:gone"
    req_id = await wecom.push("aibot_event_callback", card_click_payload(key, "dgw-gone"))
    await wait_for(
        lambda: WORDS.expired in markdown_sent(wecom.of("aibot_send_msg")), what="expired"
    )
    await answered(gateway)
    assert wecom.replies(req_id) == []  # no card kept: nothing to update
    assert dify.requests == []
