"""Which URLs the AI bot may POST an answer to or fetch a file from.

A callback names URLs that the bot then uses: its `response_url`, which gets the rest of a
long answer (the user's question answered in full), and the image and file URLs of what the
user sent. The callback is authentic, but its URLs are still data: the bot must not POST
answers to, or fetch from, `http://169.254.169.254/` or any host inside the network it runs
in because a callback said so. So a URL is used only when it is

- `https` to WeCom's own hosts: `*.weixin.qq.com`. `response_url`s look like
  `https://qyapi.weixin.qq.com/cgi-bin/aibot/response?response_code=…` (doc path/101138);
- for media, also WeCom's buckets on Tencent Cloud object storage, where callbacks point
  (`https://ww-aibot-img-<n>.cos.<region>.myqcloud.com/…`, doc path/100719), and its image
  CDN `wework.qpic.cn`;
- or on the origin of the bot's `api_base` (tests, proxies; `ws`/`wss` count as
  `http`/`https`), as the Slack and DingTalk adapters allow.

A refused URL is logged as `redacted(url)`: the query is left out, because it is the
capability (`response_code`, a signed download).
"""

from __future__ import annotations

import re
from typing import Literal

import httpx

Use = Literal["response_url", "media"]

_WECOM_SUFFIX = ".weixin.qq.com"
_MEDIA_BUCKET = re.compile(r"ww-aibot-img(-\d+)?\.cos\.[a-z0-9-]+\.myqcloud\.com")
_MEDIA_HOSTS = frozenset({"wework.qpic.cn"})
_SCHEMES = {"ws": "http", "wss": "https"}
_PORTS = {"https": 443, "http": 80}


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    scheme = _SCHEMES.get(url.scheme, url.scheme)
    return scheme, url.host, url.port or _PORTS.get(scheme)


def _wecom_host(host: str, use: Use) -> bool:
    if host.endswith(_WECOM_SUFFIX):
        return True
    return use == "media" and (host in _MEDIA_HOSTS or _MEDIA_BUCKET.fullmatch(host) is not None)


def refusal(url: str, api_base: str, use: Use) -> str | None:
    """None if the bot may use `url` for `use`, else why not (safe to log: no URL)."""
    if not url:
        return f"no {use} URL"
    if any(c.isspace() or c == "\\" for c in url):
        return f"{use} URL contains whitespace or a backslash"
    try:
        # The parser that will make the request, so what is checked is where it goes.
        target = httpx.URL(url)
        base = httpx.URL(api_base)
    except (httpx.InvalidURL, ValueError, TypeError):
        return f"{use} URL is not a valid URL"
    if target.userinfo:
        return f"{use} URL carries credentials"
    if target.scheme == "https" and target.port in (None, 443) and _wecom_host(target.host, use):
        return None
    if target.scheme in ("http", "https") and _origin(target) == _origin(base):
        return None
    return f"{use} URL host {target.host!r} is neither WeCom's nor api_base's"


def redacted(url: str) -> str:
    """`url` without its query, fragment or credentials, for a log line."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        return "<not a URL>"
    return str(parsed.copy_with(query=None, fragment=None, userinfo=b""))[:200]
