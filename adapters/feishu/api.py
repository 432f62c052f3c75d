"""The Feishu/Lark OpenAPI: one outbound path, with typed errors.

Every URL is `{api_base}/open-apis/…` (`https://open.feishu.cn` or
`https://open.larksuite.com`, or a proxy). Calls carry the tenant access token
(https://open.feishu.cn/document/server-docs/authentication-management/access-token/tenant_access_token_internal),
shared across instances through the store. Failures map to:

- HTTP 429, code 99991400 (either with `x-ogw-ratelimit-reset`, seconds;
  https://open.feishu.cn/document/server-docs/api-call-guide/frequency-control) and 230020
  (message rate limit) -> `RateLimited`;
- 99991663 / 99991661 (token invalid or missing): drop the token, fetch one, retry once;
- any other non-zero `code`, HTTP or network error -> `PlatformError(code)`.

Request bodies are serialised compactly with `ensure_ascii=False`, so Chinese text costs its
UTF-8 bytes and no more against the 30 KB card limit.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx

from adapters.download import fetch
from adapters.tokens import SharedToken
from gateway.config import FeishuBot
from gateway.outbound import Answer, JsonApi, json_object, with_token
from gateway.platform import PlatformError
from gateway.store import keys
from gateway.store.base import SharedState

PLATFORM = "feishu"
TOKEN_REJECTED = {"99991663", "99991661"}
RATE_LIMITED = {99991400, 230020}
MAX_DOWNLOAD_BYTES = 100 * 1024 * 1024  # Feishu's own cap on message resources


def dumps(payload: object) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _check(answer: Answer) -> dict[str, Any]:
    """The JSON body of a call that succeeded, or the typed error."""
    body = answer.body
    code = body.get("code") if body is not None else None
    if body is None or not isinstance(code, int):
        raise PlatformError(PLATFORM, f"http_{answer.status}", answer.what)
    if code != 0:
        raise PlatformError(PLATFORM, str(code), f"{answer.what}: {body.get('msg', '')}")
    if answer.status >= 400:
        raise PlatformError(PLATFORM, f"http_{answer.status}", answer.what)
    return body


API = JsonApi(
    PLATFORM,
    _check,
    error_code=lambda body: body.get("code"),
    rate_limit_codes=dict.fromkeys(RATE_LIMITED),  # wait what the reset header says
    wait_header="x-ogw-ratelimit-reset",
    http_429_code="http_429",
)


def _token_rejected(exc: PlatformError) -> bool:
    return exc.code in TOKEN_REJECTED


def _key(data: dict[str, Any], name: str, what: str) -> str:
    key = data.get(name)
    if not isinstance(key, str) or not key:
        raise PlatformError(PLATFORM, f"no_{name}", what)
    return key


class FeishuAPI:
    def __init__(self, http: httpx.AsyncClient, store: SharedState, config: FeishuBot) -> None:
        self._http = http
        self._base = config.resolved_api_base.rstrip("/")
        self._app_id = config.app_id
        self._secret = config.app_secret
        # Keyed by app: two bots of one app share one token, as Feishu issues one per app.
        self._token = SharedToken(
            store, keys.platform_token("feishu", self._base, config.app_id), self._fetch
        )

    async def _fetch(self) -> tuple[str, float]:
        body = await self._send(
            "POST",
            "/open-apis/auth/v3/tenant_access_token/internal",
            {"app_id": self._app_id, "app_secret": self._secret.get_secret_value()},
            token=None,
        )
        token = body.get("tenant_access_token")
        if not isinstance(token, str) or not token:
            raise PlatformError(PLATFORM, "no_token", "tenant_access_token/internal")
        return token, float(body.get("expire") or 7200)

    async def _send(
        self,
        method: str,
        path: str,
        payload: object | None,
        *,
        token: str | None,
        params: dict[str, str] | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        headers = {"Content-Type": "application/json; charset=utf-8", **(extra_headers or {})}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        content = dumps(payload).encode() if payload is not None else None
        return await API.send(
            self._http,
            method,
            self._base + path,
            what=path,
            content=content,
            headers=headers,
            params=params,
        )

    async def call(
        self,
        method: str,
        path: str,
        payload: object | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """An authenticated call; returns the whole body (`code`, `msg`, `data`, …)."""
        return await with_token(
            self._token,
            lambda token: self._send(method, path, payload, token=token, params=params),
            rejected=_token_rejected,
        )

    async def data(
        self, method: str, path: str, payload: object | None = None, **params: str
    ) -> dict[str, Any]:
        """The `data` object of a call."""
        body = await self.call(method, path, payload, params or None)
        data = body.get("data")
        return data if isinstance(data, dict) else {}

    # --- the calls the adapter makes -----------------------------------------------------

    async def check_token(self) -> None:
        """Fetch a tenant access token (it proves app_id and app_secret)."""
        await self._token.get()

    async def bot_info(self) -> dict[str, Any]:
        """`GET /open-apis/bot/v3/info`: the bot's `open_id`, `app_name`, … (under `bot`)."""
        body = await self.call("GET", "/open-apis/bot/v3/info")
        bot = body.get("bot")
        return bot if isinstance(bot, dict) else {}

    async def bot_open_id(self) -> str:
        """The bot's own open_id."""
        open_id = (await self.bot_info()).get("open_id")
        if not isinstance(open_id, str) or not open_id:
            raise PlatformError(PLATFORM, "no_open_id", "bot/v3/info")
        return open_id

    async def reply(
        self, message_id: str, msg_type: str, content: object, *, in_thread: bool, uuid: str
    ) -> str:
        """Reply to a message; returns the new message's id."""
        data = await self.data(
            "POST",
            f"/open-apis/im/v1/messages/{_segment(message_id)}/reply",
            {
                "msg_type": msg_type,
                "content": dumps(content),
                "reply_in_thread": in_thread,
                "uuid": uuid,
            },
        )
        new_id = data.get("message_id")
        if not isinstance(new_id, str) or not new_id:
            raise PlatformError(PLATFORM, "no_message_id", "im/v1/messages/reply")
        return new_id

    async def patch_message(self, message_id: str, card: object) -> None:
        """Replace an interactive card (`PATCH /open-apis/im/v1/messages/:id`; 5 QPS per
        message, 14 days, `update_multi` cards only)."""
        await self.call(
            "PATCH", f"/open-apis/im/v1/messages/{_segment(message_id)}", {"content": dumps(card)}
        )

    async def delete_message(self, message_id: str) -> None:
        """Recall one of the bot's own messages (`DELETE /open-apis/im/v1/messages/:id`)."""
        await self.call("DELETE", f"/open-apis/im/v1/messages/{_segment(message_id)}")

    async def user_name(self, open_id: str) -> str | None:
        """A user's name (`GET /open-apis/contact/v3/users/:id`; needs a contact scope)."""
        data = await self.data(
            "GET", f"/open-apis/contact/v3/users/{_segment(open_id)}", user_id_type="open_id"
        )
        user = data.get("user")
        name = user.get("name") if isinstance(user, dict) else None
        return name if isinstance(name, str) and name else None

    # --- CardKit (https://open.feishu.cn/document/cardkit-v1/feishu-card-resource-overview)

    async def create_card(self, card: object) -> str:
        """Create a card entity (`POST /open-apis/cardkit/v1/cards`); returns `card_id`."""
        data = await self.data(
            "POST", "/open-apis/cardkit/v1/cards", {"type": "card_json", "data": dumps(card)}
        )
        card_id = data.get("card_id")
        if not isinstance(card_id, str) or not card_id:
            raise PlatformError(PLATFORM, "no_card_id", "cardkit/v1/cards")
        return card_id

    async def stream_text(self, card_id: str, element_id: str, text: str, sequence: int) -> None:
        """Set an element's full text; a prefix-extension renders typewriter-style
        (`PUT /open-apis/cardkit/v1/cards/:card_id/elements/:element_id/content`)."""
        await self.call(
            "PUT",
            f"/open-apis/cardkit/v1/cards/{card_id}/elements/{element_id}/content",
            {"content": text, "sequence": sequence},
        )

    async def card_settings(self, card_id: str, settings: object, sequence: int) -> None:
        """Change a card's `config` (`PATCH /open-apis/cardkit/v1/cards/:card_id/settings`)."""
        await self.call(
            "PATCH",
            f"/open-apis/cardkit/v1/cards/{card_id}/settings",
            {"settings": dumps(settings), "sequence": sequence},
        )

    async def replace_card(self, card_id: str, card: object, sequence: int) -> None:
        """Replace a card entity whole (`PUT /open-apis/cardkit/v1/cards/:card_id`)."""
        await self.call(
            "PUT",
            f"/open-apis/cardkit/v1/cards/{card_id}",
            {"card": {"type": "card_json", "data": dumps(card)}, "sequence": sequence},
        )

    async def update_element(
        self, card_id: str, element_id: str, element: dict[str, Any], sequence: int
    ) -> None:
        """Replace one element of a card entity
        (`PUT /open-apis/cardkit/v1/cards/:card_id/elements/:element_id`)."""
        await self.call(
            "PUT",
            f"/open-apis/cardkit/v1/cards/{card_id}/elements/{element_id}",
            {"element": dumps(element), "sequence": sequence},
        )

    async def add_elements(
        self, card_id: str, elements: list[dict[str, Any]], sequence: int, *, before: str = ""
    ) -> None:
        """Add elements to a card entity, at the end or before element `before`
        (`POST /open-apis/cardkit/v1/cards/:card_id/elements`)."""
        body: dict[str, Any] = {
            "type": "insert_before" if before else "append",
            "elements": dumps(elements),
            "sequence": sequence,
        }
        if before:
            body["target_element_id"] = before
        await self.call("POST", f"/open-apis/cardkit/v1/cards/{card_id}/elements", body)

    # --- uploads (im:resource): https://open.feishu.cn/document/server-docs/im-v1/image/create

    async def upload_image(self, name: str, data: bytes, mime: str) -> str:
        """`POST /open-apis/im/v1/images` (multipart, `image_type=message`; ≤ 10 MB);
        returns the `image_key` a card or an image message shows."""
        data_out = await self._upload(
            "/open-apis/im/v1/images", {"image_type": "message"}, ("image", name, data, mime)
        )
        return _key(data_out, "image_key", "im/v1/images")

    async def upload_file(self, name: str, data: bytes, mime: str, file_type: str) -> str:
        """`POST /open-apis/im/v1/files` (multipart; ≤ 30 MB); returns the `file_key` of a
        file message. `file_type` is opus, mp4, pdf, doc, xls, ppt or stream."""
        fields = {"file_type": file_type, "file_name": name}
        data_out = await self._upload("/open-apis/im/v1/files", fields, ("file", name, data, mime))
        return _key(data_out, "file_key", "im/v1/files")

    async def _upload(
        self, path: str, fields: dict[str, str], part: tuple[str, str, bytes, str]
    ) -> dict[str, Any]:
        field, name, data, mime = part

        async def send(token: str) -> dict[str, Any]:
            return await API.send(
                self._http,
                "POST",
                self._base + path,
                what=path,
                data=fields,
                files={field: (name, data, mime)},
                headers={"Authorization": f"Bearer {token}"},
                timeout=60.0,
            )

        body = await with_token(self._token, send, rejected=_token_rejected)
        out = body.get("data")
        return out if isinstance(out, dict) else {}

    async def download(self, message_id: str, key: str, kind: str) -> tuple[bytes, str]:
        """A file or image the user sent: (bytes, content type)
        (`GET /open-apis/im/v1/messages/:message_id/resources/:key?type=image|file`)."""
        path = f"/open-apis/im/v1/messages/{_segment(message_id)}/resources/{_segment(key)}"
        return await with_token(
            self._token,
            lambda token: self._fetch_resource(path, kind, token),
            rejected=_token_rejected,
        )

    async def _fetch_resource(self, path: str, kind: str, token: str) -> tuple[bytes, str]:
        fetched = await fetch(
            self._http,
            self._base + path,
            platform=PLATFORM,
            what=path,
            max_bytes=MAX_DOWNLOAD_BYTES,
            params={"type": kind},
            headers={"Authorization": f"Bearer {token}"},
        )
        status, content_type = fetched.status, fetched.content_type
        if status >= 400 or content_type == "application/json":
            # Errors come back as JSON with a non-zero code; a user's .json file does not.
            body = json_object(fetched.data)
            if status >= 400 or (body is not None and body.get("code") not in (0, None)):
                API.read(status, fetched.headers, fetched.data, path)
                raise PlatformError(PLATFORM, f"http_{status}", path)
        return fetched.data, content_type

    async def ws_endpoint(self) -> dict[str, Any]:
        """The long-connection URL and `ClientConfig` (`POST {api_base}/callback/ws/endpoint`
        with the app credentials, no token; lark-oapi `ws/client.py`)."""
        body = await self._send(
            "POST",
            "/callback/ws/endpoint",
            {"AppID": self._app_id, "AppSecret": self._secret.get_secret_value()},
            token=None,
            extra_headers={"locale": "zh"},
        )
        data = body.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("URL"), str):
            raise PlatformError(PLATFORM, "no_ws_url", "callback/ws/endpoint")
        return data


def _segment(event_value: str) -> str:
    """An id taken from an event, as one URL path segment: whatever it holds (`/`, `?`, a
    newline) cannot change which API is called, nor make the URL invalid."""
    return quote(event_value, safe="")
