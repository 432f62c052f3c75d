"""The cards the Feishu sink sends.

- The streaming card is a CardKit entity in card JSON 2.0
  (https://open.feishu.cn/document/feishu-cards/card-json-v2-structure): `streaming_mode`
  on, one `markdown` element with an `element_id` that the text is PUT into, and a chat-list
  `summary`. CardKit needs JSON 2.0 and the `cardkit:card:write` scope.
- The fallback card, for when CardKit fails, is a plain interactive card in JSON 1.0 (every
  client renders it; no CardKit scope) with `update_multi: true`, which
  `PATCH /im/v1/messages/:id` requires before and after each update.
"""

from __future__ import annotations

import re
from typing import Any

ELEMENT_ID = "answer"  # letters, digits and _, starting with a letter, at most 20 chars
REASONING_ID = "reasoning"
SUMMARY_CHARS = 60
# JSON escapes a control character as six bytes (\u0001), seven in the PATCH's doubly
# escaped body, and none of them render: they are dropped (tab and newline stay).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_MARKUP = re.compile(r"\]\([^)]*\)|!\[|<[^>]+>|[*_`~#>|\[\]]")


def clean(text: str) -> str:
    return _CONTROL.sub("", text)


def with_status(text: str, status: str | None, thinking: str) -> str:
    """What the card shows while the answer streams: the text, with the status in grey
    under it; without text, the status (else "Thinking…") in italics."""
    if not text.strip():
        return f"_{status or thinking}_"
    return f"{text}\n\n<font color='grey'>{status}</font>" if status else text


def summary(text: str) -> str:
    """A one-line plain preview for the chat list."""
    plain = " ".join(_MARKUP.sub("", text).split())
    return plain if len(plain) <= SUMMARY_CHARS else plain[: SUMMARY_CHARS - 1] + "…"


def streaming_card(
    text: str, preview: str, buttons: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The card being written: the text's element, then `buttons` (a Stop)."""
    markdown = {"tag": "markdown", "element_id": ELEMENT_ID, "content": text}
    return {
        "schema": "2.0",
        "config": {
            "streaming_mode": True,
            "update_multi": True,
            "summary": {"content": preview},
        },
        "body": {"elements": [markdown, *(buttons or [])]},
    }


def closing_settings(text: str) -> dict[str, Any]:
    """The settings PATCH that ends streaming (doc form: `config` and `card_link` keys)."""
    return {"config": {"streaming_mode": False, "summary": {"content": summary(text)}}}


def final_card(
    text: str,
    images: list[str] | None = None,
    panel: dict[str, Any] | None = None,
    buttons: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A finished JSON 2.0 card: the full replacement when the element PUT cannot be used
    (or buttons change), with the folded reasoning above the text, the app's images under
    it, and `buttons` (👍/👎, suggested questions) last."""
    card = streaming_card(text, summary(text))
    card["config"]["streaming_mode"] = False
    elements = card["body"]["elements"]
    card["body"]["elements"] = [
        *([panel] if panel else []),
        *elements,
        *image_elements(images),
        *(buttons or []),
    ]
    return card


def image_elements(image_keys: list[str] | None) -> list[dict[str, Any]]:
    """One `img` element per uploaded image (the same in card JSON 1.0 and 2.0)."""
    return [
        {"tag": "img", "img_key": key, "alt": {"tag": "plain_text", "content": ""}}
        for key in image_keys or []
    ]


def reasoning_panel(title: str, text: str) -> dict[str, Any]:
    """The model's reasoning in a collapsed panel (card JSON 2.0 `collapsible_panel`)."""
    return {
        "tag": "collapsible_panel",
        "element_id": REASONING_ID,
        "expanded": False,
        "header": {"title": {"tag": "markdown", "content": f"**{title}**"}},
        "border": {"color": "grey", "corner_radius": "5px"},
        "elements": [{"tag": "markdown", "content": clean(text)}],
    }


def card_reference(card_id: str) -> dict[str, Any]:
    """The `interactive` message content that sends a CardKit entity."""
    return {"type": "card", "data": {"card_id": card_id}}


def plain_card(
    text: str,
    images: list[str] | None = None,
    panel: dict[str, Any] | None = None,
    buttons: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The fallback: a JSON 1.0 interactive card, updatable with the message PATCH, with
    the folded reasoning above the text. JSON 1.0 has the collapsible panel too (clients
    7.9 and later; older ones show an "upgrade" placeholder in its place) but no
    `element_id`, so that is left out."""
    folded = [{k: v for k, v in panel.items() if k != "element_id"}] if panel else []
    return {
        "config": {"wide_screen_mode": True, "update_multi": True},
        "elements": [
            *folded,
            {"tag": "markdown", "content": text},
            *image_elements(images),
            *(buttons or []),
        ],
    }


def failure_text(text: str) -> str:
    """The answer so far, then the error set apart as a grey note. The core passes the error
    as the last paragraph of `text`."""
    answer, _, notice = text.rstrip().rpartition("\n\n")
    note = f"<font color='grey'>⚠️ {notice.strip()}</font>"
    return f"{answer.rstrip()}\n\n---\n{note}" if answer.strip() else note
