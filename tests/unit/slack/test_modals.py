"""The modal that asks for a form's field: Slack's limits kept, its answer finds its way
back (the private metadata), the field's default filled in."""

from __future__ import annotations

import json

from adapters.slack.modals import FORM_BLOCK, FORM_VIEW, form_view
from gateway.controls import FormPrompt
from gateway.words import ENGLISH, SIMPLIFIED_CHINESE


def test_the_modal_names_the_form_and_the_action_and_fills_the_default() -> None:
    prompt = FormPrompt("tok", "ok", "Approve", "Review", "Comment", "fine")
    view = form_view(prompt, {"channel": "D1", "thread_ts": "17.1"}, ENGLISH)
    assert view["callback_id"] == FORM_VIEW
    assert json.loads(view["private_metadata"]) == {
        "channel": "D1",
        "thread_ts": "17.1",
        "token": "tok",
        "action": "ok",
    }
    (block,) = view["blocks"]
    assert block["block_id"] == FORM_BLOCK and block["element"]["initial_value"] == "fine"
    assert (view["title"]["text"], view["submit"]["text"]) == ("Review", "Approve")
    assert view["close"]["text"] == ENGLISH.form_cancel


def test_long_or_missing_titles_fit_slack_s_24_characters() -> None:
    prompt = FormPrompt("tok", "ok", "A" * 40, "", "Comment")
    view = form_view(prompt, {"channel": "D1"}, SIMPLIFIED_CHINESE)
    assert view["title"]["text"] == SIMPLIFIED_CHINESE.form_title
    assert len(view["submit"]["text"]) == 24 and view["submit"]["text"].endswith("…")
    assert "initial_value" not in view["blocks"][0]["element"]
