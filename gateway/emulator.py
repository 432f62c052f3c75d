"""A built-in Dify emulator: a real local SSE server speaking Dify's API.

`dify-gateway demo` uses it when no `DIFY_API_KEY` is set; the tests use it as their fake
Dify. It behaves like Dify where the gateway cares: conversations that must exist, `inputs`
that must be present, every stream event the gateway reads, in Dify's order per app type
(`gateway/emulator_script.py`), pings as bare `event: ping` lines, writes split at odd byte
offsets (a line across two TCP writes), as proxies do, files served under root-relative
links whose signature expires, `/audio-to-text` that takes only Dify's exact audio types,
and `/parameters` as the tests set it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import hmac
import json
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.emulator_forms import FormDesk, PausedRun
from gateway.emulator_script import (
    App,
    EmulatorFile,
    Form,
    Node,
    ScriptedReply,
    Thought,
    steps,
)

__all__ = ["DifyEmulator", "EmulatorFile", "Form", "Node", "ScriptedReply", "Thought"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AUDIO_TYPES = frozenset({"audio/mp3", "audio/m4a", "audio/wav", "audio/amr", "audio/mpga"})
FILE_URL_TTL = 300.0  # Dify's FILES_ACCESS_TIMEOUT

# What a freshly created app with every file type allowed says (Dify's default is images
# off, which would refuse every file the tests send).
DEFAULT_PARAMETERS: dict[str, Any] = {
    "suggested_questions": [],
    "speech_to_text": {"enabled": True},
    "file_upload": {
        "enabled": True,
        "allowed_file_types": ["image", "document", "audio", "video", "custom"],
        "allowed_file_extensions": [],
        "allowed_file_upload_methods": ["local_file", "remote_url"],
        "number_limits": 10,
        "image": {"enabled": True, "number_limits": 10, "transfer_methods": ["local_file"]},
    },
    "system_parameters": {
        "file_size_limit": 15,
        "image_file_size_limit": 10,
        "audio_file_size_limit": 50,
        "video_file_size_limit": 100,
        "workflow_file_upload_limit": 10,
    },
    "user_input_form": [],
}


def _echo(request: dict[str, Any], turn: int) -> ScriptedReply:
    query = str(request.get("query") or request.get("inputs", {}).get("query") or "")
    text = (
        f"You asked: \u201c{query}\u201d\n\n"
        f"This answer comes from the built-in Dify emulator (turn {turn} of this "
        "conversation). It streams word by word, so the chat shows a growing reply "
        "instead of a long silence.\n\n"
        "Set `DIFY_API_KEY` (and `DIFY_BASE_URL` for a self-hosted Dify) to talk to a "
        "real Dify app instead."
    )
    words = text.split(" ")
    chunks = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
    return ScriptedReply(chunks=chunks, delay=0.04)


@dataclass(frozen=True, slots=True)
class _LiveRun:
    owner: str  # the user whose stop counts ("": anyone's, as for a workflow)
    stopped: asyncio.Event


@dataclass
class DifyEmulator:
    api_key: str = "emulator-key"
    responder: Callable[[dict[str, Any], int], ScriptedReply] = _echo
    opening_statement: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULT_PARAMETERS))
    parameter_calls: int = 0
    # What `GET /info` says about the app (Dify: name, description, tags, mode, author_name).
    info: dict[str, Any] = field(
        default_factory=lambda: {
            "name": "Emulated app",
            "description": "dify-gateway's built-in Dify emulator",
            "tags": [],
            "mode": "advanced-chat",
            "author_name": "dify-gateway",
        }
    )
    # Dify's FILES_URL: empty (the self-host default) makes every file link root-relative.
    files_url: str = ""
    file_url_ttl: float = FILE_URL_TTL
    file_downloads: list[str] = field(default_factory=list)  # names, as they were fetched
    requests: list[dict[str, Any]] = field(default_factory=list)
    uploads: list[dict[str, Any]] = field(default_factory=list)
    feedbacks: list[dict[str, Any]] = field(default_factory=list)
    stops: list[dict[str, Any]] = field(default_factory=list)  # {"task_id", "user", "path"}
    # What `GET /messages/{id}/suggested` answers (when /parameters turns it on).
    suggested: list[str] = field(default_factory=list)
    suggested_calls: list[dict[str, Any]] = field(default_factory=list)  # {message_id, user, at}
    conversations: dict[str, int] = field(default_factory=dict)
    script: deque[ScriptedReply] = field(default_factory=deque)
    forms: FormDesk = field(default_factory=FormDesk)  # runs paused on a form
    _runner: web.AppRunner | None = None
    _live_runs: dict[str, _LiveRun] = field(default_factory=dict)  # streaming now, by task id
    _files: dict[str, EmulatorFile] = field(default_factory=dict)
    _file_ids: dict[int, str] = field(default_factory=dict)
    _secret: bytes = field(default_factory=lambda: uuid.uuid4().bytes)
    base_url: str = ""

    def reply(self, *replies: ScriptedReply) -> None:
        """Queue scripted replies for the next requests (first in, first out)."""
        self.script.extend(replies)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat-messages", self._chat)
        app.router.add_post("/v1/completion-messages", self._completion)
        app.router.add_post("/v1/workflows/run", self._workflow)
        app.router.add_post("/v1/files/upload", self._upload)
        app.router.add_post("/v1/audio-to-text", self._audio)
        app.router.add_get("/v1/parameters", self._parameters)
        app.router.add_get("/v1/info", self._info)
        app.router.add_post("/v1/messages/{message_id}/feedbacks", self._feedback)
        app.router.add_get("/v1/messages/{message_id}/suggested", self._suggested)
        app.router.add_post("/v1/chat-messages/{task_id}/stop", self._stop)
        app.router.add_post("/v1/completion-messages/{task_id}/stop", self._stop)
        app.router.add_post("/v1/workflows/tasks/{task_id}/stop", self._stop)
        app.router.add_get("/v1/form/human_input/{token}", self._authed(self.forms.get))
        app.router.add_post("/v1/form/human_input/{token}", self._authed(self.forms.post))
        app.router.add_get("/v1/workflow/{run_id}/events", self._resume)
        app.router.add_get("/files/tools/{name}", self._file)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound = self._runner.addresses[0][1]
        self.base_url = f"http://{host}:{bound}/v1"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- handlers ------------------------------------------------------------------------

    def _auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "unauthorized", "Access token is invalid")
        return None

    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        denied = self._auth(request)
        if denied is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "invalid_param", "body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), dict):
            return _error(400, "invalid_param", "inputs is required in input form")
        body["_headers"] = {k: v for k, v in request.headers.items() if k.startswith("X-")}
        # Which client connection asked (tests find the gateway process behind it).
        peer = request.transport.get_extra_info("peername") if request.transport else None
        body["_peer_port"] = peer[1] if peer else None
        self.requests.append(body)
        return body

    def _next(self, body: dict[str, Any], turn: int) -> ScriptedReply:
        return self.script.popleft() if self.script else self.responder(body, turn)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        if not str(body.get("query") or "").strip():
            return _error(400, "invalid_param", "query is required")
        conversation_id = body.get("conversation_id") or ""
        if conversation_id and conversation_id not in self.conversations:
            return _error(404, "not_found", "Conversation Not Exists.")
        conversation_id = conversation_id or str(uuid.uuid4())
        self.conversations[conversation_id] = self.conversations.get(conversation_id, 0) + 1
        reply = self._next(body, self.conversations[conversation_id])
        if reply.status != 200:
            self.conversations[conversation_id] -= 1
            return _error(reply.status, reply.code, reply.message, reply.params)
        return await self._stream(request, reply, reply.family("chat"), conversation_id, body)

    async def _completion(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        reply = self._next(body, 1)
        if reply.status != 200:
            return _error(reply.status, reply.code, reply.message, reply.params)
        return await self._stream(request, reply, reply.family("completion"), None, body)

    async def _workflow(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        reply = self._next(body, 1)
        if reply.status != 200:
            return _error(reply.status, reply.code, reply.message, reply.params)
        return await self._stream(request, reply, "workflow", None, body)

    async def _stream(
        self,
        request: web.Request,
        reply: ScriptedReply,
        app: App,
        conversation_id: str | None,
        body: dict[str, Any],
    ) -> web.StreamResponse:
        """Send `reply` as app type `app`, each event with the fields Dify puts on all."""
        task_id, message_id, run_id = (str(uuid.uuid4()) for _ in range(3))
        token = None
        if reply.form is not None and reply.form.delivery == "webapp":
            token = uuid.uuid4().hex
            user = str(body.get("user") or "")
            paused = PausedRun(run_id, reply.form, app, user, conversation_id, body)
            self.forms.runs[token] = paused
        if app == "workflow":
            common: dict[str, Any] = {"task_id": task_id, "workflow_run_id": run_id}
        elif app == "completion":
            common = {"task_id": task_id, "message_id": message_id, "id": message_id}
        else:
            common = {
                "task_id": task_id,
                "message_id": message_id,
                "id": message_id,
                "conversation_id": conversation_id or "",
            }
        response = await _open_stream(request)
        # A chat or completion stop by another user is ignored, as Dify's is; a workflow
        # stop does not check the user.
        owner = "" if app == "workflow" else str(body.get("user") or "")
        stopped = asyncio.Event()
        self._live_runs[task_id] = _LiveRun(owner, stopped)
        try:
            sent = 0
            for step in steps(reply, app, self._sign, token):
                if isinstance(step, float | int):
                    # A script's pause; a stopped run does not wait it out (Dify ends it).
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stopped.wait(), step)
                    continue
                if stopped.is_set() and step.get("event") not in ("message_end", "error"):
                    continue  # a stopped run still ends with message_end, as Dify's does
                event = {**common, **step, "created_at": int(time.time())}
                if step.get("event") == "workflow_paused":
                    event["data"] = {**step["data"], "workflow_run_id": run_id}
                if step.get("event") == "error":
                    event.pop("task_id", None)  # Dify's error events carry no task_id
                await _send(response, event, reply.ragged, ping=sent % 7 == 3)
                sent += 1
        finally:
            del self._live_runs[task_id]
        await response.write_eof()
        return response

    def _authed(self, handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            denied = self._auth(request)
            return denied if denied is not None else await handler(request)

        return checked

    async def _resume(self, request: web.Request) -> web.StreamResponse:
        """`GET /workflow/{run_id}/events`: the run, once its form is answered, goes on
        with the form's `then` (only for the run's own user, else 404, as Dify does)."""
        denied = self._auth(request)
        if denied is not None:
            return denied
        user = request.query.get("user", "")
        run = self.forms.by_run(request.match_info["run_id"])
        self.forms.resumes.append({"run_id": request.match_info["run_id"], "user": user})
        if run is None or run.user != user:
            return _error(404, "not_found", "Workflow run not found")
        then = run.form.then or ScriptedReply(chunks=["Done."])
        return await self._stream(request, then, run.app, run.conversation_id, run.body)

    # --- files the apps produce ----------------------------------------------------------

    def _sign(self, file: EmulatorFile) -> str:
        """The root-relative (or FILES_URL-based) signed link Dify gives a tool file."""
        file_id = self._file_ids.get(id(file))
        if file_id is None:
            extension = "." + file.name.rpartition(".")[2] if "." in file.name else ".bin"
            file_id = self._file_ids[id(file)] = uuid.uuid4().hex + extension
            self._files[file_id] = file
        timestamp, nonce = str(int(time.time())), uuid.uuid4().hex
        sign = self._signature(file_id, timestamp, nonce)
        query = f"timestamp={timestamp}&nonce={nonce}&sign={sign}"
        return f"{self.files_url}/files/tools/{file_id}?{query}"

    def _signature(self, file_id: str, timestamp: str, nonce: str) -> str:
        message = f"file-preview|{file_id}|{timestamp}|{nonce}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    async def _file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        file = self._files.get(name)
        q = request.query
        timestamp, nonce, sign = q.get("timestamp", ""), q.get("nonce", ""), q.get("sign", "")
        if file is None:
            return web.Response(status=404, text="File not found")
        if not hmac.compare_digest(sign, self._signature(name, timestamp, nonce)):
            return web.Response(status=403, text="Invalid request.")
        if not timestamp.isdigit() or time.time() - int(timestamp) > self.file_url_ttl:
            return web.Response(status=403, text="Request has expired.")
        self.file_downloads.append(file.name)
        return web.Response(body=file.data, content_type=file.mime_type)

    async def _upload(self, request: web.Request) -> web.Response:
        denied = self._auth(request)
        if denied is not None:
            return denied
        form = await request.post()
        file = form.get("file")
        if not isinstance(file, web.FileField):
            return _error(400, "no_file_uploaded", "Please upload your file.")
        data = file.file.read()
        record = {
            "id": str(uuid.uuid4()),
            "name": file.filename,
            "size": len(data),
            "mime_type": file.content_type,
            "user": form.get("user"),
        }
        self.uploads.append({**record, "data": data})
        return web.json_response(record, status=201)

    async def _audio(self, request: web.Request) -> web.Response:
        denied = self._auth(request)
        if denied is not None:
            return denied
        form = await request.post()
        file = form.get("file")
        if not isinstance(file, web.FileField):
            return _error(400, "no_audio_uploaded", "Please upload your audio.")
        if file.content_type not in AUDIO_TYPES:
            return _error(415, "unsupported_audio_type", "Audio type not allowed.")
        self.uploads.append(
            {
                "audio": True,
                "name": file.filename,
                "mime_type": file.content_type,
                "data": file.file.read(),
            }
        )
        return web.json_response({"text": "transcribed audio"})

    async def _parameters(self, request: web.Request) -> web.Response:
        denied = self._auth(request)
        if denied is not None:
            return denied
        self.parameter_calls += 1
        return web.json_response({**self.parameters, "opening_statement": self.opening_statement})

    async def _info(self, request: web.Request) -> web.Response:
        denied = self._auth(request)
        return denied if denied is not None else web.json_response(self.info)

    async def _stop(self, request: web.Request) -> web.Response:
        denied = self._auth(request)
        if denied is not None:
            return denied
        body = await request.json()
        task_id = request.match_info["task_id"]
        self.stops.append({"task_id": task_id, "user": body.get("user"), "path": request.path})
        run = self._live_runs.get(task_id)
        if run is not None and (not run.owner or body.get("user") == run.owner):
            run.stopped.set()
        return web.json_response({"result": "success"})

    async def _suggested(self, request: web.Request) -> web.Response:
        denied = self._auth(request)
        if denied is not None:
            return denied
        setting = self.parameters.get("suggested_questions_after_answer") or {}
        if not setting.get("enabled"):
            return _error(400, "bad_request", "Suggested Questions Is Disabled.")
        message_id = request.match_info["message_id"]
        call = {"message_id": message_id, "user": request.query.get("user"), "at": time.monotonic()}
        self.suggested_calls.append(call)
        return web.json_response({"result": "success", "data": list(self.suggested)})

    async def _feedback(self, request: web.Request) -> web.Response:
        denied = self._auth(request)
        if denied is not None:
            return denied
        body = await request.json()
        self.feedbacks.append({"message_id": request.match_info["message_id"], **body})
        return web.json_response({"result": "success"})


def _error(status: int, code: str, message: str, params: str = "") -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message, "status": status}
    if params:
        body["params"] = params
    return web.json_response(body, status=status)


async def _open_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    return response


async def _send(
    response: web.StreamResponse, event: dict[str, Any], ragged: bool, ping: bool = False
) -> None:
    data = f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()
    if not ragged:
        await response.write(data)
        return
    # Split inside the line (even inside a multi-byte character) to exercise the parser.
    cut = max(1, len(data) // 3)
    await response.write(data[:cut])
    await asyncio.sleep(0)
    await response.write(data[cut:])
    if ping:
        await response.write(b"event: ping\r\n\r\n")
