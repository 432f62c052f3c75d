"""DingTalk: the HTTP-mode sign check and `handle()` on bytes from anyone and on validly
signed callbacks (each with a sign of its own) of any JSON content; Stream-mode frames, whose
`data` is JSON inside a JSON string; and card-button clicks, whose `data` holds `content`,
JSON inside a JSON string once more."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from pathlib import Path
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.dingtalk.adapter import DingtalkAdapter
from adapters.dingtalk.card_clicks import ACTIONS
from adapters.dingtalk.connection import Step
from adapters.dingtalk.frames import CARD_TOPIC, FrameError, parse_frame
from adapters.dingtalk.verify import compute_sign, verify_signature
from gateway.config import DingtalkBot
from gateway.pacing import BotBudget
from gateway.platform import AdapterContext, VerificationFailed
from gateway.store.memory import MemoryStore
from tests.fuzz.harness import NoAssistant, Reads, check_handle, request
from tests.fuzz.strategies import (
    encode,
    field_names,
    garbage,
    headers_or_query,
    json_bodies,
    json_documents,
    mutated,
    texts,
)

FUZZ = settings.get_profile("fuzz")
DATA = Path(__file__).parents[1] / "data" / "dingtalk"
LOADED = [json.loads(p.read_text()) for p in sorted(DATA.glob("*.json"))]
MESSAGES = [t for t in LOADED if "msgId" in t]
FRAMES = [t for t in LOADED if "specVersion" in t]
SECRET = "test_app_secret"
VALUES = ["1", "2", "text", "picture", "richText", "audio", "file", "video", "CALLBACK"]
PLACEHOLDER = "__DATA__"

messages = json_bodies(MESSAGES, VALUES)
header_values = texts(50) | st.sampled_from(
    ["", "1700000000000", str(int(time.time() * 1000)), compute_sign(SECRET, "1"), "=" * 44]
)


def make_adapter(deliver: Any = None) -> tuple[DingtalkAdapter, httpx.AsyncClient]:
    http = httpx.AsyncClient()
    config = DingtalkBot.model_validate(
        {
            "platform": "dingtalk",
            "app": "a",
            "mode": "http",
            "client_id": "dingtestclient",
            "client_secret": SECRET,
        }
    )
    context = AdapterContext(
        http, MemoryStore(), BotBudget(), deliver or Reads().deliver, NoAssistant()
    )
    return DingtalkAdapter("ding-fuzz", config, context), http


@FUZZ
@given(
    headers=st.dictionaries(st.sampled_from(["timestamp", "sign"]) | texts(5), header_values),
    now_ms=st.integers(0, 2**53),
)
def test_verify_signature_accepts_or_refuses(headers: dict[str, str], now_ms: int) -> None:
    with contextlib.suppress(VerificationFailed):
        verify_signature(headers, SECRET, now_ms=now_ms)


def test_handle_unauthenticated_requests() -> None:
    adapter, http = make_adapter()
    with asyncio.Runner() as runner:

        @FUZZ
        @given(
            body=messages,
            headers=headers_or_query(["timestamp", "sign"], header_values),
            method=st.sampled_from(["POST", "GET"]),
        )
        def case(body: bytes, headers: dict[str, str], method: str) -> None:
            req = request(body, method=method, headers=headers)
            runner.run(check_handle(adapter.handle, req))

        try:
            case()
        finally:
            runner.run(http.aclose())


def test_handle_signed_callbacks_of_any_content() -> None:
    adapter, http = make_adapter()
    # Each callback gets a timestamp (and so a sign) of its own: a sign is accepted once.
    offsets = itertools.count()
    with asyncio.Runner() as runner:

        @FUZZ
        @given(body=messages)
        def case(body: bytes) -> None:
            timestamp = str(int(time.time() * 1000) - next(offsets))
            headers = {"timestamp": timestamp, "sign": compute_sign(SECRET, timestamp)}
            runner.run(check_handle(adapter.handle, request(body, headers=headers)))

        try:
            case()
        finally:
            runner.run(http.aclose())


NAMES = field_names(*LOADED)
frame_templates = [{**t, "data": PLACEHOLDER} for t in FRAMES]
frame_texts = st.builds(
    lambda outer, data: outer.replace(json.dumps(PLACEHOLDER), json.dumps(data)),
    st.one_of([mutated(t, NAMES, VALUES) for t in frame_templates]),
    messages.map(lambda b: b.decode("utf-8", "surrogateescape")),
)


def test_stream_frames() -> None:
    reads = Reads()
    adapter, http = make_adapter(reads.deliver)
    stream = adapter._stream
    frames = st.one_of(
        frame_texts,
        frame_texts.map(encode),
        json_documents(NAMES, VALUES),
        garbage(),
    )
    with asyncio.Runner() as runner:

        @FUZZ
        @given(data=frames)
        def case(data: str | bytes) -> None:
            with contextlib.suppress(FrameError):
                parse_frame(data).payload()
            step = runner.run(stream.read_frame(data))
            assert isinstance(step, Step)
            if step.ack is not None:
                json.loads(step.ack)

        try:
            case()
        finally:
            runner.run(http.aclose())
    reads.assert_clean()
    assert reads.count  # the frames reached the adapter's reading


CARD_FRAME = next(t for t in FRAMES if t["headers"]["topic"] == CARD_TOPIC)
CLICK = json.loads(CARD_FRAME["data"])
CONTENT = json.loads(CLICK["content"])
CLICK_NAMES = field_names(CLICK, CONTENT)
CLICK_VALUES = [*ACTIONS, "share", "actionCallback", "1"]
click_texts = st.builds(
    lambda outer, content: outer.replace(json.dumps(PLACEHOLDER), json.dumps(content)),
    mutated({**CLICK, "content": PLACEHOLDER}, CLICK_NAMES, CLICK_VALUES),
    json_bodies([CONTENT], CLICK_VALUES).map(lambda b: b.decode("utf-8", "surrogateescape")),
)


def test_card_click_frames() -> None:
    """A click's frame of any `data` and `content`: a click, an ignored callback, or a clean
    rejection, and always an ack (a redelivery would be just as bad) unless the frame itself
    does not parse (a lone surrogate in `data` makes the whole frame invalid JSON): then
    there is no message id to ack."""
    reads = Reads()
    adapter, http = make_adapter(reads.deliver)
    stream = adapter._stream
    datas = st.one_of(click_texts, json_documents(CLICK_NAMES, CLICK_VALUES), texts())
    with asyncio.Runner() as runner:

        @FUZZ
        @given(data=datas)
        def case(data: str) -> None:
            frame = json.dumps({**CARD_FRAME, "data": data})
            step = runner.run(stream.read_frame(frame))
            try:
                parse_frame(frame)
            except FrameError:
                assert step.ack is None
                return
            assert step.ack is not None and json.loads(json.loads(step.ack)["data"]) == {
                "response": {}
            }

        try:
            case()
        finally:
            runner.run(http.aclose())
    reads.assert_clean()
    assert reads.count  # the clicks reached the adapter's reading
