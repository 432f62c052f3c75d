"""A built-in Dify emulator: a real local SSE server speaking Dify's API.

`dify-gateway demo` uses it when no `DIFY_API_KEY` is set; the tests use it as their fake
Dify. It behaves like Dify where the gateway cares: conversations that must exist, `inputs`
that must be present, `message`/`message_end`/`error`/`ping` events, workflow `text_chunk`s,
and writes split at odd byte offsets (a line across two TCP writes), as proxies do.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class ScriptedReply:
    """What the emulator answers to the next request."""

    chunks: Sequence[str] = ()  # answer deltas, one `message` event each
    delay: float = 0.0  # seconds between chunks
    error: tuple[str, str] | None = None  # (code, message): an SSE `error` after the chunks
    status: int = 200  # not 200: a JSON error body {code, message, status} and no stream
    code: str = ""
    message: str = ""
    citations: Sequence[str] = ()
    event: str = "message"  # or "agent_message"
    ragged: bool = True  # split each event's bytes across writes, with pings between
    end: bool = True  # send message_end (False: the stream just stops)
    hang: float = 0.0  # after the chunks, stay silent this long (tests idle timeouts)


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


@dataclass
class DifyEmulator:
    api_key: str = "emulator-key"
    responder: Callable[[dict[str, Any], int], ScriptedReply] = _echo
    opening_statement: str = "Hi! Ask me anything."
    requests: list[dict[str, Any]] = field(default_factory=list)
    uploads: list[dict[str, Any]] = field(default_factory=list)
    feedbacks: list[dict[str, Any]] = field(default_factory=list)
    stops: list[dict[str, Any]] = field(default_factory=list)  # {"task_id", "user", "path"}
    conversations: dict[str, int] = field(default_factory=dict)
    script: deque[ScriptedReply] = field(default_factory=deque)
    _runner: web.AppRunner | None = None
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
        app.router.add_post("/v1/messages/{message_id}/feedbacks", self._feedback)
        app.router.add_post("/v1/chat-messages/{task_id}/stop", self._stop)
        app.router.add_post("/v1/completion-messages/{task_id}/stop", self._stop)
        app.router.add_post("/v1/workflows/tasks/{task_id}/stop", self._stop)
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
            return _error(reply.status, reply.code, reply.message)
        return await self._stream_chat(request, reply, conversation_id)

    async def _completion(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        reply = self._next(body, 1)
        if reply.status != 200:
            return _error(reply.status, reply.code, reply.message)
        return await self._stream_chat(request, reply, "")

    async def _stream_chat(
        self, request: web.Request, reply: ScriptedReply, conversation_id: str
    ) -> web.StreamResponse:
        message_id = str(uuid.uuid4())
        base = {
            "task_id": str(uuid.uuid4()),
            "message_id": message_id,
            "conversation_id": conversation_id,
            "created_at": int(time.time()),
        }
        response = await _open_stream(request)
        for i, chunk in enumerate(reply.chunks):
            if self._stopped(str(base["task_id"])):
                break  # a stopped run still ends with message_end, as Dify's does
            event = {"event": reply.event, "id": message_id, "answer": chunk, **base}
            await _send(response, event, reply.ragged, ping=i % 7 == 3)
            if reply.delay:
                await asyncio.sleep(reply.delay)
        if reply.hang:
            await asyncio.sleep(reply.hang)
        if reply.error is not None:
            code, message = reply.error
            await _send(
                response,
                {"event": "error", "status": 400, "code": code, "message": message, **base},
                reply.ragged,
            )
        elif reply.end:
            resources = [
                {"position": i + 1, "document_name": name, "dataset_name": "kb"}
                for i, name in enumerate(reply.citations)
            ]
            await _send(
                response,
                {
                    "event": "message_end",
                    "id": message_id,
                    **base,
                    "metadata": {"usage": {"total_tokens": 42}, "retriever_resources": resources},
                },
                reply.ragged,
            )
        await response.write_eof()
        return response

    async def _workflow(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        reply = self._next(body, 1)
        if reply.status != 200:
            return _error(reply.status, reply.code, reply.message)
        run_id = str(uuid.uuid4())
        response = await _open_stream(request)
        await _send(
            response,
            {"event": "workflow_started", "workflow_run_id": run_id, "data": {"id": run_id}},
            reply.ragged,
        )
        for chunk in reply.chunks:
            await _send(
                response,
                {"event": "text_chunk", "workflow_run_id": run_id, "data": {"text": chunk}},
                reply.ragged,
            )
            if reply.delay:
                await asyncio.sleep(reply.delay)
        status = "failed" if reply.error else "succeeded"
        await _send(
            response,
            {
                "event": "workflow_finished",
                "workflow_run_id": run_id,
                "data": {
                    "id": run_id,
                    "status": status,
                    "error": reply.error[1] if reply.error else None,
                    "outputs": {"answer": "".join(reply.chunks)},
                },
            },
            reply.ragged,
        )
        await response.write_eof()
        return response

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
        return web.json_response(
            {"opening_statement": self.opening_statement, "suggested_questions": []}
        )

    def _stopped(self, task_id: str) -> bool:
        return any(stop["task_id"] == task_id for stop in self.stops)

    async def _stop(self, request: web.Request) -> web.Response:
        denied = self._auth(request)
        if denied is not None:
            return denied
        body = await request.json()
        self.stops.append(
            {
                "task_id": request.match_info["task_id"],
                "user": body.get("user"),
                "path": request.path,
            }
        )
        return web.json_response({"result": "success"})

    async def _feedback(self, request: web.Request) -> web.Response:
        denied = self._auth(request)
        if denied is not None:
            return denied
        body = await request.json()
        self.feedbacks.append({"message_id": request.match_info["message_id"], **body})
        return web.json_response({"result": "success"})


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message, "status": status}, status=status)


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
