"""Slack: the v0 signature check, the body parser and `handle()`, on bytes from anyone and
on validly signed bodies of any content; Socket Mode frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.slack.adapter import SlackAdapter
from adapters.slack.connection import SocketModeSession, Step
from adapters.slack.verify import SigningKey, verify_signature
from gateway.config import SlackBot
from gateway.longconn import Frame
from gateway.pacing import BotBudget
from gateway.platform import AdapterContext, VerificationFailed
from gateway.store.memory import MemoryStore
from tests.fuzz.harness import NoAssistant, Reads, check_handle, request
from tests.fuzz.strategies import encode, garbage, headers_or_query, json_bodies, texts

FUZZ = settings.get_profile("fuzz")
DATA = Path(__file__).parents[1] / "data" / "slack"
TEMPLATES = [json.loads(p.read_text()) for p in sorted(DATA.glob("*.json"))]
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
KEY = SigningKey(SECRET)

forms = st.dictionaries(
    st.sampled_from(["ssl_check", "command", "text", "payload", "token", "type"]) | texts(6),
    texts(40),
    max_size=5,
).map(lambda form: "&".join(f"{k}={v}" for k, v in form.items()))
bodies = json_bodies(TEMPLATES, ["UBOT", "U222", "C111", "1610241741.000200"]) | forms.map(encode)
header_values = texts(30) | st.sampled_from(["", "1", str(int(time.time())), "v0=" + "0" * 64])


def make_adapter(deliver: Any = None) -> tuple[SlackAdapter, httpx.AsyncClient]:
    http = httpx.AsyncClient()
    config = SlackBot.model_validate(
        {"platform": "slack", "app": "a", "bot_token": "xoxb-1", "signing_secret": SECRET}
    )
    reads = deliver or Reads().deliver
    context = AdapterContext(http, MemoryStore(), BotBudget(), reads, NoAssistant())
    adapter = SlackAdapter("slack-fuzz", config, context)
    adapter._bot_user_id = "UBOT"  # what start() learns from auth.test
    return adapter, http


@FUZZ
@given(timestamp=header_values, signature=header_values, body=garbage(), now=st.floats(0, 2e10))
def test_verify_signature_accepts_or_refuses(
    timestamp: str, signature: str, body: bytes, now: float
) -> None:
    headers = {"x-slack-request-timestamp": timestamp, "x-slack-signature": signature}
    with contextlib.suppress(VerificationFailed):
        verify_signature(KEY, headers, body, now)


def test_handle_unauthenticated_bytes() -> None:
    with asyncio.Runner() as runner:
        adapter, http = make_adapter()

        @FUZZ
        @given(
            body=bodies,
            headers=headers_or_query(
                ["x-slack-request-timestamp", "x-slack-signature"], header_values
            ),
            method=st.sampled_from(["POST", "GET", "PUT"]),
        )
        def case(body: bytes, headers: dict[str, str], method: str) -> None:
            runner.run(check_handle(adapter.handle, request(body, method=method, headers=headers)))

        try:
            case()
        finally:
            runner.run(http.aclose())


def test_handle_signed_bodies_of_any_content() -> None:
    with asyncio.Runner() as runner:
        adapter, http = make_adapter()

        @FUZZ
        @given(body=bodies)
        def case(body: bytes) -> None:
            now = time.time()
            timestamp = str(int(now))
            headers = {
                "x-slack-request-timestamp": timestamp,
                "x-slack-signature": KEY.sign(timestamp, body),
            }
            runner.run(check_handle(adapter.handle, request(body, headers=headers)))

        try:
            case()
        finally:
            runner.run(http.aclose())


def test_socket_mode_frames() -> None:
    envelopes = bodies.map(lambda b: b.decode("utf-8", "surrogateescape")).map(
        lambda payload: '{"envelope_id":"e1","type":"events_api","payload":' + payload + "}"
    )
    frames = st.one_of(
        envelopes.map(lambda text: Frame("text", text)),
        bodies.map(lambda data: Frame("binary", data)),
        bodies.map(lambda data: Frame("text", data.decode("utf-8", "surrogateescape"))),
    )
    with asyncio.Runner() as runner:
        reads = Reads()
        adapter, http = make_adapter(reads.deliver)
        session = SocketModeSession("fuzz", None, adapter._on_socket_payload, lambda up: None)  # type: ignore[arg-type]

        @FUZZ
        @given(frame=frames)
        def case(frame: Frame) -> None:
            step = runner.run(session.read_frame(frame))
            assert isinstance(step, Step)
            if step.ack is not None:
                json.loads(step.ack)

        try:
            case()
        finally:
            runner.run(http.aclose())
        reads.assert_clean()
    assert reads.count  # the frames reached the adapter's reading
