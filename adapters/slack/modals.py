"""The modal that asks for a form's fields before the form is answered (Block Kit `modal`,
opened with `views.open` and the click's `trigger_id`, which lasts 3 s): a text input per
paragraph field, a menu per select, each with its default. Its submission comes back as a
`view_submission` with `FORM_VIEW` as its callback id (adapters/slack/interactive.py): the
form's answer, with the fields as filled (`field_values`)."""

from __future__ import annotations

import json
from typing import Any

from gateway.controls import FormPrompt
from gateway.dify_events import FormField
from gateway.words import Words

FORM_VIEW = "dgw_form"  # the callback_id of the modal that asks for a form's fields
FIELD_ACTION = "value"  # the action_id of each field's element
TITLE_CHARS = 24  # a modal's title and buttons take 24 characters
FIELD_CHARS = 3000  # a plain_text_input takes 3,000
OPTION_CHARS = 75  # an option's text takes 75
MAX_OPTIONS = 100  # a static_select takes 100
MAX_FIELDS = 50  # a modal takes 100 blocks; a form has far fewer fields


def _label(text: str, fallback: str) -> dict[str, Any]:
    text = text.strip() or fallback
    short = text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1] + "…"
    return {"type": "plain_text", "text": short}


def block_id(index: int) -> str:
    return f"dgw_form_{index}"


def _option(value: str) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": value[:OPTION_CHARS] or " "}, "value": value}


def _element(field: FormField) -> dict[str, Any]:
    if field.kind == "select":
        element: dict[str, Any] = {
            "type": "static_select",
            "action_id": FIELD_ACTION,
            "options": [_option(o) for o in field.options[:MAX_OPTIONS]],
        }
        if field.default in field.options[:MAX_OPTIONS]:
            element["initial_option"] = _option(field.default)
        return element
    element = {
        "type": "plain_text_input",
        "action_id": FIELD_ACTION,
        "multiline": True,
        "max_length": FIELD_CHARS,
    }
    if field.default:
        element["initial_value"] = field.default[:FIELD_CHARS]
    return element


def form_view(prompt: FormPrompt, where: dict[str, str], words: Words) -> dict[str, Any]:
    """The modal for `prompt`; `where` (the channel and thread), the form, the action and
    the fields' names go back with the answer."""
    fields = prompt.fields[:MAX_FIELDS]
    metadata = {
        **where,
        "token": prompt.token,
        "action": prompt.action_id,
        "fields": [f.name for f in fields],
    }
    blocks = [
        {
            "type": "input",
            "block_id": block_id(i),
            "optional": field.kind != "select",
            "label": {"type": "plain_text", "text": field.label[:2000] or field.name},
            "element": _element(field),
        }
        for i, field in enumerate(fields)
    ]
    return {
        "type": "modal",
        "callback_id": FORM_VIEW,
        "private_metadata": json.dumps(metadata),
        "title": _label(prompt.title, words.form_title),
        "submit": _label(prompt.action_title, words.form_title),
        "close": _label(words.form_cancel, words.form_cancel),
        "blocks": blocks,
    }
