"""Feishu message text to standard Markdown: `@_user_N` mentions and `post` rich text.

Shapes: https://open.feishu.cn/document/server-docs/im-v1/message-content-description/message_content
(the "接收消息内容" page). A `text` message carries `{"text": "@_user_1 hi"}` where each
`@_user_N` is a key into the event's `mentions[]`. A `post` carries `{"title", "content":
[[element, …], …]}` (one list per paragraph), sometimes wrapped in a locale key
(`{"zh_cn": {…}}`); elements are tagged `text`, `a`, `at`, `img`, `media`, `emotion`,
`code_block`, `hr` and `md`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gateway.safejson import text as _text

_PLACEHOLDER = re.compile(r"(@_user_\d+|@_all)( ?)")
_LOCALES = ("zh_cn", "en_us", "ja_jp")


@dataclass(frozen=True, slots=True)
class Mention:
    key: str  # "@_user_1"
    open_id: str
    name: str


@dataclass(slots=True)
class Mentions:
    """The event's `mentions[]`, and which of them is this bot."""

    by_key: dict[str, Mention]
    bot_open_id: str | None
    bot_mentioned: bool = field(init=False)
    # By open_id too, so a text of many `at` tags costs a lookup each, not a scan each.
    _by_open_id: dict[str, Mention] = field(init=False)

    def __post_init__(self) -> None:
        self._by_open_id = {}
        for mention in self.by_key.values():
            self._by_open_id.setdefault(mention.open_id, mention)
        self.bot_mentioned = self.bot_open_id is not None and self.bot_open_id in self._by_open_id

    @classmethod
    def parse(cls, raw: object, bot_open_id: str | None) -> Mentions:
        found: dict[str, Mention] = {}
        for item in raw if isinstance(raw, list) else []:
            if not isinstance(item, dict) or not isinstance(item.get("key"), str):
                continue
            ids = item.get("id")
            open_id = _text(ids.get("open_id")) if isinstance(ids, dict) else ""
            found[item["key"]] = Mention(item["key"], open_id, _text(item.get("name")))
        return cls(found, bot_open_id)

    def is_bot(self, mention: Mention) -> bool:
        return self.bot_open_id is not None and mention.open_id == self.bot_open_id

    def render(self, key_or_open_id: str, fallback_name: str = "") -> str:
        """`@Name` for a mention, or "" for this bot's own (removed from the query)."""
        if key_or_open_id == "@_all" or key_or_open_id == "all":
            return "@all"
        mention = self.by_key.get(key_or_open_id) or self._by_open_id.get(key_or_open_id)
        if mention is None:
            return f"@{fallback_name}" if fallback_name else key_or_open_id
        return "" if self.is_bot(mention) else f"@{mention.name or fallback_name}"

    def resolve(self, text: str) -> str:
        """Replace the placeholders in a `text` message; the bot's own mention goes, with
        one space after it, so "@_user_1 hello" becomes "hello"."""

        def replace(match: re.Match[str]) -> str:
            rendered = self.render(match.group(1))
            return rendered + match.group(2) if rendered else ""

        return _PLACEHOLDER.sub(replace, text).strip()


def _styled(text: str, style: object) -> str:
    styles = {s for s in style if isinstance(s, str)} if isinstance(style, list) else set()
    core = text.strip()
    if not core or not styles:
        return text
    lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()) :]
    if "codeInline" in styles:
        core = f"`{core}`"
    if "bold" in styles:
        core = f"**{core}**"
    if "italic" in styles:
        core = f"*{core}*"
    if "lineThrough" in styles:
        core = f"~~{core}~~"
    return lead + core + trail


def _element(el: dict[str, Any], mentions: Mentions, images: list[str]) -> str:
    tag = el.get("tag")
    text = _text(el.get("text"))
    if tag == "text":
        return _styled(text, el.get("style"))
    if tag == "a":
        href = _text(el.get("href"))
        return f"[{text or href}]({href})" if href else text
    if tag == "at":
        return mentions.render(_text(el.get("user_id")), _text(el.get("user_name")))
    if tag == "img":
        if _text(el.get("image_key")):
            images.append(_text(el.get("image_key")))
        return ""
    if tag == "media":
        return "[video]"
    if tag == "emotion":
        return f":{_text(el.get('emoji_type')) or 'emoji'}:"
    if tag == "code_block":
        return f"\n```{_text(el.get('language'))}\n{text.rstrip()}\n```\n"
    if tag == "hr":
        return "\n---\n"
    return text  # `md` and unknown tags carry their text


def _unwrap(content: dict[str, Any]) -> dict[str, Any]:
    if "content" in content or "title" in content:
        return content
    for locale in (*_LOCALES, *content.keys()):
        inner = content.get(locale)
        if isinstance(inner, dict):
            return inner
    return {}


def post_to_markdown(content: dict[str, Any], mentions: Mentions) -> tuple[str, list[str]]:
    """(Markdown, image keys in order) for a `post` message's parsed content."""
    post = _unwrap(content)
    images: list[str] = []
    lines: list[str] = []
    title = _text(post.get("title")).strip()
    if title:
        lines += [f"**{title}**", ""]
    paragraphs = post.get("content")
    for paragraph in paragraphs if isinstance(paragraphs, list) else []:
        if isinstance(paragraph, list):
            elements = [el for el in paragraph if isinstance(el, dict)]
            line = "".join(_element(el, mentions, images) for el in elements)
            if elements and elements[0].get("tag") == "at":
                line = line.lstrip()  # "@Bot can I…" loses the mention and its space
            lines.append(line.rstrip())
    return "\n".join(lines).strip(), images
