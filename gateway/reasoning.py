"""The model's reasoning, told apart from its answer as the text streams in.

Dify passes reasoning on inside the answer text: model plugins wrap it in
`<think>\\n…\\n</think>` at the start of the answer (Dify 1.x); some send only the closing
`</think>`; Dify 0.15 used `<details …> <summary> Thinking... </summary> … </details>`.
Tags may be split across chunks. A chatflow that separates reasoning sends it in
`reasoning_chunk` events instead, which need no splitting.

`ThinkSplitter.feed()` turns each chunk into segments: `("reasoning", text)`,
`("answer", text)`, or `("retract", "")` when a lone `</think>` shows that what was passed on
as answer so far was reasoning after all.
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["reasoning", "answer", "retract"]
Segment = tuple[Kind, str]

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
DETAILS_OPEN, DETAILS_CLOSE, SUMMARY_CLOSE = "<details", "</details>", "</summary>"
MAX_OPENING = 512  # a <details> opening (tag and summary) longer than this is not one


def _partial_suffix(text: str, tag: str) -> int:
    """How many characters at the end of `text` could be the start of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class ThinkSplitter:
    def __init__(self) -> None:
        self._state: Literal["start", "opening", "reasoning", "answer"] = "start"
        self._buffer = ""  # text not passed on yet (a tag may be forming)
        self._close = THINK_CLOSE
        self._lone_close_possible = True  # no reasoning block seen yet
        self._answer_begun = False  # strip the blank lines between reasoning and answer

    @property
    def in_reasoning(self) -> bool:
        return self._state in ("opening", "reasoning")

    def feed(self, delta: str) -> list[Segment]:
        self._buffer += delta
        out: list[Segment] = []
        while True:
            before = (self._state, len(self._buffer))
            self._step(out)
            if (self._state, len(self._buffer)) == before:
                return out

    def flush(self) -> list[Segment]:
        """The end of the text: whatever is held goes out as what it seems to be."""
        out: list[Segment] = []
        text, self._buffer = self._buffer, ""
        if self._state in ("opening", "reasoning"):
            if text:
                out.append(("reasoning", text))
        elif text:
            self._answer(text, out)
        self._state = "answer"
        return out

    def _step(self, out: list[Segment]) -> None:
        if self._state == "start":
            self._at_start()
        elif self._state == "opening":
            self._in_opening()
        elif self._state == "reasoning":
            self._in_reasoning(out)
        else:
            self._in_answer(out)

    def _at_start(self) -> None:
        head = self._buffer.lstrip()
        if not head:
            return
        if head.startswith(THINK_OPEN):
            self._buffer = head[len(THINK_OPEN) :]
            self._state, self._close = "reasoning", THINK_CLOSE
        elif head.lower().startswith(DETAILS_OPEN):
            self._state, self._close = "opening", DETAILS_CLOSE
        elif THINK_OPEN.startswith(head) or DETAILS_OPEN.startswith(head.lower()):
            return  # maybe the start of a tag: wait for more
        else:
            self._state = "answer"

    def _in_opening(self) -> None:
        """Inside `<details …><summary>…</summary>`: drop it, then the reasoning follows."""
        end = self._buffer.find(SUMMARY_CLOSE)
        if end >= 0:
            self._buffer = self._buffer[end + len(SUMMARY_CLOSE) :]
            self._state = "reasoning"
        elif len(self._buffer) > MAX_OPENING:
            self._state = "answer"  # not Dify's thinking block: an answer that is HTML

    def _in_reasoning(self, out: list[Segment]) -> None:
        end = self._buffer.find(self._close)
        if end >= 0:
            if end:
                out.append(("reasoning", self._buffer[:end]))
            self._buffer = self._buffer[end + len(self._close) :]
            self._state, self._lone_close_possible = "answer", False
            return
        keep = _partial_suffix(self._buffer, self._close)
        if len(self._buffer) > keep:
            out.append(("reasoning", self._buffer[: len(self._buffer) - keep]))
            self._buffer = self._buffer[len(self._buffer) - keep :]

    def _in_answer(self, out: list[Segment]) -> None:
        if self._lone_close_possible:
            end = self._buffer.find(THINK_CLOSE)
            if end >= 0:
                # Everything said so far was reasoning: take back what went out as answer.
                self._lone_close_possible = False
                out.append(("retract", ""))
                if end:
                    out.append(("reasoning", self._buffer[:end]))
                self._buffer = self._buffer[end + len(THINK_CLOSE) :]
                self._answer_begun = False
                return
            keep = _partial_suffix(self._buffer, THINK_CLOSE)
        else:
            keep = 0
        if len(self._buffer) > keep:
            self._answer(self._buffer[: len(self._buffer) - keep], out)
            self._buffer = self._buffer[len(self._buffer) - keep :]

    def _answer(self, text: str, out: list[Segment]) -> None:
        if not self._answer_begun and not self._lone_close_possible:
            text = text.lstrip()
            if not text:
                return
        self._answer_begun = True
        out.append(("answer", text))
