"""The modal that asks for a form's field before the form is answered (Block Kit `modal`,
opened with `views.open` and the click's `trigger_id`, which lasts 3 s). Its submission
comes back as a `view_submission` with `FORM_VIEW` as its callback id
(adapters/slack/interactive.py): the form's answer, with the field's text."""

from __future__ import annotations

import json
from typing import Any

from gateway.controls import FormPrompt
from gateway.words import Words

FORM_VIEW = "dgw_form"  # the callback_id of the modal that asks for a form's field
FORM_BLOCK = "dgw_form_field"
TITLE_CHARS = 24  # a modal's title and buttons take 24 characters
FIELD_CHARS = 3000  # a plain_text_input takes 3,000


def _label(text: str, fallback: str) -> dict[str, Any]:
    text = text.strip() or fallback
    short = text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1] + "…"
    return {"type": "plain_text", "text": short}


def form_view(prompt: FormPrompt, where: dict[str, str], words: Words) -> dict[str, Any]:
    """The modal for `prompt`; `where` (the channel and thread) goes back with the answer."""
    metadata = {**where, "token": prompt.token, "action": prompt.action_id}
    field: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": FORM_BLOCK,
        "multiline": True,
        "max_length": FIELD_CHARS,
    }
    if prompt.default:
        field["initial_value"] = prompt.default[:FIELD_CHARS]
    return {
        "type": "modal",
        "callback_id": FORM_VIEW,
        "private_metadata": json.dumps(metadata),
        "title": _label(prompt.title, words.form_title),
        "submit": _label(prompt.action_title, words.form_title),
        "close": _label(words.form_cancel, words.form_cancel),
        "blocks": [
            {
                "type": "input",
                "block_id": FORM_BLOCK,
                "label": {"type": "plain_text", "text": prompt.label[:2000] or prompt.action_id},
                "element": field,
            }
        ],
    }
