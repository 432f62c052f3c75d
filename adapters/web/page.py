"""The chat page: one HTML document with its style and script inline, so it needs no CDN and
works offline, in the bot's language (`gateway.words`).

The script and style are fixed files next to this module (page.js, page.css); what varies by
bot (its name, the socket path, the auth mode, the size limit, the texts) travels as a JSON
data block the script reads. So the Content-Security-Policy can allow exactly that script
and that style by their hashes, and nothing else: no other script, no form posts, and
connections only back to this origin (the socket).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
from dataclasses import asdict
from importlib import resources
from typing import Literal

from gateway.models import HttpResponse
from gateway.words import Words, chat_page_words


@functools.cache
def _asset(name: str) -> str:
    return resources.files("adapters.web").joinpath(name).read_text(encoding="utf-8")


def _hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _json_for_html(value: object) -> str:
    """JSON that cannot end the <script> block it sits in."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class ChatPage:
    def __init__(
        self,
        *,
        bot: str,
        socket_path: str,
        auth: Literal["token", "none"],
        words: Words,
        max_frame_bytes: int,
    ) -> None:
        page_words = chat_page_words(words.locale)
        config = {
            "bot": bot,
            "socket": socket_path,
            "auth": auth,
            "maxFrameBytes": max_frame_bytes,
            "words": {**asdict(page_words), "thinking": words.thinking},
        }
        script, style = _asset("page.js"), _asset("page.css")
        document = (
            _asset("page.html")
            .replace("{{lang}}", words.locale)
            .replace("{{title}}", html.escape(f"{page_words.title} · {bot}"))
            .replace("{{config}}", _json_for_html(config))
            .replace("/*{{style}}*/", style)
            .replace("//{{script}}", script)
        )
        policy = "; ".join(
            (
                "default-src 'none'",
                f"script-src {_hash(script)}",
                f"style-src {_hash(style)}",
                "img-src 'self' data: blob: https: http:",  # images in answers
                "connect-src 'self'",  # the socket, and the token check
                "base-uri 'none'",
                "form-action 'none'",
            )
        )
        self.response = HttpResponse(
            body=document.encode("utf-8"),
            content_type="text/html; charset=utf-8",
            headers={
                "Content-Security-Policy": policy,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-cache",
            },
        )
