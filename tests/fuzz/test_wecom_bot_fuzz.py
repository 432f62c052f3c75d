"""WeCom AI bot: `handle()` (webhook mode) on bytes from anyone and on authentic callbacks
(signed, encrypted with receiveid "", fresh) of any JSON content, template-card clicks among
them (nested or flat, keys of any type); the long connection's frames, parsed, routed and
read (WebSocket mode); media keys."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
from hypothesis import example, given, settings
from hypothesis import strategies as st

from adapters.wecom.crypto import WecomCrypto
from adapters.wecom_bot.adapter import WecomBotAdapter
from adapters.wecom_bot.api import media_key
from adapters.wecom_bot.connection import WsLink, parse
from adapters.wecom_bot.state import BotState
from gateway.config import WecomAIBot
from gateway.longconn import ConnectionClosed, Frame
from gateway.pacing import BotBudget
from gateway.platform import AdapterContext, PlatformError
from gateway.store.memory import MemoryStore
from tests.fuzz.harness import NoAssistant, Reads, check_handle, request
from tests.fuzz.strategies import garbage, headers_or_query, json_bodies, texts

FUZZ = settings.get_profile("fuzz")
DATA = Path(__file__).parents[1] / "data" / "wecom_bot"
TEMPLATES = [json.loads(p.read_text()) for p in sorted(DATA.glob("*.json"))]
TEXT_SINGLE = json.loads((DATA / "text_single.json").read_text())
TOKEN, AES_KEY = "QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
CRYPTO = WecomCrypto(TOKEN, AES_KEY, "")
VALUES = [
    "MSGID1",
    "USERID",
    "1",
    "2",
    "3",
    "feedback_event",
    "enter_chat",
    "stream",
    # Card clicks (the template_card_*.json templates): the gateway's own keys, odd ones.
    "template_card_event",
    "dgw1|suggestion|0|wecom-ai-fuzz:MSGID1",
    "dgw1|form|approve|TOKEN",
    "dgw1|stop||wecom-ai-fuzz:MSGID1",
    "dgw1-done-0",
    "dgw-0123456789abcdef01234567",
]

bodies = json_bodies(TEMPLATES, VALUES)
query_values = texts(40) | st.sampled_from(["", "1", str(int(time.time()))])
queries = headers_or_query(["msg_signature", "timestamp", "nonce", "echostr"], query_values)


def make_adapter(**extra: Any) -> tuple[WecomBotAdapter, httpx.AsyncClient, Reads]:
    http = httpx.AsyncClient()
    config = WecomAIBot.model_validate(
        {"platform": "wecom_bot", "app": "a", "token": TOKEN, "encoding_aes_key": AES_KEY, **extra}
    )
    reads = Reads()
    context = AdapterContext(http, MemoryStore(), BotBudget(), reads.deliver, NoAssistant())
    adapter = WecomBotAdapter("wecom-ai-fuzz", config, context)
    adapter.welcome_timeout = 0.01
    return adapter, http, reads


def fresh_state(adapter: WecomBotAdapter) -> None:
    """A store of its own per example: the in-flight limit would soon refuse everything."""
    adapter._state = BotState(MemoryStore(), adapter.bot)


def test_handle_unauthenticated_requests() -> None:
    adapter, http, _ = make_adapter()
    with asyncio.Runner() as runner:

        @FUZZ
        @given(body=bodies, query=queries, method=st.sampled_from(["POST", "GET"]))
        def case(body: bytes, query: dict[str, str], method: str) -> None:
            runner.run(check_handle(adapter.handle, request(body, method=method, query=query)))

        try:
            case()
        finally:
            runner.run(adapter.aclose())
            runner.run(http.aclose())


def test_handle_authentic_callbacks_of_any_content() -> None:
    adapter, http, _ = make_adapter()
    with asyncio.Runner() as runner:

        @FUZZ
        @given(plaintext=bodies, get=st.booleans())
        def case(plaintext: bytes, get: bool) -> None:
            fresh_state(adapter)
            timestamp, nonce = str(int(time.time())), "nonce1"
            encrypt = CRYPTO.encrypt(plaintext)
            query = {
                "msg_signature": CRYPTO.signature(timestamp, nonce, encrypt),
                "timestamp": timestamp,
                "nonce": nonce,
            }
            if get:
                req = request(b"", method="GET", query={**query, "echostr": encrypt})
            else:
                req = request(json.dumps({"encrypt": encrypt}).encode(), query=query)
            runner.run(check_handle(adapter.handle, req))

        try:
            case()
        finally:
            runner.run(adapter.aclose())
            runner.run(http.aclose())


def _frame(cmd: str, body: str) -> str:
    return '{"cmd":' + json.dumps(cmd) + ',"headers":{"req_id":"r1"},"body":' + body + "}"


def test_long_connection_frames() -> None:
    adapter, http, reads = make_adapter(
        mode="websocket", bot_id="B", secret="S", api_base="ws://127.0.0.1:9"
    )
    link = adapter._link
    assert isinstance(link, WsLink)
    callbacks = bodies.map(lambda b: b.decode("utf-8", "surrogateescape"))
    # The real callbacks as they are, so that runs reach the adapter's reading often (a
    # mutated one under the right cmd is rare: about one frame in 500); the @example
    # below makes sure every run does.
    real = st.sampled_from([json.dumps(t) for t in TEMPLATES]).map(
        lambda body: Frame("text", _frame("aibot_msg_callback", body))
    )
    frames = st.one_of(
        real,
        st.builds(
            _frame,
            st.sampled_from(["aibot_msg_callback", "aibot_event_callback", "ping", ""]),
            callbacks,
        ).map(lambda text: Frame("text", text)),
        bodies.map(lambda data: Frame("binary", data)),
        garbage().map(lambda data: Frame("text", data.decode("utf-8", "surrogateescape"))),
    )
    with asyncio.Runner() as runner:

        @FUZZ
        @given(raw=frames)
        @example(raw=Frame("text", _frame("aibot_msg_callback", json.dumps(TEXT_SINGLE))))
        def case(raw: Frame) -> None:
            fresh_state(adapter)
            frame = parse(raw)
            if frame is None:
                return
            inbox: asyncio.Queue[tuple[str, dict[str, Any], str]] = asyncio.Queue()
            try:
                link.route(frame, inbox)
            except ConnectionClosed:
                return  # a displacement notice: the session ends
            while not inbox.empty():
                runner.run(adapter._on_frame(*inbox.get_nowait()))

        try:
            case()
        finally:
            runner.run(adapter.aclose())
            runner.run(http.aclose())
    reads.assert_clean()
    assert reads.count  # the frames reached the adapter's reading


@FUZZ
@given(key=texts(60) | st.binary(max_size=48).map(lambda b: base64.b64encode(b).decode()))
def test_media_key_is_a_key_or_refused(key: str) -> None:
    with contextlib.suppress(PlatformError):
        assert len(media_key(key)) == 32
