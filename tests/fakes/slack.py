"""A fake Slack Web API (and Socket Mode server) on loopback that records every call and
renders each message the way a user would see it.

File uploads work the external way, with Slack's own strictness: `files.getUploadURLExternal`
takes form fields only (a JSON body gets `invalid_arguments`, as the real API answers), the
bytes go to the upload URL, and `files.completeUploadExternal` shares them into a channel
(a user id as `channel_id` is refused) and thread, where they show as a message."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

BOT_TOKEN = "xoxb-test-token"
APP_TOKEN = "xapp-test-token"
BOT_USER_ID = "UBOT"
TEAM_ID = "T111"


@dataclass
class Call:
    method: str
    payload: dict[str, Any]
    at: float  # time.monotonic()


@dataclass
class Message:
    channel: str
    thread_ts: str | None
    ts: str
    streaming: bool
    text: str = ""
    open: bool = True  # a stream not stopped yet
    states: list[tuple[float, str]] = field(default_factory=list)  # (when, visible text)
    blocks: list[dict[str, Any]] | None = None  # the last blocks the message was given
    files: list[dict[str, Any]] = field(default_factory=list)  # a file share: the files

    def show(self, text: str) -> None:
        self.text = text
        self.states.append((time.monotonic(), text))


@dataclass
class FakeSlack:
    streaming: bool = True
    calls: list[Call] = field(default_factory=list)
    messages: dict[str, Message] = field(default_factory=dict)
    deleted: list[Message] = field(default_factory=list)  # chat.delete took them away
    views: list[dict[str, Any]] = field(default_factory=list)  # the modals views.open opened
    files: dict[str, bytes] = field(default_factory=dict)
    acks: list[str] = field(default_factory=list)
    socket_connections: int = 0
    user_names: dict[str, str] = field(default_factory=dict)
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)  # file id -> upload
    base_url: str = ""
    _inject: dict[str, list[tuple[int, dict[str, Any], dict[str, str]]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _sockets: list[web.WebSocketResponse] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    # --- control from tests --------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        *,
        status: int = 200,
        error: str = "ratelimited",
        retry_after: float | None = None,
        times: int = 1,
    ) -> None:
        """Make the next `times` calls of `method` fail (HTTP `status`, or ok:false)."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        for _ in range(times):
            self._inject[method].append((status, {"ok": False, "error": error}, headers))

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        return [
            m for m in self.messages.values() if m.channel == channel and m.thread_ts == thread_ts
        ]

    def click(
        self,
        message: Message,
        action_id: str,
        *,
        user: str = "U222",
        action_ts: str | None = None,
    ) -> dict[str, Any]:
        """The `block_actions` payload Slack sends when `user` clicks the button
        `action_id` of `message` (its value and the message's blocks as Slack holds them)."""
        buttons = [
            element
            for block in message.blocks or []
            for element in block.get("elements", [])
            if element.get("action_id") == action_id
        ]
        if not buttons:
            raise AssertionError(f"no button {action_id} on the message")
        (button,) = buttons
        return {
            "type": "block_actions",
            "user": {"id": user, "username": user, "team_id": TEAM_ID},
            "api_app_id": "A111",
            "team": {"id": TEAM_ID},
            "container": {
                "type": "message",
                "message_ts": message.ts,
                "channel_id": message.channel,
                "is_ephemeral": False,
            },
            "channel": {"id": message.channel},
            "message": {
                "ts": message.ts,
                "thread_ts": message.thread_ts,
                "text": message.text,
                "blocks": message.blocks or [],
            },
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": "b",
                    "type": "button",
                    "value": button["value"],
                    "action_ts": action_ts or f"{time.time():.6f}",
                }
            ],
            "trigger_id": "1.2.3",
            "response_url": self.base_url + "/response",
        }

    def submit(self, view: dict[str, Any], value: str, *, user: str = "U222") -> dict[str, Any]:
        """The `view_submission` payload Slack sends when `user` submits the modal `view`
        (opened by views.open) with `value` in its one text input."""
        (block,) = view["blocks"]
        action_id = block["element"]["action_id"]
        state = {
            "values": {block["block_id"]: {action_id: {"type": "plain_text_input", "value": value}}}
        }
        return {
            "type": "view_submission",
            "team": {"id": TEAM_ID},
            "user": {"id": user, "team_id": TEAM_ID},
            "api_app_id": "A111",
            "trigger_id": "4.5.6",
            "view": {
                "id": f"V{self.views.index(view) + 1:06d}",
                "type": "modal",
                "callback_id": view["callback_id"],
                "private_metadata": view["private_metadata"],
                "state": state,
                "hash": "h",
            },
            "response_urls": [],
        }

    def final_texts(self, channel: str, thread_ts: str) -> list[str]:
        return [m.text for m in self.thread(channel, thread_ts)]

    async def socket_send(self, message: dict[str, Any]) -> None:
        await self._wait_socket()
        await self._sockets[-1].send_str(json.dumps(message))

    async def socket_drop(self) -> None:
        """Close the server side of the current socket (a network drop)."""
        await self._wait_socket()
        await self._sockets.pop().close()

    async def _wait_socket(self) -> None:
        for _ in range(500):
            if self._sockets and not self._sockets[-1].closed:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("no Socket Mode connection")

    # --- server --------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/files/{name}", self._file)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/api"
        return self.base_url

    async def stop(self) -> None:
        for ws in self._sockets:
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.content_type == "application/json":
            payload = await request.json()
        else:
            payload = dict(await request.post())
        self.calls.append(Call(method, payload, time.monotonic()))
        token = request.headers.get("Authorization", "")
        expected = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
        if token != f"Bearer {expected}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if self._inject[method]:
            status, body, headers = self._inject[method].pop(0)
            return web.json_response(body, status=status, headers=headers)
        if method.startswith("files.") and method.endswith("External"):
            form = request.content_type != "application/json"
            return web.json_response(self._files(method, payload, form))
        return web.json_response(self._respond(method, payload))

    def _files(self, method: str, p: dict[str, Any], form: bool) -> dict[str, Any]:
        if not form:
            return {"ok": False, "error": "invalid_arguments"}  # JSON is not taken here
        if method == "files.getUploadURLExternal":
            length = str(p.get("length") or "")
            if not p.get("filename") or not length.isdigit() or int(length) == 0:
                return {"ok": False, "error": "missing_argument"}
            file_id = f"F{len(self.uploads) + 1:08d}"
            self.uploads[file_id] = {"name": p["filename"], "length": int(length), "data": None}
            upload_url = self.base_url.replace("/api", f"/upload/{file_id}")
            return {"ok": True, "upload_url": upload_url, "file_id": file_id}
        channel = str(p.get("channel_id") or "")
        if not re.fullmatch(r"[CGDZ][A-Z0-9]+", channel):
            return {"ok": False, "error": "invalid_arguments"}
        shared = json.loads(str(p.get("files") or "[]"))
        for entry in shared:
            upload = self.uploads.get(entry.get("id"))
            if upload is None or upload["data"] is None:
                return {"ok": False, "error": "file_not_found"}
        ts = f"1700000000.{next(self._ts):06d}"
        message = Message(channel, p.get("thread_ts"), ts, streaming=False, open=False)
        message.files = [{**self.uploads[e["id"]], "title": e.get("title")} for e in shared]
        message.show(" ".join(f["name"] for f in message.files))
        self.messages[ts] = message
        return {"ok": True, "files": [{"id": e["id"]} for e in shared]}

    async def _upload(self, request: web.Request) -> web.Response:
        upload = self.uploads.get(request.match_info["file_id"])
        data = await request.read()
        if upload is None or len(data) != upload["length"]:
            return web.Response(status=400, text="bad upload")
        upload["data"] = data
        return web.Response(text="OK - " + str(len(data)))

    def shared_files(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """The files shared into a thread, as Slack holds them."""
        return [f for m in self.thread(channel, thread_ts) for f in m.files]

    def respond(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Answer a call as the API does, without HTTP (a test setting the scene)."""
        return self._respond(method, payload)

    def _respond(self, method: str, p: dict[str, Any]) -> dict[str, Any]:
        ok = {"ok": True}
        if method == "auth.test":
            return {**ok, "user_id": BOT_USER_ID, "bot_id": "BBOT", "team_id": TEAM_ID}
        if method == "users.info":
            user = str(p.get("user"))
            name = self.user_names.get(user, f"name-of-{user}")
            return {**ok, "user": {"id": user, "name": name, "profile": {"display_name": name}}}
        if method == "views.open":
            if not p.get("trigger_id") or not isinstance(p.get("view"), dict):
                return {"ok": False, "error": "invalid_arguments"}
            self.views.append(p["view"])
            return {**ok, "view": {"id": f"V{len(self.views):06d}", **p["view"]}}
        if method == "apps.connections.open":
            return {**ok, "url": self.base_url.replace("http", "ws").replace("/api", "/socket")}
        if method in ("chat.postMessage", "chat.startStream"):
            if method == "chat.startStream" and not self.streaming:
                return {"ok": False, "error": "unknown_method"}
            if not p.get("channel") or (method == "chat.startStream" and not p.get("thread_ts")):
                return {"ok": False, "error": "invalid_arguments"}
            ts = f"1700000000.{next(self._ts):06d}"
            msg = Message(
                str(p["channel"]), p.get("thread_ts"), ts, streaming=method == "chat.startStream"
            )
            msg.open = msg.streaming
            msg.blocks = p.get("blocks")
            msg.show(str(p.get("markdown_text") or "") if msg.streaming else str(p.get("text")))
            self.messages[ts] = msg
            return {**ok, "ts": ts, "channel": p["channel"]}
        msg = self.messages.get(str(p.get("ts")))
        if msg is None:
            return {"ok": False, "error": "message_not_found"}
        if method == "chat.delete":
            self.deleted.append(self.messages.pop(msg.ts))
        elif method == "chat.update":
            msg.open = False
            msg.blocks = p.get("blocks")
            msg.show(str(p.get("text")))
        elif method in ("chat.appendStream", "chat.stopStream"):
            if not msg.streaming or not msg.open:
                return {"ok": False, "error": "message_not_in_streaming_state"}
            if len(str(p.get("markdown_text") or "")) > 12_000:
                return {"ok": False, "error": "msg_too_long"}
            msg.show(msg.text + str(p.get("markdown_text") or ""))
            msg.open = method == "chat.appendStream"
            if method == "chat.stopStream" and p.get("blocks"):
                msg.blocks = p.get("blocks")
        else:
            return {"ok": False, "error": "unknown_method"}
        return {**ok, "ts": msg.ts}

    async def _file(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {BOT_TOKEN}":
            return web.Response(status=200, text="<html>login</html>", content_type="text/html")
        data = self.files.get(request.match_info["name"])
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="image/png")

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.socket_connections += 1
        self._sockets.append(ws)
        await ws.send_str(json.dumps({"type": "hello", "num_connections": 1}))
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                data = json.loads(msg.data)
                if "envelope_id" in data:
                    self.acks.append(str(data["envelope_id"]))
        return ws
