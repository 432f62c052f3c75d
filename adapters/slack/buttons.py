"""Block Kit for what the gateway draws in a Slack message: its text as `section` blocks,
the Stop button, 👍/👎 and the suggested questions under a finished answer, and the
actions of a form a paused run waits for.

A message with `blocks` shows them instead of its `text` (which stays the notification's
text), so a message that carries buttons carries its text in sections too. Every block of
ours has a `block_id` starting `dgw_` (`OURS`): a click's edit keeps the message's other
blocks and redraws ours. Buttons carry `gateway.controls.button_value`.
"""

from __future__ import annotations

from typing import Any

from adapters.slack.mrkdwn import to_mrkdwn
from gateway.controls import Controls, FormChoice, button_value
from gateway.text import split_text

SECTION_CHARS = 2500  # a section block takes 3,000 chars of mrkdwn; escaping adds some
BUTTON_CHARS = 75  # a button's text takes 75
OURS = "dgw_"  # the block_id prefix of the gateway's buttons
MAX_FORM_ACTIONS = 25  # an actions block takes 25 elements

Block = dict[str, Any]


def button(text: str, action_id: str, value: str) -> Block:
    label = text if len(text) <= BUTTON_CHARS else text[: BUTTON_CHARS - 1] + "…"
    return {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": label, "emoji": True},
        "value": value,
    }


def sections(text: str) -> list[Block]:
    """`text` as mrkdwn section blocks (a message with `blocks` shows them, not `text`)."""
    parts = split_text(text, SECTION_CHARS, "chars") if text.strip() else []
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": to_mrkdwn(part.render())}}
        for part in parts
        if part.render().strip()
    ]


def stop(label: str, answer_id: str) -> Block:
    """The Stop button of the answer `answer_id`, alone in its block."""
    element = button(label, "dgw_stop", button_value("stop", answer_id))
    element["style"] = "danger"
    return {"type": "actions", "block_id": "dgw_stop", "elements": [element]}


def running(text: str, status: str | None, thinking: str, stop_block: Block) -> list[Block]:
    """A message being written, as blocks: its text (or the thinking line, or the status in
    its place), the status under text that started, then the Stop button."""
    line = status if text.strip() else (status or thinking)
    shown = sections(text)
    if line:
        shown.append({"type": "section", "text": {"type": "mrkdwn", "text": f"_{line}_"}})
    return [*shown, stop_block]


def form(choice: FormChoice) -> Block:
    """A form's actions, one button each (Dify's `primary` style kept)."""
    elements = []
    for i, (ident, title, style) in enumerate(choice.actions[:MAX_FORM_ACTIONS]):
        element = button(title, f"dgw_form_{i}", button_value("form", choice.token, ident))
        if style == "primary":
            element["style"] = "primary"
        elements.append(element)
    return {"type": "actions", "block_id": "dgw_form", "elements": elements}


def final(controls: Controls | None) -> list[Block]:
    """👍/👎 and the suggested questions under the final message (or a form's actions),
    or nothing."""
    if controls is None:
        return []
    if controls.form is not None:
        return [form(controls.form)]
    if not controls.final:
        return []
    blocks: list[Block] = []
    answer = controls.answer_id
    if controls.suggestions:
        elements = [
            button(q, f"dgw_suggestion_{i}", button_value("suggestion", answer, str(i)))
            for i, q in enumerate(controls.suggestions)
        ]
        blocks.append({"type": "actions", "block_id": "dgw_suggestions", "elements": elements})
    if controls.feedback:
        elements = []
        for rating, face in (("like", "👍"), ("dislike", "👎")):
            chosen = controls.rating == rating
            # A second click on the choice withdraws it.
            value = button_value("feedback", answer, "" if chosen else rating)
            element = button(face, f"dgw_{rating}", value)
            if chosen:
                element["style"] = "primary"
            elements.append(element)
        # A new block id per choice: Slack redraws the buttons (their style).
        block_id = f"dgw_feedback_{controls.rating or 'none'}"
        blocks.append({"type": "actions", "block_id": block_id, "elements": elements})
    return blocks
