"""The modal that asks for a form's fields: Slack's limits kept, its answer finds its way
back (the private metadata), each field with its default."""

from __future__ import annotations

import json

from adapters.slack.modals import FORM_VIEW, form_view
from gateway.controls import FormPrompt
from gateway.dify_events import FormField
from gateway.words import ENGLISH, SIMPLIFIED_CHINESE

COMMENT = FormField("comment", "paragraph", "Comment", "fine")
LEVEL = FormField("level", "select", "Level", "high", ("low", "high"))


def test_the_modal_names_the_form_and_the_action_and_fills_the_defaults() -> None:
    prompt = FormPrompt("tok", "ok", "Approve", "Review", (COMMENT, LEVEL))
    view = form_view(prompt, {"channel": "D1", "thread_ts": "17.1"}, ENGLISH)
    assert view["callback_id"] == FORM_VIEW
    assert json.loads(view["private_metadata"]) == {
        "channel": "D1",
        "thread_ts": "17.1",
        "token": "tok",
        "action": "ok",
        "fields": ["comment", "level"],
    }
    text, menu = view["blocks"]
    assert (text["block_id"], text["optional"]) == ("dgw_form_0", True)
    assert text["element"]["initial_value"] == "fine"
    assert menu["element"]["type"] == "static_select" and not menu["optional"]
    assert [o["value"] for o in menu["element"]["options"]] == ["low", "high"]
    assert menu["element"]["initial_option"]["value"] == "high"
    assert (view["title"]["text"], view["submit"]["text"]) == ("Review", "Approve")
    assert view["close"]["text"] == ENGLISH.form_cancel


def test_long_or_missing_titles_fit_slack_s_24_characters() -> None:
    bare = FormField("note", "paragraph", "Note")
    prompt = FormPrompt("tok", "ok", "A" * 40, "", (bare,))
    view = form_view(prompt, {"channel": "D1"}, SIMPLIFIED_CHINESE)
    assert view["title"]["text"] == SIMPLIFIED_CHINESE.form_title
    assert len(view["submit"]["text"]) == 24 and view["submit"]["text"].endswith("…")
    assert "initial_value" not in view["blocks"][0]["element"]
