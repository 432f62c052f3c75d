"""Human-input forms (Dify 1.13+) as the chat shows them: read from the stream's
`human_input_required` event, or from `GET /form/human_input/{token}` when the stream only
named the form (`workflow_paused`).

Both carry `form_content` (Markdown, where `{{#$output.<name>#}}` marks where a field goes:
the chat shows fields apart, so the marks are taken out), `inputs` (`{type: paragraph |
select | file | file-list, output_variable_name, default: {type, value} | null, …}`), the
actions (`actions` in the event, `user_actions` from the GET: `{id, title, button_style}`),
`resolved_default_values` (strings by field name) and `expiration_time`.

Everything here is total: odd or missing fields give an emptier form, never an exception.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from gateway.dify_events import FormAction, FormField, HumanInput

_FIELD_MARK = re.compile(r"\{\{#\$output\.[^#}]*#\}\}")
_BLANK_LINES = re.compile(r"\n{3,}")
MAX_OPTIONS = 25  # more than any chat's select takes (Slack: 100, Feishu: 50)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def read_form(data: dict[str, Any], token: str | None) -> HumanInput:
    """A form from an event's `data` or the form GET's body."""
    raw_defaults = _dict(data.get("resolved_default_values")).items()
    defaults = {str(k): v for k, v in raw_defaults if isinstance(v, str)}
    fields: list[FormField] = []
    other = 0
    raw_inputs = data.get("inputs")
    for item in raw_inputs if isinstance(raw_inputs, list) else []:
        field = _field(_dict(item), defaults)
        if field is None:
            other += 1
        else:
            fields.append(field)
    raw_actions = data.get("actions", data.get("user_actions"))
    actions = tuple(
        FormAction(a["id"], _text(a.get("title")) or a["id"], _text(a.get("button_style")))
        for a in (raw_actions if isinstance(raw_actions, list) else [])
        if isinstance(a, dict) and isinstance(a.get("id"), str) and a["id"]
    )
    content = _FIELD_MARK.sub("", _text(data.get("form_content")))
    return HumanInput(
        token=token,
        title=_text(data.get("node_title")),
        content=_BLANK_LINES.sub("\n\n", content).strip(),
        fields=tuple(fields),
        actions=actions,
        expires_at=_when(data.get("expiration_time")),
        other_fields=other,
    )


def _field(item: dict[str, Any], defaults: dict[str, str]) -> FormField | None:
    """A field the chat can fill in, or None (files, unknown types, no name)."""
    name = _text(item.get("output_variable_name")) or _text(item.get("variable"))
    kind = _text(item.get("type"))
    if not name or kind not in ("paragraph", "text-input", "select"):
        return None
    label = _text(item.get("label")) or _text(item.get("title")) or name
    default = defaults.get(name, "")
    constant = _dict(item.get("default"))
    if not default and constant.get("type") == "constant":
        default = _text(constant.get("value"))
    if kind != "select":
        return FormField(name, "paragraph", label, default)
    raw_options = item.get("options")
    options = [_option(o) for o in (raw_options if isinstance(raw_options, list) else [])]
    options = options[:MAX_OPTIONS]
    chosen = tuple(o for o in options if o)
    return FormField(name, "select", label, default, chosen) if chosen else None


def _option(value: Any) -> str:
    if isinstance(value, str):
        return value
    option = _dict(value)
    return _text(option.get("value")) or _text(option.get("label"))


def _when(value: Any) -> float | None:
    """`expiration_time`: seconds since the epoch, or an ISO 8601 time."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        return float(value) / 1000 if value > 1e11 else float(value)  # milliseconds too
    if isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment.timestamp() if moment.tzinfo else moment.replace(tzinfo=UTC).timestamp()
    return None


def paused_tokens(data: dict[str, Any]) -> list[str]:
    """The form tokens a `workflow_paused` event's `reasons` name, in order."""
    tokens: list[str] = []
    reasons = data.get("reasons")
    for item in reasons if isinstance(reasons, list) else []:
        reason = _dict(item)
        kind = _text(reason.get("TYPE")) or _text(reason.get("type"))
        token = _text(reason.get("form_token"))
        if kind == "human_input_required" and token and token not in tokens:
            tokens.append(token)
    return tokens
