"""Slack interactivity payloads -> clicks, and everything else -> a clean rejection."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest

from adapters.slack.convert import parse_body, to_outcome
from gateway.controls import button_value
from gateway.models import Ignored, Messages
from gateway.platform import MalformedRequest


def block_actions(value: object, **extra: Any) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": {"id": "U2"},
        "team": {"id": "T1"},
        "container": {"type": "message", "message_ts": "17.2", "channel_id": "C1"},
        "message": {"ts": "17.2", "thread_ts": "17.1", "text": "answer", "blocks": []},
        "actions": [{"action_id": "a", "value": value, "action_ts": "18.0"}],
        **extra,
    }


def outcome_of(payload: dict[str, Any]) -> Any:
    body = urlencode({"payload": json.dumps(payload)}).encode()
    return to_outcome(parse_body(body), bot="b", bot_user_id="UBOT", received_at=1.0)


def test_a_click_on_our_button_is_a_message_from_the_clicker_in_the_thread() -> None:
    outcome = outcome_of(block_actions(button_value("feedback", "b:C1:17.1", "like")))
    assert isinstance(outcome, Messages)
    (click,) = outcome.messages
    assert click.action is not None
    assert (click.action.kind, click.action.answer_id, click.action.value) == (
        "feedback",
        "b:C1:17.1",
        "like",
    )
    assert (click.user_id, click.chat_id, click.thread_id) == ("U2", "C1", "17.1")
    assert click.dedupe_keys == ("action:C1:17.2:18.0:U2",)
    assert click.reply_to["message_ts"] == "17.2"


@pytest.mark.parametrize(
    "value",
    [None, 3, "", "plain", "dgw1|feedback|like|", "dgw1|vote|x|b:1", "dgw2|stop||b:1"],
)
def test_a_button_that_is_not_ours_is_ignored(value: object) -> None:
    assert isinstance(outcome_of(block_actions(value)), Ignored)


def test_a_click_without_who_or_where_is_ignored() -> None:
    payload = block_actions(button_value("stop", "b:1"), user={}, container={}, message={})
    assert isinstance(outcome_of(payload), Ignored)


def test_other_interactivity_is_ignored() -> None:
    assert isinstance(outcome_of({"type": "view_submission", "view": {}}), Ignored)


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"text"'])
def test_a_payload_that_is_not_a_json_object_is_rejected(raw: str) -> None:
    body = urlencode({"payload": raw}).encode()
    with pytest.raises(MalformedRequest):
        to_outcome(parse_body(body), bot="b", bot_user_id="UBOT", received_at=1.0)


def reason_view(metadata: str, value: object = "wrong", callback_id: str = "dgw_reason") -> Any:
    state = {"values": {"dgw_reason": {"dgw_reason": {"value": value}}}}
    view = {"id": "V1", "callback_id": callback_id, "private_metadata": metadata, "state": state}
    return {"type": "view_submission", "user": {"id": "U2"}, "view": view}


def test_the_reason_for_a_thumbs_down_is_a_rating_with_a_comment() -> None:
    where = json.dumps({"answer": "b:C1:17.1", "channel": "C1", "thread_ts": "17.1"})
    outcome = outcome_of(reason_view(where, " too short "))
    assert isinstance(outcome, Messages)
    (click,) = outcome.messages
    assert click.action is not None
    assert (click.action.kind, click.action.value, click.action.comment) == (
        "feedback",
        "dislike",
        "too short",
    )
    assert (click.chat_id, click.thread_id, click.dedupe_keys) == ("C1", "17.1", ("view:V1:U2",))


@pytest.mark.parametrize(
    "view",
    [
        reason_view("{not json"),
        reason_view("[]"),
        reason_view('{"channel": "C1"}'),
        reason_view('{"answer": "b:1", "channel": "C1"}', value=None),
        reason_view('{"answer": "b:1", "channel": "C1"}', value="   "),
        reason_view('{"answer": "b:1", "channel": "C1"}', callback_id="someone_elses"),
    ],
)
def test_any_other_view_submission_is_ignored(view: Any) -> None:
    assert isinstance(outcome_of(view), Ignored)


def form_view(metadata: str, text: object = "looks good", level: object = "high") -> Any:
    values = {
        "dgw_form_0": {"value": {"type": "plain_text_input", "value": text}},
        "dgw_form_1": {"value": {"type": "static_select", "selected_option": {"value": level}}},
    }
    view = {"id": "V2", "callback_id": "dgw_form", "private_metadata": metadata}
    return {
        "type": "view_submission",
        "user": {"id": "U2"},
        "view": {**view, "state": {"values": values}},
    }


FORM_WHERE = {
    "token": "tok",
    "action": "ok",
    "channel": "D1",
    "thread_ts": "17.1",
    "fields": ["comment", "level"],
}


def test_a_form_s_fields_filled_in_its_modal_answer_the_form() -> None:
    outcome = outcome_of(form_view(json.dumps(FORM_WHERE), " looks good "))
    assert isinstance(outcome, Messages)
    (click,) = outcome.messages
    assert click.action is not None
    action = (click.action.kind, click.action.answer_id, click.action.value)
    assert action == ("form", "tok", "ok")
    assert click.action.inputs == {"comment": "looks good", "level": "high"}
    assert (click.chat_id, click.thread_id, click.dedupe_keys) == ("D1", "17.1", ("view:V2:U2",))
    # A field left empty (or odd) is sent empty: the modal showed its default.
    blank = outcome_of(form_view(json.dumps(FORM_WHERE), None, 7))
    assert isinstance(blank, Messages) and blank.messages[0].action is not None
    assert blank.messages[0].action.inputs == {"comment": "", "level": ""}


def test_a_click_on_a_form_s_button_names_the_form_and_the_action() -> None:
    outcome = outcome_of(block_actions(button_value("form", "tok", "ok")))
    assert isinstance(outcome, Messages)
    (click,) = outcome.messages
    assert click.action is not None
    assert (click.action.kind, click.action.answer_id, click.action.value) == ("form", "tok", "ok")


@pytest.mark.parametrize(
    "view",
    [
        form_view("{not json"),
        form_view("[]"),
        form_view(json.dumps({**FORM_WHERE, "token": ""})),
        form_view(json.dumps({**FORM_WHERE, "action": 7})),
        form_view(json.dumps({**FORM_WHERE, "fields": []})),
        form_view(json.dumps({**FORM_WHERE, "fields": "comment"})),
    ],
)
def test_a_form_view_without_its_answer_is_ignored(view: Any) -> None:
    assert isinstance(outcome_of(view), Ignored)
