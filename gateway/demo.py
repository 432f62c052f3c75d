"""`dify-gateway demo`: the whole path on one machine, no accounts.

It starts the built-in Dify emulator (or uses your Dify when `DIFY_API_KEY` is set), a local
stand-in for Slack's Web API that prints what Slack would show, and the real gateway on
SQLite. Then it sends properly signed Slack events through the real Slack adapter and shows
the reply streaming in.

With `web` (`demo --web`, and by default when run in a terminal) the gateway then keeps
serving its web chat bot (`demo-web`, `auth: none`) until Ctrl-C, so a person can talk to the
same emulator, or their own Dify app, through the whole gateway path in a browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiohttp import web

from gateway.app import serving
from gateway.config import parse_config
from gateway.emulator import DifyEmulator
from gateway.runtime import Gateway
from gateway.words import ENGLISH

BOT = "demo-slack"
WEB_BOT = "demo-web"
BOT_USER = "UDEMOBOT"
TEAM = "TDEMO"
USER = "U0ADA"
CHANNEL = "D0DEMO"


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The demo plays Slack here, so it signs each request the way Slack does: `v0=` and
    the hex HMAC-SHA256 of `v0:<timestamp>:<body>` under the app's signing secret."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TerminalSlack:
    """Enough of Slack's Web API for the demo, printing each message as it changes."""

    def __init__(self, out: Any) -> None:
        self._out = out
        self._shown: dict[str, str] = {}
        self.updates = 0
        self.messages = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/api/{method}", self._call)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{self._runner.addresses[0][1]}/api"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _write(self, text: str) -> None:
        self._out.write(text.replace("\n", "\n    \u2503 "))
        self._out.flush()

    def _show(self, ts: str, text: str) -> None:
        before = self._shown.get(ts, "")
        if text.startswith(before):
            self._write(text[len(before) :])
        else:  # an edit that rewrote the message (e.g. the placeholder went away)
            self._write(f"\n{text}")
        self._shown[ts] = text

    async def _call(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.content_type == "application/json":
            p: dict[str, Any] = await request.json()
        else:
            p = dict(await request.post())
        ok: dict[str, Any] = {"ok": True}
        if method == "auth.test":
            return web.json_response({**ok, "user_id": BOT_USER, "team_id": TEAM})
        if method == "users.info":
            return web.json_response({**ok, "user": {"profile": {"display_name": "Ada"}}})
        if method in ("chat.startStream", "chat.postMessage"):
            ts = f"{time.time():.6f}"
            self.messages += 1
            text = str(p.get("markdown_text") or p.get("text") or "")
            if not text or ENGLISH.thinking in text:  # the demo's Slack bot speaks English
                self._out.write("    \u2503 (thinking\u2026)\n    \u2503 ")
                text = ""
            else:
                self._out.write("    \u2503 ")
            self._show(ts, text)
            if text and method == "chat.postMessage":
                self._out.write("\n")
            return web.json_response({**ok, "ts": ts, "channel": p.get("channel")})
        ts = str(p.get("ts"))
        if method in ("chat.appendStream", "chat.stopStream"):
            self.updates += 1
            self._show(ts, self._shown.get(ts, "") + str(p.get("markdown_text") or ""))
            if method == "chat.stopStream":
                self._out.write("\n")
        elif method == "chat.update":
            self.updates += 1
            self._show(ts, str(p.get("text") or ""))
        return web.json_response({**ok, "ts": ts})


def _event(text: str, n: int) -> dict[str, Any]:
    ts = f"{int(time.time())}.{n:06d}"
    return {
        "token": "demo",
        "team_id": TEAM,
        "type": "event_callback",
        "event_id": f"EvDEMO{n}",
        "event_time": int(time.time()),
        "event": {
            "type": "message",
            "channel_type": "im",
            "channel": CHANNEL,
            "user": USER,
            "text": text,
            "ts": ts,
            "team": TEAM,
        },
    }


async def run_demo(
    question: str | None = None,
    out: Any = None,
    *,
    web: bool = False,
    port: int = 0,
    stop: asyncio.Event | None = None,
) -> int:
    """The scripted run; then, with `web`, the web chat on `port` (0: a free one) until
    `stop` is set (by default: until SIGINT or SIGTERM)."""
    out = out or sys.stdout
    questions = [
        question or "What can you do for our team?",
        "And what did I ask you a moment ago?",
        "/reset",
    ]
    real_key = os.environ.get("DIFY_API_KEY")
    emulator: DifyEmulator | None = None
    if real_key:
        dify_base = os.environ.get("DIFY_BASE_URL", "https://api.dify.ai/v1")
        dify_key = real_key
    else:
        emulator = DifyEmulator(
            api_key=secrets.token_hex(8), opening_statement="Hi! Ask me anything."
        )
        dify_base = await emulator.start()
        dify_key = emulator.api_key
    slack = TerminalSlack(out)
    slack_api = await slack.start()
    workdir = Path(tempfile.mkdtemp(prefix="dify-gateway-demo-"))
    signing_secret = secrets.token_hex(16)
    port = port or _free_port()
    env = {
        "DEMO_PORT": str(port),
        "DEMO_DB": str(workdir / "demo.db"),
        "DEMO_DIFY_BASE_URL": dify_base,
        "DEMO_DIFY_API_KEY": dify_key,
        "DEMO_SLACK_API": slack_api,
        "DEMO_SIGNING_SECRET": signing_secret,
    }
    tree = yaml.safe_load(resources.files("gateway").joinpath("demo.yaml").read_text())
    config = parse_config(tree, env=env)
    gateway = Gateway(config)
    base = f"http://127.0.0.1:{port}"
    out.write("dify-gateway demo: the whole path on this machine, no accounts\n")
    where = "your Dify app" if real_key else "built-in emulator; set DIFY_API_KEY to use yours"
    out.write(f"  Dify     {dify_base}  ({where})\n")
    out.write(f"  Slack    {slack_api}  (local stand-in for the Web API)\n")
    out.write(f"  Store    sqlite:///{workdir / 'demo.db'}\n")
    out.write(f"  Gateway  {base}  (webhook: POST /webhooks/{BOT})\n\n")
    try:
        async with (
            serving(gateway, "127.0.0.1", port),
            httpx.AsyncClient(base_url=base, timeout=10) as http,
        ):
            await _wait_ready(http)
            for n, text in enumerate(questions, 1):
                await _ask(http, gateway, slack, signing_secret, text, n, out)
            await _forged(http, out)
            out.write(
                "\nDone. Next: copy config/gateway.example.yaml, point a bot at your workspace,"
                " and run `dify-gateway serve`.\n"
            )
            if web:
                answerer = "your Dify app" if real_key else "the built-in emulator"
                await _serve_web_chat(f"{base}/chat/{WEB_BOT}", answerer, out, stop)
                await gateway.drain()  # closes the browsers' sockets (they would hold it open)
    finally:
        await slack.stop()
        if emulator is not None:
            await emulator.stop()
    return 0


async def _serve_web_chat(url: str, answerer: str, out: Any, stop: asyncio.Event | None) -> None:
    """Keep the gateway serving its web chat until `stop` (or Ctrl-C)."""
    out.write(
        f"\nYour turn: open {url} in a browser to chat with {answerer}\n"
        "  through the whole gateway path (bot demo-web, auth: none). Press Ctrl-C to stop.\n"
    )
    out.flush()
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(ValueError, RuntimeError):
                    loop.remove_signal_handler(sig)
        out.write("\nStopped.\n")
        return
    await stop.wait()


async def _wait_ready(http: httpx.AsyncClient) -> None:
    for _ in range(200):
        ready = await http.get("/readyz")
        # The instance is ready before its bots are: the demo's bot must be up as well.
        if ready.status_code == 200 and set(ready.json()["bots"].values()) == {"up"}:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the gateway did not become ready")


async def _ask(
    http: httpx.AsyncClient,
    gateway: Gateway,
    slack: TerminalSlack,
    secret: str,
    text: str,
    n: int,
    out: Any,
) -> None:
    body = json.dumps(_event(text, n)).encode()
    ts = str(int(time.time()))
    out.write(f"[{n}] Ada, in a direct message: \u201c{text}\u201d\n")
    started = time.monotonic()
    response = await http.post(
        f"/webhooks/{BOT}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": slack_signature(secret, ts, body),
        },
    )
    acked = time.monotonic()
    out.write(
        f"    \u2192 signed POST /webhooks/{BOT} \u2190 {response.status_code} in "
        f"{(acked - started) * 1000:.0f} ms (acked before Dify is asked)\n"
    )
    updates_before = slack.updates
    await gateway.inbox.wait_idle()
    out.write(
        f"    \u2713 answered in {time.monotonic() - acked:.1f} s with "
        f"{slack.updates - updates_before} streaming updates\n\n"
    )


async def _forged(http: httpx.AsyncClient, out: Any) -> None:
    body = json.dumps(_event("give me the payroll", 99)).encode()
    ts = str(int(time.time()))
    response = await http.post(
        f"/webhooks/{BOT}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": slack_signature("not-the-secret", ts, body),
        },
    )
    out.write(
        f"[4] A forged request (wrong signature) \u2190 {response.status_code}, nothing processed\n"
    )
