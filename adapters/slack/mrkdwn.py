"""Standard Markdown -> Slack mrkdwn, for messages sent as `text` (the chat.update path).

Slack's streaming methods take standard Markdown (`markdown_text`) and need none of this.
mrkdwn rules: https://api.slack.com/reference/surfaces/formatting
- escape `&`, `<`, `>` everywhere (also in code), as `&amp;`, `&lt;`, `&gt;`;
- `**b**`/`__b__` -> `*b*`, `*i*`/`_i_` -> `_i_`, `~~s~~` -> `~s~`;
- headings -> bold lines; `[t](u)` -> `<u|t>`; `- item` -> `• item`;
- code spans and fenced blocks are left as they are (escaped only).
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+")
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC = re.compile(r"(?<![*\w])\*(?=\S)([^*]+?)(?<=\S)\*(?![*\w])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_BOLD_MARK = "\x00B\x00"  # placeholder, so italics don't eat converted bold markers


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _inline(segment: str) -> str:
    """Convert one run of text that holds no code span."""
    s = escape(segment)
    s = _IMAGE.sub(lambda m: f"<{m.group(2)}|{m.group(1) or 'image'}>", s)
    s = _LINK.sub(lambda m: f"<{m.group(2)}|{m.group(1)}>", s)
    s = _BOLD.sub(lambda m: f"{_BOLD_MARK}{m.group(2)}{_BOLD_MARK}", s)
    s = _ITALIC.sub(lambda m: f"_{m.group(1)}_", s)
    s = _STRIKE.sub(lambda m: f"~{m.group(1)}~", s)
    return s.replace(_BOLD_MARK, "*")


def _line(line: str) -> str:
    heading = _HEADING.match(line)
    if heading:
        title = heading.group(1).replace("**", "")
        return f"*{_inline(title).strip('*')}*" if title else ""
    bullet = _BULLET.match(line)
    if bullet:
        line = f"{bullet.group(1)}• {line[bullet.end() :]}"
    # Code spans alternate with text when split on backticks.
    pieces = line.split("`")
    if len(pieces) % 2 == 0:  # an unmatched backtick: no code spans on this line
        return _inline(line)
    return "`".join(escape(p) if i % 2 else _inline(p) for i, p in enumerate(pieces))


def to_mrkdwn(markdown: str) -> str:
    out: list[str] = []
    fence: str | None = None
    for line in markdown.split("\n"):
        marker = _FENCE.match(line)
        if fence is None and marker:
            fence = marker.group(1)[0]
            out.append("```")  # mrkdwn has no language tags
            continue
        if fence is not None:
            if marker and marker.group(1)[0] == fence and not line.strip().strip(fence):
                fence = None
                out.append("```")
            else:
                out.append(escape(line))
            continue
        out.append(_line(line))
    return "\n".join(out)
