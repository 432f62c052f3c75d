"""Splitting long text into platform-sized messages, once for every platform.

`split_text` cuts at paragraph, then line, then word boundaries, measures in characters or
UTF-8 bytes (WeCom and DingTalk count bytes), never cuts inside a character, and keeps fenced
code blocks balanced: a part that ends inside a ``` block gets a closing fence, and the next
part reopens it with the same info string. Invariants (property-tested):

- `"".join(p.body for p in parts) == text`, and
- `measure(p.render()) <= limit` for every part.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Literal

Unit = Literal["chars", "bytes"]

_FENCE_LINE = re.compile(r"^ {0,3}(`{3,}|~{3,})[^\n]*$", re.MULTILINE)


_MAX_FENCE = 8  # longer fences than this are not repaired across parts


def measure(text: str, unit: Unit) -> int:
    return len(text) if unit == "chars" else len(text.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class Part:
    body: str  # a slice of the original text
    prefix: str = ""  # reopens a code fence the previous part closed
    suffix: str = ""  # closes a code fence this part leaves open

    def render(self) -> str:
        return self.prefix + self.body + self.suffix


class _Fences:
    """Where fenced code blocks open and close in a text, so the fence state at any
    position is a binary search away."""

    def __init__(self, text: str) -> None:
        self.ends: list[int] = []  # index just after each fence line
        self.openers: list[str | None] = []  # the open fence's line after that point
        current: str | None = None  # the opening line of the block we are in
        current_marker = ""
        for m in _FENCE_LINE.finditer(text):
            marker = m.group(1)
            info = m.group(0).strip()[len(marker) :]
            if current is None:
                current, current_marker = m.group(0).strip(), marker
            elif (
                marker[0] == current_marker[0]
                and len(marker) >= len(current_marker)
                and not info.strip()
            ):
                # CommonMark: same character, at least as long, nothing after it.
                current = None
            else:
                continue  # a fence-looking line that does not close this block
            self.ends.append(m.end())
            self.openers.append(current)

    def open_at(self, pos: int) -> str | None:
        i = bisect.bisect_right(self.ends, pos) - 1
        return self.openers[i] if i >= 0 else None

    def inside(self, pos: int) -> bool:
        return self.open_at(pos) is not None


def _fit(text: str, start: int, budget: int, unit: Unit) -> int:
    """The largest end such that text[start:end] measures at most `budget`."""
    if unit == "chars":
        return min(len(text), start + max(0, budget))
    window = text[start : start + max(0, budget)]
    clipped = window.encode("utf-8")[: max(0, budget)].decode("utf-8", errors="ignore")
    return start + len(clipped)


def _boundary(text: str, start: int, end: int, fences: _Fences) -> int:
    """The best cut in (start, end]: a paragraph break outside code, else any line break,
    else a space, in the second half of the window; else a hard cut at `end`."""
    if end >= len(text):
        return len(text)
    half = start + (end - start) // 2
    i = text.rfind("\n\n", half, end)
    while i != -1 and fences.inside(i + 2):
        i = text.rfind("\n\n", half, i)
    if i != -1:
        return i + 2
    for sep in ("\n", " "):
        i = text.rfind(sep, half, end)
        if i != -1:
            return i + 1
    return end


def split_text(text: str, limit: int, unit: Unit = "chars") -> list[Part]:
    """Split `text` into parts of at most `limit` (see the module docstring)."""
    if limit < 8:
        raise ValueError("limit must be at least 8")
    if not text:
        return [Part("")]
    fences = _Fences(text)
    parts: list[Part] = []
    pos = 0
    reopen = ""
    while pos < len(text):
        rest_cost = measure(reopen, unit) + measure(text[pos:], unit)
        if rest_cost <= limit:
            parts.append(Part(text[pos:], reopen))
            break
        budget = limit - measure(reopen, unit)
        repair = budget > 0 and _fit(text, pos, budget, unit) > pos
        if not repair:
            # No room to repeat the fence: cut plainly. This part starts inside the block
            # without its opener, so closing it would unbalance the part.
            reopen, budget = "", limit
        cut = _boundary(text, pos, _fit(text, pos, budget, unit), fences)
        opener = fences.open_at(cut) if repair else None
        if opener is not None:
            # The part ends inside a code block: cut again leaving room to close it.
            room = budget - (1 + _MAX_FENCE)
            end = _fit(text, pos, room, unit) if room > 0 else pos
            if end > pos:
                cut = _boundary(text, pos, end, fences)
                opener = fences.open_at(cut)
            else:
                opener = None  # too tight to repair: cut plainly
        body = text[pos:cut]
        fence = opener[: len(opener) - len(opener.lstrip(opener[0]))] if opener else ""
        if len(fence) > _MAX_FENCE:
            opener, fence = None, ""
        suffix = "" if not fence else fence if body.endswith("\n") else "\n" + fence
        parts.append(Part(body, reopen, suffix))
        reopen = opener + "\n" if opener is not None else ""
        pos = cut
    return parts


def paragraph_break(text: str, start: int, min_len: int) -> int | None:
    """The index just after the last paragraph break outside code in text[start:] that
    leaves at least `min_len` characters before it, or None. Platforms that cannot edit send
    finished paragraphs up to there."""
    fences = _Fences(text)
    lo = start + max(0, min_len - 2)
    i = text.rfind("\n\n", lo)
    while i != -1:
        if not fences.inside(i + 2):
            return i + 2
        i = text.rfind("\n\n", lo, i)
    return None
