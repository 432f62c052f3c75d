"""A fake WeCom AI bot on loopback: both sides of the protocol, recording everything.

- `WecomSide` plays WeCom in **webhook mode**: it encrypts and signs callbacks (receiveid
  "") for the gateway's `/webhooks/<bot>`, and checks and decrypts the gateway's sealed
  replies, as WeCom does.
- `FakeWecomBotServer` is an aiohttp server with what the gateway calls: `response_url`s
  (`POST /response/<code>`, usable once, as in doc path/101138), encrypted media
  (`GET /media/<name>`), and the **WebSocket** endpoint (`/ws`) of long-connection mode:
  `aibot_subscribe`, `ping`, callbacks pushed by the test, and acks for every reply frame.

Every call is recorded with a monotonic timestamp, so tests can count calls per second.
Errors can be injected (`fail_response_url`, `reply_errcode`, `ack_pings=False`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import WSMsgType, web

from adapters.wecom.crypto import WecomCrypto, aes_cbc_encrypt
from adapters.wecom_bot.adapter import WecomBotAdapter
from gateway.config import WecomAIBot
from gateway.models import WebhookRequest
from gateway.pacing import BotBudget
from gateway.platform import AdapterContext
from gateway.store.memory import MemoryStore
from gateway.words import words_for
from tests.fakes.intake import RecordingIntake

USED_ERRCODE = 95000  # the fake's answer to a second use of one response_url


@dataclass
class Call:
    kind: str  # response_url | media | subscribe | ping | aibot_respond_msg | ...
    body: dict[str, Any]
    at: float = field(default_factory=time.monotonic)
    req_id: str = ""


class WecomSide:
    """WeCom's side of webhook mode: sealed callbacks in, sealed replies out."""

    def __init__(self, token: str, encoding_aes_key: str) -> None:
        self.crypto = WecomCrypto(token, encoding_aes_key, "")

    def seal(
        self, payload: dict[str, Any] | bytes, *, timestamp: str = "", nonce: str = ""
    ) -> tuple[dict[str, str], bytes]:
        """(query, body) of a callback carrying `payload`."""
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or secrets.token_hex(5)
        encrypt = self.crypto.encrypt(raw)
        query = {
            "msg_signature": self.crypto.signature(timestamp, nonce, encrypt),
            "timestamp": timestamp,
            "nonce": nonce,
        }
        return query, json.dumps({"encrypt": encrypt}).encode()

    def open(self, body: bytes) -> dict[str, Any]:
        """Check a sealed reply's signature, as WeCom would, and return its payload."""
        envelope = json.loads(body)
        assert set(envelope) == {"encrypt", "msgsignature", "timestamp", "nonce"}
        self.crypto.verify(
            envelope["msgsignature"], envelope["timestamp"], envelope["nonce"], envelope["encrypt"]
        )
        payload: dict[str, Any] = json.loads(self.crypto.decrypt(envelope["encrypt"]))
        return payload

    async def post(self, client: Any, path: str, payload: dict[str, Any]) -> Any:
        """POST a callback through an aiohttp test client; returns the response."""
        query, body = self.seal(payload)
        return await client.post(path, params=query, data=body)

    async def call(self, client: Any, path: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """POST a callback and open the reply (None for an empty 200)."""
        response = await self.post(client, path, payload)
        assert response.status == 200, await response.text()
        body = await response.read()
        return self.open(body) if body else None

    async def refresh(self, client: Any, path: str, sid: str, user: str = "u1") -> dict[str, Any]:
        """One stream refresh callback, as WeCom sends while a stream is open."""
        payload = refresh_payload(sid, user)
        reply = await self.call(client, path, payload)
        assert reply is not None and reply["msgtype"] == "stream"
        stream: dict[str, Any] = reply["stream"]
        return stream


def text_payload(
    msgid: str,
    text: str,
    *,
    user: str = "u1",
    response_url: str = "",
    chatid: str | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "msgid": msgid,
        "aibotid": "AIBOT",
        "chattype": "group" if chatid else "single",
        "from": {"userid": user},
        "response_url": response_url,
        "msgtype": "text",
        "text": {"content": text},
    }
    if chatid:
        payload["chatid"] = chatid
    return payload


def refresh_payload(sid: str, user: str = "u1") -> dict[str, Any]:
    return {
        "msgid": secrets.token_hex(8),
        "aibotid": "AIBOT",
        "chattype": "single",
        "from": {"userid": user},
        "msgtype": "stream",
        "stream": {"id": sid},
    }


def event_payload(
    eventtype: str, detail: dict[str, Any] | None = None, user: str = "u1"
) -> dict[str, Any]:
    event: dict[str, Any] = {"eventtype": eventtype, **(detail or {})}
    return {
        "msgid": secrets.token_hex(8),
        "create_time": int(time.time()),
        "aibotid": "AIBOT",
        "chattype": "single",
        "from": {"userid": user},
        "msgtype": "event",
        "event": event,
    }


def card_click_payload(
    key: Any,
    task_id: Any,
    *,
    user: str = "u1",
    response_url: str = "",
    chatid: str | None = None,
    flat: bool = False,
) -> dict[str, Any]:
    """A click on a template card's button: `event_key` and `task_id` nested under
    `event.template_card_event` as the doc shows, or directly on `event` (`flat`) as the
    SDK types it."""
    detail = {"card_type": "button_interaction", "event_key": key, "task_id": task_id}
    payload = event_payload("template_card_event", detail if flat else None, user)
    if not flat:
        payload["event"]["template_card_event"] = detail
    payload["response_url"] = response_url
    if chatid:
        payload.update(chattype="group", chatid=chatid)
    return payload


def cards_sent(calls: list[Call]) -> list[dict[str, Any]]:
    """The template cards among sent messages (response_url or aibot_send_msg calls)."""
    return [c.body["template_card"] for c in calls if c.body.get("msgtype") == "template_card"]


def markdown_sent(calls: list[Call]) -> list[str]:
    return [c.body["markdown"]["content"] for c in calls if c.body.get("msgtype") == "markdown"]


class FakeWecomBotServer:
    def __init__(self, *, bot_id: str = "BOTID", secret: str = "BOTSECRET") -> None:
        self.bot_id = bot_id
        self.secret = secret
        self.calls: list[Call] = []
        self.media: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.used_codes: set[str] = set()
        self.fail_response_url: list[int] = []  # errcodes for the next response_url calls
        self.reply_errcode: dict[str, int] = {}  # cmd -> errcode for its next ack
        self.uploads: dict[str, dict[str, Any]] = {}  # upload_id -> init body and chunks
        self.files: dict[str, tuple[str, str, bytes]] = {}  # media_id -> type, name, bytes
        self.ack_pings = True
        self.connections = 0
        self.subscribed = asyncio.Event()
        self._sockets: list[web.WebSocketResponse] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # --- lifetime ------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/response/{code}", self._response_url)
        app.router.add_get("/media/{name}", self._media)
        app.router.add_get("/ws", self._websocket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        await self.drop()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/ws"

    def response_url(self, code: str) -> str:
        return f"{self.base_url}/response/{code}"

    def of(self, kind: str) -> list[Call]:
        return [c for c in self.calls if c.kind == kind]

    # --- HTTP ----------------------------------------------------------------------------

    async def _response_url(self, request: web.Request) -> web.Response:
        code = request.match_info["code"]
        body = await request.json()
        self.calls.append(Call("response_url", {"code": code, **body}))
        if self.fail_response_url:
            errcode = self.fail_response_url.pop(0)
            return web.json_response({"errcode": errcode, "errmsg": "injected"})
        if code in self.used_codes:
            return web.json_response({"errcode": USED_ERRCODE, "errmsg": "used (fake)"})
        self.used_codes.add(code)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    def add_media(
        self, name: str, plaintext: bytes, key_b64: str, filename: str | None = None
    ) -> str:
        """Serve `plaintext` encrypted as WeCom does (AES-256-CBC, IV = key[:16], PKCS#7
        to 32 bytes) under /media/<name>; returns the URL."""
        key = base64.b64decode(key_b64 + "=" * (-len(key_b64) % 4))
        headers = {"Content-Type": "application/octet-stream"}
        if filename:
            headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{filename}"
        self.media[name] = (aes_cbc_encrypt(key, plaintext), headers)
        return f"{self.base_url}/media/{name}"

    async def _media(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.calls.append(Call("media", {"name": name}))
        if name not in self.media:
            return web.Response(status=404)
        data, headers = self.media[name]
        return web.Response(body=data, headers=headers)

    # --- WebSocket -----------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        self._sockets.append(ws)
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                await self._on_frame(ws, json.loads(msg.data))
        finally:
            self._sockets.remove(ws)
            if not self._sockets:
                self.subscribed.clear()
        return ws

    async def _on_frame(self, ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
        cmd, req_id = frame.get("cmd", ""), frame["headers"]["req_id"]
        body = frame.get("body") or {}
        self.calls.append(Call(cmd, body, req_id=req_id))
        if cmd == "aibot_subscribe":
            good = body == {"bot_id": self.bot_id, "secret": self.secret}
            await ws.send_json(_ack(req_id, 0 if good else 40001))
            if good:
                self.subscribed.set()
            else:
                await ws.close()
        elif cmd == "ping":
            if self.ack_pings:
                await ws.send_json(_ack(req_id, 0))
        elif cmd.startswith("aibot_upload_media_"):
            await ws.send_json(self._upload(cmd, req_id, body))
        elif cmd.startswith("aibot_"):
            await ws.send_json(_ack(req_id, self.reply_errcode.pop(cmd, 0)))

    def _upload(self, cmd: str, req_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """The three upload steps (aibot-node-sdk `uploadMedia`): init -> upload_id, chunks
        (<= 512 KB raw each), finish -> media_id, checked against the declared size and md5."""
        errcode = self.reply_errcode.pop(cmd, 0)
        if errcode:
            return _ack(req_id, errcode)
        if cmd == "aibot_upload_media_init":
            upload_id = f"up{len(self.uploads)}"
            self.uploads[upload_id] = {**body, "chunks": {}}
            return {**_ack(req_id, 0), "body": {"upload_id": upload_id}}
        upload = self.uploads.get(str(body.get("upload_id")))
        if upload is None:
            return _ack(req_id, 40058)
        if cmd == "aibot_upload_media_chunk":
            data = base64.b64decode(body["base64_data"])
            if len(data) > 512 * 1024:
                return _ack(req_id, 40058)
            upload["chunks"][int(body["chunk_index"])] = data
            return _ack(req_id, 0)
        chunks = upload["chunks"]
        data = b"".join(chunks[i] for i in sorted(chunks))
        complete = len(chunks) == upload["total_chunks"] and len(data) == upload["total_size"]
        if not complete or hashlib.md5(data).hexdigest() != upload["md5"]:
            return _ack(req_id, 40058)
        media_id = f"media-{len(self.files)}"
        self.files[media_id] = (upload["type"], upload["filename"], data)
        return {**_ack(req_id, 0), "body": {"media_id": media_id}}

    async def push(self, cmd: str, body: dict[str, Any]) -> str:
        """Send a callback frame on the newest connection; returns its req_id."""
        req_id = secrets.token_hex(8)
        await self._sockets[-1].send_json({"cmd": cmd, "headers": {"req_id": req_id}, "body": body})
        return req_id

    async def drop(self) -> None:
        """Close every connection from the server side."""
        for ws in list(self._sockets):
            await ws.close()

    def replies(self, req_id: str) -> list[Call]:
        return [c for c in self.calls if c.req_id == req_id and c.kind.startswith("aibot_respond")]


def _ack(req_id: str, errcode: int) -> dict[str, Any]:
    return {
        "headers": {"req_id": req_id},
        "errcode": errcode,
        "errmsg": "ok" if not errcode else "err",
    }


# --- for adapter unit tests -----------------------------------------------------------------


class RecordingAssistant:
    """The core's `AssistantHooks`, recorded (unit tests have no relay)."""

    def __init__(self, opening: str | None = "Welcome from Dify", delay: float = 0.0) -> None:
        self.opening = opening
        self.delay = delay
        self.feedbacks: list[tuple[str, str | None]] = []
        self.asked: list[Any] = []

    async def opening_statement(self, message: Any) -> str | None:
        self.asked.append(message)
        await asyncio.sleep(self.delay)
        return self.opening

    async def feedback(self, job_id: str, rating: Any) -> None:
        self.feedbacks.append((job_id, rating))


VECTOR_TOKEN = "QDG6eK"
VECTOR_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"


@dataclass
class AdapterKit:
    adapter: WecomBotAdapter
    store: Any
    assistant: RecordingAssistant
    intake: RecordingIntake
    http: Any


def make_adapter(
    *,
    bot: str = "wecom-ai",
    store: Any = None,
    http: Any = None,
    assistant: RecordingAssistant | None = None,
    **config: Any,
) -> AdapterKit:
    """A `WecomBotAdapter` on a memory store, outside any gateway. `config` overrides the
    bot's keys (webhook mode with the vector-C token and key by default). The caller
    closes `http` (and the adapter)."""
    settings: dict[str, Any] = {
        "platform": "wecom_bot",
        "app": "main",
        "token": VECTOR_TOKEN,
        "encoding_aes_key": VECTOR_AES_KEY,
        **config,
    }
    store = store if store is not None else MemoryStore()
    http = http if http is not None else httpx.AsyncClient()
    assistant = assistant or RecordingAssistant()
    intake = RecordingIntake(bot)
    bot_config = WecomAIBot.model_validate(settings)
    context = AdapterContext(
        http=http, store=store, budget=BotBudget(), deliver=intake.deliver, assistant=assistant
    )
    # As the runtime does: the bot's words in its configured (or its platform's) locale.
    context.words = words_for(bot_config.resolved_locale)
    adapter = WecomBotAdapter(bot, bot_config, context)
    return AdapterKit(adapter, store, assistant, intake, http)


def webhook_request(
    query: dict[str, str], body: bytes, method: str = "POST", received_at: float | None = None
) -> WebhookRequest:
    """The request as the edge passes it, received now (or at `received_at`: a known-answer
    vector is checked as if it arrived when it was signed)."""
    return WebhookRequest(
        method=method,
        path="/webhooks/wecom-ai",
        query=query,
        headers={"content-type": "application/json"},
        body=body,
        received_at=time.time() if received_at is None else received_at,
    )
