"""DingTalk AI-card buttons end to end over Stream mode: 👍/👎, Stop and suggested questions
on a card of the operator's own template, clicked through card-callback frames, the inbox,
the Dify emulator and the fake DingTalk; and the clicks that must not work (replayed,
on a card the gateway forgot, a stop by someone who did not ask, malformed callbacks)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from adapters.dingtalk.adapter import DingtalkAdapter
from adapters.dingtalk.card_buttons import BUILTIN_AI_CARD
from gateway.emulator import DifyEmulator, ScriptedReply
from gateway.runtime import Gateway
from gateway.words import ENGLISH
from tests.conftest import GatewayFactory, make_config
from tests.fakes.dingtalk import Card, FakeDingtalk, dingtalk_bot, robot_message
from tests.helpers import wait_for

TEMPLATE = "a1b2c3d4-dify-gateway-buttons.schema"  # an operator's own template
ASKER, OTHER = "manager123", "other456"
SLOW = ScriptedReply(chunks=[f"word{i} " for i in range(60)], delay=0.1)


async def start(
    gateway_factory: GatewayFactory,
    dify: DifyEmulator,
    ding: FakeDingtalk,
    routes: list[dict[str, Any]] | None = None,
    **bot: Any,
) -> Gateway:
    dify.responder = lambda request, turn: ScriptedReply(chunks=["Noted."])
    settings = {"card_template_id": TEMPLATE, "locale": "en", **bot}
    config = make_config(dify, {"ding": dingtalk_bot(ding, **settings)}, routes=routes)
    _, gateway = await gateway_factory(config)
    await wait_for(lambda: gateway.adapters["ding"].ready and ding.connected, what="connected")
    return gateway


async def idle(gateway: Gateway) -> None:
    await wait_for(
        lambda: gateway.inbox.in_flight == 0 and gateway.inbox.queued == 0,
        within=15,
        what="the inbox to drain",
    )


async def ask(ding: FakeDingtalk, text: str, **kw: Any) -> None:
    frame_id = await ding.push_callback(robot_message(ding, text, **kw))
    await wait_for(lambda: ding.ack_for(frame_id) is not None, what=f"the ack of {text!r}")


async def click(ding: FakeDingtalk, track: str, action: str, **kw: Any) -> str:
    frame_id = await ding.push_card_click(track, action, **kw)
    await wait_for(lambda: ding.ack_for(frame_id) is not None, what=f"the ack of {action!r}")
    return frame_id


async def answered_card(gateway: Gateway, ding: FakeDingtalk, **kw: Any) -> tuple[str, Card]:
    await ask(ding, "how long?", **kw)
    await wait_for(lambda: len(ding.cards) == 1, what="the answer's card")
    await idle(gateway)
    ((track, card),) = ding.cards.items()
    return track, card


def contents(ding: FakeDingtalk) -> list[str]:
    return [card.content for card in ding.cards.values()]


# --- feedback --------------------------------------------------------------------------


async def test_thumbs_rate_as_the_asker_and_the_card_shows_the_choice(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    gateway = await start(gateway_factory, dify, ding)
    track, card = await answered_card(gateway, ding)
    assert card.callback == "STREAM" and card.template == TEMPLATE
    assert card.content == "Noted." and card.flow[-1] == "3"
    assert card.variables["showFeedback"] == "true"
    assert card.variables["showStop"] == "false"  # it was shown while the answer was written
    assert (card.variables["liked"], card.variables["disliked"]) == ("false", "false")
    assert card.variables["stopLabel"] == ENGLISH.stop_button

    frame_id = await click(ding, track, "like")
    await idle(gateway)
    ack = ding.ack_for(frame_id)
    assert ack is not None and ack["code"] == 200
    assert json.loads(ack["data"]) == {"response": {}}
    assert [(f["rating"], f["user"]) for f in dify.feedbacks] == [("like", f"ding:{ASKER}")]
    assert (card.variables["liked"], card.variables["disliked"]) == ("true", "false")

    # A second click on the choice withdraws it; someone else then changes it to 👎
    # (Dify takes ratings from the asker's user only).
    await click(ding, track, "like")
    await idle(gateway)
    assert (card.variables["liked"], card.variables["disliked"]) == ("false", "false")
    await click(ding, track, "dislike", user_id=OTHER)
    await idle(gateway)
    assert [(f["rating"], f["user"]) for f in dify.feedbacks] == [
        ("like", f"ding:{ASKER}"),
        (None, f"ding:{ASKER}"),
        ("dislike", f"ding:{ASKER}"),
    ]
    assert (card.variables["liked"], card.variables["disliked"]) == ("false", "true")
    assert card.content == "Noted." and len(ding.cards) == 1  # nothing else posted


async def test_feedback_false_shows_no_thumbs(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    routes = [{"match": {}, "feedback": False}]
    gateway = await start(gateway_factory, dify, ding, routes=routes)
    _, card = await answered_card(gateway, ding)
    assert card.variables["showFeedback"] == "false"


# --- stop --------------------------------------------------------------------------------


def writing_with_stop(ding: FakeDingtalk) -> str | None:
    for track, card in ding.cards.items():
        if card.variables.get("showStop") == "true" and "word2" in card.content:
            return track
    return None


async def test_the_stop_button_stops_the_run_and_the_card_says_so(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    gateway = await start(gateway_factory, dify, ding)
    dify.responder = lambda request, turn: SLOW
    await ask(ding, "write a lot")
    await wait_for(lambda: writing_with_stop(ding) is not None, within=10, what="a Stop")
    track = writing_with_stop(ding)
    assert track is not None
    await click(ding, track, "stop")
    await idle(gateway)
    (stop,) = dify.stops
    assert stop["user"] == f"ding:{ASKER}"
    card = ding.cards[track]
    assert card.content.startswith("word0") and "word59" not in card.content
    assert card.content.rstrip().endswith(ENGLISH.stopped)
    assert card.flow[-1] == "3" and card.variables["showStop"] == "false"


async def test_a_stop_by_someone_who_did_not_ask_is_refused(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    gateway = await start(gateway_factory, dify, ding)  # one-to-one: the `user` scope
    dify.responder = lambda request, turn: ScriptedReply(
        chunks=[f"word{i} " for i in range(30)], delay=0.1
    )
    await ask(ding, "write")
    await wait_for(lambda: writing_with_stop(ding) is not None, within=10, what="a Stop")
    track = writing_with_stop(ding)
    assert track is not None
    await click(ding, track, "stop", user_id=OTHER)  # a forwarded card, say
    await idle(gateway)
    assert dify.stops == []
    assert "word29" in ding.cards[track].content  # the answer went on to its end
    (note,) = [c for t, c in ding.cards.items() if t != track]
    assert note.content == ENGLISH.not_yours_to_stop
    assert note.space == f"dtv1.card//IM_ROBOT.{OTHER}"


# --- suggested questions ---------------------------------------------------------------


async def test_suggestions_show_on_the_card_and_a_click_asks_as_the_clicker(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    gateway = await start(gateway_factory, dify, ding)
    dify.parameters["suggested_questions_after_answer"] = {"enabled": True}
    dify.suggested = ["Who approves?", "Can I carry them over?"]
    track, card = await answered_card(gateway, ding, group=True)
    await wait_for(lambda: card.variables.get("showSuggestion2") == "true", what="suggestions")
    assert card.variables["suggestion1"] == "Who approves?"
    assert card.variables["suggestion2"] == "Can I carry them over?"
    assert (card.variables["suggestion3"], card.variables["showSuggestion3"]) == ("", "false")
    assert card.variables["showFeedback"] == "true"
    # The text was finished before the questions were asked for.
    assert card.flow[-1] == "3" and card.puts[-1].get("msgContent") is None

    dify.responder = lambda request, turn: ScriptedReply(chunks=["Your manager."])
    await click(ding, track, "suggestion1", user_id=OTHER)
    await wait_for(lambda: len(dify.requests) == 2, what="the suggestion asked")
    await idle(gateway)
    asked = dify.requests[-1]
    assert asked["query"] == "Who approves?" and asked["user"] == f"ding:{OTHER}"
    answer = [c for t, c in ding.cards.items() if t != track]
    assert [c.content for c in answer] == ["Your manager."]
    assert answer[0].space == "dtv1.card//IM_GROUP.cidGroup0001=="


# --- clicks that must not work ---------------------------------------------------------


async def test_a_redelivered_click_counts_once(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    gateway = await start(gateway_factory, dify, ding)
    track, _ = await answered_card(gateway, ding)
    await click(ding, track, "like", message_id="card-frame-A")
    await click(ding, track, "like", message_id="card-frame-A")  # DingTalk delivers it again
    await idle(gateway)
    assert len([a for a in ding.acks if a["headers"]["messageId"] == "card-frame-A"]) == 2
    assert [f["rating"] for f in dify.feedbacks] == ["like"]


async def test_a_click_on_a_card_the_gateway_forgot_says_it_expired(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    gateway = await start(gateway_factory, dify, ding)
    await answered_card(gateway, ding)
    await click(ding, "dgw-long-gone", "like", user_id=OTHER)
    await idle(gateway)
    assert dify.feedbacks == []
    (note,) = [c for c in ding.cards.values() if c.content == ENGLISH.expired]
    assert note.space == f"dtv1.card//IM_ROBOT.{OTHER}"


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[1, 2]",
        json.dumps({"cardPrivateData": "like"}),
        json.dumps({"cardPrivateData": {"actionIds": "like", "params": []}}),
        json.dumps({"cardPrivateData": {"actionIds": [7], "params": {"action": 7}}}),
        7,
    ],
)
async def test_a_malformed_click_is_acked_and_dropped(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk, content: Any
) -> None:
    gateway = await start(gateway_factory, dify, ding)
    track, _ = await answered_card(gateway, ding)
    await click(ding, track, "like", content=content)  # acked: a redelivery is as bad
    await click(ding, track, "dislike")  # the sentinel
    await idle(gateway)
    assert [f["rating"] for f in dify.feedbacks] == ["dislike"]
    assert len(ding.cards) == 1


async def test_an_action_param_names_the_button_too(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    gateway = await start(gateway_factory, dify, ding)
    track, _ = await answered_card(gateway, ding)
    await click(ding, track, "button_node_x1", params={"action": "dislike"})
    await click(ding, track, "button_node_x2", params={"action": "share"})  # not ours
    await idle(gateway)
    assert [f["rating"] for f in dify.feedbacks] == ["dislike"]


# --- where there are no buttons --------------------------------------------------------


async def test_the_built_in_ai_card_gets_no_button_variables(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    gateway = await start(gateway_factory, dify, ding, card_template_id=BUILTIN_AI_CARD)
    assert not gateway.adapters["ding"].capabilities.buttons
    _, card = await answered_card(gateway, ding)
    assert set(card.variables) == {"msgContent", "flowStatus"}
    assert card.content == "Noted."


async def test_http_mode_has_no_buttons(
    gateway_factory: GatewayFactory, dify: DifyEmulator, ding: FakeDingtalk
) -> None:
    config = make_config(dify, {"ding": dingtalk_bot(ding, mode="http", card_template_id=TEMPLATE)})
    _, gateway = await gateway_factory(config)
    adapter = gateway.adapters["ding"]
    assert isinstance(adapter, DingtalkAdapter)
    assert adapter.capabilities.can_edit and not adapter.capabilities.buttons
