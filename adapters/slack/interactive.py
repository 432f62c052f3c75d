"""Slack interactivity payloads (a click on a button the gateway drew) -> a click message.

Over HTTP they come form-encoded, one JSON `payload` field, signed exactly like events
(https://docs.slack.dev/interactivity/handling-user-interaction); over Socket Mode as
`interactive` envelopes. A `block_actions` payload names who clicked (`user.id`), where
(`container.channel_id`, `container.message_ts`, `message.thread_ts`) and what
(`actions[].value`: `gateway.controls.button_value`). A `view_submission` of the gateway's
own modal is a click too: the reason for a 👎 (`REASON_VIEW`: the rating again, with the
reason), a form's field (`FORM_VIEW`: the form's answer, with the text). Anything else
(another view, a shortcut, a button of another app's) is ignored.
"""

from __future__ import annotations

from typing import Any

from adapters.slack.modals import FIELD_ACTION, FORM_VIEW, block_id
from gateway import safejson
from gateway.controls import read_button_value
from gateway.models import Action, ChatType, InboundMessage
from gateway.platform import MalformedRequest

MAX_COMMENT = 1000
MAX_FIELD = 3000
REASON_VIEW = "dgw_reason"  # the callback_id of the modal that asks why a 👎
REASON_BLOCK = "dgw_reason"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def decode_form_payload(form: dict[str, Any]) -> dict[str, Any]:
    """The JSON object in an interactivity request's `payload` field."""
    try:
        return safejson.loads_object(form["payload"])
    except safejson.JSONError as exc:
        raise MalformedRequest(f"interactivity payload is not a JSON object ({exc})") from None


def to_click(payload: dict[str, Any], *, bot: str, received_at: float) -> InboundMessage | str:
    """The click to handle, or why there is none."""
    if payload.get("type") == "view_submission":
        if _dict(payload.get("view")).get("callback_id") == FORM_VIEW:
            return _form(payload, bot=bot, received_at=received_at)
        return _reason(payload, bot=bot, received_at=received_at)
    if payload.get("type") != "block_actions":
        return f"interactivity {_str(payload.get('type')) or 'unknown'}"
    user = _str(_dict(payload.get("user")).get("id"))
    container = _dict(payload.get("container"))
    message = _dict(payload.get("message"))
    channel = _str(container.get("channel_id")) or _str(_dict(payload.get("channel")).get("id"))
    ts = _str(container.get("message_ts")) or _str(message.get("ts"))
    if not user or not channel or not ts:
        return "block_actions without user, channel or message"
    actions = payload.get("actions")
    for item in actions if isinstance(actions, list) else []:
        item = _dict(item)
        read = read_button_value(item.get("value"))
        if read is not None:
            break
    else:
        return "block_actions of no button of ours"
    kind, answer_id, value = read
    action_ts = _str(item.get("action_ts")) or str(received_at)
    team = _str(_dict(payload.get("team")).get("id"))
    blocks = message.get("blocks")
    return InboundMessage(
        bot=bot,
        platform="slack",
        event_id=f"action:{channel}:{ts}:{action_ts}",
        message_id=f"{channel}:{ts}:{action_ts}",
        chat_id=channel,
        chat_type=ChatType.DIRECT if channel.startswith("D") else ChatType.GROUP,
        user_id=user,
        text="",
        thread_id=_str(message.get("thread_ts")) or ts,
        # A click is one per (message, action_ts, user): a replayed request is a duplicate.
        dedupe_keys=(f"action:{channel}:{ts}:{action_ts}:{user}",),
        # The sink of a click edits the message clicked (`ShowsControls.show`): its blocks
        # as Slack sent them, and its text for notifications.
        reply_to={
            "team_id": team,
            "message_ts": ts,
            "blocks": blocks if isinstance(blocks, list) else [],
            "text": _str(message.get("text")),
            "trigger_id": _str(payload.get("trigger_id")),  # opens a modal, for 3 s
        },
        action=Action(kind=kind, answer_id=answer_id, value=value[:MAX_COMMENT]),
        received_at=received_at,
    )


def _reason(payload: dict[str, Any], *, bot: str, received_at: float) -> InboundMessage | str:
    """The reason a user gave for a 👎, in the modal the gateway opened (its private metadata
    names the answer and where it is)."""
    view = _dict(payload.get("view"))
    user = _str(_dict(payload.get("user")).get("id"))
    if view.get("callback_id") != REASON_VIEW or not user:
        return "view_submission of no view of ours"
    try:
        where = safejson.loads(_str(view.get("private_metadata")) or "{}")
    except safejson.JSONError:
        return "view_submission with unreadable metadata"
    where = _dict(where)
    answer, channel = _str(where.get("answer")), _str(where.get("channel"))
    if not answer or not channel:
        return "view_submission without its answer"
    values = _dict(_dict(_dict(view.get("state")).get("values")).get(REASON_BLOCK))
    reason = _str(_dict(values.get(REASON_BLOCK)).get("value")).strip()
    if not reason:
        return "a 👎 without a reason"
    action = Action(
        kind="feedback", answer_id=answer, value="dislike", comment=reason[:MAX_COMMENT]
    )
    return _submitted(payload, bot=bot, user=user, where=where, action=action, at=received_at)


def _form(payload: dict[str, Any], *, bot: str, received_at: float) -> InboundMessage | str:
    """A form's fields, filled in the modal the gateway opened: the form's answer (its
    private metadata names the form, the action clicked, where, and the fields in order).
    A field left empty is sent empty: the modal showed its default."""
    view = _dict(payload.get("view"))
    user = _str(_dict(payload.get("user")).get("id"))
    try:
        where = _dict(safejson.loads(_str(view.get("private_metadata")) or "{}"))
    except safejson.JSONError:
        return "view_submission with unreadable metadata"
    token, action, channel = (_str(where.get(k)) for k in ("token", "action", "channel"))
    names = where.get("fields")
    names = [n for n in names if isinstance(n, str) and n] if isinstance(names, list) else []
    if not (user and token and action and channel and names):
        return "view_submission of a form without its answer"
    values = _dict(_dict(view.get("state")).get("values"))
    filled = {name: _field_value(values, i) for i, name in enumerate(names)}
    clicked = Action(kind="form", answer_id=token, value=action, inputs=filled)
    return _submitted(payload, bot=bot, user=user, where=where, action=clicked, at=received_at)


def _submitted(
    payload: dict[str, Any],
    *,
    bot: str,
    user: str,
    where: dict[str, Any],
    action: Action,
    at: float,
) -> InboundMessage:
    """A modal's submission as a click in the conversation its metadata names (`where`:
    `channel`, `thread_ts`); deduped per view and user (Slack may deliver it again)."""
    channel = _str(where.get("channel"))
    view_id = _str(_dict(payload.get("view")).get("id")) or str(at)
    return InboundMessage(
        bot=bot,
        platform="slack",
        event_id=f"view:{view_id}",
        message_id=f"{channel}:view:{view_id}",
        chat_id=channel,
        chat_type=ChatType.DIRECT if channel.startswith("D") else ChatType.GROUP,
        user_id=user,
        text="",
        thread_id=_str(where.get("thread_ts")) or None,
        dedupe_keys=(f"view:{view_id}:{user}",),
        reply_to={"team_id": _str(_dict(payload.get("team")).get("id"))},
        action=action,
        received_at=at,
    )


def _field_value(values: dict[str, Any], index: int) -> str:
    """A field's value in a submitted modal: a text input's text, a menu's option."""
    state = _dict(_dict(values.get(block_id(index))).get(FIELD_ACTION))
    chosen = _dict(state.get("selected_option")).get("value")
    return (_str(chosen) or _str(state.get("value"))).strip()[:MAX_FIELD]
