"""A recording fake of DingTalk on loopback: the OpenAPI (`/v1.0/…`), sessionWebhooks, file
downloads and a Stream-mode WebSocket server speaking the SDK's frames.

Every HTTP call is recorded with a monotonic timestamp, so tests can count calls per second;
errors and rate limits can be injected per path. The Stream side hands out tickets, pushes
SYSTEM/CALLBACK frames, records acks, and can ask for a reconnect (`disconnect`) or drop the
socket without a close frame, as networks do.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from adapters.dingtalk.verify import compute_sign

CLIENT_ID = "dingtestclient"
CLIENT_SECRET = "test_app_secret"
THROTTLED = {"code": "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", "message": "throttled"}


@dataclass
class Call:
    at: float
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]


@dataclass
class Card:
    """What one AI card went through, in order."""

    template: str
    space: str
    states: list[str] = field(default_factory=list)  # msgContent after each change
    flow: list[str] = field(default_factory=list)  # flowStatus values set, in order
    variables: dict[str, str] = field(default_factory=dict)  # every variable, as now
    puts: list[dict[str, str]] = field(default_factory=list)  # each PUT's cardParamMap
    callback: str = ""  # callbackType

    def take(self, params: dict[str, str]) -> None:
        self.variables.update(params)
        if "msgContent" in params:
            self.states.append(params["msgContent"])
        if "flowStatus" in params:
            self.flow.append(params["flowStatus"])

    @property
    def content(self) -> str:
        return self.states[-1] if self.states else ""


class FakeDingtalk:
    def __init__(self, client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.calls: list[Call] = []
        self.valid_tokens: set[str] = set()
        self.files: dict[str, tuple[bytes, str]] = {}
        self.media: dict[str, tuple[str, str, bytes]] = {}  # media_id -> (type, name, bytes)
        self.cards: dict[str, Card] = {}
        self.acks: list[dict[str, Any]] = []
        self.connections = 0  # WebSocket sessions accepted so far
        self.subscriptions: list[dict[str, str]] = []  # of the last connection opened
        self.base_url = ""
        self._failures: dict[str, deque[tuple[int, Any]]] = {}
        self._tickets: set[str] = set()
        self._ws: web.WebSocketResponse | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._runner: web.AppRunner | None = None
        self._ids = itertools.count(1)

    # --- lifetime ----------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1.0/oauth2/accessToken", self._token)
        app.router.add_post("/v1.0/gateway/connections/open", self._open)
        app.router.add_get("/stream", self._stream)
        app.router.add_post("/robot/sendBySession", self._session)
        app.router.add_get("/files/{code}", self._file)
        app.router.add_post("/media/upload", self._upload)
        app.router.add_route("*", "/v1.0/{tail:.*}", self._openapi)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- test controls -----------------------------------------------------------------

    def fail(self, path: str, status: int, body: Any, times: int = 1) -> None:
        """The next `times` calls to `path` answer `status` with `body`."""
        self._failures.setdefault(path, deque()).extend([(status, body)] * times)

    def throttle(self, path: str, times: int = 1) -> None:
        self.fail(path, 403, THROTTLED, times)

    def revoke_tokens(self) -> None:
        self.valid_tokens.clear()

    def session_webhook(self, session: str = "s1") -> str:
        return f"{self.base_url}/robot/sendBySession?session={session}"

    def add_file(self, code: str, data: bytes, content_type: str) -> None:
        self.files[code] = (data, content_type)

    def sent(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    def texts(self) -> list[str]:
        """The markdown/text of every robot message delivered, in order, by any route (media
        messages are in `media_sent()`)."""
        out: list[str] = []
        for call in self.calls:
            if call.path == "/robot/sendBySession":
                msg = call.body.get(call.body.get("msgtype"), {})
                out.append(msg.get("text") or msg.get("content") or "")
            elif call.path in (
                "/v1.0/robot/oToMessages/batchSend",
                "/v1.0/robot/groupMessages/send",
            ) and call.body.get("msgKey") in ("sampleText", "sampleMarkdown"):
                param = json.loads(call.body["msgParam"])
                out.append(param.get("text") or param.get("content") or "")
        return out

    # --- Stream controls ---------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    async def push(self, frame: dict[str, Any]) -> None:
        assert self._ws is not None, "no Stream client connected"
        await self._ws.send_str(json.dumps(frame, ensure_ascii=False))

    async def push_callback(self, payload: dict[str, Any], message_id: str | None = None) -> str:
        message_id = message_id or f"frame-{next(self._ids)}"
        await self._push_callback_frame("/v1.0/im/bot/messages/get", payload, message_id)
        return message_id

    async def _push_callback_frame(self, topic: str, data: dict[str, Any], message_id: str) -> None:
        """A CALLBACK frame on `topic`, as the Stream gateway sends one."""
        await self.push(
            {
                "specVersion": "1.0",
                "type": "CALLBACK",
                "headers": {
                    "appId": "app-1",
                    "connectionId": "conn-1",
                    "contentType": "application/json",
                    "messageId": message_id,
                    "time": str(int(time.time() * 1000)),
                    "topic": topic,
                },
                "data": json.dumps(data, ensure_ascii=False),
            }
        )

    async def push_card_click(
        self,
        out_track_id: str,
        action_id: str,
        *,
        user_id: str = "manager123",
        params: dict[str, Any] | None = None,
        content: Any = None,
        message_id: str | None = None,
    ) -> str:
        """A click on a card button whose "回传请求" has `action_id`, as the card callback
        topic delivers it; `content` replaces the JSON string DingTalk sends (to send a
        malformed one). DingTalk sends it only to a connection that subscribed to the topic."""
        topic = "/v1.0/card/instances/callback"
        assert {"type": "CALLBACK", "topic": topic} in self.subscriptions, "not subscribed"
        message_id = message_id or f"card-frame-{next(self._ids)}"
        private = {"cardPrivateData": {"actionIds": [action_id], "params": params or {}}}
        data = {
            "extension": "{}",
            "corpId": "dingcorp0001",
            "spaceType": "",
            "userIdType": 1,
            "type": "actionCallback",
            "userId": user_id,
            "content": json.dumps(private) if content is None else content,
            "spaceId": "",
            "outTrackId": out_track_id,
        }
        await self._push_callback_frame(topic, data, message_id)
        return message_id

    async def push_system(self, topic: str, data: dict[str, Any]) -> str:
        message_id = f"sys-{next(self._ids)}"
        await self.push(
            {
                "specVersion": "1.0",
                "type": "SYSTEM",
                "headers": {
                    "contentType": "application/json",
                    "messageId": message_id,
                    "time": str(int(time.time() * 1000)),
                    "topic": topic,
                },
                "data": json.dumps(data),
            }
        )
        return message_id

    async def push_ping(self) -> str:
        return await self.push_system("ping", {"opaque": str(uuid.uuid4())})

    async def push_disconnect(self) -> str:
        return await self.push_system("disconnect", {"reason": "persistent connection is timeout"})

    def drop(self) -> None:
        """Kill the socket with no close frame, as a network failure does."""
        if self._transport is not None:
            self._transport.abort()

    def ack_for(self, message_id: str) -> dict[str, Any] | None:
        return next(
            (a for a in self.acks if a.get("headers", {}).get("messageId") == message_id), None
        )

    # --- handlers ----------------------------------------------------------------------

    def media_sent(self) -> list[tuple[str, dict[str, Any]]]:
        """(msgKey, msgParam) of every robot media message sent through the OpenAPI."""
        return [
            (str(c.body["msgKey"]), json.loads(c.body["msgParam"]))
            for c in self.calls
            if c.path in ("/v1.0/robot/oToMessages/batchSend", "/v1.0/robot/groupMessages/send")
            and c.body.get("msgKey") in ("sampleImageMsg", "sampleFile")
        ]

    async def _upload(self, request: web.Request) -> web.Response:
        """`oapi …/media/upload?access_token&type` (multipart `media`, ≤ 20 MB)."""
        form = await request.post()
        self.calls.append(
            Call(time.monotonic(), "POST", request.path, dict(request.query), None, {})
        )
        if request.query.get("access_token") not in self.valid_tokens:
            return web.json_response({"errcode": 40014, "errmsg": "invalid access_token"})
        media = form.get("media")
        kind = request.query.get("type", "")
        if kind not in ("image", "voice", "video", "file") or not isinstance(media, web.FileField):
            return web.json_response({"errcode": 40004, "errmsg": "invalid media type"})
        data = media.file.read()
        if not data or len(data) > 20 * 1024 * 1024:
            return web.json_response({"errcode": 40006, "errmsg": "invalid size"})
        media_id = f"@lAD{next(self._ids):06d}"
        self.media[media_id] = (kind, str(media.filename), data)
        return web.json_response(
            {"errcode": 0, "errmsg": "ok", "type": kind, "media_id": media_id, "created_at": 1}
        )

    async def _record(self, request: web.Request) -> tuple[Call, web.Response | None]:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        call = Call(
            time.monotonic(),
            request.method,
            request.path,
            dict(request.query),
            body,
            {k.lower(): v for k, v in request.headers.items()},
        )
        self.calls.append(call)
        queue = self._failures.get(request.path)
        if queue:
            status, payload = queue.popleft()
            return call, web.json_response(payload, status=status)
        return call, None

    async def _token(self, request: web.Request) -> web.Response:
        call, failure = await self._record(request)
        if failure is not None:
            return failure
        body = call.body or {}
        if body.get("appKey") != self.client_id or body.get("appSecret") != self.client_secret:
            return web.json_response(
                {"code": "invalidClientIdOrSecret", "message": "bad"}, status=400
            )
        token = f"tok-{next(self._ids)}"
        self.valid_tokens.add(token)
        return web.json_response({"accessToken": token, "expireIn": 7200})

    async def _open(self, request: web.Request) -> web.Response:
        call, failure = await self._record(request)
        if failure is not None:
            return failure
        body = call.body or {}
        if body.get("clientId") != self.client_id or body.get("clientSecret") != self.client_secret:
            return web.json_response(
                {"code": "invalidClientIdOrSecret", "message": "bad"}, status=400
            )
        subscriptions = body.get("subscriptions")
        self.subscriptions = list(subscriptions) if isinstance(subscriptions, list) else []
        ticket = f"ticket+{next(self._ids)}/="  # characters that need quote_plus
        self._tickets.add(ticket)
        return web.json_response(
            {"endpoint": f"{self.base_url.replace('http', 'ws')}/stream", "ticket": ticket}
        )

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.json_response({"code": "invalidTicket"}, status=401)
        self._tickets.discard(ticket)  # a ticket opens one connection
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._ws, self._transport = ws, request.transport
        self.connections += 1
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                self.acks.append({**json.loads(msg.data), "_at": time.monotonic()})
        if self._ws is ws:
            self._ws = self._transport = None
        return ws

    async def _session(self, request: web.Request) -> web.Response:
        call, failure = await self._record(request)
        if failure is not None:
            return failure
        if not call.query.get("session"):
            return web.json_response({"errcode": 300001, "errmsg": "session invalid"})
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _file(self, request: web.Request) -> web.Response:
        _, failure = await self._record(request)
        if failure is not None:
            return failure
        found = self.files.get(request.match_info["code"])
        if found is None:
            return web.Response(status=404)
        return web.Response(body=found[0], content_type=found[1])

    async def _openapi(self, request: web.Request) -> web.Response:
        call, failure = await self._record(request)
        if failure is not None:
            return failure
        if call.headers.get("x-acs-dingtalk-access-token") not in self.valid_tokens:
            return web.json_response(
                {"code": "InvalidAuthentication", "message": "bad token"}, status=401
            )
        body = call.body if isinstance(call.body, dict) else {}
        handler = {
            ("POST", "/v1.0/robot/messageFiles/download"): self._download,
            ("POST", "/v1.0/robot/oToMessages/batchSend"): self._ok_send,
            ("POST", "/v1.0/robot/groupMessages/send"): self._ok_send,
            ("POST", "/v1.0/card/instances/createAndDeliver"): self._card_create,
            ("PUT", "/v1.0/card/streaming"): self._card_stream,
            ("PUT", "/v1.0/card/instances"): self._card_update,
        }.get((request.method, request.path))
        if handler is None:
            return web.json_response({"code": "notFound", "message": request.path}, status=404)
        return handler(body)

    def _download(self, body: dict[str, Any]) -> web.Response:
        code = body.get("downloadCode")
        if code not in self.files or body.get("robotCode") != self.client_id:
            return web.json_response({"code": "invalidDownloadCode", "message": "no"}, status=400)
        return web.json_response({"downloadUrl": f"{self.base_url}/files/{code}"})

    def _ok_send(self, body: dict[str, Any]) -> web.Response:
        key = body.get("msgKey")
        if key not in ("sampleText", "sampleMarkdown", "sampleImageMsg", "sampleFile"):
            return web.json_response({"code": "invalidMsgKey", "message": "no"}, status=400)
        param = json.loads(str(body.get("msgParam") or "{}"))
        media = param.get("photoURL") if key == "sampleImageMsg" else param.get("mediaId")
        known = {m.lstrip("@") for m in self.media} | set(self.media)
        if key in ("sampleImageMsg", "sampleFile") and media not in known:
            return web.json_response({"code": "invalidMediaId", "message": "no"}, status=400)
        return web.json_response({"processQueryKey": f"pqk-{next(self._ids)}"})

    def _card_create(self, body: dict[str, Any]) -> web.Response:
        track = body.get("outTrackId")
        if not isinstance(track, str) or track in self.cards:
            return web.json_response(
                {"code": "param.outTrackIdInvalid", "message": "no"}, status=400
            )
        params = body.get("cardData", {}).get("cardParamMap", {})
        if any(not isinstance(v, str) for v in params.values()):
            return web.json_response({"code": "param.invalid", "message": "values"}, status=400)
        card = Card(str(body.get("cardTemplateId")), str(body.get("openSpaceId")))
        card.callback = str(body.get("callbackType") or "")
        card.take(params)
        self.cards[track] = card
        return web.json_response({"success": True, "result": {"outTrackId": track}})

    def _card_stream(self, body: dict[str, Any]) -> web.Response:
        card = self.cards.get(str(body.get("outTrackId")))
        if card is None or not body.get("guid") or body.get("isFull") is not True:
            return web.json_response({"code": "param.invalid", "message": "stream"}, status=400)
        if card.flow and card.flow[-1] in ("3", "5"):
            return web.json_response({"code": "card.finished", "message": "closed"}, status=400)
        card.states.append(str(body.get("content")))
        return web.json_response({"success": True, "result": True})

    def _card_update(self, body: dict[str, Any]) -> web.Response:
        card = self.cards.get(str(body.get("outTrackId")))
        params = body.get("cardData", {}).get("cardParamMap", {})
        if card is None or any(not isinstance(v, str) for v in params.values()):
            return web.json_response({"code": "param.invalid", "message": "update"}, status=400)
        card.puts.append(dict(params))
        card.take(params)
        return web.json_response({"success": True, "result": True})


# --- building robot messages for tests -----------------------------------------------------

_msg_ids = itertools.count(1)


def robot_message(
    fake: FakeDingtalk,
    text: str = "hello",
    *,
    group: bool = False,
    mentioned: bool = True,
    msg_id: str | None = None,
    staff_id: str = "manager123",
    webhook: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A robot message as DingTalk sends it, answering through the fake's sessionWebhook."""
    payload: dict[str, Any] = {
        "msgId": msg_id or f"msg{next(_msg_ids):06d}==",
        "msgtype": "text",
        "text": {"content": f" {text}" if group else text},
        "conversationId": "cidGroup0001==" if group else "cidDm0001==",
        "conversationType": "2" if group else "1",
        "senderId": "$:LWCP_v1:$senderAAAA==",
        "senderNick": "Zhang San",
        "senderCorpId": "dingcorp0001",
        "senderStaffId": staff_id,
        "chatbotUserId": "$:LWCP_v1:$robotBBBB==",
        "chatbotCorpId": "dingcorp0001",
        "robotCode": fake.client_id,
        "isAdmin": False,
        "sessionWebhook": fake.session_webhook() if webhook is None else webhook,
        "sessionWebhookExpiredTime": int((time.time() + 5400) * 1000),
        "createAt": int(time.time() * 1000),
    }
    if group:
        payload["conversationTitle"] = "IT help"
        payload["isInAtList"] = mentioned
    if not staff_id:
        del payload["senderStaffId"]
    payload.update(extra)
    return payload


_last_ms = 0


def signed_headers(secret: str = CLIENT_SECRET, timestamp: str | None = None) -> dict[str, str]:
    """HTTP-mode headers: `timestamp` (ms) and `sign` (adapters/dingtalk/verify.py). Each
    call is a new callback, so each gets a timestamp of its own (a sign is accepted once)."""
    global _last_ms
    if timestamp is None:
        _last_ms = max(int(time.time() * 1000), _last_ms + 1)
        timestamp = str(_last_ms)
    sign = compute_sign(secret, timestamp)
    return {"timestamp": timestamp, "sign": sign, "Content-Type": "application/json"}


def dingtalk_bot(fake: FakeDingtalk, **extra: Any) -> dict[str, Any]:
    """A `bots.<name>` config tree for a DingTalk bot pointed at the fake."""
    return {
        "platform": "dingtalk",
        "app": "main",
        "api_base": fake.base_url,
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        **extra,
    }
