"""Which `sessionWebhook` URLs we are willing to post an answer to.

The HTTP-mode sign covers only the timestamp, not the body (verify.py), so a request replayed
within the hour could carry any `sessionWebhook` and aim our answers (the user's question and
the assistant's reply) at a host of the sender's choosing. So (docs/configuration.md,
"Default API bases"): use the URL exactly as given once its host is DingTalk's
(`oapi.dingtalk.com`, `api.dingtalk.com`) or the configured `api_base`'s; otherwise refuse
it and answer through the OpenAPI instead.
"""

from __future__ import annotations

import httpx

DINGTALK_HOSTS = frozenset({"oapi.dingtalk.com", "api.dingtalk.com"})


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"https": 443, "http": 80}.get(url.scheme)
    return url.scheme, url.host, url.port or default


def refusal(url: str, api_base: str) -> str | None:
    """None if `url` may receive answers, else why not (safe to log: no URL, no token)."""
    if not url:
        return "no sessionWebhook"
    if any(c.isspace() or c == "\\" for c in url):
        return "sessionWebhook contains whitespace or a backslash"
    try:
        # Parsed by the same parser that will send the request, so what we check is where
        # the answer would go.
        target = httpx.URL(url)
        base = httpx.URL(api_base)
    except (httpx.InvalidURL, ValueError):
        return "sessionWebhook is not a valid URL"
    if target.userinfo:
        return "sessionWebhook carries credentials"
    if target.scheme == "https" and target.host in DINGTALK_HOSTS and target.port in (None, 443):
        return None
    if _origin(target) == _origin(base):
        return None
    return f"sessionWebhook host {target.host!r} is neither DingTalk's nor api_base's"
