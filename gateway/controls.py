"""What the gateway offers with an answer besides its text, and how a click names it.

The core hands a sink that can show buttons (`gateway.platform.ShowsControls`) `Controls`;
the sink draws them with its platform's buttons, and each click comes back through the
adapter as an `InboundMessage` with an `Action` (gateway/models.py). A button carries
`button_value(...)`, which the adapter reads back with `read_button_value` (total: any
value gives a click or None, never an exception).

- `stop`: a Stop button while the answer is written.
- `feedback`: 👍 and 👎 under the final message; `rating` the choice made so far, and
  `ask_reason` a question why, after a 👎 (where the platform makes that easy: a Slack
  modal, a Feishu card's form).
- `suggestions`: up to three follow-up questions the app suggests.
- `form`: the actions of a form a paused run waits for (gateway/forms.py), under the
  answer that shows it, instead of 👍/👎 (the answer is not done). A click on one answers
  the form; a form with a field to fill asks for it first where the sink can
  (`gateway.platform.AsksForm`: a Slack modal), or shows its fields beside the buttons
  (a Feishu card's form), whose click then brings them (`Action.inputs`).

A new kind of control (a form's actions, say) is a new field here, a new `ActionKind`, and
a new branch in gateway/clicks.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from gateway.dify_events import FormField
from gateway.models import ActionKind

Rating = Literal["like", "dislike"]
MAX_SUGGESTIONS = 3
_PREFIX = "dgw1"
_KINDS: frozenset[str] = frozenset(get_args(ActionKind))


@dataclass(frozen=True, slots=True)
class FormChoice:
    """A form's actions as buttons: (id, title, style) each; `token` names the form.
    `fields`: what a sink that draws inputs beside the buttons shows (a Feishu card's form
    container); a sink that asks for them after the click (`AsksForm`) ignores them."""

    token: str
    actions: tuple[tuple[str, str, str], ...]
    fields: tuple[FormField, ...] = ()


@dataclass(frozen=True, slots=True)
class FormPrompt:
    """What a sink asks before a form is answered (`AsksForm`): the form's fields, for the
    action clicked."""

    token: str
    action_id: str
    action_title: str
    title: str  # the form's title
    fields: tuple[FormField, ...]


@dataclass(frozen=True, slots=True)
class Controls:
    answer_id: str  # the job id of the answer they belong to
    stop: bool = False
    feedback: bool = False
    rating: Rating | None = None
    ask_reason: bool = False
    suggestions: tuple[str, ...] = ()
    form: FormChoice | None = None

    @property
    def final(self) -> bool:
        """Anything to show under a finished answer."""
        return self.feedback or bool(self.suggestions)


def button_value(kind: ActionKind, answer_id: str, value: str = "") -> str:
    """What a button carries: the kind of click, its value, and the answer it belongs to
    (last, so an id holding `|` reads back whole)."""
    return f"{_PREFIX}|{kind}|{value}|{answer_id}"


def read_button_value(raw: object) -> tuple[ActionKind, str, str] | None:
    """(kind, answer id, value) of a value `button_value` made, else None."""
    if not isinstance(raw, str):
        return None
    parts = raw.split("|", 3)
    if len(parts) != 4 or parts[0] != _PREFIX or parts[1] not in _KINDS or not parts[3]:
        return None
    kind: ActionKind = parts[1]  # type: ignore[assignment]  # checked against _KINDS
    return kind, parts[3], parts[2]
