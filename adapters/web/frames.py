"""The web chat's frames: JSON text, one object per WebSocket message (docs/web.md).

Client to server: `{"type": "message", "id": …, "text": …}`, optionally with `files` (the
extension: `[{"name": …, "type": <MIME type>, "data": <base64>}]`, the whole frame within
`server.max_body_bytes`). Other types are ignored, so a newer page works with an older
gateway. Server to client: `update`, `final` and `error`, each naming the message it answers
(`reply_to`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

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


class BadFrame(Exception):
    """A frame the gateway cannot take: answer it with an error frame (`reply_to`, maybe
    None), or, when `close_code` is set, close the socket with it."""

    def __init__(self, reason: str, *, reply_to: str | None = None, close_code: int = 0):
        super().__init__(reason)
        self.reply_to = reply_to
        self.close_code = close_code


def parse_client_frame(raw: str) -> ClientMessage | None:
    """A `message` frame, or None for a type this gateway does not know."""
    # safejson: a lone surrogate in `text` would pass here and break the job's JSON in
    # the inbox, and deep nesting would recurse in whatever reads the value next.
    try:
        frame = safejson.loads_object(raw)
    except safejson.JSONError:
        raise BadFrame("not a JSON object", close_code=INVALID_PAYLOAD) from None
    if frame.get("type") != "message":
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


def final(reply_to: str, text: str) -> Frame:
    return {"type": "final", "reply_to": reply_to, "text": text}


def error(reply_to: str | None, message: str) -> Frame:
    return {"type": "error", "reply_to": reply_to, "message": message}


def encode(frame: Frame) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
