"""A fake WeCom server API (`qyapi.weixin.qq.com/cgi-bin/...`) on loopback, and helpers
that build encrypted, signed callbacks the way WeCom sends them.

The fake records every call with a timestamp, checks what the real API checks (token,
agentid, content size), enforces the per-member limit the way WeCom does (by silently
dropping the excess, doc path/90236), and can inject errcodes and expire tokens.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from adapters.wecom.crypto import WecomCrypto

CORP_ID = "ww1234567890abcdef"
AGENT_ID = 1000002
SECRET = "app-secret-0123456789"
TOKEN = "callbacktoken"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"


@dataclass
class Call:
    path: str
    params: dict[str, str]
    payload: dict[str, Any] | None
    at: float  # time.monotonic()


@dataclass
class Sent:
    touser: str
    msgtype: str
    content: str
    msgid: str
    at: float
    dropped: bool = False  # over the member's limit: WeCom answers ok and never delivers


@dataclass
class FakeQyapi:
    expires_in: int = 7200
    member_limit: tuple[int, float] = (30, 60.0)  # sends to one member per rolling window
    calls: list[Call] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    recalled: list[str] = field(default_factory=list)
    media: dict[str, tuple[bytes, str, str]] = field(default_factory=dict)
    uploads: dict[str, tuple[str, str, bytes]] = field(default_factory=dict)  # id -> type, name
    names: dict[str, str] = field(default_factory=dict)
    base_url: str = ""
    tokens_issued: int = 0
    _valid: set[str] = field(default_factory=set)
    _expired: set[str] = field(default_factory=set)
    _inject: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None

    # --- control from tests --------------------------------------------------------------

    def fail_next(self, path: str, errcode: int, errmsg: str = "injected", times: int = 1) -> None:
        """Answer the next `times` calls of `path` (e.g. "message/send") with `errcode`."""
        for _ in range(times):
            self._inject[path].append({"errcode": errcode, "errmsg": errmsg})

    def expire_tokens(self) -> None:
        """Every token issued so far now gets 42001, as when WeCom expires one early."""
        self._expired |= self._valid
        self._valid.clear()

    def of(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    def delivered(self, touser: str | None = None) -> list[Sent]:
        return [s for s in self.sent if not s.dropped and touser in (None, s.touser)]

    def texts(self, touser: str | None = None) -> list[str]:
        return [s.content for s in self.delivered(touser)]

    # --- server --------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/cgi-bin/{path:.+}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        params = dict(request.query)
        multipart = request.content_type.startswith("multipart/")
        payload = await request.json() if request.method == "POST" and not multipart else None
        self.calls.append(Call(path, params, payload, time.monotonic()))
        if path == "gettoken":
            return web.json_response(self._gettoken(params))
        token = params.get("access_token", "")
        if token in self._expired:
            return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
        if token not in self._valid:
            return web.json_response({"errcode": 40014, "errmsg": "invalid access_token"})
        if self._inject[path]:
            return web.json_response(self._inject[path].pop(0))
        if path == "message/send" and payload is not None:
            return web.json_response(self._send(payload))
        if path == "message/recall" and payload is not None:
            self.recalled.append(str(payload.get("msgid")))
            return web.json_response({"errcode": 0, "errmsg": "ok"})
        if path == "media/get":
            return self._media(params.get("media_id", ""))
        if path == "media/upload" and multipart:
            return web.json_response(await self._upload(request, params.get("type", "")))
        if path == "agent/get":
            if params.get("agentid") != str(AGENT_ID):
                return web.json_response({"errcode": 301002, "errmsg": "not allow operate"})
            return web.json_response({"errcode": 0, "agentid": AGENT_ID, "name": "HR helper"})
        if path == "user/get":
            user = params.get("userid", "")
            if user not in self.names:
                return web.json_response({"errcode": 60111, "errmsg": "userid not found"})
            return web.json_response({"errcode": 0, "userid": user, "name": self.names[user]})
        return web.json_response({"errcode": 48002, "errmsg": "api forbidden"})

    def _gettoken(self, params: dict[str, str]) -> dict[str, Any]:
        if params.get("corpid") != CORP_ID:
            return {"errcode": 40013, "errmsg": "invalid corpid"}
        if params.get("corpsecret") != SECRET:
            return {"errcode": 40001, "errmsg": "invalid credential"}
        self.tokens_issued += 1
        token = f"access-token-{self.tokens_issued}-{'x' * 16}"
        self._valid.add(token)
        return {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": self.expires_in}

    def _send(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("agentid") != AGENT_ID:
            return {"errcode": 40056, "errmsg": "invalid agentid"}
        msgtype = str(p.get("msgtype"))
        if msgtype in ("image", "file"):
            media_id = str((p.get(msgtype) or {}).get("media_id") or "")
            if self.uploads.get(media_id, ("",))[0] != msgtype:
                return {"errcode": 40007, "errmsg": "invalid media_id"}
            content = f"{msgtype}:{self.uploads[media_id][1]}"
        else:
            content = str((p.get(msgtype) or {}).get("content") or "")
        if not content:
            return {"errcode": 44004, "errmsg": "empty content"}
        if len(content.encode()) > 2048:
            # The real API truncates text silently; failing loudly here catches the bug.
            return {"errcode": 45002, "errmsg": "content size out of limit"}
        touser = str(p.get("touser"))
        now = time.monotonic()
        limit, window = self.member_limit
        recent = [s for s in self.sent if s.touser == touser and now - s.at < window]
        msgid = f"msgid-{next(self._ids)}"
        dropped = len(recent) >= limit
        self.sent.append(Sent(touser, msgtype, content, msgid, now, dropped))
        return {"errcode": 0, "errmsg": "ok", "invaliduser": "", "msgid": msgid}

    async def _upload(self, request: web.Request, kind: str) -> dict[str, Any]:
        """`media/upload` (doc path/96484): field `media`; > 5 bytes; image JPG/PNG ≤ 10 MB,
        file ≤ 20 MB."""
        form = await request.post()
        media = form.get("media")
        if kind not in ("image", "voice", "video", "file") or not isinstance(media, web.FileField):
            return {"errcode": 40004, "errmsg": "invalid media type"}
        data = media.file.read()
        limit = 10 * 1024 * 1024 if kind == "image" else 20 * 1024 * 1024
        if len(data) <= 5 or len(data) > limit:
            return {"errcode": 40006, "errmsg": "invalid media size"}
        if kind == "image" and not data.startswith((b"\x89PNG", b"\xff\xd8\xff")):
            return {"errcode": 40005, "errmsg": "invalid file type"}
        media_id = f"media-{len(self.uploads) + 1}"
        self.uploads[media_id] = (kind, str(media.filename), data)
        return {"errcode": 0, "errmsg": "ok", "type": kind, "media_id": media_id}

    def _media(self, media_id: str) -> web.Response:
        if media_id not in self.media:
            return web.json_response({"errcode": 40007, "errmsg": "invalid media_id"})
        data, content_type, name = self.media[media_id]
        return web.Response(
            body=data,
            content_type=content_type,
            headers={"Content-disposition": f'attachment; filename="{name}"'},
        )


# --- callbacks, as WeCom sends them ----------------------------------------------------------


def crypto() -> WecomCrypto:
    return WecomCrypto(TOKEN, AES_KEY, CORP_ID)


def message_xml(
    msg_type: str = "text",
    *,
    user: str = "zhangsan",
    msg_id: str | None = "4561255354251345929",
    create_time: int = 1700000000,
    agent_id: int = AGENT_ID,
    **fields: str,
) -> bytes:
    """A decrypted callback payload, shaped like the official samples."""
    parts = [
        f"<ToUserName><![CDATA[{CORP_ID}]]></ToUserName>",
        f"<FromUserName><![CDATA[{user}]]></FromUserName>",
        f"<CreateTime>{create_time}</CreateTime>",
        f"<MsgType><![CDATA[{msg_type}]]></MsgType>",
        *(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items()),
    ]
    if msg_id is not None:
        parts.append(f"<MsgId>{msg_id}</MsgId>")
    parts.append(f"<AgentID>{agent_id}</AgentID>")
    return ("<xml>" + "\n".join(parts) + "\n</xml>").encode()


def envelope(encrypt: str, agent_id: int = AGENT_ID) -> bytes:
    return (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName>"
        f"<Encrypt><![CDATA[{encrypt}]]></Encrypt>"
        f"<AgentID><![CDATA[{agent_id}]]></AgentID></xml>"
    ).encode()


def now() -> str:
    """The current Unix time as WeCom puts it in a callback's query: a fresh timestamp."""
    return str(int(time.time()))


def signed_post(
    plaintext: bytes,
    *,
    timestamp: str = "",
    nonce: str = "1372623149",
    sender: WecomCrypto | None = None,
) -> tuple[dict[str, str], bytes]:
    """(query, body) of a POST callback carrying `plaintext`, signed now unless
    `timestamp` says otherwise."""
    timestamp = timestamp or now()
    c = sender or crypto()
    encrypt = c.encrypt(plaintext)
    query = {
        "msg_signature": c.signature(timestamp, nonce, encrypt),
        "timestamp": timestamp,
        "nonce": nonce,
    }
    return query, envelope(encrypt)


def signed_get(echo: bytes, *, timestamp: str = "", nonce: str = "42") -> dict[str, str]:
    """The query of a GET URL verification whose echostr decrypts to `echo` (signed now
    unless `timestamp` says otherwise)."""
    timestamp = timestamp or now()
    c = crypto()
    echostr = c.encrypt(echo)
    return {
        "msg_signature": c.signature(timestamp, nonce, echostr),
        "timestamp": timestamp,
        "nonce": nonce,
        "echostr": echostr,
    }


def query_string(query: dict[str, str], *, plus_as_is: bool = False) -> str:
    """Encode a query as WeCom would: percent-encoded, or (`plus_as_is`) with `+` left raw,
    which a form decoder reads as a space."""
    encoded = urlencode(query)
    return encoded.replace("%2B", "+") if plus_as_is else encoded
