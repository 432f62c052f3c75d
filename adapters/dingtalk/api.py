"""The one outbound path to DingTalk: the new OpenAPI at `{api_base}/v1.0/…` and the
per-conversation `sessionWebhook`.

Errors (open.dingtalk.com "服务端错误码" and "API 调用频率限制"):

- the OpenAPI answers non-2xx with `{"code", "message", "requestid"}`. Throttling is a 403
  with `Forbidden.AccessDenied.QpsLimitForAppkeyAndApi` (20 calls/s per app and API) or
  `Forbidden.AccessDenied.QpsLimitForApi` (all apps together); both last about a second;
- a 401 (`InvalidAuthentication`) means the access token went bad: drop it, fetch a new one,
  retry once;
- the sessionWebhook answers 200 with `{"errcode", "errmsg"}`; `130101` is "send too fast,
  exceed 20 times per minute", and the old-API throttling codes are 90018 / 90002.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from adapters.download import follow
from adapters.tokens import SharedToken
from gateway.outbound import Answer, JsonApi, with_token
from gateway.platform import PlatformError, RateLimited
from gateway.store import keys
from gateway.store.base import SharedState

PLATFORM = "dingtalk"
TOKEN_HEADER = "x-acs-dingtalk-access-token"
DEFAULT_API_BASE = "https://api.dingtalk.com"
# Media upload lives on the old API host; a test or proxy `api_base` serves both.
OLD_API_BASE = "https://oapi.dingtalk.com"
THROTTLE_CODES = frozenset(
    {
        "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi",
        "Forbidden.AccessDenied.QpsLimitForApi",
        "QpsLimit",
    }
)
WEBHOOK_THROTTLE_ERRCODES = frozenset({130101, 90018, 90002})
THROTTLE_PAUSE = 1.0  # DingTalk's QPS windows are one second
WEBHOOK_THROTTLE_PAUSE = 60.0  # the per-minute robot quota
MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024


class TokenRefused(PlatformError):
    """An OpenAPI 401 (`InvalidAuthentication`): the access token went bad."""


def check_openapi(answer: Answer) -> dict[str, Any]:
    """Map an OpenAPI answer that is not a rate limit to its JSON body or a typed error."""
    data = answer.body or {}
    code = str(data.get("code") or "")
    if not 200 <= answer.status < 300:
        message = str(data.get("message") or "")[:200]
        error = TokenRefused if answer.status == 401 else PlatformError
        raise error(PLATFORM, code or f"http_{answer.status}", message)
    if data.get("success") is False:
        raise PlatformError(PLATFORM, code or "success_false", str(data.get("message") or ""))
    return data


def _check_webhook(answer: Answer) -> dict[str, Any]:
    """Map a sessionWebhook answer (`errcode` 0 is success) to its body or an error."""
    if not 200 <= answer.status < 300:
        raise PlatformError(PLATFORM, f"http_{answer.status}", answer.what)
    data = answer.body or {}
    errcode = data.get("errcode", 0)
    if errcode != 0:
        raise PlatformError(PLATFORM, str(errcode), str(data.get("errmsg") or "")[:200])
    return data


OPENAPI = JsonApi(
    PLATFORM,
    check_openapi,
    error_code=lambda body: str(body.get("code") or ""),
    rate_limit_codes=dict.fromkeys(THROTTLE_CODES),  # Retry-After, else THROTTLE_PAUSE
    default_wait=THROTTLE_PAUSE,
    http_429_code="429",
)
WEBHOOK = JsonApi(
    PLATFORM,
    _check_webhook,
    error_code=lambda body: body.get("errcode"),
    rate_limit_codes=dict.fromkeys(WEBHOOK_THROTTLE_ERRCODES, WEBHOOK_THROTTLE_PAUSE),
    default_wait=WEBHOOK_THROTTLE_PAUSE,
    http_429_code="429",
)


def check_webhook(response: httpx.Response) -> None:
    """Map a sessionWebhook response to nothing or a typed error."""
    WEBHOOK.read(response.status_code, response.headers, response.content, "sessionWebhook")


def _token_refused(exc: PlatformError) -> bool:
    return isinstance(exc, TokenRefused)


def _old_token_refused(exc: PlatformError) -> bool:
    """The old API says a token went bad with errcode 40014 (invalid) or 42001 (expired)."""
    return exc.code in ("40014", "42001")


class DingtalkApi:
    def __init__(
        self,
        http: httpx.AsyncClient,
        store: SharedState,
        *,
        api_base: str,
        client_id: str,
        client_secret: str,
        robot_code: str,
    ) -> None:
        self._http = http
        self._base = api_base.rstrip("/")
        self._client_id = client_id
        self._secret = client_secret
        self.robot_code = robot_code
        self.token = SharedToken(
            store, keys.platform_token("dingtalk", client_id), self._fetch_token
        )

    @property
    def base(self) -> str:
        return self._base

    @property
    def old_base(self) -> str:
        return OLD_API_BASE if self._base == DEFAULT_API_BASE else self._base

    async def _fetch_token(self) -> tuple[str, float]:
        """`POST /v1.0/oauth2/accessToken` -> (accessToken, expireIn seconds)."""
        path = "/v1.0/oauth2/accessToken"
        body = {"appKey": self._client_id, "appSecret": self._secret}
        data = await OPENAPI.send(self._http, "POST", f"{self._base}{path}", what=path, json=body)
        token, lifetime = data.get("accessToken"), data.get("expireIn")
        if not isinstance(token, str) or not token or not isinstance(lifetime, int | float):
            raise PlatformError(PLATFORM, "bad_token_response", "no accessToken/expireIn")
        return token, float(lifetime)

    async def call(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """An authenticated OpenAPI call; one retry with a fresh token after a 401."""
        url = f"{self._base}{path}"
        return await with_token(
            self.token,
            lambda token: OPENAPI.send(
                self._http, method, url, what=path, json=body, headers={TOKEN_HEADER: token}
            ),
            rejected=_token_refused,
        )

    # --- Stream mode -------------------------------------------------------------------

    async def open_connection(self, subscriptions: list[dict[str, str]]) -> tuple[str, str]:
        """`POST /v1.0/gateway/connections/open` -> (endpoint, ticket). Authenticated by
        the client id and secret in the body, not by a token."""
        body = {
            "clientId": self._client_id,
            "clientSecret": self._secret,
            "subscriptions": subscriptions,
            "ua": "dify-gateway/0.1",
            "localIp": "",
        }
        path = "/v1.0/gateway/connections/open"
        data = await OPENAPI.send(self._http, "POST", f"{self._base}{path}", what=path, json=body)
        endpoint, ticket = data.get("endpoint"), data.get("ticket")
        if not isinstance(endpoint, str) or not isinstance(ticket, str) or not ticket:
            raise PlatformError(PLATFORM, "bad_connection", "no endpoint/ticket")
        return endpoint, ticket

    # --- files -------------------------------------------------------------------------

    async def download(self, download_code: str) -> tuple[bytes, str]:
        """The bytes and content type behind a message's `downloadCode`."""
        data = await self.call(
            "POST",
            "/v1.0/robot/messageFiles/download",
            {"downloadCode": download_code, "robotCode": self.robot_code},
        )
        url = data.get("downloadUrl")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise PlatformError(PLATFORM, "bad_download_url", "no downloadUrl")
        # A short-lived signed link to DingTalk's file store: no token goes with it.
        fetched = await follow(
            self._http, url, platform=PLATFORM, what="file download", max_bytes=MAX_DOWNLOAD_BYTES
        )
        if not 200 <= fetched.status < 300:
            raise PlatformError(PLATFORM, f"http_{fetched.status}", "file download")
        return fetched.data, fetched.content_type

    async def upload_media(self, kind: str, name: str, data: bytes, mime: str) -> str:
        """`POST {oapi}/media/upload?access_token=…&type=image|file` (multipart field
        `media`, as the official SDKs send it, with the app's access token); returns the
        `media_id`."""
        url = f"{self.old_base}/media/upload"

        async def send(token: str) -> dict[str, Any]:
            return await WEBHOOK.send(
                self._http,
                "POST",
                url,
                what="media/upload",
                params={"access_token": token, "type": kind},
                files={"media": (name, data, mime)},
                timeout=60.0,
            )

        body = await with_token(self.token, send, rejected=_old_token_refused)
        media_id = body.get("media_id")
        if not isinstance(media_id, str) or not media_id:
            raise PlatformError(PLATFORM, "no_media_id", "media/upload")
        return media_id

    # --- messages ----------------------------------------------------------------------

    async def send_by_session(self, url: str, message: dict[str, Any]) -> None:
        """Post `message` to a conversation's sessionWebhook (no token: the URL is one)."""
        await WEBHOOK.send(self._http, "POST", url, what="sessionWebhook", json=message)

    async def send_to_user(self, user_id: str, msg_key: str, msg_param: dict[str, Any]) -> None:
        """`POST /v1.0/robot/oToMessages/batchSend`: a one-to-one robot message."""
        data = await self.call(
            "POST",
            "/v1.0/robot/oToMessages/batchSend",
            {
                "robotCode": self.robot_code,
                "userIds": [user_id],
                "msgKey": msg_key,
                "msgParam": json.dumps(msg_param, ensure_ascii=False),
            },
        )
        if user_id in (data.get("flowControlledStaffIdList") or []):
            raise RateLimited(PLATFORM, WEBHOOK_THROTTLE_PAUSE, "flowControlled")
        if user_id in (data.get("invalidStaffIdList") or []):
            raise PlatformError(PLATFORM, "invalidStaffId", "the user cannot be reached")

    async def send_to_group(
        self, conversation_id: str, msg_key: str, msg_param: dict[str, Any]
    ) -> None:
        """`POST /v1.0/robot/groupMessages/send`: a robot message in a group."""
        await self.call(
            "POST",
            "/v1.0/robot/groupMessages/send",
            {
                "robotCode": self.robot_code,
                "openConversationId": conversation_id,
                "msgKey": msg_key,
                "msgParam": json.dumps(msg_param, ensure_ascii=False),
            },
        )

    # --- AI cards ----------------------------------------------------------------------

    async def create_and_deliver_card(self, body: dict[str, Any]) -> None:
        await self.call("POST", "/v1.0/card/instances/createAndDeliver", body)

    async def stream_card(self, out_track_id: str, guid: str, key: str, content: str) -> None:
        """`PUT /v1.0/card/streaming`: replace the card field `key` with `content`."""
        await self.call(
            "PUT",
            "/v1.0/card/streaming",
            {
                "outTrackId": out_track_id,
                "guid": guid,
                "key": key,
                "content": content,
                "isFull": True,
                "isFinalize": False,
                "isError": False,
            },
        )

    async def update_card(self, out_track_id: str, params: dict[str, str]) -> None:
        """`PUT /v1.0/card/instances`: set card variables (all values are strings)."""
        await self.call(
            "PUT",
            "/v1.0/card/instances",
            {
                "outTrackId": out_track_id,
                "cardData": {"cardParamMap": params},
                "cardUpdateOptions": {"updateCardDataByKey": True},
            },
        )
