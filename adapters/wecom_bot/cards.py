"""Template cards of buttons for the WeCom AI bot: the app's suggested questions, and a
paused form's actions, sent after the answer; and what a card shows once clicked.

Facts, from the official SDK (WecomTeam/aibot-node-sdk `src/types/api.ts`, `src/client.ts`)
and doc path/101031, path/101027:

- A card is `{"card_type":"button_interaction","main_title":{"title"},"sub_title_text"?,
  "button_list":[{"text","style","key"}],"task_id"}`: at most 6 buttons, each `key` at
  most 1024 bytes and unique in the card; WeCom suggests a title of at most 26 characters
  and button texts of at most 10; `style` 1 to 4 (1 by default). `task_id` is unique per
  bot: letters, digits and `_-@`, at most 128 bytes.
- A click is a `template_card_event` callback with the button's `event_key` and the card's
  `task_id` (convert.py reads it).
- The card is updated by answering that callback with `{"response_type":
  "update_template_card","template_card":{…the same task_id…}}`, within 5 s, once. A
  button has no `disable`: the updated card keeps the buttons, the one clicked marked, and
  gives each a key no click reads (`DONE`), so a second click does nothing.

A button carries `gateway.controls.button_value(...)` as its key (about 60 bytes: the
answer's job id or the form's token), so a click names what it answers by itself. What the
card showed is kept in the store under its task id (`Card`, as long as an answer's
record), so the instance that takes the click can redraw it.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway import safejson
from gateway.controls import MAX_SUGGESTIONS, FormChoice, button_value
from gateway.words import Words

log = logging.getLogger(__name__)

CARD_TYPE = "button_interaction"
MAX_BUTTONS = 6
MAX_KEY_BYTES = 1024
MAX_TITLE_CHARS = 26
# A longer label is cut (WeCom suggests 10 characters: a question rarely fits), and the
# whole choices are then listed in the card's text.
MAX_LABEL_CHARS = 16
PRIMARY, PLAIN = 1, 2  # button styles: 1 is WeCom's default look
DONE = "dgw1-done-"  # + the button's place: the keys of a card already clicked


@dataclass(frozen=True, slots=True)
class Button:
    label: str  # what the button shows
    text: str  # the whole choice: a suggested question, a form action's title
    key: str
    primary: bool = False


@dataclass(frozen=True, slots=True)
class Card:
    """One card of buttons the gateway sent: a form's actions (`form`) or suggested
    questions. `asker`: for a form, who asked (only their click redraws the card: someone
    else's may be refused by the core)."""

    task_id: str
    title: str
    buttons: tuple[Button, ...]
    asker: str = ""
    form: bool = False

    def template_card(self) -> dict[str, Any]:
        card: dict[str, Any] = {
            "card_type": CARD_TYPE,
            "main_title": {"title": self.title},
            "button_list": [
                {"text": b.label, "style": PRIMARY if b.primary else PLAIN, "key": b.key}
                for b in self.buttons
            ],
            "task_id": self.task_id,
        }
        if any(b.label != b.text for b in self.buttons):
            card["sub_title_text"] = "\n".join(
                f"{n}. {b.text}" for n, b in enumerate(self.buttons, 1)
            )
        return card

    def chosen(self, key: str, words: Words) -> dict[str, Any] | None:
        """The card after a click on the button `key` (None: no button of this card): the
        same buttons, the one clicked marked, none of them answering a click any more."""
        picked = next((b for b in self.buttons if b.key == key), None)
        if picked is None:
            return None
        card = self.template_card()
        said = words.form_chosen if self.form else words.card_chosen
        card["sub_title_text"] = said(picked.text)
        card["button_list"] = [
            {
                "text": f"✓ {b.label}" if b is picked else b.label,
                "style": PRIMARY if b is picked else PLAIN,
                "key": f"{DONE}{n}",
            }
            for n, b in enumerate(self.buttons)
        ]
        return card

    def encode(self) -> str:
        buttons = [[b.label, b.text, b.key, b.primary] for b in self.buttons]
        card = {"task_id": self.task_id, "title": self.title, "asker": self.asker}
        return json.dumps(card | {"form": self.form, "buttons": buttons}, ensure_ascii=False)

    @classmethod
    def decode(cls, raw: str) -> Card | None:
        try:
            data = safejson.loads_object(raw)
            buttons = tuple(
                Button(str(label), str(text), str(key), bool(primary))
                for label, text, key, primary in data["buttons"]
            )
            ident, title, asker = str(data["task_id"]), str(data["title"]), str(data["asker"])
            return cls(ident, title, buttons, asker, data.get("form") is True)
        except (safejson.JSONError, KeyError, TypeError, ValueError):
            log.warning("an unreadable WeCom AI-bot card record was ignored")
            return None


def new_task_id() -> str:
    """A task id no other card of the bot has (random: a card sent again after a crash
    must not reuse one)."""
    return f"dgw-{secrets.token_hex(12)}"


def suggestions_card(answer_id: str, questions: Sequence[str], words: Words) -> Card | None:
    """The suggested questions as buttons (None: no question fits a button key)."""
    buttons = [
        Button(_label(q), q, button_value("suggestion", answer_id, str(n)))
        for n, q in enumerate(questions[:MAX_SUGGESTIONS])
    ]
    return _card(words.suggestions_title, buttons)


def form_card(choice: FormChoice, asker: str, words: Words) -> Card | None:
    """A paused form's actions as buttons (its fields keep their defaults)."""
    buttons = [
        Button(_label(title), title, button_value("form", choice.token, ident), style == "primary")
        for ident, title, style in choice.actions
    ]
    return _card(words.form_choice_title, buttons, asker, form=True)


def _card(title: str, buttons: list[Button], asker: str = "", *, form: bool = False) -> Card | None:
    fitting = [b for b in buttons if len(b.key.encode()) <= MAX_KEY_BYTES][:MAX_BUTTONS]
    if len(fitting) < len(buttons):
        left = len(buttons) - len(fitting)
        log.warning("%d buttons left off a card: too many, or a key too long", left)
    if not fitting:
        return None
    return Card(new_task_id(), title[:MAX_TITLE_CHARS], tuple(fitting), asker, form)


def _label(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"
