"""WeCom server API for a self-built app: token, message/send, media/get, user/get.

- Token: `GET {api_base}/cgi-bin/gettoken?corpid=&corpsecret=` (doc "获取access_token"),
  cached for the returned `expires_in` and shared across instances (`SharedToken`).
- Every call carries `access_token` in the query string, so **no URL is ever logged or put
  into an error message** here.
- `errcode` (global codes, doc path/90313) maps to errors: 40014 (invalid token), 42001
  (expired) and 40001 invalidate the token and retry once; 45009 (API call limit) and 45033
  (concurrent calls limit) are `RateLimited`; -1 (busy) and the rest are `PlatformError`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from adapters.download import fetch
from adapters.tokens import SharedToken
from gateway.platform import PlatformError, RateLimited
from gateway.store import keys
from gateway.store.base import SharedState

PLATFORM = "wecom"
# 40014 invalid and 42001 expired token. WeCom documents 40001 as "invalid secret" (what
# gettoken answers, and never retried there); WeChat-family APIs also use it for a bad
# credential, so on other calls it earns one fresh token too: one gettoken at most.
TOKEN_ERRORS = {40014, 42001, 40001}
# 45009 is also the daily quota; WeCom blocks a per-minute breach for 60 s (doc "访问频率限制",
# path/90454).
RATE_LIMITS = {45009: 60.0, 45033: 1.0}
HINTS = {
    60020: "the gateway's egress IP is not in the app's trusted IPs (企业可信IP)",
    40001: "the app secret is wrong",
    40013: "the corp_id is wrong",
    81013: "the user is not in the app's visible range",
}
MAX_MEDIA_BYTES = 30 * 1024 * 1024  # Dify's audio limit; WeCom images are ≤ 10 MB
_FILENAME = re.compile(r'filename\*?=(?:UTF-8\'\')?"?([^";]+)"?', re.IGNORECASE)


def _check(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise PlatformError(PLATFORM, "invalid_json", what)
    try:
        code = int(body.get("errcode", 0))
    except (TypeError, ValueError):
        raise PlatformError(PLATFORM, "invalid_json", what) from None
    if code == 0:
        return body
    if code in RATE_LIMITS:
        raise RateLimited(PLATFORM, RATE_LIMITS[code], str(code))
    detail = HINTS.get(code) or str(body.get("errmsg") or "")[:200]
    raise PlatformError(PLATFORM, str(code), f"{what}: {detail}")


class WecomAPI:
    def __init__(
        self,
        http: httpx.AsyncClient,
        store: SharedState,
        *,
        api_base: str,
        corp_id: str,
        secret: str,
        agent_id: int,
    ) -> None:
        self._http = http
        self._base = api_base.rstrip("/")
        self._corp_id = corp_id
        self._secret = secret
        self.agent_id = agent_id
        self.token = SharedToken(
            store, keys.platform_token("wecom", corp_id, str(agent_id)), self._fetch_token
        )

    async def _fetch_token(self) -> tuple[str, float]:
        response = await self._request(
            "GET", "gettoken", params={"corpid": self._corp_id, "corpsecret": self._secret}
        )
        body = _check(self._json(response, "gettoken"), "gettoken")
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise PlatformError(PLATFORM, "invalid_json", "gettoken: no access_token")
        try:
            lifetime = float(body.get("expires_in", 7200))
        except (TypeError, ValueError):
            lifetime = 7200.0
        return token, lifetime

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str],
        payload: dict[str, Any] | None = None,
    ) -> httpx.Response:
        try:
            response = await self._http.request(
                method,
                f"{self._base}/cgi-bin/{path}",
                params=params,
                content=None if payload is None else json.dumps(payload, ensure_ascii=False),
                headers=None if payload is None else {"Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:  # its message may hold the URL: keep only the type
            raise PlatformError(PLATFORM, "network", f"{path}: {type(exc).__name__}") from None
        if response.status_code == 429:
            raise RateLimited(PLATFORM, 1.0, "http_429")
        if response.status_code >= 400:
            raise PlatformError(PLATFORM, f"http_{response.status_code}", path)
        return response

    @staticmethod
    def _json(response: httpx.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise PlatformError(PLATFORM, "invalid_json", what) from None

    async def _with_token(
        self, method: str, path: str, params: dict[str, str], payload: dict[str, Any] | None
    ) -> httpx.Response:
        """One call; a token WeCom calls invalid or expired is dropped and the call retried
        once with a fresh one (it can expire early, e.g. when the secret is reset)."""
        for attempt in (1, 2):
            token = await self.token.get()
            response = await self._request(
                method, path, params={**params, "access_token": token}, payload=payload
            )
            code = _errcode(response)
            if code in TOKEN_ERRORS and attempt == 1:
                await self.token.invalidate(token)
                continue
            return response
        raise AssertionError("unreachable")

    async def call(
        self, path: str, payload: dict[str, Any] | None = None, **params: str
    ) -> dict[str, Any]:
        """POST `payload` (or GET when None) to `/cgi-bin/<path>` and check `errcode`."""
        method = "GET" if payload is None else "POST"
        response = await self._with_token(method, path, params, payload)
        return _check(self._json(response, path), path)

    async def send_markdown(self, touser: str, content: str) -> str:
        """`message/send` (doc path/90236) to one member; returns WeCom's msgid."""
        body = await self.call(
            "message/send",
            {
                "touser": touser,
                "msgtype": "markdown",
                "agentid": self.agent_id,
                "markdown": {"content": content},
            },
        )
        if body.get("invaliduser"):
            # errcode 0 but the member did not get it (left the company, out of range).
            raise PlatformError(PLATFORM, "invaliduser", HINTS[81013])
        return str(body.get("msgid") or "")

    async def recall(self, msgid: str) -> None:
        """`message/recall` (doc path/96460): withdraw a message sent within 24 h."""
        await self.call("message/recall", {"msgid": msgid})

    async def download_media(self, media_id: str) -> tuple[bytes, str, str | None]:
        """`media/get` (doc "获取临时素材"): (bytes, content type, file name if given).
        An error comes back as a small JSON body instead of the file."""
        for attempt in (1, 2):
            token = await self.token.get()
            data, headers = await self._fetch_media(media_id, token)
            content_type = headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type in ("application/json", "text/plain") or data.startswith(b"{"):
                try:
                    body = json.loads(data)
                except ValueError:
                    raise PlatformError(PLATFORM, "invalid_json", "media/get") from None
                if _code_of(body) in TOKEN_ERRORS and attempt == 1:
                    await self.token.invalidate(token)
                    continue
                _check(body, "media/get")
                raise PlatformError(PLATFORM, "not_media", "media/get answered without a file")
            match = _FILENAME.search(headers.get("content-disposition", ""))
            name = match.group(1).strip() if match else None
            return data, content_type or "application/octet-stream", name
        raise AssertionError("unreachable")

    async def _fetch_media(self, media_id: str, token: str) -> tuple[bytes, httpx.Headers]:
        fetched = await fetch(
            self._http,
            f"{self._base}/cgi-bin/media/get",
            platform=PLATFORM,
            what="media/get",
            max_bytes=MAX_MEDIA_BYTES,
            params={"access_token": token, "media_id": media_id},
        )
        if fetched.status >= 400:
            raise PlatformError(PLATFORM, f"http_{fetched.status}", "media/get")
        return fetched.data, fetched.headers

    async def user_name(self, userid: str) -> str | None:
        """The member's name from `user/get` (doc "读取成员"). Newer apps may get no name
        (WeCom's 2022 privacy change); then there is none."""
        body = await self.call("user/get", userid=userid)
        name = body.get("name")
        return name if isinstance(name, str) and name.strip() else None


def _code_of(body: Any) -> int:
    try:
        return int(body.get("errcode", 0)) if isinstance(body, dict) else 0
    except (TypeError, ValueError):
        return 0


def _errcode(response: httpx.Response) -> int:
    """The errcode of a JSON answer (0 when there is none)."""
    try:
        return _code_of(response.json())
    except ValueError:
        return 0
