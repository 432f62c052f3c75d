"""WeCom self-built app: the callback crypto, the XML parser and `handle()` (GET URL checks
and POST callbacks) on bytes from anyone and on authentic callbacks (signed, encrypted for
our corp id, fresh) holding XML of any shape."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from pathlib import Path

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.wecom.adapter import WecomAppAdapter
from adapters.wecom.convert import parse_envelope, parse_xml
from adapters.wecom.crypto import WecomCrypto
from gateway.config import WecomBot
from gateway.pacing import BotBudget
from gateway.platform import AdapterContext, MalformedRequest, VerificationFailed
from gateway.store.memory import MemoryStore
from tests.fuzz.harness import NoAssistant, Reads, check_handle, request
from tests.fuzz.strategies import (
    encode,
    garbage,
    headers_or_query,
    texts,
    xml_documents,
    xml_fields,
    xml_mutated,
)

FUZZ = settings.get_profile("fuzz")
DATA = Path(__file__).parents[1] / "data" / "wecom"
CORP_ID, AGENT_ID = "ww1234567890abcdef", 1000002
TOKEN, AES_KEY = "callbacktoken", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
CRYPTO = WecomCrypto(TOKEN, AES_KEY, CORP_ID)
REAL = [
    p.read_text()
    for p in sorted(DATA.glob("*.xml"))
    if p.name not in ("billion_laughs.xml", "xxe.xml")
]
FIELDS = [xml_fields(document) for document in REAL]
NAMES = sorted({tag for fields in FIELDS for tag, _ in fields} | {"Encrypt", "AgentID"})
VALUES = [CORP_ID, str(AGENT_ID), "text", "image", "voice", "event", "amr", "media-1"]

documents = st.one_of(
    st.one_of([xml_mutated(fields, NAMES, VALUES) for fields in FIELDS]),
    xml_documents(NAMES, VALUES),
).map(encode)
payloads = documents | garbage()
query_values = texts(40) | st.sampled_from(["", "1", str(int(time.time())), "x" * 2000])
queries = headers_or_query(["msg_signature", "timestamp", "nonce", "echostr"], query_values)


def make_adapter() -> tuple[WecomAppAdapter, httpx.AsyncClient]:
    http = httpx.AsyncClient()
    config = WecomBot.model_validate(
        {
            "platform": "wecom",
            "app": "a",
            "corp_id": CORP_ID,
            "agent_id": AGENT_ID,
            "secret": "s",
            "token": TOKEN,
            "encoding_aes_key": AES_KEY,
        }
    )
    context = AdapterContext(http, MemoryStore(), BotBudget(), Reads().deliver, NoAssistant())
    return WecomAppAdapter("wecom-fuzz", config, context), http


@FUZZ
@given(
    encrypt=texts(80) | st.binary(max_size=400).map(lambda b: base64.b64encode(b).decode()),
    signature=texts(40),
    timestamp=texts(12),
    nonce=texts(12),
)
def test_crypto_verifies_and_decrypts_or_refuses(
    encrypt: str, signature: str, timestamp: str, nonce: str
) -> None:
    for decrypt in (
        lambda: CRYPTO.decrypt(encrypt),
        lambda: CRYPTO.verify_and_decrypt(signature, timestamp, nonce, encrypt),
    ):
        with contextlib.suppress(VerificationFailed):
            assert isinstance(decrypt(), bytes)
    # Our own signature over any values always verifies (it never raises).
    CRYPTO.verify(CRYPTO.signature(timestamp, nonce, encrypt), timestamp, nonce, encrypt)


@FUZZ
@given(body=payloads)
def test_xml_parser_returns_fields_or_refuses(body: bytes) -> None:
    with contextlib.suppress(MalformedRequest):
        fields = parse_xml(body)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
    with contextlib.suppress(MalformedRequest):
        parse_envelope(body)


def test_handle_unauthenticated_requests() -> None:
    adapter, http = make_adapter()
    with asyncio.Runner() as runner:

        @FUZZ
        @given(body=payloads, query=queries, method=st.sampled_from(["POST", "GET", "HEAD"]))
        def case(body: bytes, query: dict[str, str], method: str) -> None:
            runner.run(check_handle(adapter.handle, request(body, method=method, query=query)))

        try:
            case()
        finally:
            runner.run(http.aclose())


def test_handle_authentic_callbacks_of_any_content() -> None:
    adapter, http = make_adapter()
    envelope = "<xml><ToUserName><![CDATA[{0}]]></ToUserName><Encrypt><![CDATA[{1}]]></Encrypt>"
    with asyncio.Runner() as runner:

        @FUZZ
        @given(plaintext=payloads, nonce=st.sampled_from(["1", "abc"]), get=st.booleans())
        def case(plaintext: bytes, nonce: str, get: bool) -> None:
            timestamp = str(int(time.time()))
            encrypt = CRYPTO.encrypt(plaintext)
            query = {
                "msg_signature": CRYPTO.signature(timestamp, nonce, encrypt),
                "timestamp": timestamp,
                "nonce": nonce,
            }
            if get:  # a URL check whose echostr decrypts to anything
                req = request(b"", method="GET", query={**query, "echostr": encrypt})
            else:
                body = (envelope.format(CORP_ID, encrypt) + "</xml>").encode()
                req = request(body, query=query)
            runner.run(check_handle(adapter.handle, req))

        try:
            case()
        finally:
            runner.run(http.aclose())
