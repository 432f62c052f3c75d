"""A recording fake of the Feishu/Lark OpenAPI and long-connection server, on loopback.

It behaves like Feishu where the gateway cares:
- tenant tokens that can be expired (99991663), checked on every call;
- replies with `uuid` idempotency, a 30 KB request limit for cards (230025);
- CardKit entities: sent at most once, `sequence` strictly increasing per card across all
  operations (300317), element content PUT only while `streaming_mode` is on, settings in the
  documented form `{"config": {...}}` (other keys are ignored, so a wrong form is visible);
- card JSON 2.0 `form` containers checked as Feishu documents them (200621): at the card's
  root only, every interactive element in one named and the names unique in the card, each
  button in one saying what it does (`form_action_type`), one that submits, a menu's
  initial option one of its values;
- interactive cards PATCHed only when `update_multi` is true;
- message resources, bot info, contact names;
- image and file uploads (multipart, `im/v1/images` ≤ 10 MB, `im/v1/files` ≤ 30 MB, never
  empty), image and file messages, CardKit elements added to a card (`append`,
  `insert_before`), with the same `sequence` rule;
- the long-connection endpoint and a WebSocket speaking `pbbp2.Frame`: pings answered with a
  pong carrying `ClientConfig`, events pushed (optionally in several parts), acks recorded.

Every call is recorded with a monotonic timestamp; `inject()` makes the next matching calls
fail (an error code, an HTTP status, rate-limit headers).
"""

from __future__ import annotations

import json
import re
import time
import uuid as uuid_lib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from adapters.feishu import crypto
from adapters.feishu.frames import CONTROL, DATA, Frame, decode, encode

CARD_LIMIT = 30 * 1024
CONTENT_LIMIT = 100_000


@dataclass
class Call:
    t: float
    method: str
    path: str
    query: dict[str, str]
    body: Any
    size: int


@dataclass
class Injection:
    method: str
    pattern: re.Pattern[str]
    code: int
    status: int
    headers: dict[str, str]
    times: int


@dataclass
class FakeCard:
    card_id: str
    data: dict[str, Any]
    sequence: int = 0
    sent_as: str | None = None
    history: list[tuple[float, str, int]] = field(default_factory=list)  # (t, op, sequence)
    states: list[tuple[float, str]] = field(default_factory=list)  # (t, what it shows)

    @property
    def streaming(self) -> bool:
        return bool(self.data.get("config", {}).get("streaming_mode"))

    def text(self) -> str:
        return "\n".join(
            str(e.get("content", "")) for e in self.elements() if e.get("tag") == "markdown"
        )

    def elements(self) -> list[dict[str, Any]]:
        body = self.data.get("body")
        if isinstance(body, dict):
            return list(body.get("elements") or [])
        return list(self.data.get("elements") or [])


@dataclass
class FakeMessage:
    message_id: str
    parent_id: str
    msg_type: str
    in_thread: bool
    card: dict[str, Any] | None = None  # an interactive card sent as JSON
    card_id: str | None = None  # a CardKit entity
    deleted: bool = False
    patches: list[float] = field(default_factory=list)


class FakeFeishu:
    def __init__(
        self,
        *,
        app_id: str = "cli_test",
        app_secret: str = "app-secret",
        bot_open_id: str = "ou_bot",
        client_config: dict[str, int] | None = None,
    ) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self.bot_open_id = bot_open_id
        self.client_config = client_config or {
            "ReconnectCount": -1,
            "ReconnectInterval": 1,
            "ReconnectNonce": 0,
            "PingInterval": 120,
        }
        self.pong_config: dict[str, int] | None = None
        self.calls: list[Call] = []
        self.tokens: set[str] = set()
        self.tokens_issued = 0
        self.messages: dict[str, FakeMessage] = {}
        self.order: list[str] = []  # bot message ids in the order they were sent
        self.cards: dict[str, FakeCard] = {}
        self.uuids: dict[str, str] = {}
        self.resources: dict[tuple[str, str], tuple[bytes, str, str]] = {}
        self.names: dict[str, str] = {}
        self.images: dict[str, bytes] = {}  # image_key -> the bytes uploaded
        self.files: dict[str, tuple[str, str, bytes]] = {}  # file_key -> (name, type, bytes)
        self.injections: list[Injection] = []
        self.bot_info_fails = 0
        # long connection
        self.ws_frames: list[Frame] = []  # every frame the client sent
        self.ws_connections: list[web.WebSocketResponse] = []
        self.ws_connects = 0
        self.acks: dict[str, Frame] = {}
        self.service_id = 77
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # --- lifetime ------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        r = app.router
        r.add_post("/open-apis/auth/v3/tenant_access_token/internal", self._token)
        r.add_get("/open-apis/bot/v3/info", self._bot_info)
        r.add_post("/open-apis/im/v1/messages/{mid}/reply", self._reply)
        r.add_patch("/open-apis/im/v1/messages/{mid}", self._patch_message)
        r.add_delete("/open-apis/im/v1/messages/{mid}", self._delete_message)
        r.add_get("/open-apis/im/v1/messages/{mid}/resources/{key}", self._resource)
        r.add_get("/open-apis/contact/v3/users/{uid}", self._user)
        r.add_post("/open-apis/cardkit/v1/cards", self._create_card)
        r.add_put("/open-apis/cardkit/v1/cards/{cid}", self._replace_card)
        r.add_put("/open-apis/cardkit/v1/cards/{cid}/elements/{eid}/content", self._content)
        r.add_patch("/open-apis/cardkit/v1/cards/{cid}/settings", self._settings)
        r.add_post("/open-apis/cardkit/v1/cards/{cid}/elements", self._add_elements)
        r.add_put("/open-apis/cardkit/v1/cards/{cid}/elements/{eid}", self._update_element)
        r.add_post("/open-apis/im/v1/images", self._upload_image)
        r.add_post("/open-apis/im/v1/files", self._upload_file)
        r.add_post("/callback/ws/endpoint", self._ws_endpoint)
        r.add_get("/ws", self._ws)
        return app

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.base_url

    async def stop(self) -> None:
        for ws in list(self.ws_connections):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- test controls -------------------------------------------------------------------

    def inject(
        self,
        method: str,
        path: str,
        *,
        code: int = 230001,
        status: int = 200,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Make the next `times` calls matching `method` and the `path` regex fail."""
        self.injections.append(
            Injection(method, re.compile(path), code, status, headers or {}, times)
        )

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def add_resource(self, message_id: str, key: str, data: bytes, kind: str, ctype: str) -> None:
        self.resources[(message_id, key)] = (data, kind, ctype)

    def calls_to(self, method: str, path: str) -> list[Call]:
        pattern = re.compile(path)
        return [c for c in self.calls if c.method == method and pattern.search(c.path)]

    def visible(self, message_id: str) -> str:
        """The markdown a user sees in one bot message now."""
        message = self.messages[message_id]
        if message.deleted:
            return ""
        if message.card_id:
            return self.cards[message.card_id].text()
        return FakeCard("", message.card or {}).text()

    def card_of(self, message_id: str) -> FakeCard | None:
        card_id = self.messages[message_id].card_id
        return self.cards[card_id] if card_id else None

    def replies_to(self, message_id: str) -> list[FakeMessage]:
        return [self.messages[m] for m in self.order if self.messages[m].parent_id == message_id]

    def file_messages(self) -> list[tuple[str, str, bytes]]:
        """The files the bot sent as file messages: (name, file_type, bytes)."""
        return [
            self.files[str((self.messages[m].card or {}).get("file_key"))]
            for m in self.order
            if self.messages[m].msg_type == "file"
        ]

    def transcript(self) -> list[str]:
        """What each bot card that was not recalled shows, in order (file messages are in
        `file_messages()`)."""
        return [
            self.visible(m)
            for m in self.order
            if not self.messages[m].deleted and self.messages[m].msg_type == "interactive"
        ]

    # --- plumbing ------------------------------------------------------------------------

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        # A multipart body is left for the handler (aiohttp reads it only once).
        multipart = request.content_type.startswith("multipart/")
        raw = b"" if multipart else await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        self.calls.append(
            Call(
                time.monotonic(), request.method, request.path, dict(request.query), body, len(raw)
            )
        )
        for injection in self.injections:
            if (
                injection.times > 0
                and injection.method == request.method
                and injection.pattern.search(request.path)
            ):
                injection.times -= 1
                return web.json_response(
                    {"code": injection.code, "msg": "injected failure"},
                    status=injection.status,
                    headers=injection.headers,
                )
        if request.path.startswith("/open-apis/") and "tenant_access_token" not in request.path:
            auth = request.headers.get("Authorization", "")
            if not auth:
                return _fail(99991661, "Missing access token for authorization")
            if auth.removeprefix("Bearer ") not in self.tokens:
                return _fail(99991663, "Invalid access token for authorization")
        response: web.StreamResponse = await handler(request)
        return response

    async def _token(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("app_id") != self.app_id or body.get("app_secret") != self.app_secret:
            return _fail(10014, "app secret invalid")
        self.tokens_issued += 1
        token = f"t-{self.tokens_issued}"
        self.tokens.add(token)
        return web.json_response(
            {"code": 0, "msg": "ok", "tenant_access_token": token, "expire": 7200}
        )

    async def _bot_info(self, request: web.Request) -> web.Response:
        if self.bot_info_fails > 0:
            self.bot_info_fails -= 1
            return _fail(500, "internal error", status=500)
        bot = {"activate_status": 2, "app_name": "Helper", "open_id": self.bot_open_id}
        return web.json_response({"code": 0, "msg": "ok", "bot": bot})

    async def _user(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        if uid not in self.names:
            return _fail(41050, "no user authority")
        return web.json_response({"code": 0, "data": {"user": {"name": self.names[uid]}}})

    async def _reply(self, request: web.Request) -> web.Response:
        size = len(await request.read())
        body = await request.json()
        parent = request.match_info["mid"]
        if body.get("uuid") in self.uuids:
            return _ok({"message_id": self.uuids[body["uuid"]]})
        if body.get("msg_type") == "interactive" and size > CARD_LIMIT:
            return _fail(230025, "message content exceeds the limit")
        content = json.loads(body["content"])
        if body.get("msg_type") == "file" and content.get("file_key") not in self.files:
            return _fail(230001, "file_key not found")
        if body.get("msg_type") == "image" and content.get("image_key") not in self.images:
            return _fail(230001, "image_key not found")
        message = FakeMessage(
            f"om_bot_{len(self.messages) + 1}",
            parent,
            body["msg_type"],
            bool(body.get("reply_in_thread")),
        )
        if content.get("type") == "card":
            card = self.cards.get(content["data"]["card_id"])
            if card is None or card.sent_as is not None:
                return _fail(300305, "card entity not found or already sent")
            card.sent_as, message.card_id = message.message_id, card.card_id
        else:
            refused = form_errors(FakeCard("", content).elements())
            if refused:
                return _fail(200621, refused)
            message.card = content
        self.messages[message.message_id] = message
        self.order.append(message.message_id)
        if body.get("uuid"):
            self.uuids[body["uuid"]] = message.message_id
        return _ok({"message_id": message.message_id, "chat_id": "oc_chat"})

    async def _patch_message(self, request: web.Request) -> web.Response:
        size = len(await request.read())
        message = self.messages.get(request.match_info["mid"])
        if message is None or message.deleted:
            return _fail(230011, "message not found")
        if size > CARD_LIMIT:
            return _fail(230025, "message content exceeds the limit")
        card = json.loads((await request.json())["content"])
        old = message.card or {}
        if not (old.get("config", {}).get("update_multi") and card["config"]["update_multi"]):
            return _fail(230099, "update_multi must be true before and after")
        message.card = card
        message.patches.append(time.monotonic())
        return _ok({})

    async def _delete_message(self, request: web.Request) -> web.Response:
        message = self.messages.get(request.match_info["mid"])
        if message is None:
            return _fail(230011, "message not found")
        message.deleted = True
        return _ok({})

    async def _resource(self, request: web.Request) -> web.Response:
        found = self.resources.get((request.match_info["mid"], request.match_info["key"]))
        if found is None or found[1] != request.query.get("type"):
            return _fail(234003, "file not found", status=400)
        return web.Response(body=found[0], content_type=found[2])

    # --- CardKit -------------------------------------------------------------------------

    async def _create_card(self, request: web.Request) -> web.Response:
        size = len(await request.read())
        body = await request.json()
        if body.get("type") != "card_json" or size > CARD_LIMIT:
            return _fail(300301, "invalid card")
        data = json.loads(body["data"])
        if data.get("schema") != "2.0":
            return _fail(300302, "streaming cards need JSON 2.0")
        refused = form_errors(FakeCard("", data).elements())
        if refused:
            return _fail(200621, refused)
        card = FakeCard(str(7355372766134157000 + len(self.cards)), data)
        card.history.append((time.monotonic(), "create", 0))
        card.states.append((time.monotonic(), card.text()))
        self.cards[card.card_id] = card
        return _ok({"card_id": card.card_id})

    def _sequenced(self, card: FakeCard | None, sequence: object, op: str) -> web.Response | None:
        if card is None:
            return _fail(300304, "card not found")
        if not isinstance(sequence, int) or sequence <= card.sequence:
            return _fail(300317, "sequence number compare failed")
        card.sequence = sequence
        card.history.append((time.monotonic(), op, sequence))
        return None

    async def _content(self, request: web.Request) -> web.Response:
        body = await request.json()
        card = self.cards.get(request.match_info["cid"])
        if card is not None and not card.streaming:
            return _fail(300309, "streaming mode is closed")
        content = body.get("content")
        if not isinstance(content, str) or len(content) > CONTENT_LIMIT:
            return _fail(300310, "content invalid")
        error = self._sequenced(card, body.get("sequence"), "content")
        if error is not None:
            return error
        assert card is not None
        element = next(
            (e for e in card.elements() if e.get("element_id") == request.match_info["eid"]), None
        )
        if element is None:
            return _fail(300311, "element not found")
        element["content"] = content
        card.states.append((time.monotonic(), card.text()))
        return _ok({})

    async def _settings(self, request: web.Request) -> web.Response:
        body = await request.json()
        card = self.cards.get(request.match_info["cid"])
        error = self._sequenced(card, body.get("sequence"), "settings")
        if error is not None:
            return error
        assert card is not None
        settings = json.loads(body["settings"])
        # The documented form: `config` (and `card_link`). Anything else changes nothing.
        if isinstance(settings.get("config"), dict):
            card.data.setdefault("config", {}).update(settings["config"])
        return _ok({})

    async def _replace_card(self, request: web.Request) -> web.Response:
        body = await request.json()
        card = self.cards.get(request.match_info["cid"])
        data = json.loads(body["card"]["data"])
        refused = form_errors(FakeCard("", data).elements())
        if refused:
            return _fail(200621, refused)
        error = self._sequenced(card, body.get("sequence"), "replace")
        if error is not None:
            return error
        assert card is not None
        card.data = data
        card.states.append((time.monotonic(), card.text()))
        return _ok({})

    async def _add_elements(self, request: web.Request) -> web.Response:
        body = await request.json()
        card = self.cards.get(request.match_info["cid"])
        where = body.get("type")
        if where not in ("append", "insert_before", "insert_after"):
            return _fail(300312, "invalid type")
        error = self._sequenced(card, body.get("sequence"), "elements")
        if error is not None:
            return error
        assert card is not None
        new = json.loads(body["elements"])
        elements = card.data.setdefault("body", {}).setdefault("elements", [])
        if where == "append":
            elements.extend(new)
        else:
            target = body.get("target_element_id")
            index = next((i for i, e in enumerate(elements) if e.get("element_id") == target), -1)
            if index < 0:
                return _fail(300311, "element not found")
            elements[index + (where == "insert_after") : index] = new
        return _ok({})

    async def _update_element(self, request: web.Request) -> web.Response:
        body = await request.json()
        card = self.cards.get(request.match_info["cid"])
        error = self._sequenced(card, body.get("sequence"), "element")
        if error is not None:
            return error
        assert card is not None
        new = json.loads(body["element"])
        elements = card.data.setdefault("body", {}).setdefault("elements", [])
        index = next(
            (i for i, e in enumerate(elements) if e.get("element_id") == request.match_info["eid"]),
            -1,
        )
        if index < 0:
            return _fail(300311, "element not found")
        replaced = {**new, "element_id": request.match_info["eid"]}
        refused = form_errors([*elements[:index], replaced, *elements[index + 1 :]])
        if refused:
            return _fail(200621, refused)
        elements[index] = replaced
        return _ok({})

    # --- uploads ---------------------------------------------------------------------------

    async def _upload_image(self, request: web.Request) -> web.Response:
        form = await request.post()
        image = form.get("image")
        if form.get("image_type") != "message" or not isinstance(image, web.FileField):
            return _fail(234001, "invalid request param")
        data = image.file.read()
        if not data or len(data) > 10 * 1024 * 1024:
            return _fail(234006, "the image size exceeds the limit")
        key = f"img_v3_{len(self.images) + 1:04d}"
        self.images[key] = data
        return _ok({"image_key": key})

    async def _upload_file(self, request: web.Request) -> web.Response:
        form = await request.post()
        file = form.get("file")
        file_type = str(form.get("file_type") or "")
        if not isinstance(file, web.FileField) or not form.get("file_name"):
            return _fail(234001, "invalid request param")
        if file_type not in ("opus", "mp4", "pdf", "doc", "xls", "ppt", "stream"):
            return _fail(234001, "invalid file_type")
        data = file.file.read()
        if not data or len(data) > 30 * 1024 * 1024:
            return _fail(234006, "the file size exceeds the limit")
        key = f"file_v3_{len(self.files) + 1:04d}"
        self.files[key] = (str(form["file_name"]), file_type, data)
        return _ok({"file_key": key})

    # --- long connection -----------------------------------------------------------------

    async def _ws_endpoint(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("AppID") != self.app_id or body.get("AppSecret") != self.app_secret:
            return _fail(1000040343, "auth failed")
        url = (
            self.base_url.replace("http://", "ws://")
            + f"/ws?device_id=dev{self.ws_connects + 1}&service_id={self.service_id}"
        )
        return web.json_response(
            {"code": 0, "msg": "ok", "data": {"URL": url, "ClientConfig": self.client_config}}
        )

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws_connects += 1
        self.ws_connections.append(ws)
        try:
            async for message in ws:
                if message.type is not WSMsgType.BINARY:
                    continue
                frame = decode(message.data)
                self.ws_frames.append(frame)
                if frame.method == CONTROL and frame.header("type") == "ping":
                    pong = Frame(service=frame.service, method=CONTROL, headers=[("type", "pong")])
                    if self.pong_config is not None:
                        pong.payload = json.dumps(self.pong_config).encode()
                    await ws.send_bytes(encode(pong))
                elif frame.method == DATA and frame.header("biz_rt") is not None:
                    self.acks[frame.header("message_id") or ""] = frame
        finally:
            self.ws_connections.remove(ws)
        return ws

    async def push_event(
        self, payload: dict[str, Any], *, parts: int = 1, kind: str = "event"
    ) -> str:
        """Send an event (`kind` "card": a card callback) to the connected client, split
        into `parts` frames."""
        message_id = uuid_lib.uuid4().hex
        data = json.dumps(payload, ensure_ascii=False).encode()
        size = -(-len(data) // parts)
        ws = self.ws_connections[-1]
        for seq in range(parts):
            headers = [
                ("type", kind),
                ("message_id", message_id),
                ("sum", str(parts)),
                ("seq", str(seq)),
                ("trace_id", f"trace-{message_id[:6]}"),
            ]
            frame = Frame(
                seq_id=seq + 1,
                log_id=42,
                service=self.service_id,
                method=DATA,
                headers=headers,
                payload=data[seq * size : (seq + 1) * size],
            )
            await ws.send_bytes(encode(frame))
        return message_id

    async def close_connections(self) -> None:
        """The server ends every connection (as Feishu does on deploys)."""
        for ws in list(self.ws_connections):
            await ws.close()


_NAMED = ("input", "select_static", "multi_select_static", "button", "date_picker")


def form_errors(elements: list[dict[str, Any]]) -> str | None:
    """What Feishu would refuse in the `form` containers of a card's root `elements`."""
    names: list[str] = []

    def walk(items: list[dict[str, Any]], in_form: bool, root: bool) -> str | None:
        for item in items:
            tag = item.get("tag")
            if tag == "form":
                if not root or not item.get("name"):
                    return "a form must be at the card's root, and named"
                found = walk(list(item.get("elements") or []), True, False)
                if found:
                    return found
                if not any(b.get("form_action_type") == "submit" for b in _all(item)):
                    return "a form needs a submit button"
                continue
            if in_form and tag in _NAMED:
                if not item.get("name"):
                    return f"a {tag} in a form needs a name"
                names.append(str(item["name"]))
                if tag == "button" and item.get("form_action_type") not in ("submit", "reset"):
                    return "a button in a form needs form_action_type"
            if tag == "select_static" and "initial_option" in item:
                values = [o.get("value") for o in item.get("options") or []]
                if item["initial_option"] not in values:
                    return "initial_option is no option"
            children = [*(item.get("elements") or []), *(item.get("columns") or [])]
            found = walk(children, in_form, False)
            if found:
                return found
        return None

    found = walk(elements, False, True)
    if found is None and len(names) != len(set(names)):
        found = "names in a card's forms must be unique"
    return found


def _all(element: dict[str, Any]) -> list[dict[str, Any]]:
    """An element and everything inside it."""
    inside = [*(element.get("elements") or []), *(element.get("columns") or [])]
    return [element, *(e for child in inside for e in _all(child))]


def _ok(data: dict[str, Any]) -> web.Response:
    return web.json_response({"code": 0, "msg": "success", "data": data})


def _fail(code: int, msg: str, status: int = 200) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status)


# --- events, as Feishu sends them --------------------------------------------------------

VERIFICATION_TOKEN = "v-token"
ENCRYPT_KEY = "test key"


def message_event(
    text: str = "hello",
    *,
    chat_type: str = "p2p",
    message_type: str = "text",
    content: dict[str, Any] | None = None,
    mentions: list[dict[str, Any]] | None = None,
    sender: str = "ou_user",
    sender_type: str = "user",
    event_id: str | None = None,
    message_id: str | None = None,
    thread_id: str | None = None,
    root_id: str | None = None,
    token: str = VERIFICATION_TOKEN,
) -> dict[str, Any]:
    """An `im.message.receive_v1` event (schema 2.0)."""
    message: dict[str, Any] = {
        "message_id": message_id or f"om_{uuid_lib.uuid4().hex[:16]}",
        "create_time": str(int(time.time() * 1000)),
        "chat_id": "oc_chat",
        "chat_type": chat_type,
        "message_type": message_type,
        "content": json.dumps(content if content is not None else {"text": text}),
        "mentions": mentions or [],
    }
    if thread_id:
        message["thread_id"] = thread_id
    if root_id:
        message["root_id"] = root_id
    return {
        "schema": "2.0",
        "header": {
            "event_id": event_id or uuid_lib.uuid4().hex,
            "token": token,
            "create_time": str(int(time.time() * 1000)),
            "event_type": "im.message.receive_v1",
            "tenant_key": "tenant",
            "app_id": "cli_test",
        },
        "event": {
            "sender": {
                "sender_id": {"open_id": sender, "union_id": "on_u", "user_id": "u1"},
                "sender_type": sender_type,
                "tenant_key": "tenant",
            },
            "message": message,
        },
    }


def buttons_of(elements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every button in card elements (JSON 2.0 column sets, JSON 1.0 action rows)."""
    found: list[dict[str, Any]] = []
    for element in elements:
        if element.get("tag") == "button":
            found.append(element)
        for column in element.get("columns") or []:
            found.extend(buttons_of(column.get("elements") or []))
        found.extend(buttons_of(element.get("actions") or []))
        if element.get("tag") == "form":
            found.extend(buttons_of(element.get("elements") or []))
    return found


def inputs_of(elements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every text box and menu in card elements (inside forms)."""
    return [
        e
        for element in elements
        for e in _all(element)
        if e.get("tag") in ("input", "select_static")
    ]


def button_value(button: dict[str, Any]) -> dict[str, Any]:
    """The value a click on `button` sends back (2.0: its callback behaviour; 1.0: `value`)."""
    for behavior in button.get("behaviors") or []:
        if behavior.get("type") == "callback":
            return dict(behavior["value"])
    return dict(button["value"])


def click_event(
    value: dict[str, Any],
    *,
    message_id: str,
    operator: str = "ou_user",
    chat_id: str = "oc_chat",
    event_id: str | None = None,
    token: str = VERIFICATION_TOKEN,
    form_value: Any = None,
    name: str = "",
) -> dict[str, Any]:
    """A `card.action.trigger` callback (schema 2.0), as Feishu sends a button's click; with
    `form_value` (and the button's `name`), the submit of a form container."""
    action: dict[str, Any] = {"value": value, "tag": "button"}
    if form_value is not None:
        action |= {"form_value": form_value, "name": name}
    return {
        "schema": "2.0",
        "header": {
            "event_id": event_id or uuid_lib.uuid4().hex,
            "token": token,
            "create_time": str(int(time.time() * 1_000_000)),
            "event_type": "card.action.trigger",
            "tenant_key": "tenant",
            "app_id": "cli_test",
        },
        "event": {
            "operator": {"tenant_key": "tenant", "open_id": operator, "user_id": "u1"},
            "token": "c-token",
            "action": action,
            "host": "im_message",
            "context": {"open_message_id": message_id, "open_chat_id": chat_id},
        },
    }


def mention(key: str, open_id: str, name: str) -> dict[str, Any]:
    return {"key": key, "id": {"open_id": open_id, "union_id": "on_x"}, "name": name}


def webhook_request(
    payload: dict[str, Any],
    *,
    encrypt_key: str | None = ENCRYPT_KEY,
    timestamp: int | None = None,
    nonce: str = "nonce-1",
) -> tuple[bytes, dict[str, str]]:
    """(body, headers) exactly as Feishu posts an event: encrypted and signed when an
    Encrypt Key is set."""
    plain = json.dumps(payload, ensure_ascii=False).encode()
    if encrypt_key is None:
        return plain, {"Content-Type": "application/json"}
    body = json.dumps({"encrypt": crypto.encrypt(encrypt_key, plain)}).encode()
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return body, {
        "Content-Type": "application/json",
        "X-Lark-Request-Timestamp": ts,
        "X-Lark-Request-Nonce": nonce,
        "X-Lark-Signature": crypto.signature(ts, nonce, encrypt_key, body),
    }
