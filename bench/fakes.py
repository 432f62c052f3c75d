"""Lean fakes for the benchmarks: a Dify SSE server that stamps every chunk with the time it
was sent, and a Slack Web API that counts finished answers and, for every streaming update,
records when it arrived and which chunk stamps it carried.

Stamps use time.monotonic(), which on Linux reads CLOCK_MONOTONIC: one clock for every
process on the machine, so the gateway's process and this one can be compared.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

END = "END."
_STAMP = re.compile(r"\[t=(\d+\.\d+)\]")


@dataclass
class BenchDify:
    chunks: int = 3
    delay: float = 0.0
    stamped: bool = False
    api_key: str = "bench-dify-key"
    requests: int = 0
    requests_done: int = 0
    base_url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat-messages", self._chat)
        app.router.add_get("/v1/parameters", self._parameters)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0, backlog=4096).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _parameters(self, request: web.Request) -> web.Response:
        """The app's settings, as a chat app with nothing turned on answers them (the
        gateway asks once per app and keeps them a while)."""
        return web.json_response(
            {
                "opening_statement": "",
                "suggested_questions_after_answer": {"enabled": False},
                "user_input_form": [],
                "file_upload": {"enabled": False},
            }
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.requests += 1
        conversation = f"conv-{self.requests}"
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if self.delay:
            # Streams that start together would otherwise send their chunks in lockstep
            # waves; real answers are not phase-locked.
            await asyncio.sleep(random.uniform(0, self.delay))
        for i in range(self.chunks):
            text = f"[t={time.monotonic():.6f}] " if self.stamped else f"chunk {i} "
            event = {
                "event": "message",
                "answer": text,
                "conversation_id": conversation,
                "message_id": f"m{self.requests}",
            }
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
            if self.delay:
                await asyncio.sleep(self.delay)
        for event in (
            {"event": "message", "answer": END, "conversation_id": conversation},
            {
                "event": "message_end",
                "conversation_id": conversation,
                "message_id": f"m{self.requests}",
                "metadata": {},
            },
        ):
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
        await response.write_eof()
        self.requests_done += 1
        return response


@dataclass
class BenchSlack:
    finals: int = 0
    last_final_at: float = 0.0
    calls: int = 0
    # (arrival, chunk stamps carried, message ts) for every update that carried text
    updates: list[tuple[float, list[float], str]] = field(default_factory=list)
    base_url: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event)
    expect: int = 0
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None

    def reset(self, expect: int) -> None:
        self.finals, self.calls, self.expect = 0, 0, expect
        self.updates.clear()
        self.done = asyncio.Event()

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0, backlog=4096).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/api"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _api(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        method = request.match_info["method"]
        self.calls += 1
        body: dict[str, Any] = (
            await request.json()
            if request.content_type == "application/json"
            else dict(await request.post())
        )
        text = str(body.get("markdown_text") or body.get("text") or "")
        if method == "auth.test":
            return web.json_response({"ok": True, "user_id": "UBOT", "team_id": "T1"})
        ts = str(body.get("ts") or f"1700000000.{next(self._ts):06d}")
        stamps = [float(s) for s in _STAMP.findall(text)]
        if stamps:
            self.updates.append((now, stamps, ts))
        final = method == "chat.stopStream" or (method == "chat.update" and END in text)
        if final:
            self.finals += 1
            self.last_final_at = now
            if self.expect and self.finals >= self.expect:
                self.done.set()
        return web.json_response({"ok": True, "ts": ts, "channel": body.get("channel")})
