"""Slack Web API: one outbound path, with typed errors.

Every call is `POST {api_base}/<method>` with a JSON body and the token in the Authorization
header (https://docs.slack.dev/apis/web-api/). Failures map to:
- HTTP 429 (`Retry-After`) and `ok:false, error:ratelimited` -> `RateLimited`;
- any other `ok:false`, HTTP error or network error -> `PlatformError(code)`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from adapters.download import follow
from gateway.outbound import Answer, JsonApi, network_error
from gateway.platform import PlatformError

PLATFORM = "slack"
MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024


def _check(answer: Answer) -> dict[str, Any]:
    if answer.status >= 400:
        raise PlatformError(PLATFORM, f"http_{answer.status}", answer.what)
    body = answer.body
    if body is None:
        raise PlatformError(PLATFORM, "invalid_json", answer.what)
    if not body.get("ok"):
        raise PlatformError(PLATFORM, str(body.get("error") or "unknown_error"), answer.what)
    return body


API = JsonApi(
    PLATFORM,
    _check,
    error_code=lambda body: None if body.get("ok") else body.get("error"),
    rate_limit_codes={"ratelimited": None},  # waits what Retry-After says, else 1 s
    http_429_code="ratelimited",
)


class SlackAPI:
    def __init__(self, http: httpx.AsyncClient, api_base: str, token: str) -> None:
        self._http = http
        self._base = api_base.rstrip("/")
        self._token = token
        base = urlsplit(self._base)
        self._base_origin = (base.scheme, base.netloc)
        # Built once: streaming sends several calls a second per answer.
        self._urls: dict[str, httpx.URL] = {}
        self._auth = {"Authorization": f"Bearer {token}"}
        self._json_headers = {**self._auth, "Content-Type": "application/json; charset=utf-8"}

    def _url(self, method: str) -> httpx.URL:
        url = self._urls.get(method)
        if url is None:
            url = self._urls[method] = httpx.URL(f"{self._base}/{method}")
        return url

    async def call(
        self, method: str, payload: dict[str, Any] | None = None, *, form: bool = False
    ) -> dict[str, Any]:
        """Call a Web API method. Write methods take JSON; read methods (`users.info`,
        `auth.test`, …) only take form fields, so pass `form=True` for those."""
        url = self._url(method)
        if form:
            return await API.send(
                self._http, "POST", url, what=method, data=payload or {}, headers=self._auth
            )
        return await API.send(
            self._http,
            "POST",
            url,
            what=method,
            content=_json_body(payload or {}),
            headers=self._json_headers,
        )

    async def upload(self, upload_url: str, data: bytes) -> None:
        """Send a file's bytes to the URL `files.getUploadURLExternal` gave (a POST of the
        raw bytes; no token: the URL is one)."""
        try:
            response = await self._http.post(upload_url, content=data, timeout=60.0)
        except httpx.HTTPError as exc:
            raise network_error(PLATFORM, "file upload", exc) from None
        if response.status_code != 200:
            raise PlatformError(PLATFORM, f"http_{response.status_code}", "file upload")

    def token_may_go_to(self, url: str) -> bool:
        """The bot token is only ever sent to Slack's own hosts (over HTTPS) or to the
        configured `api_base` origin: a file URL in an event must not leak it elsewhere."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if (parts.scheme, parts.netloc) == self._base_origin:
            return True
        return parts.scheme == "https" and (host == "slack.com" or host.endswith(".slack.com"))

    async def download(self, url: str) -> tuple[bytes, str]:
        """Fetch a `url_private` file with the bot token: (bytes, content type). Every
        redirect hop is checked before the token goes to it."""
        fetched = await follow(
            self._http,
            url,
            platform=PLATFORM,
            what="file download",
            max_bytes=MAX_DOWNLOAD_BYTES,
            allowed=self.token_may_go_to,
            headers=self._auth,
        )
        if fetched.status >= 400:
            raise PlatformError(PLATFORM, f"http_{fetched.status}", "file download")
        # Slack answers a login page (200, text/html) when the token lacks files:read.
        if fetched.content_type == "text/html":
            raise PlatformError(PLATFORM, "file_not_accessible", "missing files:read scope?")
        return fetched.data, fetched.content_type


def _json_body(payload: dict[str, Any]) -> bytes:
    """The payload as compact JSON, in a bytes object of its own size. orjson hands back its
    4 KiB working buffer as the bytes object, and a request in flight holds its body: with
    a thousand streaming updates in flight, that was 4 KiB each (bench/README.md)."""
    return memoryview(orjson.dumps(payload)).tobytes()
