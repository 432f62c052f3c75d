"""Clicks on the buttons of the gateway's AI cards, as they come over Stream mode.

A card created with `callbackType: "STREAM"` whose template has a button with a "回传请求"
(request) action sends a CALLBACK frame on `frames.CARD_TOPIC` when someone clicks it
(open-dingtalk/dingtalk-stream-sdk-python `card_callback.py`; the examples in
open-dingtalk/dingtalk-card-examples). Its `data` is JSON:

    {"type": "actionCallback", "corpId", "userId", "userIdType", "outTrackId",
     "content": "<JSON string>", "extension": "<JSON string>", ...}

- `userId` is who clicked: a staff id, since the gateway creates cards with `userIdType` 1;
- `outTrackId` is the card (the gateway names its cards);
- `content` holds `{"cardPrivateData": {"actionIds": ["<the button's action id>"],
  "params": {"<name>": <value>, ...}}}`.

Which button: its action id, one of `ACTIONS` (or, for a template that cannot set one, a
fixed param `action` with that name). docs/dingtalk.md says how a template is built.
A form's buttons (`form1..MAX_FORM_ACTIONS`) are numbered: the card's record says which
form and which of its actions each number is.

The callback names only the card. Where the card was posted and which answer it shows, the
sink kept in the store when it created it (`CardPlace`, for as long as the answer's record),
so any instance can take the click. A click on a card the store no longer knows becomes a
click on an unknown answer, in a one-to-one chat with the person who clicked: the core
answers it with its polite "this has expired".
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from gateway import safejson
from gateway.answers import RECORD_TTL
from gateway.models import Action, ActionKind, ChatType, InboundMessage
from gateway.platform import MalformedRequest
from gateway.store import keys
from gateway.store.base import SharedState

log = logging.getLogger(__name__)

PLATFORM = "dingtalk"
DIRECT, GROUP = "1", "2"  # conversationType, as in a robot message

# A form's actions drawn as buttons; the rest are in the card's numbered list only, answered
# by a reply (Dify documents no limit; each button is two variables in the template).
MAX_FORM_ACTIONS = 5

# A button's action id -> the click it is (kind, value); a form button's value is its index.
ACTIONS: dict[str, tuple[ActionKind, str]] = {
    "stop": ("stop", ""),
    "like": ("feedback", "like"),
    "dislike": ("feedback", "dislike"),
    "suggestion1": ("suggestion", "0"),
    "suggestion2": ("suggestion", "1"),
    "suggestion3": ("suggestion", "2"),
    **{f"form{i + 1}": ("form", str(i)) for i in range(MAX_FORM_ACTIONS)},
}
ACTION_PARAM = "action"
UNKNOWN_ANSWER = "dingtalk-card:"  # + the card: an answer id no record has


@dataclass(frozen=True, slots=True)
class CardClick:
    out_track_id: str
    user_id: str
    kind: ActionKind
    value: str


@dataclass(frozen=True, slots=True)
class CardPlace:
    """Where a card with buttons is, the answer it shows, the rating it shows (a click on
    the rating shown withdraws it, as on every platform: the callback does not say which
    button looked chosen), and the form whose actions it shows (the callback names only
    the button's number)."""

    answer_id: str  # the job id of the answer
    conversation_id: str
    group: bool
    rating: str = ""  # `like`, `dislike`, or empty
    form: str = ""  # the token of the form a paused run waits for, or empty
    actions: tuple[tuple[str, str], ...] = ()  # its buttons' (action id, title), in order

    def encode(self) -> str:
        place: dict[str, object] = {"answer": self.answer_id, "conversation": self.conversation_id}
        place |= {"group": self.group, "rating": self.rating}
        return json.dumps(place | {"form": self.form, "actions": [list(a) for a in self.actions]})

    @classmethod
    def decode(cls, raw: str) -> CardPlace | None:
        try:
            data = safejson.loads_object(raw)
        except safejson.JSONError:
            return None
        answer, conversation = data.get("answer"), data.get("conversation")
        if not isinstance(answer, str) or not answer or not isinstance(conversation, str):
            return None
        rating = data.get("rating")
        rating = rating if rating in ("like", "dislike") else ""
        form, actions = data.get("form"), _actions(data.get("actions"))
        if not isinstance(form, str) or not form or not actions:
            form, actions = "", ()  # no form's buttons to answer (a click says it expired)
        group = data.get("group") is True
        return cls(answer, conversation, group, rating, form, actions)


def _actions(raw: object) -> tuple[tuple[str, str], ...]:
    """A record's form actions, or none at all when any is unreadable."""
    found: list[tuple[str, str]] = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, list) or len(item) != 2:
            return ()
        ident, title = item
        if not isinstance(ident, str) or not ident or not isinstance(title, str):
            return ()
        found.append((ident, title))
    return tuple(found)


class CardPlaces:
    """The `CardPlace` of each card with buttons, in the store (calls may raise
    `StoreUnavailable`)."""

    def __init__(self, store: SharedState, bot: str) -> None:
        self._store = store
        self._bot = bot

    async def keep(self, out_track_id: str, place: CardPlace) -> None:
        key = keys.dingtalk_card(self._bot, out_track_id)
        await self._store.set(key, place.encode(), RECORD_TTL)

    async def get(self, out_track_id: str) -> CardPlace | None:
        raw = await self._store.get(keys.dingtalk_card(self._bot, out_track_id))
        place = None if raw is None else CardPlace.decode(raw)
        if raw is not None and place is None:
            log.warning("bot %s: an unreadable card record was ignored", self._bot)
        return place


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _action(private: dict[str, Any]) -> tuple[ActionKind, str] | None:
    ids = private.get("actionIds")
    for action_id in ids if isinstance(ids, list) else []:
        if isinstance(action_id, str) and action_id in ACTIONS:
            return ACTIONS[action_id]
    named = _dict(private.get("params")).get(ACTION_PARAM)
    return ACTIONS.get(named) if isinstance(named, str) else None


def read_click(payload: object) -> CardClick | str:
    """The click a card callback's `data` is, or why it is none of ours (a str). Raises
    `MalformedRequest` when it is not a card callback at all (no card, no user, `content`
    that is not a JSON object)."""
    if not isinstance(payload, dict):
        raise MalformedRequest("card callback is not a JSON object")
    track = safejson.text(payload.get("outTrackId"))
    user = safejson.text(payload.get("userId"))
    if not track or not user:
        raise MalformedRequest("card callback without outTrackId or userId")
    raw = payload.get("content")
    try:
        content = safejson.loads_object(raw) if isinstance(raw, str) else raw
    except safejson.JSONError as exc:
        raise MalformedRequest(f"card callback content: {exc}") from None
    if not isinstance(content, dict):
        raise MalformedRequest("card callback content is not a JSON object")
    action = _action(_dict(content.get("cardPrivateData")))
    if action is None:
        return "card callback from no button of ours"
    return CardClick(track, user, action[0], action[1])


def _form_action(click: CardClick, place: CardPlace | None) -> tuple[str, str, str]:
    """(form token, action id, its title) a click on a form's button picks. A card that
    shows no such action names a form no one has: the core says it expired."""
    index = int(click.value) if click.value.isascii() and click.value.isdigit() else -1
    if place is not None and place.form and 0 <= index < len(place.actions):
        ident, title = place.actions[index]
        return place.form, ident, title
    # A value all the same: a form click without one would read as a reply in words.
    return UNKNOWN_ANSWER + click.out_track_id, click.value or "?", ""


def click_message(
    bot: str, click: CardClick, place: CardPlace | None, frame_id: str, received_at: float
) -> InboundMessage:
    """The click as a message from whoever clicked, where the card is (`place`; None: a
    card the store no longer knows, answered one-to-one)."""
    value, chosen = click.value, ""
    if place is None:
        answer, conversation, group = UNKNOWN_ANSWER + click.out_track_id, "", False
    else:
        answer, conversation, group = place.answer_id, place.conversation_id, place.group
        if click.kind == "feedback" and value == place.rating:
            value = ""  # the choice shown, clicked again: withdrawn
    if click.kind == "form":
        answer, value, chosen = _form_action(click, place)
    return InboundMessage(
        bot=bot,
        platform=PLATFORM,
        event_id=f"frame:{frame_id}",
        message_id=f"{click.out_track_id}:click:{frame_id}",
        chat_id=conversation or f"card:{click.out_track_id}",
        chat_type=ChatType.GROUP if group else ChatType.DIRECT,
        user_id=click.user_id,
        text="",
        # The frame's messageId: a redelivered frame is the same click.
        dedupe_keys=(f"frame:{frame_id}",),
        action=Action(kind=click.kind, answer_id=answer, value=value),
        reply_to={
            "session_webhook": "",
            "session_webhook_expires_ms": 0,
            "conversation_id": conversation,
            "conversation_type": GROUP if group else DIRECT,
            "sender_staff_id": click.user_id,
            "sender_nick": "",
            "robot_code": "",
            "card": click.out_track_id,  # the card clicked, for the click's sink
            # A form's action: the click's sink shows it taken once Dify has the answer.
            "chosen": chosen,
        },
        received_at=received_at,
    )
