"""The AI bot's buttons: template cards of suggested questions and a form's actions
(cards.py), what a click redraws, and when the sink sends them (after the answer, never
Stop or 👍/👎, which WeCom has its own of)."""

from __future__ import annotations

import re

import pytest

from adapters.wecom_bot import cards
from adapters.wecom_bot.sink import QuietSink
from gateway.controls import Controls, FormChoice, read_button_value
from gateway.platform import Pacing, PlatformError, ShowsControls
from gateway.words import ENGLISH, SIMPLIFIED_CHINESE
from tests.unit.wecom_bot.test_sink import Harness

TASK_ID = re.compile(r"^[A-Za-z0-9_\-@]{1,128}$")  # WeCom's rule for a card's task_id
CHOICE = FormChoice("tok1", (("approve", "Approve", "primary"), ("reject", "Reject", "")))


def test_suggestions_are_buttons_whose_keys_name_the_answer_and_the_question() -> None:
    card = cards.suggestions_card("wecom-ai:m1", ("Who?", "When?"), ENGLISH)
    assert card is not None
    body = card.template_card()
    assert body["card_type"] == "button_interaction"
    assert body["main_title"] == {"title": ENGLISH.suggestions_title}
    assert TASK_ID.match(body["task_id"])
    assert [b["text"] for b in body["button_list"]] == ["Who?", "When?"]
    assert [read_button_value(b["key"]) for b in body["button_list"]] == [
        ("suggestion", "wecom-ai:m1", "0"),
        ("suggestion", "wecom-ai:m1", "1"),
    ]
    assert "sub_title_text" not in body  # every question fits its button


def test_each_card_has_a_task_id_of_its_own() -> None:
    made = {cards.suggestions_card("a:b", ("q",), ENGLISH).task_id for _ in range(50)}  # type: ignore[union-attr]
    assert len(made) == 50


def test_a_long_question_is_cut_on_its_button_and_said_whole_in_the_card() -> None:
    long = "How many days of annual leave do I get in my first year?"
    card = cards.suggestions_card("a:b", (long, "Short?"), ENGLISH)
    assert card is not None
    body = card.template_card()
    label = body["button_list"][0]["text"]
    assert label.endswith("…") and len(label) == cards.MAX_LABEL_CHARS
    assert body["sub_title_text"] == f"1. {long}\n2. Short?"


def test_at_most_three_suggestions_and_no_card_for_keys_over_wecoms_limit() -> None:
    card = cards.suggestions_card("a:b", ("1", "2", "3", "4"), ENGLISH)
    assert card is not None and len(card.buttons) == 3
    assert cards.suggestions_card("a:" + "x" * 1100, ("q",), ENGLISH) is None


def test_a_form_card_has_the_actions_the_primary_one_styled() -> None:
    card = cards.form_card(CHOICE, "zhangsan", SIMPLIFIED_CHINESE)
    assert card is not None and card.asker == "zhangsan"
    body = card.template_card()
    assert body["main_title"]["title"] == SIMPLIFIED_CHINESE.form_choice_title
    assert [(b["text"], b["style"]) for b in body["button_list"]] == [
        ("Approve", cards.PRIMARY),
        ("Reject", cards.PLAIN),
    ]
    assert read_button_value(body["button_list"][1]["key"]) == ("form", "tok1", "reject")


def test_a_clicked_card_marks_the_choice_and_no_button_answers_again() -> None:
    card = cards.form_card(CHOICE, "zhangsan", ENGLISH)
    assert card is not None
    reject = card.buttons[1].key
    after = card.chosen(reject, ENGLISH)
    assert after is not None
    assert after["task_id"] == card.task_id  # WeCom updates the card with this task id
    assert after["sub_title_text"] == ENGLISH.form_chosen("Reject")
    assert [b["text"] for b in after["button_list"]] == ["Approve", "✓ Reject"]
    keys = [b["key"] for b in after["button_list"]]
    assert len(set(keys)) == len(keys)  # unique in the card, as WeCom requires
    assert all(read_button_value(k) is None for k in keys)
    assert card.chosen("dgw1|form|other|tok1", ENGLISH) is None  # no button of this card


def test_a_card_comes_back_from_the_store_as_it_went_in() -> None:
    card = cards.suggestions_card("a:b", ("How many days of annual leave?", "Who?"), ENGLISH)
    assert card is not None
    assert cards.Card.decode(card.encode()) == card
    form = cards.form_card(CHOICE, "zhangsan", ENGLISH)
    assert form is not None and form.form and cards.Card.decode(form.encode()) == form
    for raw in ("", "[]", "{}", '{"task_id":"t","title":"x","asker":"","buttons":[[1]]}'):
        assert cards.Card.decode(raw) is None


async def test_suggestions_go_out_as_a_card_after_the_answer_and_are_kept() -> None:
    h = Harness()
    sink = h.sink()
    assert isinstance(sink, ShowsControls)
    sink.offer(Controls("wecom-ai:m1", stop=True))
    await sink.begin()
    await sink.finish("Answer.", last=True)
    assert h.channel.cards == []  # nothing under the text: 👍/👎 are WeCom's own
    await sink.amend(Controls("wecom-ai:m1", feedback=True, suggestions=("Who?",)))
    (card,) = h.channel.cards
    assert [b["text"] for b in card["button_list"]] == ["Who?"]
    (kept,) = h.kept
    assert kept.task_id == card["task_id"] and kept.asker == ""  # anyone may pick one
    # A rating shown, a Stop due: nothing to draw.
    await sink.show(Controls("wecom-ai:m1", feedback=True, rating="like"))
    await sink.still_running()
    await sink.amend(Controls("wecom-ai:m1", feedback=True))
    assert len(h.channel.cards) == 1
    await h.close()


async def test_a_forms_actions_follow_the_final_text_and_a_failure_costs_the_text_nothing() -> None:
    h = Harness()
    sink = h.sink()
    sink.offer(Controls("wecom-ai:m1", form=CHOICE))
    await sink.begin()
    await sink.finish("Shall I book it?", last=True)
    assert h.channel.shown[-1] == ("Shall I book it?", True)
    (card,) = h.channel.cards
    assert [b["text"] for b in card["button_list"]] == ["Approve", "Reject"]
    assert h.kept[0].asker == "asker"  # only the asker's click redraws it

    h = Harness()
    h.channel.card_fails = True  # the response_url went to a long answer's rest, say
    sink = h.sink()
    sink.offer(Controls("wecom-ai:m1", form=CHOICE))
    await sink.begin()
    await sink.finish("Shall I book it?", last=True)
    assert h.channel.shown[-1] == ("Shall I book it?", True) and h.channel.cards == []
    with pytest.raises(PlatformError):  # the core logs it
        await sink.amend(Controls("wecom-ai:m1", suggestions=("Who?",)))
    await h.close()


async def test_a_click_answer_goes_whole_through_the_overflow_without_a_stream() -> None:
    h = Harness()
    sink = h.sink(resume={"closed": True, "released": True})
    await sink.begin()
    await sink.update("Your")
    await sink.finish("Your manager.", last=True)
    assert h.channel.shown == [] and h.channel.overflows == ["Your manager."]
    assert h.releases == 0  # a click counts no answer in flight
    await h.close()


async def test_the_quiet_sink_of_wecoms_own_feedback_says_nothing() -> None:
    sink = QuietSink(Pacing(0.5, "x", 1.0))
    assert isinstance(sink, ShowsControls) and sink.snapshot() == {}
    await sink.begin()
    await sink.finish(ENGLISH.expired, last=True)
    await sink.show(Controls("a:b", feedback=True, rating="like"))
    assert await sink.send_files([]) == []
