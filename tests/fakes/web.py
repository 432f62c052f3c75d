"""What an embedding site and its page do with a web chat bot: mint tokens (written here
from RFC 7515/7519 directly, not with the gateway's code), and speak the frames."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any

import aiohttp

SECRET = "a-web-chat-signing-secret-of-some-length"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(
    sub: str | None = "u1",
    *,
    secret: str = SECRET,
    ttl: float = 300,
    name: str | None = None,
    alg: str = "HS256",
    header: dict[str, Any] | None = None,
    claims: dict[str, Any] | None = None,
) -> str:
    """A JWT as an embedding site signs it (HMAC-SHA256 over `header.claims`)."""
    head = {"alg": alg, "typ": "JWT", **(header or {})}
    body: dict[str, Any] = {"exp": int(time.time() + ttl)}
    if sub is not None:
        body["sub"] = sub
    if name is not None:
        body["name"] = name
    body.update(claims or {})
    signing_input = f"{b64url(json.dumps(head).encode())}.{b64url(json.dumps(body).encode())}"
    if alg == "none":
        return signing_input + "."
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def web_bot(**extra: Any) -> dict[str, Any]:
    return {"platform": "web", "app": "main", "signing_secret": SECRET, **extra}


def message(id: str, text: str, **extra: Any) -> str:
    return json.dumps({"type": "message", "id": id, "text": text, **extra})


async def frame(ws: aiohttp.ClientWebSocketResponse, within: float = 10.0) -> dict[str, Any]:
    """The next frame (fails the test on a close or after `within` seconds)."""
    received = await ws.receive(timeout=within)
    assert received.type == aiohttp.WSMsgType.TEXT, f"not a text frame: {received}"
    data = json.loads(received.data)
    assert isinstance(data, dict)
    return data


async def until_final(
    ws: aiohttp.ClientWebSocketResponse, reply_to: str, within: float = 15.0
) -> list[dict[str, Any]]:
    """Every frame answering `reply_to` up to its `final` or `error`, in order."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while True:
            data = await frame(ws, within)
            if data.get("reply_to") != reply_to:
                continue
            seen.append(data)
            if data["type"] in ("final", "error"):
                return seen


async def closed_with(ws: aiohttp.ClientWebSocketResponse, within: float = 10.0) -> int | None:
    """Read until the server closes the socket; its close code."""
    async with asyncio.timeout(within):
        while True:
            received = await ws.receive()
            if received.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                return ws.close_code
