"""The buttons on the gateway's Feishu cards, and the clicks on them.

Buttons (https://open.feishu.cn/document/feishu-cards/card-json-v2-components/interactive-components/button):
in a card JSON 2.0 (the CardKit card) a button's `behaviors` holds a `callback` with our
value object; in JSON 1.0 (the PATCHed fallback card) the button's `value` is that object.
Either way a click arrives as a `card.action.trigger` callback (schema 2.0) on the bot's
event path or its long connection, verified exactly like an event, with `event.action.value`
the object again, `event.operator.open_id` who clicked and `event.context.open_message_id`
the card's message.

The value object carries what the click needs beyond the answer id: the chat type and
thread of the answer (a callback names neither), and the CardKit card id and creation time
(a click's sink updates the 👍/👎 of that card with a `sequence` above the answer's own).

A button that submits one of our card forms (form_cards.py) carries the same value; the
callback then also holds `event.action.form_value`, what was typed or chosen by each
input's `name`. It is read here as data of any shape: a form's fields (`FIELDS_KEY` in
the value names them in the order of their inputs, `field_name(i)`) become the click's
`inputs`, the reason for a 👎 (`REASON_KEY`) its `comment`; anything not a string is left
out (the field keeps its default) and every string is cut to a bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from gateway import safejson
from gateway.controls import Controls, FormChoice, button_value, read_button_value
from gateway.models import Action, ChatType, InboundMessage

CLICK_EVENT = "card.action.trigger"
STOP_ID = "dgw_stop"
FEEDBACK_ID = "dgw_feedback"
BUTTON_CHARS = 60
FIELDS_KEY = "fs"  # in a form's submit value: the names of its fields, in input order
REASON_KEY = "rs"  # in the 👎 reason form's Send value: the reason is in the form
REASON_NAME = "dgw_reason"  # the name of the reason's text input
MAX_FIELDS = 20  # fields drawn (and read back) per form
MAX_FIELD_CHARS = 1000  # a card input takes at most 1,000 characters

Element = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Where:
    """Where an answer's card is: what its buttons carry besides the click itself."""

    chat_type: str  # "p2p" or "group"
    thread: str  # the answer's thread ("" for none)
    in_thread: bool
    card_id: str = ""  # the CardKit card; "" for a PATCHed card
    created_ms: int = 0  # the card's creation, ms (the base of its sequence numbers)

    def value(self, raw: str) -> dict[str, Any]:
        value: dict[str, Any] = {"dgw": raw, "ct": self.chat_type, "th": self.thread}
        value["it"] = self.in_thread
        if self.card_id:
            value |= {"card": self.card_id, "t": self.created_ms}
        return value


def _label(text: str) -> str:
    return text if len(text) <= BUTTON_CHARS else text[: BUTTON_CHARS - 1] + "…"


def button(
    label: str, value: dict[str, Any], *, v2: bool, style: str = "default", element_id: str = ""
) -> Element:
    element: Element = {
        "tag": "button",
        "text": {"tag": "plain_text", "content": _label(label)},
        "type": style,
    }
    if v2:
        element["behaviors"] = [{"type": "callback", "value": value}]
        element["size"] = "small"
        if element_id:
            element["element_id"] = element_id
    else:
        element["value"] = value
    return element


def row(buttons: list[Element], *, v2: bool, element_id: str = "") -> Element:
    """Buttons side by side: a `column_set` of auto-width columns (2.0), an `action` (1.0)."""
    if not v2:
        return {"tag": "action", "actions": buttons}
    columns = [{"tag": "column", "width": "auto", "elements": [b]} for b in buttons]
    element: Element = {"tag": "column_set", "flex_mode": "none", "columns": columns}
    if element_id:
        element["element_id"] = element_id
    return element


def stop(label: str, controls: Controls, where: Where, *, v2: bool) -> list[Element]:
    """The Stop button of an answer being written, or nothing."""
    if not controls.stop:
        return []
    value = where.value(button_value("stop", controls.answer_id))
    return [button(label, value, v2=v2, style="danger", element_id=STOP_ID)]


def faces(controls: Controls, where: Where, *, v2: bool) -> list[Element]:
    """👍 and 👎, the choice made so far highlighted."""
    answer = controls.answer_id
    found = []
    for rating, face in (("like", "👍"), ("dislike", "👎")):
        chosen = controls.rating == rating
        # A second click on the choice withdraws it.
        value = where.value(button_value("feedback", answer, "" if chosen else rating))
        found.append(button(face, value, v2=v2, style="primary" if chosen else "default"))
    return found


def feedback(controls: Controls, where: Where, *, v2: bool) -> Element:
    return row(faces(controls, where, v2=v2), v2=v2, element_id=FEEDBACK_ID)


def field_name(index: int) -> str:
    """The `name` of a form's input for its field at `index` (a Dify field's own name may
    hold anything; a card wants a name unique in the card)."""
    return f"dgw_field_{index}"


def final(controls: Controls | None, where: Where, *, v2: bool) -> list[Element]:
    """The suggested questions, then 👍/👎, under a finished answer (or the actions of the
    form a paused run waits for: a click answers it, its fields keep their defaults or
    take the text of a reply); or nothing."""
    if controls is not None and controls.form is not None:
        return form_actions(controls.form, where, v2=v2)
    if controls is None or not controls.final:
        return []
    elements = [
        button(q, where.value(button_value("suggestion", controls.answer_id, str(i))), v2=v2)
        for i, q in enumerate(controls.suggestions)
    ]
    if controls.feedback:
        elements.append(feedback(controls, where, v2=v2))
    return elements


def form_actions(
    choice: FormChoice, where: Where, *, v2: bool, fields: Sequence[str] = ()
) -> list[Element]:
    """A form's actions; `fields`: the names of the fields its card form submits with them."""
    found = []
    for ident, title, style in choice.actions:
        value = where.value(button_value("form", choice.token, ident))
        if fields:
            value[FIELDS_KEY] = list(fields)
        kind = "primary" if style == "primary" else "default"
        found.append(button(title, value, v2=v2, style=kind))
    return found


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _typed(value: object) -> str | None:
    return value.strip()[:MAX_FIELD_CHARS] if isinstance(value, str) else None


def filled(names: object, form_value: dict[str, Any]) -> dict[str, str]:
    """A form's fields as submitted, by their Dify names (`names`, from the button's value);
    a field not submitted as a string is left out, so it keeps its default."""
    inputs: dict[str, str] = {}
    for index, name in enumerate(names[:MAX_FIELDS] if isinstance(names, list) else []):
        typed = _typed(form_value.get(field_name(index)))
        if isinstance(name, str) and name and typed is not None:
            inputs[name] = typed
    return inputs


def _with_form(action: Action, value: dict[str, Any], form_value: dict[str, Any]) -> Action:
    """The click of a form's submit button, with what the form held."""
    if action.kind == "form":
        return replace(action, inputs=filled(value.get(FIELDS_KEY), form_value))
    if action.kind == "feedback" and value.get(REASON_KEY) is True:
        reason = _typed(form_value.get(REASON_NAME)) or ""
        return replace(action, value="dislike", comment=reason)
    return action


def to_click(
    payload: dict[str, Any], *, bot: str, platform: str, received_at: float
) -> InboundMessage | str:
    """The click a `card.action.trigger` callback is, or why there is none."""
    header, event = _dict(payload.get("header")), _dict(payload.get("event"))
    event_id = safejson.text(header.get("event_id"))
    user = safejson.text(_dict(event.get("operator")).get("open_id"))
    context = _dict(event.get("context"))
    message_id = safejson.text(context.get("open_message_id"))
    chat = safejson.text(context.get("open_chat_id"))
    clicked = _dict(event.get("action"))
    value = _dict(clicked.get("value"))
    read = read_button_value(value.get("dgw"))
    if not event_id or not user or not message_id or not chat:
        return "card action without event id, user, message or chat"
    if read is None:
        return "card action on no button of ours"
    kind, answer_id, chosen = read
    thread = safejson.text(value.get("th"))
    card_id = safejson.text(value.get("card"))
    created = value.get("t")
    action = Action(kind=kind, answer_id=answer_id, value=chosen)
    action = _with_form(action, value, _dict(clicked.get("form_value")))
    return InboundMessage(
        bot=bot,
        platform=platform,
        event_id=f"event:{event_id}",
        message_id=f"{message_id}:action:{event_id}",
        chat_id=chat,
        chat_type=ChatType.DIRECT if value.get("ct") == "p2p" else ChatType.GROUP,
        user_id=user,
        text="",
        thread_id=thread or None,
        received_at=received_at,
        dedupe_keys=(f"event:{event_id}",),
        action=action,
        reply_to={
            "message_id": message_id,
            "chat_id": chat,
            "in_thread": value.get("it") is True,
            "card_id": card_id,
            "created_ms": created if isinstance(created, int) else 0,
            # The 👎's reason came (maybe empty): its sink shows the choice without the form.
            "reason_sent": value.get(REASON_KEY) is True,
        },
    )
