"""Feishu / Lark: decryption, the webhook checks and `handle()` on bytes from anyone and on
authentic (token-bearing, encrypted and signed) events of any content, message `content`
strings of any shape, card form submits (`form_value`) of any shape, and long-connection
frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from base64 import b64encode
from pathlib import Path
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.feishu.adapter import FeishuAdapter
from adapters.feishu.buttons import MAX_FIELD_CHARS, to_click
from adapters.feishu.connection import FeishuSocket
from adapters.feishu.crypto import DecryptError, decrypt, encrypt, signature
from adapters.feishu.frames import CONTROL, DATA, Frame, FrameError, decode, encode
from gateway import safejson
from gateway.config import FeishuBot
from gateway.pacing import BotBudget
from gateway.platform import AdapterContext
from gateway.store.memory import MemoryStore
from tests.fuzz.harness import NoAssistant, Reads, check_handle, request
from tests.fuzz.strategies import encode as to_bytes
from tests.fuzz.strategies import (
    field_names,
    garbage,
    headers_or_query,
    json_bodies,
    json_documents,
    mutated,
    texts,
)

FUZZ = settings.get_profile("fuzz")
DATA_DIR = Path(__file__).parents[1] / "data" / "feishu"
TEMPLATES = [json.loads(p.read_text()) for p in sorted(DATA_DIR.glob("*.json"))]
TOKEN, KEY = "v-token", "test key"
PLACEHOLDER = "__CONTENT__"

# What a message's `content` string holds, per message type.
CONTENTS: list[dict[str, Any]] = [
    {"text": "@_user_1 hello @_all @_user_2"},
    {"image_key": "img_v2_1"},
    {"file_key": "file_v2_1", "file_name": "a.pdf"},
    {"file_key": "file_v2_1", "duration": 1000},
    {
        "zh_cn": {
            "title": "t",
            "content": [
                [
                    {"tag": "at", "user_id": "@_user_1", "user_name": "Bot"},
                    {"tag": "text", "text": "hi", "style": ["bold", "italic"]},
                    {"tag": "a", "href": "https://x", "text": "x"},
                    {"tag": "img", "image_key": "img_1"},
                    {"tag": "emotion", "emoji_type": "SMILE"},
                    {"tag": "code_block", "language": "py", "text": "x"},
                    {"tag": "hr"},
                    {"tag": "media", "file_key": "f"},
                ]
            ],
        }
    },
]
MESSAGE_TYPES = ["text", "post", "image", "file", "audio", "media", "sticker", "interactive"]


def _with_placeholder(template: dict[str, Any]) -> dict[str, Any]:
    event = template.get("event")
    message = event.get("message") if isinstance(event, dict) else None
    if isinstance(message, dict) and "content" in message:
        return {**template, "event": {**event, "message": {**message, "content": PLACEHOLDER}}}
    return template


NAMES = field_names(*TEMPLATES, *CONTENTS)
VALUES = [TOKEN, "ou_bot", "@_user_1", *MESSAGE_TYPES]
contents = st.one_of(
    st.one_of([mutated(c, NAMES, VALUES) for c in CONTENTS]), json_documents(NAMES, VALUES)
)
outer = st.one_of([mutated(_with_placeholder(t), NAMES, VALUES) for t in TEMPLATES])
# Events with a content string of any shape inside (a JSON string: decoded twice).
events = st.one_of(
    st.builds(lambda o, c: o.replace(json.dumps(PLACEHOLDER), json.dumps(c)), outer, contents),
    json_documents(NAMES, VALUES),
).map(to_bytes)
bodies = events | json_bodies(TEMPLATES, VALUES)
header_values = texts(30) | st.sampled_from(["", "1", str(int(time.time())), "abc"])


def make_adapter(
    encrypt_key: str | None, deliver: Any = None
) -> tuple[FeishuAdapter, httpx.AsyncClient]:
    http = httpx.AsyncClient()
    settings_: dict[str, Any] = {
        "platform": "feishu",
        "app": "a",
        "app_id": "cli_1",
        "app_secret": "s",
        "verification_token": TOKEN,
    }
    if encrypt_key:
        settings_["encrypt_key"] = encrypt_key
    config = FeishuBot.model_validate(settings_)
    context = AdapterContext(
        http, MemoryStore(), BotBudget(), deliver or Reads().deliver, NoAssistant()
    )
    adapter = FeishuAdapter("feishu-fuzz", config, context)
    adapter._bot_open_id = "ou_bot"  # what start() learns from bot/v3/info
    return adapter, http


def run_cases(adapter: FeishuAdapter, http: httpx.AsyncClient, cases: Any) -> None:
    with asyncio.Runner() as runner:
        try:
            cases(runner)
        finally:
            runner.run(http.aclose())


@FUZZ
@given(encrypted=texts(80) | st.binary(max_size=200).map(lambda b: b64encode(b).decode()))
def test_decrypt_returns_bytes_or_refuses(encrypted: str) -> None:
    with contextlib.suppress(DecryptError):
        assert isinstance(decrypt(KEY, encrypted), bytes)


def test_handle_unauthenticated_bytes() -> None:
    adapter, http = make_adapter(KEY)
    headers = headers_or_query(
        ["x-lark-request-timestamp", "x-lark-request-nonce", "x-lark-signature"], header_values
    )

    def cases(runner: asyncio.Runner) -> None:
        @FUZZ
        @given(body=bodies | garbage(), headers=headers, method=st.sampled_from(["POST", "GET"]))
        def case(body: bytes, headers: dict[str, str], method: str) -> None:
            req = request(body, method=method, headers=headers)
            runner.run(check_handle(adapter.handle, req))

        case()

    run_cases(adapter, http, cases)


def test_handle_plaintext_events_of_any_content() -> None:
    """No Encrypt Key: the verification token (in the templates) is the only check."""
    adapter, http = make_adapter(None)

    def cases(runner: asyncio.Runner) -> None:
        @FUZZ
        @given(body=bodies)
        def case(body: bytes) -> None:
            runner.run(check_handle(adapter.handle, request(body)))

        case()

    run_cases(adapter, http, cases)


def test_handle_encrypted_signed_events_of_any_content() -> None:
    adapter, http = make_adapter(KEY)

    def cases(runner: asyncio.Runner) -> None:
        @FUZZ
        @given(plaintext=bodies, nonce=st.sampled_from(["n", "abc123", ""]))
        def case(plaintext: bytes, nonce: str) -> None:
            body = json.dumps({"encrypt": encrypt(KEY, plaintext)}).encode()
            timestamp = str(int(time.time()))
            headers = {
                "x-lark-request-timestamp": timestamp,
                "x-lark-request-nonce": nonce,
                "x-lark-signature": signature(timestamp, nonce, KEY, body),
            }
            runner.run(check_handle(adapter.handle, request(body, headers=headers)))

        case()

    run_cases(adapter, http, cases)


SUBMITS = [t for t in TEMPLATES if "form_value" in t.get("event", {}).get("action", {})]
SUBMIT_NAMES = field_names(*SUBMITS)
SUBMIT_VALUES = ["dgw_field_0", "dgw_field_1", "dgw_reason", "note", "room", "Small"]


def _submit_with(template: dict[str, Any], value: Any, form_value: Any) -> dict[str, Any]:
    action = template["event"]["action"]
    if value is not None:
        action = {**action, "value": {**action["value"], **value}}
    action = {**action, "form_value": form_value}
    return {**template, "event": {**template["event"], "action": action}}


def _json_or_none(document: str) -> Any:
    """What the gateway's own reading makes of it (too deep or not JSON: nothing)."""
    try:
        return safejson.loads(document)
    except safejson.JSONError:
        return None


@FUZZ
@given(
    template=st.sampled_from(SUBMITS),
    value=json_documents(SUBMIT_NAMES, SUBMIT_VALUES).map(_json_or_none),
    form_value=json_documents(SUBMIT_NAMES, SUBMIT_VALUES).map(_json_or_none),
)
def test_form_submits_of_any_shape_read_back_bounded_text(
    template: dict[str, Any], value: Any, form_value: Any
) -> None:
    """A card form's submit (a paused run's fields, a 👎's reason) with a `form_value`, and
    extra keys in the button's value, of any shape: a click whose fields and reason are
    strings within bounds, or a reason to ignore it."""
    extra = value if isinstance(value, dict) else None
    click = to_click(
        _submit_with(template, extra, form_value), bot="b", platform="feishu", received_at=1.0
    )
    if isinstance(click, str):
        return
    assert click.action is not None
    for name, typed in click.action.inputs.items():
        assert isinstance(name, str) and isinstance(typed, str)
        assert len(typed) <= MAX_FIELD_CHARS
    assert isinstance(click.action.comment, str) and len(click.action.comment) <= MAX_FIELD_CHARS


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)


# Header strings travel as UTF-8 (invalid UTF-8 is in the garbage frames). Most frames are
# events, so that most reach the adapter; some come in parts, or with odd headers.
_header_values = st.sampled_from(["1", "2", "0", "-1", "64", "65", "m1", "\u0661"])
_header_values |= st.text(max_size=8)
frame_headers = st.builds(
    lambda kind, extra: [("type", kind), ("message_id", "m1"), *extra],
    st.sampled_from(["event", "event", "event", "card", "pong", ""]),
    st.lists(
        st.tuples(
            st.sampled_from(["sum", "seq", "type", "trace_id"]) | st.text(max_size=6),
            _header_values,
        ),
        max_size=3,
    ),
)
frames = st.builds(
    lambda method, headers, payload, seq: encode(
        Frame(seq_id=seq, method=method, headers=headers, payload=payload)
    ),
    st.sampled_from([DATA, DATA, DATA, CONTROL, 7, -1]),
    frame_headers,
    bodies,
    st.integers(0, 2**64 - 1),
)


def test_long_connection_frames() -> None:
    reads = Reads()
    adapter, http = make_adapter(None, reads.deliver)
    socket = FeishuSocket("fuzz", None, adapter._on_event, lambda up: None)  # type: ignore[arg-type]

    def cases(runner: asyncio.Runner) -> None:
        @FUZZ
        @given(data=frames | garbage())
        def case(data: bytes) -> None:
            try:
                frame = decode(data)
            except FrameError:
                return
            if frame.method == CONTROL:
                if frame.header("type") == "pong" and frame.payload:
                    socket._pong(frame.payload)
                return
            ws = FakeSocket()
            runner.run(socket._data(ws, frame))  # type: ignore[arg-type]
            for sent in ws.sent:
                decode(sent)

        case()

    run_cases(adapter, http, cases)
    reads.assert_clean()
    assert reads.count  # the frames reached the adapter's reading
