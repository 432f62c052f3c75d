"""The forms in the gateway's Feishu cards: a paused run's form with its fields, and the
reason for a 👎.

Both are card JSON 2.0 `form` containers
(https://open.feishu.cn/document/feishu-cards/card-json-v2-components/containers/form-container):
at the card's root, holding inputs (`input`, `select_static`) and the buttons that submit
them (`form_action_type: submit`); every interactive element in a form has a `name` unique
in the card. A submit button carries the same callback value as any button of ours, so its
click reads back as one (buttons.to_click), with the form's `form_value` beside it.

- **A form's fields** (`final`): a text box per text field (its default typed in), a menu
  per select (its default chosen, else its first option), then the form's actions as the
  submit buttons. Only a CardKit card (JSON 2.0) takes a form: the PATCHed fallback card
  (JSON 1.0) shows the actions as plain buttons, which answer with the fields' defaults.
- **The reason for a 👎** (`reason`): in place of the 👍/👎 row (the same element id, so a
  click's update swaps one for the other), 👍/👎 as submit buttons, an optional text box,
  and Send, which rates 👎 again with the reason.
"""

from __future__ import annotations

from typing import Any

from adapters.feishu import buttons
from adapters.feishu.buttons import Element, Where
from gateway.controls import Controls, FormChoice, button_value
from gateway.dify_events import FormField
from gateway.words import Words

FORM_NAME = "dgw_form"
REASON_FORM_NAME = "dgw_reason_form"
SEND_NAME = "dgw_reason_send"
OPTION_CHARS = 100  # what a menu shows of an option (the option's value goes back whole)
PLACEHOLDER_CHARS = 100  # a placeholder takes 100 characters


def has_fields(controls: Controls | None) -> bool:
    """Whether the answer's controls are a form with fields to show (a JSON 2.0 card)."""
    return controls is not None and controls.form is not None and bool(controls.form.fields)


def final(controls: Controls | None, where: Where, *, v2: bool) -> list[Element]:
    """What goes under a finished answer (buttons.final), a form's fields and actions in a
    form container where the card takes one."""
    form = controls.form if controls is not None else None
    if not v2 or form is None or not form.fields:
        return buttons.final(controls, where, v2=v2)
    return [human_input(form, where)]


def human_input(choice: FormChoice, where: Where) -> Element:
    fields = choice.fields[: buttons.MAX_FIELDS]
    elements: list[Element] = []
    for index, field in enumerate(fields):
        # A menu has no label of its own: a line above each field, alike for both kinds.
        elements.append({"tag": "markdown", "content": f"**{_one_line(field.label)}**"})
        elements.append(_input(field, buttons.field_name(index)))
    names = [f.name for f in fields]
    actions = buttons.form_actions(choice, where, v2=True, fields=names)
    elements.append(buttons.row(_submitting(actions, "dgw_action"), v2=True))
    return {"tag": "form", "element_id": FORM_NAME, "name": FORM_NAME, "elements": elements}


def reason(controls: Controls, where: Where, words: Words) -> Element:
    """👍/👎 (the 👎 chosen), a text box for what was wrong, and Send."""
    faces = _submitting(buttons.faces(controls, where, v2=True), "dgw_face")
    text = {
        "tag": "input",
        "name": buttons.REASON_NAME,
        "input_type": "multiline_text",
        "rows": 2,
        "max_length": buttons.MAX_FIELD_CHARS,
        "width": "fill",
        "placeholder": _plain(words.reason_label[:PLACEHOLDER_CHARS]),
    }
    value = where.value(button_value("feedback", controls.answer_id, "dislike"))
    value[buttons.REASON_KEY] = True
    send = buttons.button(words.reason_send, value, v2=True, style="primary")
    send |= {"name": SEND_NAME, "form_action_type": "submit"}
    return {
        "tag": "form",
        "element_id": buttons.FEEDBACK_ID,
        "name": REASON_FORM_NAME,
        "elements": [buttons.row(faces, v2=True), text, send],
    }


def _submitting(found: list[Element], prefix: str) -> list[Element]:
    """Buttons that submit the form they are in (a button in a form must say what it does
    there), each named."""
    return [
        {**element, "name": f"{prefix}_{i}", "form_action_type": "submit"}
        for i, element in enumerate(found)
    ]


def _input(field: FormField, name: str) -> Element:
    if field.kind == "select":
        options = list(dict.fromkeys(field.options))  # a menu's values must differ
        chosen = field.default if field.default in options else options[0]
        return {
            "tag": "select_static",
            "name": name,
            "width": "fill",
            "options": [{"text": _plain(o[:OPTION_CHARS] or " "), "value": o} for o in options],
            "initial_option": chosen,
        }
    element: Element = {
        "tag": "input",
        "name": name,
        "input_type": "multiline_text",
        "rows": 3,
        "max_length": buttons.MAX_FIELD_CHARS,
        "width": "fill",
    }
    if field.default:
        element["default_value"] = field.default[: buttons.MAX_FIELD_CHARS]
    return element


def _plain(text: str) -> dict[str, Any]:
    return {"tag": "plain_text", "content": text}


def _one_line(text: str) -> str:
    return " ".join(text.split()) or " "
