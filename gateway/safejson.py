"""JSON that anyone may have sent, parsed one way everywhere.

Webhook bodies, decrypted payloads, long-connection frames and the JSON strings nested in
them (a Feishu `content`, a DingTalk Stream `data`) all go through `loads`, which turns
every way a text can fail to be plain data into one error, `JSONError`, that each adapter
maps to its clean rejection (`MalformedRequest` or `VerificationFailed`):

- not JSON, or not UTF-8: orjson reads strict UTF-8 only;
- a lone surrogate (`"\\ud800"`): orjson refuses it. The std json module returns it, and the
  first `.encode()` of that string (a token comparison, a store key, the job's JSON) raises
  UnicodeEncodeError far from the parser;
- nesting deeper than `MAX_DEPTH`: the std json module raises RecursionError on `[` x
  100,000 before anything is checked, and orjson stops only at 1,024 levels, deep enough
  that `str()`, `repr()` or `json.dumps()` of a value recurses past Python's limit later.
  Real payloads nest about ten levels; `MAX_DEPTH` leaves room for any of them.

`text()` and `shown()` are the two ways to use a value from a payload without trusting its
type: the first keeps only strings, the second describes anything briefly for a log line or
an ignore reason (never `str()` or `repr()` of a payload value: it may be a huge structure).
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_DEPTH = 64
_SHOWN_CHARS = 40


class JSONError(ValueError):
    """The input is not plain JSON data (see the module docstring). The message says why,
    with positions but never the input."""


def _bracket_count(data: bytes | str) -> int:
    if isinstance(data, str):
        return data.count("[") + data.count("{")
    return data.count(b"[") + data.count(b"{")


def _too_deep(value: Any, limit: int) -> bool:
    """Whether lists and objects nest more than `limit` levels (iterative: a deep value
    must not recurse here either)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, dict | list):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


def loads(data: bytes | str) -> Any:
    """The JSON value in `data`. Raises `JSONError`."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise JSONError(f"not JSON: {exc}") from None
    # Nesting deeper than MAX_DEPTH needs more than MAX_DEPTH brackets: the count (a C scan)
    # spares the usual small payload the walk.
    if (
        isinstance(value, dict | list)
        and _bracket_count(data) > MAX_DEPTH
        and _too_deep(value, MAX_DEPTH)
    ):
        raise JSONError(f"JSON nested deeper than {MAX_DEPTH} levels")
    return value


def loads_object(data: bytes | str) -> dict[str, Any]:
    """The JSON object in `data`. Raises `JSONError` for anything else."""
    value = loads(data)
    if not isinstance(value, dict):
        raise JSONError("JSON is not an object")
    return value


def text(value: object) -> str:
    """`value` if it is a string, else "" (a payload field of the wrong type counts as
    absent)."""
    return value if isinstance(value, str) else ""


def shown(value: object) -> str:
    """A short description of any payload value, safe to put in a log line: a scalar's
    repr cut to 40 characters, or just the kind of a list or object."""
    if isinstance(value, dict):
        return "<object>"
    if isinstance(value, list):
        return "<array>"
    if isinstance(value, str) and len(value) > _SHOWN_CHARS:
        value = value[:_SHOWN_CHARS] + "…"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**_SHOWN_CHARS:
        return "<number>"  # repr of a huge int is slow, and past 4,300 digits an error
    return repr(value)[: _SHOWN_CHARS + 10]
