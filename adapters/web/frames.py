"""The web chat's frames: JSON text, one object per WebSocket message (docs/web.md).

Client to server: `{"type": "message", "id": …, "text": …}`, optionally with `files` (the
extension: `[{"name": …, "type": <MIME type>, "data": <base64>}]`, the whole frame within
`server.max_body_bytes`); clicks: `feedback`, `suggestion` and `stop`, each with its own `id`
and the `reply_to` of the answer clicked. Other types are ignored, so a newer page works
with an older gateway. Server to client: `update`, `final` (with the answer's `feedback` and
`suggestions` when it has them), `controls` (after a rating) and `error`, each naming the
message it answers (`reply_to`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gateway import safejson

MAX_FILES = 5
# Unique per user, chosen by the page. No `:`, so store keys holding it read back clearly.
MESSAGE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")

# Close codes (RFC 6455 section 7.4.1) for frames that are not the protocol at all.
UNSUPPORTED_DATA = 1003  # a binary frame
INVALID_PAYLOAD = 1007  # not a JSON object

Frame = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ClientFile:
    name: str
    mime_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class ClientMessage:
    id: str
    text: str
    files: tuple[ClientFile, ...] = ()


@dataclass(frozen=True, slots=True)
class ClientClick:
    """A click on an answer (`reply_to`; empty for a `stop` of the answer being written):
    `value` is the rating (`like`, `dislike`, empty to withdraw it), or the position of the
    suggested question."""

    id: str
    kind: Literal["feedback", "suggestion", "stop"]
    reply_to: str
    value: str = ""


class BadFrame(Exception):
    """A frame the gateway cannot take: answer it with an error frame (`reply_to`, maybe
    None), or, when `close_code` is set, close the socket with it."""

    def __init__(self, reason: str, *, reply_to: str | None = None, close_code: int = 0):
        super().__init__(reason)
        self.reply_to = reply_to
        self.close_code = close_code


def parse_client_frame(raw: str) -> ClientMessage | ClientClick | None:
    """A `message` frame or a click, or None for a type this gateway does not know."""
    # safejson: a lone surrogate in `text` would pass here and break the job's JSON in
    # the inbox, and deep nesting would recurse in whatever reads the value next.
    try:
        frame = safejson.loads_object(raw)
    except safejson.JSONError:
        raise BadFrame("not a JSON object", close_code=INVALID_PAYLOAD) from None
    kind = frame.get("type")
    if kind in ("feedback", "suggestion", "stop"):
        return _click(frame, kind)
    if kind != "message":
        return None
    message_id = frame.get("id")
    if not isinstance(message_id, str) or not MESSAGE_ID.fullmatch(message_id):
        raise BadFrame("a message needs an id of 1 to 64 of A-Z a-z 0-9 _ . -")
    text = frame.get("text", "")
    if not isinstance(text, str):
        raise BadFrame("text is not a string", reply_to=message_id)
    files = _files(frame.get("files"), message_id)
    if not text.strip() and not files:
        raise BadFrame("a message without text or files", reply_to=message_id)
    return ClientMessage(message_id, text, files)


_RATINGS = {"like": "like", "dislike": "dislike", None: ""}


def _click(frame: dict[str, Any], kind: Literal["feedback", "suggestion", "stop"]) -> ClientClick:
    click_id = frame.get("id")
    if not isinstance(click_id, str) or not MESSAGE_ID.fullmatch(click_id):
        raise BadFrame("a click needs an id of 1 to 64 of A-Z a-z 0-9 _ . -")
    reply_to = frame.get("reply_to", "")
    if reply_to is None and kind == "stop":
        reply_to = ""
    if not isinstance(reply_to, str) or not (
        MESSAGE_ID.fullmatch(reply_to) or (kind == "stop" and not reply_to)
    ):
        raise BadFrame("a click names the answer clicked in reply_to", reply_to=click_id)
    value = ""
    if kind == "feedback":
        rating = frame.get("rating")
        if not isinstance(rating, str | None) or rating not in _RATINGS:
            raise BadFrame("rating is like, dislike or null", reply_to=click_id)
        value = _RATINGS[rating]
    elif kind == "suggestion":
        index = frame.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 10:
            raise BadFrame("index is the suggestion's position", reply_to=click_id)
        value = str(index)
    return ClientClick(click_id, kind, reply_to, value)


def _files(value: object, reply_to: str) -> tuple[ClientFile, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_FILES:
        raise BadFrame(f"files must be a list of at most {MAX_FILES}", reply_to=reply_to)
    files = []
    for item in value:
        if not isinstance(item, dict):
            raise BadFrame("a file is not an object", reply_to=reply_to)
        name, mime_type, data = item.get("name"), item.get("type", ""), item.get("data")
        if not (isinstance(name, str) and isinstance(mime_type, str) and isinstance(data, str)):
            raise BadFrame("a file needs a name, a type and data", reply_to=reply_to)
        try:
            content = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise BadFrame("file data is not base64", reply_to=reply_to) from None
        if not content:
            raise BadFrame("an empty file", reply_to=reply_to)
        files.append(ClientFile(name[:200], mime_type[:100], content))
    return tuple(files)


# --- server to client --------------------------------------------------------------------


def update(reply_to: str, text: str, status: str = "") -> Frame:
    """The answer so far (the whole text, not a delta) and a status line (or empty)."""
    return {"type": "update", "reply_to": reply_to, "text": text, "status": status}


def final(
    reply_to: str, text: str, controls: Frame | None = None, sources: Sequence[str] = ()
) -> Frame:
    """The whole answer; `controls` (see `controls`) when it has 👍/👎 or suggestions, and
    `sources` (the documents it drew on, numbered from 1 as in the text's footer) when it
    has them."""
    frame: Frame = {"type": "final", "reply_to": reply_to, "text": text, **(controls or {})}
    if sources:
        frame["sources"] = list(sources)
    return frame


def controls(feedback: bool, rating: str | None, suggestions: Sequence[str]) -> Frame:
    """What an answer offers: `feedback` (may be rated; `rating` the choice so far, or
    null) and `suggestions` (follow-up questions, by position)."""
    return {"feedback": feedback, "rating": rating, "suggestions": list(suggestions)}


def controls_frame(reply_to: str, offered: Frame) -> Frame:
    """The controls of an answer as they are now (after a click)."""
    return {"type": "controls", "reply_to": reply_to, **offered}


def error(reply_to: str | None, message: str) -> Frame:
    return {"type": "error", "reply_to": reply_to, "message": message}


def encode(frame: Frame) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
