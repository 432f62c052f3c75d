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
from typing import Any

import httpx

from adapters.download import fetch
from adapters.tokens import SharedToken
from gateway.files import disposition_filename
from gateway.outbound import Answer, JsonApi, with_token
from gateway.platform import PlatformError
from gateway.store import keys
from gateway.store.base import SharedState

PLATFORM = "wecom"
# 40014 invalid and 42001 expired token. WeCom documents 40001 as "invalid secret" (what
# gettoken answers, and never retried there); WeChat-family APIs also use it for a bad
# credential, so on other calls it earns one fresh token too: one gettoken at most.
TOKEN_ERRORS = {"40014", "42001", "40001"}
# 45009 is also the daily quota; WeCom blocks a per-minute breach for 60 s (doc "访问频率限制",
# path/90454).
RATE_LIMITS: dict[str | int, float | None] = {45009: 60.0, 45033: 1.0}
HINTS = {
    60020: "the gateway's egress IP is not in the app's trusted IPs (企业可信IP)",
    40001: "the app secret is wrong",
    40013: "the corp_id is wrong",
    81013: "the user is not in the app's visible range",
}
MAX_MEDIA_BYTES = 30 * 1024 * 1024  # Dify's audio limit; WeCom images are ≤ 10 MB


def _errcode(body: dict[str, Any]) -> int | None:
    try:
        return int(body.get("errcode", 0))
    except (TypeError, ValueError):
        return None


def _check(answer: Answer) -> dict[str, Any]:
    what = answer.what
    if answer.status >= 400:
        raise PlatformError(PLATFORM, f"http_{answer.status}", what)
    body = answer.body
    code = _errcode(body) if body is not None else None
    if body is None or code is None:
        raise PlatformError(PLATFORM, "invalid_json", what)
    if code == 0:
        return body
    detail = HINTS.get(code) or str(body.get("errmsg") or "")[:200]
    raise PlatformError(PLATFORM, str(code), f"{what}: {detail}")


API = JsonApi(
    PLATFORM,
    _check,
    error_code=_errcode,
    rate_limit_codes=RATE_LIMITS,
    http_429_code="http_429",  # only a proxy answers 429: Retry-After, else 1 s
)


def _token_rejected(exc: PlatformError) -> bool:
    return exc.code in TOKEN_ERRORS


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
        body = await self._request(
            "GET", "gettoken", params={"corpid": self._corp_id, "corpsecret": self._secret}
        )
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
    ) -> dict[str, Any]:
        return await API.send(
            self._http,
            method,
            f"{self._base}/cgi-bin/{path}",
            what=path,
            params=params,
            content=None if payload is None else json.dumps(payload, ensure_ascii=False),
            headers=None if payload is None else {"Content-Type": "application/json"},
        )

    async def call(
        self, path: str, payload: dict[str, Any] | None = None, **params: str
    ) -> dict[str, Any]:
        """POST `payload` (or GET when None) to `/cgi-bin/<path>` and check `errcode`. A
        token WeCom calls invalid or expired is dropped and the call retried once with a
        fresh one (it can expire early, e.g. when the secret is reset)."""
        method = "GET" if payload is None else "POST"
        return await with_token(
            self.token,
            lambda token: self._request(
                method, path, params={**params, "access_token": token}, payload=payload
            ),
            rejected=_token_rejected,
        )

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

    async def send_media(self, touser: str, kind: str, media_id: str) -> str:
        """`message/send` of an `image` or `file` (doc path/90236); returns WeCom's msgid."""
        body = await self.call(
            "message/send",
            {
                "touser": touser,
                "msgtype": kind,
                "agentid": self.agent_id,
                kind: {"media_id": media_id},
            },
        )
        if body.get("invaliduser"):
            raise PlatformError(PLATFORM, "invaliduser", HINTS[81013])
        return str(body.get("msgid") or "")

    async def upload_media(self, kind: str, name: str, data: bytes, mime: str) -> str:
        """`media/upload?type=image|voice|video|file` (doc path/96484; multipart field
        `media`, whose filename is the name shown); returns a `media_id` valid 3 days."""

        async def send(token: str) -> dict[str, Any]:
            return await API.send(
                self._http,
                "POST",
                f"{self._base}/cgi-bin/media/upload",
                what="media/upload",
                params={"access_token": token, "type": kind},
                files={"media": (name, data, mime)},
                timeout=60.0,
            )

        body = await with_token(self.token, send, rejected=_token_rejected)
        media_id = body.get("media_id")
        if not isinstance(media_id, str) or not media_id:
            raise PlatformError(PLATFORM, "invalid_json", "media/upload: no media_id")
        return media_id

    async def recall(self, msgid: str) -> None:
        """`message/recall` (doc path/96460): withdraw a message sent within 24 h."""
        await self.call("message/recall", {"msgid": msgid})

    async def download_media(self, media_id: str) -> tuple[bytes, str, str | None]:
        """`media/get` (doc "获取临时素材"): (bytes, content type, file name if given)."""
        return await with_token(
            self.token,
            lambda token: self._fetch_media(media_id, token),
            rejected=_token_rejected,
        )

    async def _fetch_media(self, media_id: str, token: str) -> tuple[bytes, str, str | None]:
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
        data, content_type = fetched.data, fetched.content_type.lower()
        if content_type in ("application/json", "text/plain") or data.startswith(b"{"):
            # An error comes back as a small JSON body instead of the file.
            API.read(fetched.status, fetched.headers, data, "media/get")
            raise PlatformError(PLATFORM, "not_media", "media/get answered without a file")
        name = disposition_filename(fetched.headers.get("content-disposition", ""))
        return data, content_type, name

    async def user_name(self, userid: str) -> str | None:
        """The member's name from `user/get` (doc "读取成员"). Newer apps may get no name
        (WeCom's 2022 privacy change); then there is none."""
        body = await self.call("user/get", userid=userid)
        name = body.get("name")
        return name if isinstance(name, str) and name.strip() else None
