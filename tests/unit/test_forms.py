"""Human-input forms: the events read totally (any payload gives a form or is skipped), a
pause names its forms, a kept form reads back, replies in words read as answers, and who
may answer."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from gateway.config import DifyApp
from gateway.dify_events import DifyStreamError, FormAction, FormField, HumanInput, Paused
from gateway.dify_forms import paused_tokens, read_form
from gateway.dify_parse import EventReader
from gateway.forms import PendingForm, as_text, inputs, read_reply
from gateway.words import ENGLISH, SIMPLIFIED_CHINESE
from tests.helpers import group_job

EVENT: dict[str, Any] = {
    "form_id": "f1",
    "node_id": "n1",
    "node_title": "Review",
    "form_content": "Check the plan.\n\n{{#$output.comment#}}\n\n\n\nThanks.",
    "inputs": [
        {"type": "paragraph", "output_variable_name": "comment", "default": None},
        {
            "type": "select",
            "output_variable_name": "level",
            "options": ["low", {"value": "high"}, 3],
            "default": {"type": "constant", "value": "high"},
        },
        {"type": "file", "output_variable_name": "doc"},
    ],
    "actions": [{"id": "ok", "title": "Approve", "button_style": "primary"}, {"id": "no"}],
    "form_token": "tok",
    "resolved_default_values": {"comment": "fine"},
    "expiration_time": "2030-01-01T00:00:00Z",
}


def app(mode: str = "chatflow") -> DifyApp:
    return DifyApp(base_url="http://dify.local/v1", api_key="k", mode=mode)


def test_a_form_event_reads_into_fields_actions_and_plain_content() -> None:
    form = read_form(EVENT, "tok")
    assert form.content == "Check the plan.\n\nThanks."
    assert form.fields == (
        FormField("comment", "paragraph", "comment", "fine"),
        FormField("level", "select", "level", "high", ("low", "high")),
    )
    assert form.actions == (FormAction("ok", "Approve", "primary"), FormAction("no", "no"))
    assert form.other_fields == 1 and form.expires_at == 1893456000.0
    assert read_form({"expiration_time": 1893456000000}, None).expires_at == 1893456000.0


def test_odd_form_payloads_give_emptier_forms_never_an_exception() -> None:
    rng = random.Random(16)
    odd: list[Any] = [None, 1, 1.5, float("nan"), "x", [], {}, [1, None], {"a": 1}, True]
    for _ in range(500):
        data = {k: rng.choice(odd) for k in EVENT if rng.random() < 0.7}
        if rng.random() < 0.3:
            data["inputs"] = [rng.choice(odd) for _ in range(3)]
        form = read_form(data, rng.choice([None, "t"]))
        assert isinstance(form, HumanInput)
        assert isinstance(paused_tokens({"reasons": rng.choice(odd)}), list)


def test_a_pause_names_the_forms_it_showed_and_those_it_only_named() -> None:
    reader = EventReader(app())
    assert reader.read({"event": "human_input_required", "data": EVENT}) is None
    reasons = [
        {"TYPE": "human_input_required", "form_token": "tok"},
        {"TYPE": "human_input_required", "form_token": "other"},
        {"TYPE": "something_else", "form_token": "x"},
    ]
    paused = reader.read(
        {"event": "workflow_paused", "workflow_run_id": "run", "data": {"reasons": reasons}}
    )
    assert isinstance(paused, Paused) and paused.run_id == "run"
    assert [(f.token, f.complete) for f in paused.forms] == [("tok", True), ("other", False)]
    # A chatflow names the run in the data only.
    named = EventReader(app()).read(
        {"event": "workflow_paused", "data": {"workflow_run_id": "r2", "reasons": reasons[1:2]}}
    )
    assert isinstance(named, Paused) and named.run_id == "r2"


def test_a_form_by_email_is_a_form_without_a_token() -> None:
    reader = EventReader(app())
    reader.read({"event": "human_input_required", "data": {**EVENT, "form_token": None}})
    paused = reader.read({"event": "workflow_paused", "data": {"reasons": []}})
    assert isinstance(paused, Paused) and paused.forms[0].token is None
    assert as_text(paused.forms[0], ENGLISH) == ENGLISH.form_elsewhere


def test_a_pause_without_a_form_is_still_an_error() -> None:
    with pytest.raises(DifyStreamError):
        EventReader(app()).read({"event": "workflow_paused", "data": {"reasons": "x"}})


FORM = read_form(EVENT, "tok")


@pytest.mark.parametrize(
    ("reply", "meant"),
    [
        ("1", ("ok", "")),
        (" 2. ", ("no", "")),
        ("1) looks good\nreally", ("ok", "looks good\nreally")),
        ("3", None),
        ("0", None),
        ("looks good", None),  # two actions: a number must choose
        ("", None),
    ],
)
def test_a_reply_in_words_reads_as_an_action_and_a_paragraph(
    reply: str, meant: tuple[str, str] | None
) -> None:
    assert read_reply(FORM, reply) == meant


def test_with_one_action_the_text_alone_fills_the_paragraph() -> None:
    one = HumanInput("t", fields=FORM.fields[:1], actions=FORM.actions[:1])
    assert read_reply(one, "ship it") == ("ok", "ship it")
    assert read_reply(HumanInput("t", actions=FORM.actions[:1]), "ship it") is None


def test_a_submission_sends_every_field_with_its_default_or_the_reply() -> None:
    assert inputs(FORM) == {"comment": "fine", "level": "high"}
    assert inputs(FORM, "no way") == {"comment": "no way", "level": "high"}
    # Filled in a dialog: a select takes only one of its options.
    assert inputs(FORM, "", {"comment": "", "level": "low"}) == {"comment": "", "level": "low"}
    assert inputs(FORM, "", {"level": "extreme"}) == {"comment": "fine", "level": "high"}
    bare = HumanInput("t", fields=(FormField("s", "select", "s", "", ("a", "b")),))
    assert inputs(bare) == {"s": "a"}


def test_the_form_as_text_in_both_languages() -> None:
    text = as_text(FORM, ENGLISH)
    assert text.startswith("**Review**\n\nCheck the plan.")
    assert "1. Approve\n2. no" in text and ENGLISH.form_reply_with_text("comment") in text
    assert SIMPLIFIED_CHINESE.form_reply_with_text("comment") in as_text(FORM, SIMPLIFIED_CHINESE)


def pending(scope: str) -> PendingForm:
    return PendingForm("tok", "run", "main", "b:U1", "main/slack:C1", "U1", scope, FORM)


def test_a_kept_form_reads_back_and_rubbish_reads_as_none() -> None:
    kept = pending("user")
    assert PendingForm.decode(kept.encode()) == kept
    for raw in ("", "[]", "{}", json.dumps({**json.loads(kept.encode()), "form": 1})):
        assert PendingForm.decode(raw) is None


def test_only_the_asker_answers_unless_the_conversation_is_shared() -> None:
    assert pending("user").may_submit(group_job("U1"))
    assert not pending("user").may_submit(group_job("U2"))
    assert pending("chat").may_submit(group_job("U2"))
    assert not pending("chat").may_submit(group_job("U2", key="main/slack:C2"))


def test_a_form_is_kept_as_long_as_it_lives() -> None:
    assert pending("user").ttl(1893456000.0 - 500) == 500
    assert pending("user").ttl(1893456000.0 + 500) == 60.0
    forever = PendingForm("t", "r", "a", "u", "k", "U", "user", HumanInput("t"))
    assert forever.ttl(0) == 7 * 24 * 3600.0
